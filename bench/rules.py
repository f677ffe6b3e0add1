"""Events/s through rules/syslog.rules in-process, and where the time goes.

    .venv/bin/python bench/rules.py [--events N] [--rules FILE]

Prints three figures: rules only (tokens prepared beforehand), tokenise + rules, and
tokenise + rules + alert serialisation, then the top of a cProfile of the rules-only
loop. Figures drift between runs; compare proportions (DESIGN.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probepair.events import key_of
from probepair.pipeline.alerts import serialise
from probepair.pipeline.tokenise import tokenise
from probepair.rules import RulesContext, load_rules

LINES = [
    b"<38>Nov 22 04:04:33 web1 sshd[2211]: Failed password for invalid user admin from 203.0.113.9 port 52144 ssh2",
    b"<38>Nov 22 04:04:34 web1 sshd[2214]: Accepted publickey for deploy from 198.51.100.7 port 40022 ssh2",
    b"<6>Nov 22 04:04:35 db2 kernel: eth0: Link is Down",
    b"<6>Nov 22 04:04:36 db2 kernel: eth0: Link is Up 1000Mbps/Full",
    b"<2>Nov 22 04:04:37 db2 kernel: Out of memory: Killed process 4242 (java)",
    b"<78>Nov 22 04:05:01 app3 CRON[9120]: pam_unix(cron:session): session opened for user root",
    b"<30>Nov 22 04:05:02 app3 systemd[1]: nginx.service: Failed with result 'exit-code'.",
    b"<13>Nov 22 04:05:03 app3 myapp[77]: order 1234 processed in 35 ms",
    b"<11>Nov 22 04:05:04 app3 myapp[77]: payment gateway timeout after 30000 ms",
    b"<165>1 2026-11-22T04:05:05.003Z fw1 pf 10 FW001 - blocked tcp 192.0.2.1:443 -> 10.0.0.8:5050",
]


def _ctx() -> RulesContext:
    return RulesContext(
        props={"Manager": "syslogd"},
        assigned={},
        log=lambda level, msg: None,
        on_error=lambda exc: None,
        wall_clock=lambda: 1_700_000_000.0,
        hostname="bench",
    )


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<40} {n / seconds:>12,.0f} events/s  ({seconds / n * 1e6:.2f} µs/event)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--rules", default=str(Path(__file__).resolve().parent.parent / "rules/syslog.rules")
    )
    args = parser.parse_args()
    program = load_rules(args.rules)
    ctx = _ctx()
    run = program.run
    n = args.events
    raws = [LINES[i % len(LINES)] for i in range(n)]
    tokens = [tokenise("syslog", raw) for raw in LINES]
    token_list = [tokens[i % len(tokens)] for i in range(n)]
    print(
        f"rules file: {args.rules} ({program.statements} statements), {n:,} events, "
        f"Python {sys.version.split()[0]}"
    )

    for _ in range(3):  # warm up
        for t in tokens:
            run(t, ctx)

    start = time.perf_counter()
    for t in token_list:
        run(t, ctx)
    _rate("rules only (pre-tokenised)", n, time.perf_counter() - start)

    start = time.perf_counter()
    for raw in raws:
        run(tokenise("syslog", raw), ctx)
    _rate("tokenise + rules", n, time.perf_counter() - start)

    start = time.perf_counter()
    for raw in raws:
        alert = run(tokenise("syslog", raw), ctx)
        if alert is not None:
            serialise(alert, key_of(raw))
    _rate("tokenise + rules + key + serialise", n, time.perf_counter() - start)

    profiler = cProfile.Profile()
    profiler.enable()
    for t in token_list[: n // 4]:
        run(t, ctx)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    print("\nprofile of the rules-only loop (by own time):")
    print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


if __name__ == "__main__":
    main()
