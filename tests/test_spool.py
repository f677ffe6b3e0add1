"""Store-and-forward spool: append, peek, commit, restart, torn tail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probepair.events import key_of
from probepair.sinks.spool import Spool


def item(i: int, size: int = 20) -> tuple[bytes, bytes]:
    payload = (b'{"n":%d}' % i).ljust(size, b" ")
    return key_of(payload), payload


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "alerts.saf")


def test_new_spool_is_empty(path: str) -> None:
    spool = Spool(path)
    try:
        assert not spool.pending
        assert spool.backlog_bytes == 0
        assert spool.peek() == ([], 0)
    finally:
        spool.close()


def test_append_peek_commit(path: str) -> None:
    spool = Spool(path)
    try:
        items = [item(i) for i in range(3)]
        spool.append(items[:2])
        spool.append(items[2:])
        assert spool.pending
        record = 8 + 4 + 20  # key, length, payload
        assert spool.backlog_bytes == 3 * record
        got, used = spool.peek()
        assert got == items
        assert used == 3 * record
        assert spool.peek() == (items, used)  # peeking does not consume
        spool.commit(record)
        assert spool.peek() == (items[1:], 2 * record)
        spool.commit(2 * record)
        assert not spool.pending
        assert os.path.getsize(path) == 0  # emptied once everything is replayed
        assert not os.path.exists(path + ".pos")
    finally:
        spool.close()


def test_peek_is_bounded_but_returns_at_least_one_record(path: str) -> None:
    spool = Spool(path)
    try:
        small = [item(i, 100) for i in range(1000)]  # 112 kB in all
        spool.append(small)
        got, used = spool.peek(max_bytes=1)
        assert got == small[: (1 << 16) // 112]  # reads at least 64 KiB at a time
        assert used == len(got) * 112
        big = (key_of(b"big"), b"x" * 200_000)
        spool.commit(spool.backlog_bytes)
        spool.append([big, item(1)])
        assert spool.peek(max_bytes=1) == ([big], 12 + 200_000)
    finally:
        spool.close()


def test_restart_replays_from_the_committed_position(path: str) -> None:
    items = [item(i) for i in range(5)]
    spool = Spool(path)
    spool.append(items)
    assert spool.peek() == (items, 5 * 32)
    spool.commit(2 * 32)  # two records delivered, then the probe is killed
    spool.close()

    spool = Spool(path)
    try:
        assert spool.pending
        assert spool.peek() == (items[2:], 3 * 32)
        spool.append([item(9)])
        assert spool.peek()[0] == [*items[2:], item(9)]
    finally:
        spool.close()


def test_restart_after_uncommitted_delivery_replays_everything(path: str) -> None:
    items = [item(i) for i in range(3)]
    spool = Spool(path)
    spool.append(items)
    spool.close()
    spool = Spool(path)
    try:
        assert spool.peek() == (items, 3 * 32)
    finally:
        spool.close()


def test_torn_tail_is_dropped(path: str) -> None:
    items = [item(i) for i in range(2)]
    spool = Spool(path)
    spool.append(items)
    spool.close()
    with open(path, "ab") as f:  # killed in the middle of an append
        f.write(item(2)[0] + b"\x00\x00\x00\x14" + b'{"n":2')
    spool = Spool(path)
    try:
        got, used = spool.peek()
        assert (got, used) == (items, 64)
        spool.commit(used)
        assert spool.peek() == ([], 0)
        assert not spool.pending
        spool.append([item(3)])
        assert spool.peek() == ([item(3)], 32)
    finally:
        spool.close()


@pytest.mark.parametrize("tail", [b"\x01\x02\x03", b"k" * 8 + b"\x00\x02\x00\x00" + b"x" * 70_000])
def test_torn_tail_alone_is_dropped(path: str, tail: bytes) -> None:
    # a torn header, and a torn record larger than one peek: neither is delivered
    with open(path, "wb") as f:
        f.write(tail)
    spool = Spool(path)
    try:
        assert spool.pending
        assert spool.peek() == ([], 0)
        assert not spool.pending
        assert os.path.getsize(path) == 0
    finally:
        spool.close()


def test_position_beyond_the_file_is_clamped(path: str) -> None:
    spool = Spool(path)
    spool.append([item(1)])
    spool.close()
    Path(path + ".pos").write_text("999999")
    spool = Spool(path)
    try:
        assert not spool.pending
    finally:
        spool.close()
