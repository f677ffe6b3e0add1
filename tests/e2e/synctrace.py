"""Reading a probe's ``strace -f -xx`` output for the durable-ack proof (issue 21).

The rule checked: every key in an ack datagram was in a ``write(2)`` to the sink file
that *returned* before an ``fsync`` of that file *began*, and that fsync returned
before the datagram was handed to the kernel. An fsync already running when the write
returned does not count (Linux does not promise it covers the write).

strace prints a syscall as one line when nothing interleaves, and as
``pid call(args <unfinished ...>`` then ``pid <... call resumed>rest`` when another
thread's syscall lands in between (the worker thread's fsync while the trio thread
sends, under load). A line's index is the time order: entry for an unfinished line,
return for a resumed or a whole one (ptrace stops a thread at each, so a thread cannot
act on a result before strace printed it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

HEADER = 49  # the datagram header (probepair.failover.wire), then the ack body
ACK_BODY = 10  # serial u32 | pending u32 | count u16
_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_UNFINISHED = " <unfinished ...>"
_QUOTED = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def _hex(text: str) -> bytes:
    """strace -xx's quoted string ``"\\x41\\x42"`` as bytes."""
    return bytes.fromhex(text.replace("\\x", ""))


def _returned_zero(rest: str) -> bool:
    return re.search(r"= 0\s*$", rest) is not None


@dataclass
class SyncTrace:
    """What the walk found: ack datagrams sent, the keys they named, fsyncs seen."""

    acks: int = 0
    acked: set[str] = field(default_factory=set)
    fsyncs: int = 0
    unfinished_fsyncs: int = 0


def check_trace(trace: str, sink_path: str) -> SyncTrace:
    """Walk the trace in order; fail at the first ack naming a key not yet durable."""
    sink_fds: set[str] = set()
    written: dict[str, int] = {}  # key -> index at which its write returned
    open_calls: dict[tuple[str, str], tuple[int, str]] = {}  # (pid, call) -> entry
    synced_before = -1  # the latest entry index of a completed fsync of the sink
    found = SyncTrace()

    def wrote(fd: str, args: str, at: int) -> None:
        quoted = _QUOTED.search(args)
        if fd not in sink_fds or quoted is None:
            return
        for row in _hex(quoted.group(1)).splitlines():
            if row.startswith(b"{"):
                written[json.loads(row)["EventKey"]] = at

    def fsynced(fd: str, began: int, result: str) -> None:
        nonlocal synced_before
        if fd in sink_fds and _returned_zero(result):
            found.fsyncs += 1
            synced_before = max(synced_before, began)

    def sent(args: str, at: int) -> None:
        quoted = _QUOTED.search(args)
        if quoted is None:
            return
        data = _hex(quoted.group(1))
        if len(data) < HEADER + ACK_BODY or data[:4] != b"PBPR" or data[5] != 2:
            return  # not an ack datagram
        found.acks += 1
        count = int.from_bytes(data[HEADER + 8 : HEADER + ACK_BODY], "big")
        keys = data[HEADER + ACK_BODY : HEADER + ACK_BODY + 8 * count]
        for i in range(count):
            key = keys[8 * i : 8 * i + 8].hex()
            write = written.get(key)
            assert write is not None, f"ack at trace line {at} names {key}, never written"
            assert write < synced_before, (
                f"ack at trace line {at} names {key}, whose write returned at line "
                f"{write}, but the latest completed fsync began at line {synced_before}")
            found.acked.add(key)

    for index, line in enumerate(trace.splitlines()):
        match = _CALL.match(line)
        if match is None:
            continue  # a signal, an exit, strace's own notes
        pid, resumed, call, rest = match.groups()
        if resumed is not None:
            entry = open_calls.pop((pid, resumed), None)
            if entry is None:
                continue  # its entry was before the trace (or not traced)
            began, args = entry
            name, result, at = resumed, rest, index
        elif rest.endswith(_UNFINISHED):
            open_calls[(pid, call)] = (index, rest[: -len(_UNFINISHED)])
            if call in ("sendto", "sendmsg", "send"):
                sent(rest, index)  # the datagram's keys must be durable at its entry
            continue
        else:
            name, began, args, result, at = call, index, rest, rest, index
        fd = args.split(",", 1)[0].split(")", 1)[0].strip()
        if name == "openat" and (path := _QUOTED.search(args)) is not None:
            if _hex(path.group(1)).decode() == sink_path and "= " in result:
                opened = result.rsplit("= ", 1)[1].split()[0]
                if opened.isdigit():
                    sink_fds.add(opened)
        elif name in ("fsync", "fdatasync"):
            found.unfinished_fsyncs += resumed is not None
            fsynced(fd, began, result)
        elif name == "write":
            wrote(fd, args, at)
        elif name in ("sendto", "sendmsg", "send") and resumed is None:
            sent(args, at)
    return found
