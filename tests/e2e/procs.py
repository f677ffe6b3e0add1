"""Starting real ``probepair`` processes for end-to-end tests.

Each process prints one ``READY feed=HOST:PORT ...`` line on stdout once every socket is
bound; tests read it under ``fail_after`` and never sleep to "let things settle".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

READY_TIMEOUT = 20.0  # seconds; a probe starts in well under 1 s, CI machines are slow


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
        """SIGTERM, then wait for a clean exit."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout):
            return await self.process.wait()


def probepair_cmd(*args: str, netns: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "probepair", *args]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return cmd


async def start_probe(
    nursery: trio.Nursery,
    args: Sequence[str],
    *,
    cwd: Path,
    netns: str | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> ProbeProcess:
    """Start ``probepair run ARGS`` and wait for its READY line."""
    cmd = probepair_cmd("run", *args, netns=netns)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
