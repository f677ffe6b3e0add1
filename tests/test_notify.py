"""NotifyCommand runs for real: a small shell script appends to a file."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import trio

from probepair.errors import ConfigError
from probepair.failover import Role
from probepair.ops.notify import Notifier

WAIT = 20.0  # seconds: bounded wait for real processes on a slow CI machine


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "notify.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


async def _wait_lines(path: Path, count: int) -> list[str]:
    with trio.fail_after(WAIT):
        while not path.exists() or len(path.read_text().splitlines()) < count:
            await trio.sleep(0.02)
    return path.read_text().splitlines()


async def test_commands_run_in_order_with_arguments_and_environment(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = _script(tmp_path, f'echo "$1|$2|$PROBEPAIR_ROLE|$PROBEPAIR_REASON|'
                               f'$PROBEPAIR_NAME|$3" >> {out}\n')
    notifier = Notifier(f"{script} --from 'probe pair'", "m1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        for i in range(5):
            notifier.notify(f"role{i}", f"reason {i}")
        notifier.on_role(Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE, "master silent for 4.0 s")
        lines = await _wait_lines(out, 6)
        nursery.cancel_scope.cancel()
    # the props' own arguments come first, then role and reason
    assert lines == [f"--from|probe pair|role{i}|reason {i}|m1|role{i}" for i in range(5)] + [
        "--from|probe pair|slave-active|master silent for 4.0 s|m1|slave-active"]


async def test_a_hanging_command_is_killed_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.txt"
    script = _script(tmp_path, f'if [ "$1" = hang ]; then sleep 60; fi\necho "$1" >> {out}\n')
    notifier = Notifier(str(script), "m", timeout=0.3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        notifier.notify("hang", "x")
        notifier.notify("after", "y")
        start = trio.current_time()
        assert await _wait_lines(out, 1) == ["after"]
        assert trio.current_time() - start < 10  # not the 60 s of the sleep
        nursery.cancel_scope.cancel()
    assert "for role hang killed after 0.3 s" in caplog.text


async def test_failures_are_logged_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.txt"
    script = _script(tmp_path, f'echo "$1" >> {out}\n[ "$1" != bad ]\n')
    caplog.set_level(logging.ERROR)
    async with trio.open_nursery() as nursery:
        missing = Notifier(str(tmp_path / "no-such-script"), "m")
        nursery.start_soon(missing.run)
        missing.notify("active", "x")
        failing = Notifier(str(script), "m")
        nursery.start_soon(failing.run)
        failing.notify("bad", "x")
        failing.notify("good", "y")
        assert await _wait_lines(out, 2) == ["bad", "good"]
        with trio.fail_after(WAIT):
            while "cannot start" not in caplog.text:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert "NotifyCommand" in caplog.text
    assert "for role bad failed with exit status 1" in caplog.text


async def test_a_full_queue_drops_instead_of_blocking(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier("true", "m", queue_size=2)  # not running: nothing drains the queue
    for i in range(4):
        notifier.notify("active", f"change {i}")
    assert notifier.dropped == 2
    assert "queue full, not notifying role active (change 3)" in caplog.text


def test_empty_command_is_a_no_op() -> None:
    notifier = Notifier("", "m", queue_size=1)
    for _ in range(3):
        notifier.notify("active", "x")
    assert notifier.dropped == 0


def test_unsplittable_command_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Notifier("notify 'unbalanced", "m")
    assert str(info.value) == "NotifyCommand: cannot split \"notify 'unbalanced\": No closing quotation"
