"""Two network namespaces for a probe pair, joined by veth pairs (needs root and iproute2).

Topology (``X`` is a random third octet of 10.231.0.0/16, ``S`` a random suffix)::

      namespace pp-a-S                 root namespace                namespace pp-b-S
    +------------------+                                          +------------------+
    | pp-ab-S .1/30 ===|========== heartbeat link ================|=== pp-ba-S .2/30 |
    | pp-ar-S .6/30 ===|=== pp-ra-S .5/30      pp-rb-S .9/30 =====|=== pp-br-S .10/30|
    +------------------+     (feed + metrics)  (feed + metrics)   +------------------+

The heartbeats cross only the A-B link, so taking ``pp-ab-S`` down partitions the pair
while the test, in the root namespace, still feeds both probes and reads their /metrics
over the two feed links. Deleting a namespace deletes the veth ends inside it, and with
them their peers; ``delete`` also removes the root-side ends in case a namespace was
never created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SKIP_REASON = "needs root and iproute2 for network namespaces"
IP_TIMEOUT = 10.0  # seconds for one `ip` command


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise with its stderr when ``check`` and it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True,
                            timeout=IP_TIMEOUT, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def available() -> bool:
    """True when this process may create network namespaces with ``ip netns``."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    return ip("netns", "list", check=False).returncode == 0


@dataclass(frozen=True)
class Topology:
    """Names and addresses of one two-namespace set-up (see the module docstring)."""

    suffix: str
    octet: int

    def ns(self, side: str) -> str:
        return f"pp-{side}-{self.suffix}"

    def link_dev(self, side: str) -> str:
        """The heartbeat-link veth inside namespace ``side`` ('a' or 'b')."""
        return f"pp-{side}{'b' if side == 'a' else 'a'}-{self.suffix}"

    def heartbeat_addr(self, side: str) -> str:
        return f"10.231.{self.octet}.{1 if side == 'a' else 2}"

    def feed_addr(self, side: str) -> str:
        """The namespace's end of its feed link: the probe's feed and /metrics listen here."""
        return f"10.231.{self.octet}.{6 if side == 'a' else 10}"

    def root_addr(self, side: str) -> str:
        """The root namespace's end of ``side``'s feed link (the feeder's source)."""
        return f"10.231.{self.octet}.{5 if side == 'a' else 9}"

    def root_dev(self, side: str) -> str:
        return f"pp-r{side}-{self.suffix}"

    def feed_dev(self, side: str) -> str:
        return f"pp-{side}r-{self.suffix}"

    def set_link(self, up: bool) -> None:
        """Take the heartbeat link down (partition) or bring it back, on side A."""
        ip("-n", self.ns("a"), "link", "set", self.link_dev("a"), "up" if up else "down")


def _free_octet() -> int:
    used = ip("-4", "-o", "addr", "show").stdout
    for _ in range(100):
        octet = 1 + int.from_bytes(os.urandom(1), "big") % 254
        if f" 10.231.{octet}." not in used:
            return octet
    raise RuntimeError("no free 10.231.X.0/24 on this host")


def create() -> Topology:
    """Create both namespaces and the three veth pairs, all up and addressed.

    On any failure it deletes what it created and re-raises.
    """
    topo = Topology(os.urandom(2).hex(), _free_octet())
    try:
        for side in ("a", "b"):
            ip("netns", "add", topo.ns(side))
            ip("-n", topo.ns(side), "link", "set", "lo", "up")
        # The heartbeat link, created inside A with its peer end moved to B.
        ip("-n", topo.ns("a"), "link", "add", topo.link_dev("a"), "type", "veth",
           "peer", "name", topo.link_dev("b"), "netns", topo.ns("b"))
        for side in ("a", "b"):
            ns = topo.ns(side)
            ip("-n", ns, "addr", "add", f"{topo.heartbeat_addr(side)}/30",
               "dev", topo.link_dev(side))
            ip("-n", ns, "link", "set", topo.link_dev(side), "up")
            # The feed link: root end stays here, the other end goes into the namespace.
            ip("link", "add", topo.root_dev(side), "type", "veth", "peer", "name",
               topo.feed_dev(side), "netns", ns)
            ip("addr", "add", f"{topo.root_addr(side)}/30", "dev", topo.root_dev(side))
            ip("link", "set", topo.root_dev(side), "up")
            ip("-n", ns, "addr", "add", f"{topo.feed_addr(side)}/30",
               "dev", topo.feed_dev(side))
            ip("-n", ns, "link", "set", topo.feed_dev(side), "up")
    except BaseException:
        delete(topo)
        raise
    return topo


def delete(topo: Topology) -> list[str]:
    """Remove everything ``create`` may have made; the ``ip`` errors other than "absent"."""
    errors = []
    for side in ("a", "b"):
        for args in (("netns", "del", topo.ns(side)), ("link", "del", topo.root_dev(side))):
            result = ip(*args, check=False)
            absent = ("No such file" in result.stderr or "Cannot find device" in result.stderr)
            if result.returncode != 0 and not absent:
                errors.append(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return errors


@contextmanager
def two_namespaces() -> Iterator[Topology]:
    """``create()``, and ``delete()`` on the way out, whatever happened."""
    topo = create()
    try:
        yield topo
    finally:
        errors = delete(topo)
    if errors:  # only when the body succeeded: never mask the test's own failure
        raise RuntimeError("; ".join(errors))
