"""The durable-ack proof's trace reader refuses every order in which an acked alert
could be lost, and accepts strace's split lines for the orders that are safe."""

from __future__ import annotations

import json

import pytest

from tests.e2e.synctrace import ACK_BODY, HEADER, check_trace

SINK = "/var/spool/alerts.jsonl"
KEY = "00112233445566ff"
TRIO, WORKER = "100", "101"


def _x(data: bytes) -> str:
    return '"' + "".join(f"\\x{b:02x}" for b in data) + '"'


def opened(pid: str = TRIO) -> str:
    return f"{pid}  openat(AT_FDCWD, {_x(SINK.encode())}, O_WRONLY|O_APPEND) = 12"


def write(pid: str = TRIO, split: bool = False) -> list[str]:
    line = json.dumps({"EventKey": KEY, "Summary": "x"}).encode() + b"\n"
    call = f"{pid}  write(12, {_x(line)}, {len(line)}"
    if split:
        return [call + " <unfinished ...>", f"{pid}  <... write resumed>) = {len(line)}"]
    return [call + f") = {len(line)}"]


def fsync(pid: str = WORKER, split: bool = False, fd: int = 12) -> list[str]:
    if split:
        return [f"{pid}  fsync({fd} <unfinished ...>", f"{pid}  <... fsync resumed>) = 0"]
    return [f"{pid}  fsync({fd}) = 0"]


def ack(pid: str = TRIO) -> str:
    header = b"PBPR\x03\x02" + bytes(HEADER - 6)
    body = (7).to_bytes(4, "big") + bytes(4) + (1).to_bytes(2, "big")
    data = header + body + bytes.fromhex(KEY)
    assert len(data) == HEADER + ACK_BODY + 8
    return f"{pid}  sendto(15, {_x(data)}, {len(data)}, 0, NULL, 0) = {len(data)}"


def other(pid: str = TRIO) -> str:
    return f'{pid}  write(1, "\\x0a", 1) = 1'


def test_a_write_then_a_whole_fsync_then_the_ack_is_durable() -> None:
    walk = check_trace("\n".join([opened(), *write(), *fsync(), ack()]), SINK)
    assert (walk.acks, walk.acked, walk.fsyncs) == (1, {KEY}, 1)


def test_an_fsync_split_by_another_thread_still_counts_once_it_returned() -> None:
    # The load-only failure of the first version of this reader: it took the fd of
    # "fsync(12 <unfinished ...>" to be "12 <unfinished ...>" and never saw the sync.
    trace = [opened(), *write(), fsync(split=True)[0], other(), fsync(split=True)[1], ack()]
    walk = check_trace("\n".join(trace), SINK)
    assert (walk.acked, walk.fsyncs, walk.unfinished_fsyncs) == ({KEY}, 1, 1)


def test_a_split_write_counts_from_its_return() -> None:
    trace = [opened(), write(split=True)[0], other(WORKER), write(split=True)[1],
             *fsync(), ack()]
    assert check_trace("\n".join(trace), SINK).acked == {KEY}


@pytest.mark.parametrize("order", [
    "ack before any fsync",
    "ack while the fsync runs",
    "split ack entered while the fsync runs",
    "fsync began before the write returned",
    "fsync of another file",
    "fsync failed",
    "ack of a key never written",
])
def test_every_unsafe_order_is_refused(order: str) -> None:
    head, tail = fsync(split=True)
    trace = {
        "ack before any fsync": [opened(), *write(), ack(), *fsync()],
        "ack while the fsync runs": [opened(), *write(), head, ack(), tail],
        "split ack entered while the fsync runs":
            [opened(), *write(), head, ack().rsplit(")", 1)[0] + " <unfinished ...>", tail,
             f"{TRIO}  <... sendto resumed>) = 67"],
        "fsync began before the write returned":
            [opened(), write(split=True)[0], head, write(split=True)[1], tail, ack()],
        "fsync of another file": [opened(), *write(), *fsync(fd=13), ack()],
        "fsync failed": [opened(), *write(), f"{WORKER}  fsync(12) = -1 EIO", ack()],
        "ack of a key never written": [opened(), *fsync(), ack()],
    }[order]
    with pytest.raises(AssertionError, match=KEY):
        check_trace("\n".join(trace), SINK)


def test_datagrams_that_are_not_acks_are_not_counted() -> None:
    heartbeat = ack().replace("\\x50\\x42\\x50\\x52\\x03\\x02", "\\x50\\x42\\x50\\x52\\x03\\x01")
    walk = check_trace("\n".join([opened(), heartbeat, f'{TRIO}  sendto(8, "\\x00", 1) = 1']),
                       SINK)
    assert walk.acks == 0
