"""Per-event cost of the probe's hot path, in-process (no sockets, no trio scheduling).

Runs the same 4000 syslog lines as bench/throughput.py through each stage the UDP feed,
the Processor (shipped rules/syslog.rules) and the file sink perform per event, and
prints µs per event for each stage and for the whole path. Use it to see where a change
helps before confirming it with bench/throughput.py and py-spy on a live probe.

    .venv/bin/python bench/hotpath.py [--events 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import write_lines  # noqa: E402

from probepair.config import props as props_mod  # noqa: E402
from probepair.events import Event, KeyMaker  # noqa: E402
from probepair.feeds.base import MAX_BATCH  # noqa: E402
from probepair.metrics import Metrics  # noqa: E402
from probepair.pipeline.processor import AlwaysForward, Processor  # noqa: E402
from probepair.rules import load_rules  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-gc", action="store_true", help="gc.disable() to see its share")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile top 15")
    args = ap.parse_args()
    if args.no_gc:
        gc.disable()
    with tempfile.TemporaryDirectory() as tmp:
        lines_path = Path(tmp) / "lines.txt"
        write_lines(lines_path)
        lines = lines_path.read_bytes().split(b"\n")[:-1]
        payloads = [lines[i % len(lines)] for i in range(args.events)]
        chunks = [payloads[i : i + MAX_BATCH] for i in range(0, len(payloads), MAX_BATCH)]
        p = props_mod.load([("bench", {"FeedPort": 0, "FeedFormat": "syslog",
                                       "RulesFile": str(HERE.parent / "rules" / "syslog.rules")})])
        from prometheus_client import CollectorRegistry

        program = load_rules(p.RulesFile)
        proc = Processor(p, program, AlwaysForward(), Metrics(CollectorRegistry()), time.time)
        n = len(payloads)
        results: dict[str, float] = {}

        sources = [("192.0.2.1", 514)] * MAX_BATCH  # one sender (datagrams.reader's cache)

        def feed(chunk: list[bytes], km: KeyMaker, t: float) -> list[Event]:
            # what UdpFeed._drain_forever does with one batch of datagrams
            return [Event(raw, key, 1.0, {}, False, source, 0)
                    for raw, key, source in zip(chunk, km.keys(chunk, t), sources, strict=False)]

        def stream(km: KeyMaker, fd: int, acc: dict[str, float]) -> None:
            clock = time.perf_counter
            for i, chunk in enumerate(chunks):
                t0 = clock()
                batch = feed(chunk, km, i * 0.005)  # one batch per 5 ms: ~100k/s
                t1 = clock()
                items = proc.process(batch)
                t2 = clock()
                os.write(fd, b"\n".join([payload for _, payload in items]) + b"\n")
                t3 = clock()
                acc["feed: keys + Events"] += t1 - t0
                acc["Processor.process"] += t2 - t1
                acc["file sink join + write"] += t3 - t2

        fd = os.open(Path(tmp) / "sink.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        runs = []
        for _ in range(args.repeat):
            acc = dict.fromkeys(("feed: keys + Events", "Processor.process",
                                 "file sink join + write"), 0.0)
            stream(KeyMaker(5.0), fd, acc)
            runs.append(acc)
        os.close(fd)
        n = len(payloads)
        acc = min(runs, key=lambda a: sum(a.values()))
        for name, t in acc.items():
            print(f"{name:<26}{t / n * 1e6:7.2f} µs/event")
        total = sum(acc.values())
        print(f"{'total':<26}{total / n * 1e6:7.2f} µs/event"
              f"  (~{n / total:,.0f} events/s before recv and trio; best of {args.repeat})")
        if args.profile:
            # Where the time goes inside the stages: cProfile over one more pass
            # (cProfile inflates call-heavy code; use it for proportions only).
            import cProfile
            import pstats

            acc = dict.fromkeys(acc, 0.0)
            fd = os.open(Path(tmp) / "sink.jsonl", os.O_WRONLY | os.O_APPEND)
            prof = cProfile.Profile()
            prof.runcall(stream, KeyMaker(5.0), fd, acc)
            os.close(fd)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
