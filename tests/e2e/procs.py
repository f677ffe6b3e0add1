"""Starting real ``probepair`` processes for end-to-end tests.

Each process prints one ``READY feed=HOST:PORT ...`` line on stdout once every socket is
bound; tests read it under ``fail_after`` and never sleep to "let things settle".
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from probepair.config.httpauth import authorization
from tests.e2e import seen
from tests.net import free_port as free_port  # re-exported: e2e tests import it here

READY_TIMEOUT = 20.0  # seconds; a probe starts in well under 1 s, CI machines are slow
# The secret every test pair signs with: random, as `probepair secret` makes one (Mode
# master/slave refuse an empty, short or placeholder secret).
PAIR_SECRET = secrets.token_hex(32)


@dataclass
class ProbeProcess:
    process: trio.Process
    addresses: dict[str, str] = field(default_factory=dict)
    stdout_rest: bytes = b""

    def address(self, name: str) -> tuple[str, int]:
        host, _, port = self.addresses[name].rpartition(":")
        return host, int(port)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for a clean exit.

        A last scrape first (best effort, bounded): what the probe's metrics reached is
        recorded for ``test_metrics_seen``, whichever assertions the test made.
        """
        if self.process.returncode is None and "metrics" in self.addresses:
            with trio.move_on_after(1.0):
                try:
                    await scrape(self)
                except (OSError, ValueError, AssertionError, trio.TooSlowError):
                    pass  # refused (401: MetricsAuth bearer), a dying probe: no record
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout):
            return await self.process.wait()


def probepair_cmd(*args: str, netns: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "probepair", *args]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return cmd


def probe_env(cwd: Path) -> dict[str, str]:
    """The environment of a probe (or a ``probepair status``) whose files live in ``cwd``.

    As systemd does for a unit with RuntimeDirectory= and StateDirectory=: the default
    control socket and spool go there, not to /run/probepair of the machine.
    """
    return dict(os.environ, PYTHONUNBUFFERED="1", RUNTIME_DIRECTORY=str(cwd),
                STATE_DIRECTORY=str(cwd))


CLI_TIMEOUT = 30.0  # seconds for one operator command (status, takeover ...)


async def probepair_cli(side: PairSide, peer: PairSide, *args: str,
                        metrics_port: int | None = None, secret: bool = True) -> str:
    """Run a probepair command as an operator would, in ``side``'s directory; its stdout.

    The peer's status comes from ``metrics_port``, the peer's metrics port unless given
    (a free port nobody serves leaves the peer to ``--peer-url``, or out). With
    ``secret``, the probe's SharedSecretFile goes along: ``status`` signs its request to
    the peer's /status with it.
    """
    port = peer.metrics_port if metrics_port is None else metrics_port
    secret_file = side.cwd / "secret"
    cmd = probepair_cmd(*args, "--name", side.name, "--mode", side.mode,
                        "--peerhost", peer.host, "--peerport", str(peer.heartbeat_port),
                        "--metricsport", str(port),
                        *(["--sharedsecretfile", str(secret_file)]
                          if secret and secret_file.exists() else []))
    with trio.fail_after(CLI_TIMEOUT):
        result = await trio.run_process(cmd, cwd=side.cwd, capture_stdout=True,
                                        capture_stderr=True, check=False,
                                        env=probe_env(side.cwd))
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def start_probe(
    nursery: trio.Nursery,
    args: Sequence[str],
    *,
    cwd: Path,
    netns: str | None = None,
    stdin: int | None = subprocess.DEVNULL,
    wrap: Sequence[str] = (),
) -> ProbeProcess:
    """Start ``probepair run ARGS`` (after the command ``wrap``, if any: it must exec
    the rest) and wait for its READY line."""
    cmd = [*wrap, *probepair_cmd("run", *args, netns=netns)]
    env = probe_env(cwd)
    process: trio.Process = await nursery.start(
        lambda task_status: trio.run_process(
            cmd, check=False, stdout=subprocess.PIPE, stdin=stdin, cwd=cwd, env=env,
            task_status=task_status,
        )
    )
    assert process.stdout is not None
    buf = b""
    with trio.fail_after(READY_TIMEOUT):
        while b"\n" not in buf:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError(f"probe exited before READY (rc={await process.wait()})")
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    words = line.decode().split()
    assert words[0] == "READY", line
    addresses = dict(w.split("=", 1) for w in words[1:])
    return ProbeProcess(process, addresses, rest)


async def wait_for_lines(path: Path, count: int, timeout: float = 20.0) -> list[bytes]:
    """Poll ``path`` until it holds ``count`` lines (real clock; bounded)."""
    with trio.fail_after(timeout):
        while True:
            if path.exists():
                lines = path.read_bytes().splitlines()
                if len(lines) >= count:
                    return lines
            await trio.sleep(0.05)


# -- helpers for the failover pair tests (additive) -------------------------------------

SCRAPE_TIMEOUT = 2.0  # seconds for one /metrics request on loopback or a veth


async def http_get(address: tuple[str, int], path: str, *, secret: str = PAIR_SECRET,
                   bearer: str = "") -> bytes:
    """The body of ``GET path`` (HTTP/1.0, so the server closes after the response).

    Signed with ``secret`` as a peer signs (/status and /rules want it; '' = unsigned),
    or with ``Authorization: Bearer <bearer>`` as Prometheus sends MetricsAuth's token.
    """
    auth = ""
    if bearer:
        auth = f"Authorization: Bearer {bearer}\r\n"
    elif secret:
        value = authorization(secret.encode(), "GET", path, now=time.time(),
                              nonce=secrets.token_hex(16))
        auth = f"Authorization: {value}\r\n"
    with trio.fail_after(SCRAPE_TIMEOUT):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: probe\r\n{auth}\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise AssertionError(f"GET {path} from {address}: {status!r}")
    return body


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as ``{'name{labels}': value}`` (comments skipped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        samples[series] = float(value)
    seen.record(samples)
    return samples


async def scrape(probe: ProbeProcess) -> dict[str, float]:
    """The probe's current /metrics samples."""
    return parse_metrics((await http_get(probe.address("metrics"), "/metrics")).decode())


async def wait_metric(probe: ProbeProcess, series: str, value: float, timeout: float,
                      poll: float = 0.01) -> float:
    """Poll /metrics until ``series == value``; the seconds it took (trio clock).

    Raises ``trio.TooSlowError`` after ``timeout`` seconds.
    """
    start = trio.current_time()
    with trio.fail_after(timeout):
        while True:
            try:
                if (await scrape(probe)).get(series) == value:
                    return trio.current_time() - start
            except OSError:
                pass  # not listening yet, or restarting: poll again
            await trio.sleep(poll)


@dataclass(frozen=True)
class Timings:
    """The pair's failover timings in seconds (the props of the same names)."""

    beat_interval: float = 0.2
    beat_threshold: float = 0.2
    heartbeat_timeout: float = 0.2
    ack_interval: float = 0.1

    @property
    def bound(self) -> float:
        """Silence after which a standby slave takes over."""
        return self.beat_interval + self.beat_threshold + self.heartbeat_timeout


@dataclass(frozen=True)
class PairSide:
    """Everything one probe of a pair needs on its command line.

    ``host`` is the address of this probe for heartbeats; ``feed_host`` (default
    ``host``) is where its UDP feed and /metrics listen.
    """

    name: str
    mode: str
    host: str
    heartbeat_port: int
    feed_port: int
    metrics_port: int
    cwd: Path
    feed_host: str = ""

    @property
    def sink(self) -> Path:
        return self.cwd / f"{self.name}.jsonl"

    @property
    def log(self) -> Path:
        return self.cwd / f"{self.name}.log"

    def args(self, peer: PairSide, timings: Timings, *, secret: str = PAIR_SECRET,
             extra: Sequence[str] = ()) -> list[str]:
        """``probepair run`` options; the secret goes into a SharedSecretFile in ``cwd``."""
        feed_host = self.feed_host or self.host
        return [
            "--name", self.name, "--mode", self.mode,
            "--peerhost", peer.host, "--peerport", str(peer.heartbeat_port),
            "--listenaddress", self.host, "--listenport", str(self.heartbeat_port),
            "--feedaddress", feed_host, "--feedport", str(self.feed_port),
            "--feedformat", "line", "--rulesfile", "",
            "--sinkfile", str(self.sink), "--messagelog", str(self.log),
            "--metricsaddress", feed_host, "--metricsport", str(self.metrics_port),
            "--beatinterval", str(timings.beat_interval),
            "--beatthreshold", str(timings.beat_threshold),
            "--heartbeattimeout", str(timings.heartbeat_timeout),
            "--ackinterval", str(timings.ack_interval),
            "--sharedsecretfile", str(write_secret_file(self.cwd / "secret", secret)), *extra,
        ]


def write_secret_file(path: Path, secret: str = PAIR_SECRET) -> Path:
    """``path`` holding ``secret`` with mode 0600, as a SharedSecretFile must be."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def loopback_pair(tmp_path: Path) -> tuple[PairSide, PairSide]:
    """A master and a slave on 127.0.0.1, each with its own working directory."""
    sides = []
    for name, mode in (("m", "master"), ("s", "slave")):
        cwd = tmp_path / name
        cwd.mkdir(exist_ok=True)
        sides.append(PairSide(name, mode, "127.0.0.1", free_port(), free_port(),
                              free_port(socket.SOCK_STREAM), cwd))
    return sides[0], sides[1]


ACTIVE = "probepair_active"  # 1 while the probe forwards to its sink
STANDBY = 'probepair_role{role="slave-standby"}'


async def kill9(probe: ProbeProcess) -> None:
    """SIGKILL the probe and reap it (bounded)."""
    probe.process.kill()
    with trio.fail_after(5):
        await probe.process.wait()


async def active_flags(*probes: ProbeProcess) -> list[float]:
    """``probepair_active`` of each probe, in order."""
    return [(await scrape(p)).get(ACTIVE, -1.0) for p in probes]


SILENCE = re.compile(r"-> slave-active: master silent for ([0-9.]+) s")


def reported_silence(log: Path) -> float:
    """The silence the slave measured when it took over, from its own log (one takeover)."""
    found = SILENCE.findall(log.read_text())
    assert len(found) == 1, found
    return float(found[0])
