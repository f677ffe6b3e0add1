"""Counting what reached the sinks of a pair: events lost and events duplicated.

Each probe's file sink writes one JSON object per line with the event's ``EventKey``
(hex). The pair's promise is about the union of both files: every sent key appears at
least once (no loss); a key written more than once (by either probe, or twice by one)
is a duplicate, which the file sink allows by design after a takeover (at most about
one ack interval of traffic). The probes' own ProbeWatch self-events ("Running ...",
"Became active ...") are not fed events and are left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

SELF_EVENT_MANAGER = "ProbeWatch"  # the Manager field of the probes' own events
POLL = 0.05  # seconds between two reads of the sink files while waiting


def read_keys(path: Path) -> list[str]:
    """The EventKey of every complete line of ``path`` (none if it does not exist).

    A last line without its newline is being written right now and is skipped, and so
    are self-events (``Manager: ProbeWatch``).
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    alerts = [json.loads(line) for line in complete.splitlines() if line]
    return [a["EventKey"] for a in alerts if a.get("Manager") != SELF_EVENT_MANAGER]


@dataclass(frozen=True)
class SinkCount:
    """What the sinks hold, against what was sent.

    Attributes:
        sent: distinct keys sent.
        lost: sent keys in no sink file (sorted).
        duplicates: extra copies: lines written minus distinct keys written.
        per_file: lines in each file, in the order given.
        unexpected: keys written that were never sent (must be 0).
    """

    sent: int
    lost: list[str]
    duplicates: int
    per_file: list[int]
    unexpected: int

    def __str__(self) -> str:
        return (f"sent {self.sent}, lost {len(self.lost)}, duplicates {self.duplicates}, "
                f"per file {self.per_file}, unexpected {self.unexpected}")


def count(sent: Iterable[str], paths: Iterable[Path]) -> SinkCount:
    """Compare the union of the sink files with the sent keys."""
    expected = set(sent)
    per_file = []
    written: Counter[str] = Counter()
    for path in paths:
        keys = read_keys(path)
        per_file.append(len(keys))
        written.update(keys)
    return SinkCount(
        sent=len(expected),
        lost=sorted(expected - written.keys()),
        duplicates=sum(written.values()) - len(written),
        per_file=per_file,
        unexpected=len(written.keys() - expected),
    )


def duplicated(paths: Iterable[Path], among: Iterable[str] | None = None) -> dict[str, int]:
    """Keys written more than once (in total over ``paths``) and their copy counts.

    With ``among``, only those keys count (e.g. the events sent around a failback).
    """
    written: Counter[str] = Counter()
    for path in paths:
        written.update(read_keys(path))
    keys = written.keys() if among is None else set(among) & written.keys()
    return {key: written[key] for key in sorted(keys) if written[key] > 1}


async def wait_delivered(sent: Iterable[str], paths: Iterable[Path],
                         timeout: float) -> SinkCount:
    """Poll until nothing sent is missing, or ``timeout`` passes; the last count.

    It returns rather than raises on timeout, so the caller's assertion shows how many
    events were lost (and which).
    """
    expected, files = set(sent), list(paths)
    with trio.move_on_after(timeout):
        while count(expected, files).lost:
            await trio.sleep(POLL)
    return count(expected, files)


def assert_takeover_tail(master_sink: Path, slave_sink: Path, sent: list[str]) -> int:
    """Duplicates are exactly a tail of the master's deliveries: what it could not ack.

    Acks run in delivery order, so what the slave still held un-acked at the takeover is
    the end of the master's file; a duplicate from earlier would mean an ack was ignored.
    Returns the number of duplicated events.
    """
    wanted = set(sent)
    mine = [k for k in read_keys(master_sink) if k in wanted]
    theirs = set(read_keys(slave_sink))
    again = [i for i, k in enumerate(mine) if k in theirs]
    if not again:
        return 0
    tail = mine[again[0]:]
    assert [k for k in tail if k not in theirs] == [], "a duplicate before the unacked tail"
    return len(tail)
