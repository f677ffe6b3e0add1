"""A real rsyslogd for the TCP feed tests: imtcp in, omfwd (octet-counted) out to probes.

Run in the foreground (``-n``) with its own config, work directory and pid file in the
test's tmp_path, on loopback only; the nursery that starts it kills it. Each probe gets
its own action with its own in-memory queue that retries for ever, so a dead probe
holds up neither rsyslog nor the other probe (the two-sinks set-up of
conf/rsyslog/probepair.conf). Control characters pass unescaped, so a multi-line
message reaches the probes as it was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio

from tests.e2e.feeder import Feeder
from tests.servers import need
from tests.tlscerts import CertAuthority, Pem

START_TIMEOUT = 30.0  # seconds for rsyslogd to listen (module loading, a slow CI host)
DRIVERS = ("gtls", "ossl")  # rsyslog-gnutls, rsyslog-openssl
DRIVER_PACKAGES = {"gtls": "rsyslog-gnutls", "ossl": "rsyslog-openssl"}
MODULE_DIRS = ["/usr/lib/*/rsyslog", "/usr/lib/rsyslog", "/usr/lib64/rsyslog"]  # Debian: multiarch


def need_driver(driver: str) -> None:
    """Skip (fail under CI=true) unless rsyslog's ``driver`` stream driver is installed."""
    need(f"lmnsd_{driver}.so", DRIVER_PACKAGES[driver], MODULE_DIRS)


def config(work: Path, in_port: int, targets: Sequence[tuple[str, int]], *,
           driver: str = "", ca: CertAuthority | None = None, client: Pem | None = None) -> str:
    """rsyslog.conf: imtcp on ``in_port``, one octet-counted omfwd action per target;
    with ``driver``, TLS (StreamDriverMode 1) checking the probe's certificate name."""
    tls = ""
    if driver:
        assert ca is not None and client is not None
        tls = (f'global(DefaultNetstreamDriverCAFile="{ca.pem}" '
               f'DefaultNetstreamDriverCertFile="{client.cert}" '
               f'DefaultNetstreamDriverKeyFile="{client.key}")\n')
    lines = [
        f'global(workDirectory="{work}" parser.escapeControlCharactersOnReceive="off" '
        'maxMessageSize="64k")',
        tls.rstrip(),
        'module(load="imtcp")',
        f'input(type="imtcp" address="127.0.0.1" port="{in_port}")',
    ]
    for n, (host, port) in enumerate(targets):
        action = (f'action(type="omfwd" name="probe{n}" target="{host}" port="{port}" '
                  'protocol="tcp" TCP_Framing="octet-counted" '
                  'queue.type="LinkedList" queue.size="100000" '
                  'action.resumeRetryCount="-1" action.resumeInterval="1"')
        if driver:
            action += (f' StreamDriver="{driver}" StreamDriverMode="1" '
                       'StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost"')
        lines.append(action + ")")
    return "\n".join(line for line in lines if line) + "\n"


async def start_rsyslog(nursery: trio.Nursery, tmp_path: Path, in_port: int, conf: str,
                        ) -> trio.Process:
    """rsyslogd -n with ``conf``; returns once its imtcp input accepts connections."""
    rsyslogd = need("rsyslogd", "rsyslog", ["/usr/sbin"])
    work = tmp_path / "rsyslog"
    work.mkdir(exist_ok=True)
    path = work / "rsyslog.conf"
    path.write_text(conf)
    # nursery.start awaits it (ruff cannot see through the lambda).
    process: trio.Process = await nursery.start(lambda task_status: trio.run_process(  # noqa: ASYNC105
        [rsyslogd, "-n", "-f", str(path), "-i", str(work / "rsyslog.pid")],
        check=False, task_status=task_status))
    with trio.fail_after(START_TIMEOUT):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", in_port)
            except OSError:
                assert process.returncode is None, f"rsyslogd exited: {process.returncode}"
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return process


class RsyslogFeeder(Feeder):
    """``Feeder``'s numbered events, written newline-framed to rsyslog's imtcp.

    rsyslog forwards each message byte for byte (RSYSLOG_TraditionalForwardFormat of a
    message in that format) in an octet-counted frame, so the probes' key of event
    ``seq`` is ``key_of(payload(seq))``, as for the UDP feeder.
    """

    def payload(self, seq: int) -> bytes:
        return b"<13>Oct 11 22:14:15 web1 app[7]: pp-e2e %s seq=%08d" % (
            self.tag.encode(), seq)

    async def run(self, count: int | None = None) -> None:
        host, port = self.targets[0]
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            start = trio.current_time()
            burst = 0
            while not self._stop.is_set() and (count is None or self.sent < count):
                burst += 1
                due = int(burst * 0.01 * self.rate)
                data = []
                while self.sent < due:
                    data.append(self.payload(self.sent) + b"\n")
                    self.sent += 1
                await stream.send_all(b"".join(data))
                self._progress.set()
                self._progress = trio.Event()
                await trio.sleep_until(start + burst * 0.01)
        self._progress.set()

