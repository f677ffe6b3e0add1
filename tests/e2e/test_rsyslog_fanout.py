"""The shipped rsyslog snippet (conf/rsyslog/probepair.conf), run by a real rsyslogd on
loopback: every message goes to both probes, which derive identical event keys from it
(the pair's dedup and acks depend on it)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import start_probe
from tests.servers import need

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 50


def _snippet(ports: list[int]) -> str:
    """The shipped snippet with the two hosts' addresses and ports replaced by loopback's."""
    text = (ROOT / "conf" / "rsyslog" / "probepair.conf").read_text()
    targets = re.findall(r'target="([0-9.]+)" port="(\d+)"', text)
    assert len(targets) == 2, targets  # one action per probe of the pair
    for (host, port), new in zip(targets, ports, strict=True):
        text = text.replace(f'target="{host}" port="{port}"',
                            f'target="127.0.0.1" port="{new}"', 1)
    return text


async def test_rsyslog_sends_every_message_to_both_probes_with_identical_keys(
        tmp_path: Path) -> None:
    rsyslogd = need("rsyslogd", "rsyslog", ["/usr/sbin"])
    sinks = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    async with trio.open_nursery() as nursery:
        probes = []
        for name, sink in zip("ab", sinks, strict=True):
            (tmp_path / name).mkdir()
            probes.append(await start_probe(
                nursery, ["--name", name, "--feedport", "0", "--sinkfile", str(sink),
                          "--rulesfile", str(ROOT / "rules" / "syslog.rules")],
                cwd=tmp_path / name))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            in_port = s.getsockname()[1]
        conf = tmp_path / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{tmp_path}")\n'
            'module(load="imudp")\n'
            f'input(type="imudp" address="127.0.0.1" port="{in_port}")\n'
            + _snippet([p.address("feed")[1] for p in probes]))
        rsyslog = await nursery.start(lambda task_status: trio.run_process(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
            check=False, task_status=task_status))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                # Until rsyslog listens, datagrams go nowhere: knock until one gets through.
                with trio.fail_after(30):
                    while not _fed(sinks[0]):
                        s.sendto(b"<13>Oct 11 22:14:15 web1 app[7]: knock", ("127.0.0.1", in_port))
                        await trio.sleep(0.1)
                for i in range(MESSAGES):
                    s.sendto(b"<13>Oct 11 22:14:15 web1 app[7]: fanout %d" % i,
                             ("127.0.0.1", in_port))
                    await trio.sleep(0.005)
            with trio.fail_after(30):
                while not all(len(_fed(x, "fanout")) == MESSAGES for x in sinks):
                    await trio.sleep(0.05)
        finally:
            rsyslog.terminate()
        for probe in probes:
            assert await probe.stop() == 0
    a, b = (_fed(x, "fanout") for x in sinks)
    assert a == b  # the same messages, the same keys, on both probes
    assert len(set(a)) == MESSAGES


def _fed(sink: Path, word: str = "") -> list[tuple[str, str]]:
    """(EventKey, Summary) of the fed alerts in ``sink`` whose Summary holds ``word``."""
    if not sink.exists():
        return []
    data = sink.read_bytes()
    alerts = [json.loads(x) for x in data[: data.rfind(b"\n") + 1].splitlines()]
    return sorted((a["EventKey"], str(a.get("Summary"))) for a in alerts
                  if a.get("Manager") != "ProbeWatch" and word in str(a.get("Summary")))
