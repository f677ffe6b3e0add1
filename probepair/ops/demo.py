"""``probepair demo``: a pair on loopback, a master killed and brought back, no loss.

The demo runs two real ``probepair run`` processes (a master and a slave, each in its
own directory, short timings so the story fits in half a minute), feeds both the same
datagrams at a steady rate, and narrates from what the probes publish on ``/status``
and ``/metrics``: the pair forming, a SIGKILL of the master, the slave's takeover
against its bound, the master's restart and the handshake failback. It ends by reading
both sinks: every event sent must be in the union of their EventKeys, once.

Everything is on 127.0.0.1 and every wait is bounded; the processes live in one
nursery, so Ctrl-C (or any failure) terminates and reaps them. Output goes to the
stream given to ``run_demo`` (the demo is a command whose output is the point); a
terminal gets a status line redrawn in place, a pipe gets one line per refresh.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO, Final, TextIO

import httpx
import orjson
import trio

from probepair.config.httpauth import authorization
from probepair.config.secret import new_secret, write_secret_file
from probepair.errors import ProbepairError, leaf_exceptions

HOST: Final = "127.0.0.1"
PAYLOAD_PREFIX: Final = "demo event "
# Short timings so a takeover takes ~1.5 s (BeatInterval + BeatThreshold + HeartbeatTimeout).
TIMINGS: Final = {"beatinterval": "0.5", "beatthreshold": "0.5", "heartbeattimeout": "0.5"}
DEFAULT_RATE: Final = 500  # events per second to each probe: visible, and cheap on 2 cores
MAX_RATE: Final = 5000  # events per second: the demo is a story, not a benchmark
DEFAULT_PHASE: Final = 6.0  # seconds of traffic before the kill, while down, after failback
REFRESH: Final = 0.5  # seconds between two lines of the live view
POLL: Final = 0.05  # seconds between checks while timing a takeover or a failback
TICK: Final = 0.01  # seconds between two bursts of the feed generator
READY_TIMEOUT: Final = 20.0  # seconds for a probe to print READY (slow CI machines)
CHANGE_TIMEOUT: Final = 20.0  # seconds for the pair to form, take over or fail back
DRAIN_TIMEOUT: Final = 10.0  # seconds for the sinks to hold every event sent
STOP_TIMEOUT: Final = 15.0  # seconds for a clean stop after SIGTERM, then SIGKILL
HTTP_TIMEOUT: Final = 0.4  # seconds per /status or /metrics request (below REFRESH)


class DemoError(ProbepairError):
    """The demo could not tell its story (a probe did not start, or did not switch)."""


@dataclass(frozen=True, slots=True)
class Node:
    """One probe of the demo pair: its directory and its loopback ports."""

    name: str
    mode: str
    directory: Path
    feed_port: int
    heartbeat_port: int
    peer_port: int
    metrics_port: int

    @property
    def sink(self) -> Path:
        return self.directory / "alerts.jsonl"

    @property
    def secret_file(self) -> Path:
        return self.directory / "secret"

    def argv(self) -> list[str]:
        options = {
            "mode": self.mode,
            "name": self.name,
            "peerhost": HOST,
            "peerport": str(self.peer_port),
            "listenaddress": HOST,
            "listenport": str(self.heartbeat_port),
            "sharedsecretfile": str(self.secret_file),
            "feedtype": "udp",
            "feedaddress": HOST,
            "feedport": str(self.feed_port),
            "feedformat": "line",
            "rulesfile": "",
            "sinktype": "file",
            "sinkfile": str(self.sink),
            "saffilename": str(self.directory / f"{self.name}.saf"),
            "controlsocket": str(self.directory / f"{self.name}.sock"),
            "metricsaddress": HOST,
            "metricsport": str(self.metrics_port),
            "messagelevel": "info",
            **TIMINGS,
        }
        args = [sys.executable, "-m", "probepair", "run"]
        for name, value in options.items():
            args += [f"--{name}", value]
        return args


@dataclass(slots=True)
class View:
    """What the live view shows of one probe (None fields: it did not answer)."""

    role: str | None = None
    active: bool | None = None
    buffer_depth: int | None = None
    forwarded: int | None = None

    def cells(self) -> str:
        if self.role is None:
            return f"{'(down)':<14} {'-':>3} {'-':>7} {'-':>9}"
        active = "yes" if self.active else "no"
        return f"{self.role:<14} {active:>3} {self.buffer_depth or 0:>7} {self.forwarded or 0:>9}"


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free for both UDP and TCP right now."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def make_pair(workdir: Path) -> tuple[Node, Node]:
    """The master ``m`` and the slave ``s``, each heartbeating to the other's port."""
    fm, hm, mm, fs, hs, ms = free_ports(6)
    master = Node("m", "master", workdir / "m", fm, hm, hs, mm)
    slave = Node("s", "slave", workdir / "s", fs, hs, hm, ms)
    for node in (master, slave):
        node.directory.mkdir(parents=True, exist_ok=True)
    return master, slave


def _metric(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


async def fetch_view(client: httpx.AsyncClient, node: Node, secret: bytes) -> View:
    """The probe's role from ``/status`` (a signed request, as a peer's: the pair's
    secret) and its forwarded count from ``/metrics``."""
    base = f"http://{HOST}:{node.metrics_port}"
    nonce = secrets.token_hex(16)
    signed = {"Authorization": authorization(secret, "GET", "/status", now=time.time(),
                                             nonce=nonce)}
    try:
        status = (await client.get(f"{base}/status", headers=signed)).json()
        metrics = (await client.get(f"{base}/metrics")).text
    except (httpx.HTTPError, ValueError):
        return View()
    return View(
        role=status.get("role"),
        active=status.get("active"),
        buffer_depth=status.get("buffer_depth"),
        forwarded=_metric(metrics, "probepair_events_forwarded_total"),
    )


def read_sink(path: Path) -> tuple[list[str], int, int]:
    """A JSON-lines sink: the demo events' EventKeys, self-events, unreadable (torn) lines.

    Self-events (``ProbeWatch``: running, role changes) are the probes' own, not the feed's.
    """
    keys: list[str] = []
    own = torn = 0
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                alert = orjson.loads(line)
                if str(alert.get("Line", "")).startswith(PAYLOAD_PREFIX):
                    keys.append(alert["EventKey"])
                else:
                    own += 1
            except (orjson.JSONDecodeError, KeyError, AttributeError):
                torn += 1
    return keys, own, torn


@dataclass
class Tally:
    """The end of the story: what was sent against what the sinks hold."""

    sent: int
    per_sink: dict[str, int]
    unique: int
    self_events: int = 0
    torn: int = 0

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.unique)

    @property
    def duplicates(self) -> int:
        return sum(self.per_sink.values()) - self.unique


def tally(sent: int, nodes: tuple[Node, ...]) -> Tally:
    """Count the union of the sinks' EventKeys against the events sent."""
    union: set[str] = set()
    result = Tally(sent, {}, 0)
    for node in nodes:
        keys, own, torn = read_sink(node.sink)
        union.update(keys)
        result.per_sink[node.name] = len(keys)
        result.self_events += own
        result.torn += torn
    result.unique = len(union)
    return result


def _open_outputs(node: Node) -> tuple[BinaryIO, BinaryIO]:
    """The probe's stdout (READY line) and stderr (its log), in its directory."""
    return open(node.directory / "stdout.txt", "wb"), open(node.directory / "probe.log", "ab")


async def _terminate(process: trio.Process) -> None:
    """Cancel delivery for the probe processes: SIGTERM, then SIGKILL if it lingers."""
    process.terminate()
    with trio.move_on_after(STOP_TIMEOUT):
        await process.wait()
        return
    process.kill()


@dataclass
class Demo:
    """The story, step by step; ``views`` is refreshed by the live view task."""

    master: Node
    slave: Node
    out: TextIO
    rate: int = DEFAULT_RATE
    phase: float = DEFAULT_PHASE
    secret: str = field(default_factory=new_secret)  # this pair's own, as a real pair's
    sent: int = 0
    views: dict[str, View] = field(default_factory=dict)
    processes: dict[str, trio.Process] = field(default_factory=dict)
    _t0: float = 0.0
    _inline: bool = False

    @property
    def tty(self) -> bool:
        return self.out.isatty()

    def say(self, text: str) -> None:
        if self._inline:
            self.out.write("\n")
            self._inline = False
        self.out.write(f"{self.elapsed():5.1f}s  {text}\n")
        self.out.flush()

    def elapsed(self) -> float:
        return trio.current_time() - self._t0

    # -- processes ---------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, node: Node) -> None:
        """Start ``node`` and wait for its READY line (stdout and log in its directory)."""
        out_path = node.directory / "stdout.txt"
        write_secret_file(str(node.secret_file), self.secret)
        stdout, log = _open_outputs(node)
        with stdout, log:  # the child holds its own copies
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    node.argv(),
                    check=False,
                    cwd=node.directory,
                    stdout=stdout,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    deliver_cancel=_terminate,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                ),
                name=f"probe:{node.name}",
            )
        self.processes[node.name] = process
        with trio.move_on_after(READY_TIMEOUT):
            while not out_path.read_bytes().startswith(b"READY"):
                if process.returncode is not None:
                    break
                await trio.sleep(POLL)
            else:
                return
        raise DemoError(
            f"probe {node.name} did not start (exit status {process.returncode}); "
            f"see {node.directory / 'probe.log'}"
        )

    async def stop(self, node: Node) -> int | None:
        process = self.processes[node.name]
        process.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            return await process.wait()
        process.kill()
        return None

    # -- the feed and the live view ----------------------------------------------------

    async def generate(self, stop: trio.Event) -> None:
        """Send the same numbered datagram to both feeds, ``rate`` per second."""
        targets = [(HOST, n.feed_port) for n in (self.master, self.slave)]
        per_tick = max(1, round(self.rate * TICK))
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            deadline = trio.current_time()
            while not stop.is_set():
                for _ in range(per_tick):
                    payload = b"%s%08d" % (PAYLOAD_PREFIX.encode(), self.sent)
                    # Both copies go out, or none: a stop between the two sends would leave
                    # an event in a sink that the count of sent events does not know.
                    with trio.CancelScope(shield=True):
                        for target in targets:
                            try:
                                await sock.sendto(payload, target)
                            except OSError:
                                pass  # the killed master's port: lost to it only
                    self.sent += 1
                deadline += per_tick / self.rate
                await trio.sleep_until(deadline)

    async def live_view(self) -> None:
        names = (self.master.name, self.slave.name)
        header = " | ".join(f"{n}: {'role':<14} act  buffer forwarded" for n in names)
        self.say(f"{header} |    sent")
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            while True:
                for node in (self.master, self.slave):
                    self.views[node.name] = await fetch_view(client, node, self.secret.encode())
                line = " | ".join(f"{n}: {self.views[n].cells()}" for n in names)
                line = f"{self.elapsed():5.1f}s  {line} | {self.sent:>7}"
                if self.tty:
                    self.out.write(("\r" if self._inline else "") + line + "\x1b[K")
                    self._inline = True
                else:
                    self.out.write(line + "\n")
                self.out.flush()
                await trio.sleep(REFRESH)

    async def wait_until(self, what: str, check: Callable[[dict[str, View]], bool]) -> float:
        """Poll both probes until ``check`` holds; seconds it took."""
        start = trio.current_time()
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            with trio.move_on_after(CHANGE_TIMEOUT):
                while True:
                    secret = self.secret.encode()
                    views = {
                        n.name: await fetch_view(client, n, secret)
                        for n in (self.master, self.slave)
                    }
                    if check(views):
                        return trio.current_time() - start
                    await trio.sleep(POLL)
        raise DemoError(
            f"{what} did not happen within {CHANGE_TIMEOUT:g} s; see the probe.log files"
        )

    # -- the story ---------------------------------------------------------------------

    async def run(self) -> Tally:
        m, s = self.master, self.slave
        bound = sum(float(v) for v in TIMINGS.values())
        self._t0 = trio.current_time()
        self.say(
            f"starting master {m.name} and slave {s.name} on {HOST} "
            f"(takeover bound {bound:g} s, {self.rate} events/s to both)"
        )
        stop_feed = trio.Event()
        async with trio.open_nursery() as probes:
            await self.start(probes, m)
            await self.start(probes, s)
            took = await self.wait_until(
                "the pair forming",
                lambda v: bool(v[m.name].active and v[s.name].role == "slave-standby"),
            )
            self.say(
                f"pair formed in {took:.1f} s: {m.name} master active, {s.name} standby buffering"
            )
            async with trio.open_nursery() as traffic:
                traffic.start_soon(self.generate, stop_feed, name="feed")
                traffic.start_soon(self.live_view, name="live-view")
                await trio.sleep(self.phase)

                self.say(f">>> killing the master {m.name} (SIGKILL)")
                self.processes[m.name].kill()
                took = await self.wait_until("the takeover", lambda v: bool(v[s.name].active))
                self.say(
                    f">>> takeover: {s.name} active {took:.2f} s after the kill (bound {bound:g} s)"
                )
                await trio.sleep(self.phase)

                self.say(f">>> restarting the master {m.name}")
                await self.processes[m.name].wait()
                start = trio.current_time()
                await self.start(probes, m)
                await self.wait_until(
                    "the failback",
                    lambda v: bool(
                        v[m.name].active
                        and v[s.name].role == "slave-standby"
                        and not v[s.name].active
                    ),
                )
                self.say(
                    f">>> failback: {m.name} active again "
                    f"{trio.current_time() - start:.2f} s after its restart "
                    f"({s.name} handed over and stands by)"
                )
                await trio.sleep(self.phase)

                stop_feed.set()
                self.say(f"feed stopped after {self.sent} events; waiting for the sinks")
                with trio.move_on_after(DRAIN_TIMEOUT):
                    while tally(self.sent, (m, s)).unique < self.sent:  # noqa: ASYNC110 - files of other processes
                        await trio.sleep(REFRESH)
                traffic.cancel_scope.cancel(reason="story told")
            self.say(f"stopping {s.name}, then {m.name} (SIGTERM)")
            for node in (s, m):
                status = await self.stop(node)
                if status != 0:
                    self.say(f"warning: {node.name} exited with status {status}")
        return tally(self.sent, (m, s))


def _summary(t: Tally, killed: str) -> str:
    sinks = ", ".join(f"{name} {count}" for name, count in t.per_sink.items())
    lines = [
        (
            f"summary: events sent {t.sent}, in the sinks {t.unique} ({sinks}), "
            f"lost {t.lost}, duplicates {t.duplicates}"
        )
    ]
    if t.duplicates:
        lines.append(
            f"  the duplicates are what {killed} delivered in its last ack period "
            "before the SIGKILL; a key-aware sink (SinkType sqlite) ignores them"
        )
    lines.append(f"  plus {t.self_events} ProbeWatch self-events (start, role changes)")
    if t.torn:
        lines.append(f"  {t.torn} unreadable sink lines (torn by the SIGKILL)")
    return "\n".join(lines) + "\n"


def run_demo(
    workdir: Path, out: TextIO, *, rate: int = DEFAULT_RATE, phase: float = DEFAULT_PHASE
) -> Tally:
    """Tell the whole story in ``workdir``; the final tally.

    Raises:
        DemoError: a probe did not start, or the pair did not form, take over or fail back.
    """
    master, slave = make_pair(workdir)
    demo = Demo(master, slave, out, rate=rate, phase=phase)
    result = trio.run(demo.run)
    out.write(_summary(result, master.name))
    return result


def _positive(kind: type[int | float], high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"expected a number in (0, {high:g}], got {text!r}")
        return value

    return parse


def main(args: list[str]) -> int:
    """``probepair demo [--workdir DIR] [--rate N] [--phase SECONDS]``; 0 when nothing is lost."""
    parser = argparse.ArgumentParser(
        prog="probepair demo",
        description="Run a failover pair on loopback, kill the master, bring it back, "
        "and count lost and duplicate events.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the probes' files here (default: a temporary directory, removed at the end)",
    )
    parser.add_argument(
        "--rate",
        type=_positive(int, MAX_RATE),
        default=DEFAULT_RATE,
        help=f"events per second sent to both probes (default {DEFAULT_RATE})",
    )
    parser.add_argument(
        "--phase",
        type=_positive(float, 600),
        default=DEFAULT_PHASE,
        help="seconds of traffic before the kill, during the outage and after "
        f"the failback (default {DEFAULT_PHASE:g})",
    )
    opts = parser.parse_args(args)
    out = sys.stdout
    try:
        if opts.workdir is not None:
            opts.workdir.mkdir(parents=True, exist_ok=True)
            result = run_demo(opts.workdir.resolve(), out, rate=int(opts.rate), phase=opts.phase)
        else:
            with tempfile.TemporaryDirectory(prefix="probepair-demo-") as tmp:
                result = run_demo(Path(tmp), out, rate=int(opts.rate), phase=opts.phase)
    except (KeyboardInterrupt, DemoError, BaseExceptionGroup) as exc:
        leaves = leaf_exceptions(exc)
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            out.write("\ninterrupted: every probe process was stopped\n")
            return 128 + signal.SIGINT
        if not all(isinstance(e, DemoError) for e in leaves):
            raise  # a bug: show the traceback
        for leaf in leaves:
            print(f"probepair demo: {leaf}", file=sys.stderr)
        return 1
    return 0 if result.lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
