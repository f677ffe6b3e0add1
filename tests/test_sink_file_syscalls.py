"""The file sink's promises in the README "Sinks" table: one ``write(2)`` per batch, and
``fsync`` at stop or when the runner asks (``sync``, see SinkSync), never per write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probepair.config import props
from probepair.events import Item, key_of
from probepair.pipeline.alerts import serialise
from probepair.sinks.file import FileSink


def _alert(n: int) -> Item:
    key = key_of(b"event %d" % n)
    return key, serialise({"Summary": f"event {n}"}, key)


async def test_one_write_per_batch_and_fsync_only_at_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = FileSink(props.load([("test", {"SinkFile": str(path)})]))
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes | memoryview) -> int:
        if fd == sink_fd():
            calls.append("write")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        if fd == sink_fd():
            calls.append("fsync")
        real_fsync(fd)

    opened: list[int] = []  # the sink's fd once open (aclose forgets it before the fsync)

    def sink_fd() -> int:
        fd = getattr(sink, "_fd", None)
        if fd is not None and not opened:
            opened.append(int(fd))
        return opened[0] if opened else -1

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    await sink.open()
    for batch in range(3):
        await sink.deliver([_alert(batch * 100 + i) for i in range(100)])
    assert calls == ["write"] * 3  # one write(2) per batch of 100, no fsync yet
    await sink.aclose()
    assert calls == ["write"] * 3 + ["fsync"]
    assert len(path.read_bytes().splitlines()) == 300
