"""``python -m probepair.ops.demo`` tells the whole story and loses nothing."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probepair.ops.demo import PAYLOAD_PREFIX

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT = 120  # seconds: the story takes ~13 s with --phase 3; slow CI machines


def test_demo_kills_the_master_takes_over_fails_back_and_loses_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "probepair.ops.demo", "--phase", "3", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT, check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "pair formed" in out
    takeover = re.search(r">>> takeover: s active (\d+\.\d+) s after the kill \(bound 1\.5 s\)",
                         out)
    assert takeover, out
    assert 1.0 <= float(takeover.group(1)) < 5.0  # the bound plus polling, never far beyond
    assert ">>> failback: m active again" in out
    summary = re.search(r"summary: events sent (\d+), in the sinks (\d+) .*, lost 0, "
                        r"duplicates (\d+)", out)
    assert summary, out
    assert int(summary.group(1)) == int(summary.group(2)) > 1000
    # Judged outside the demo: its events are numbered 0 .. sent-1; the two sinks together
    # must hold every number, and nothing else.
    sent = int(summary.group(1))
    assert _numbers_in_sinks(tmp_path) == set(range(sent))
    assert _processes_under(tmp_path) == []  # no probe outlived the demo
    # a live line per refresh when stdout is not a terminal, with both probes in it
    assert len(re.findall(r"m: master +yes .* \| s: slave-standby +no", out)) >= 3
    assert re.search(r"m: \(down\) .* \| s: slave-active +yes", out)
    assert "\x1b[" not in out
    # both sinks were written in the work directory, and no probe outlived the demo
    assert (tmp_path / "m" / "alerts.jsonl").exists()
    assert (tmp_path / "s" / "alerts.jsonl").exists()
    assert "READY" in (tmp_path / "m" / "stdout.txt").read_text()


def test_demo_interrupted_stops_every_probe(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "probepair.ops.demo", "--phase", "30", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    assert demo.stdout is not None
    try:
        deadline = time.monotonic() + 60
        for line in demo.stdout:  # wait until traffic flows, then Ctrl-C
            if "m: master" in line or time.monotonic() > deadline:
                break
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    finally:
        demo.kill()
    assert demo.returncode == 130
    assert "interrupted: every probe process was stopped" in rest
    for name in ("m", "s"):
        log = (tmp_path / name / "probe.log").read_text()
        assert "stopping" in log, log  # each probe was told to stop, cleanly
    assert _processes_under(tmp_path) == []


def _numbers_in_sinks(workdir: Path) -> set[int]:
    """The sequence numbers of the demo's events in both sinks (its own payload format)."""
    numbers: set[int] = set()
    for name in ("m", "s"):
        for line in (workdir / name / "alerts.jsonl").read_bytes().splitlines():
            text = str(json.loads(line).get("Line", ""))
            if text.startswith(PAYLOAD_PREFIX):
                numbers.add(int(text[len(PAYLOAD_PREFIX):]))
    return numbers


def _processes_under(workdir: Path) -> list[int]:
    """Pids of live processes whose command line names ``workdir`` (the demo's probes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(workdir).encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found
