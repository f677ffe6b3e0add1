"""Heartbeat jitter while the processing stage works through the costliest events.

    .venv/bin/python bench/jitter.py [--seconds 5] [--beat 0.2]

One trio loop, as in a probe: a "heartbeat" task that sleeps ``--beat`` seconds and
records how late each wake-up is, beside a Processor (Mode master, the default
RulesTimeBudget, clamped to beat / 8) fed batches as the UDP feed makes them. Three
runs, each ``--seconds`` long:

- usual: 512 shipped-rules syslog lines a batch (the peer: what jitter a probe has
  anyway);
- poison: 16 64 KiB lines a batch (a full MAX_BATCH_BYTES batch) through rules whose
  every construct runs past the budget on them (tests/e2e/test_poison_events.py);
- poison, no slices: the same with RULES_SLICE = inf, what the slices save.

Prints max and p99 lateness against the bound the issue sets (BeatInterval / 4), and
the worst event's rules time (budget + overrun).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from prometheus_client import CollectorRegistry  # noqa: E402

from probepair.config import props as props_mod  # noqa: E402
from probepair.events import Event, key_of  # noqa: E402
from probepair.metrics import Metrics  # noqa: E402
from probepair.pipeline import processor as proc_mod  # noqa: E402
from probepair.pipeline.processor import AlwaysForward, Processor  # noqa: E402
from probepair.rules import compile_rules, load_rules  # noqa: E402
from tests.e2e.test_poison_events import RULES as COSTLY  # noqa: E402

POISON = [b"a" * 65_000, b"a " * 32_500]


def usual_lines() -> list[bytes]:
    import tempfile

    from throughput import write_lines

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.txt"
        write_lines(path)
        return path.read_bytes().split(b"\n")[:-1][:512]


async def measure(proc: Processor, batch: list[Event], seconds: float, beat: float
                  ) -> tuple[list[float], int]:
    """Lateness of each heartbeat wake-up while ``proc`` runs ``batch`` over and over."""
    late: list[float] = []
    send_in, recv_in = trio.open_memory_channel[list[Event]](1)
    send_out, recv_out = trio.open_memory_channel[list[tuple[bytes, bytes]]](math.inf)
    batches = 0

    async def heartbeat() -> None:
        due = trio.current_time() + beat
        while True:
            await trio.sleep_until(due)
            late.append(trio.current_time() - due)
            due += beat

    async def feed() -> None:
        nonlocal batches
        async with send_in:
            end = trio.current_time() + seconds
            while trio.current_time() < end:
                await send_in.send(batch)
                batches += 1
                while True:  # the sink side: drop what came out
                    try:
                        recv_out.receive_nowait()
                    except trio.WouldBlock:
                        break

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        nursery.start_soon(feed)
        async with send_out:
            await proc.run(recv_in, send_out)
        nursery.cancel_scope.cancel()
    return late, batches


def report(label: str, late: list[float], batches: int, events: int, beat: float) -> None:
    ordered = sorted(late)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    print(f"  {label:<28} {len(late):>6} {ordered[-1] * 1e3:>9.1f} {p99 * 1e3:>9.1f} "
          f"{beat / 4 * 1e3:>9.1f} {batches * events:>9,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--beat", type=float, default=0.2, help="BeatInterval, seconds")
    args = ap.parse_args()
    base = {"FeedPort": 0, "Mode": "master", "PeerHost": "127.0.0.1", "PeerPort": 9,
            "BeatInterval": args.beat}
    syslog = props_mod.load([("bench", {**base, "FeedFormat": "syslog",
                                        "RulesFile": str(HERE.parent / "rules/syslog.rules")})])
    line = props_mod.load([("bench", {**base, "FeedFormat": "line", "RulesFile": ""})])
    shipped = load_rules(syslog.RulesFile)
    costly = compile_rules(COSTLY, source="costly.rules")

    def events(raws: list[bytes]) -> list[Event]:
        return [Event(r, key_of(r + str(i).encode()), 1.0) for i, r in enumerate(raws)]

    usual = events(usual_lines())
    poison = events([POISON[i % 2] for i in range(16)])
    budget = proc_mod.rules_budget(line)
    # the worst event: budget + overrun (each poison line alone, the real clock)
    proc = Processor(line, costly, AlwaysForward(), Metrics(CollectorRegistry()), time.time)
    worst = 0.0
    for ev in poison[:4]:
        start = time.perf_counter()
        proc.process([ev])
        worst = max(worst, time.perf_counter() - start)
    print(f"RulesTimeBudget {budget * 1e3:.1f} ms (BeatInterval {args.beat} s / 8, or 20 ms); "
          f"worst poison event {worst * 1e3:.1f} ms of processing (tokenise + rules + alert)")
    print(f"heartbeat lateness over {args.seconds:g} s, BeatInterval {args.beat} s (ms):")
    print(f"  {'run':<28} {'beats':>6} {'max':>9} {'p99':>9} {'bound':>9} {'events':>9}")
    runs = [("usual (shipped rules)", syslog, shipped, usual, proc_mod.RULES_SLICE),
            ("poison", line, costly, poison, proc_mod.RULES_SLICE),
            ("poison, no slices", line, costly, poison, math.inf)]
    for label, p, program, batch, slice_ in runs:
        proc_mod.RULES_SLICE = slice_
        proc = Processor(p, program, AlwaysForward(), Metrics(CollectorRegistry()), time.time)
        late, batches = trio.run(measure, proc, batch, args.seconds, args.beat)
        report(label, late, batches, len(batch), args.beat)
    proc_mod.RULES_SLICE = runs[0][4]


if __name__ == "__main__":
    main()
