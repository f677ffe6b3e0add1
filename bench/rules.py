"""Events/s through rules/syslog.rules in-process, and where the time goes.

    .venv/bin/python bench/rules.py [--events N] [--rules FILE]

Prints three figures: rules only (tokens prepared beforehand), tokenise + rules, and
tokenise + rules + alert serialisation, then the top of a cProfile of the rules-only
loop, then the worst-case table (``--no-worst`` skips it): known catastrophic regexes
and 64 KiB inputs through regmatch/extract, the shipped rules and each built-in, max
µs per event on RE2 (what the rules run on) beside the same pattern on Python's re
(capped at 1 s: ">1s"), and the per-call cost of the shipped rules' patterns on re,
on RE2's binding and on the re2 module's wrapper. Figures drift between runs;
compare proportions (DESIGN.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import re
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probepair.events import key_of
from probepair.pipeline.alerts import serialise
from probepair.pipeline.tokenise import tokenise
from probepair.rules import RulesContext, compile_rules, failures, load_rules
from probepair.rules import arith as ar
from probepair.rules import functions as fn
from probepair.rules.patterns import Regex

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
    parser.add_argument("--no-worst", action="store_true", help="skip the worst-case table")
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
    if not args.no_worst:
        worst_case(program, ctx)


# -- the worst-case table --------------------------------------------------------------

KIB = 1024
CAP = 1.0  # seconds: Python's re beyond this is printed as ">1s" and abandoned

# (pattern, hostile text): nested quantifiers, overlapping alternation, long inputs.
CATASTROPHIC = [
    (r"^(\w+\s?)*$", "a" * 26 + "!"),  # the issue's: 3.9 s on Python re
    (r"^(\w+\s?)*$", "a" * 64 * KIB + "!"),
    (r"(a+)+b", "a" * 28),
    (r"(a+)+b", "a" * 64 * KIB),
    (r"(a|a)*b", "a" * 28),
    (r"(a|aa)*c", "a" * 40),
    (r"(.*)*b", "a" * 28),
    (r"(.*)*b", "a" * 64 * KIB),
    (r"^(a?){30}a{30}$", "a" * 30),
    (r"\s+$", " " * 64 * KIB + "x"),
    (r"a*b", "a" * 64 * KIB),
    (r" from (\S+)", " from" * (13 * KIB)),
    (r"(\w|\d)+$", "1" * 64 * KIB + "!"),
]


class _Overdue(BaseException):
    """Raised by the alarm; a BaseException so no ``except Exception`` in the rules
    runtime (which reports and goes on) mistakes it for a rules error."""


def _capped(f: object) -> float | None:
    """Seconds one call of ``f`` takes, None past CAP (SIGALRM: Python's re checks signals)."""

    def fire(signum: int, frame: object) -> None:
        raise _Overdue

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, CAP)
    start = time.perf_counter()
    try:
        f()  # type: ignore[operator]
        return time.perf_counter() - start
    except _Overdue:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _max_us(f: object, runs: int = 3) -> float:
    return max(_capped(f) or CAP for _ in range(runs)) * 1e6


def _us(seconds: float | None) -> str:
    return ">1s" if seconds is None else f"{seconds * 1e6:,.1f}"


def _row(label: str, ours: float, peer: float | str | None) -> None:
    peer_text = peer if isinstance(peer, str) else _us(peer)
    print(f"  {label:<52} {ours:>12,.1f} {peer_text:>14}")


def worst_case(program: object, ctx: RulesContext) -> None:
    print("\nworst case: max µs per event (RE2, as the rules run) | Python re peer")
    print(f"  {'regmatch + extract of':<52} {'RE2 µs':>12} {'re µs':>14}")
    for pattern, text in CATASTROPHIC:
        quoted = pattern.replace("\\", "\\\\")
        prog = compile_rules(
            f'if (regmatch($Message, "{quoted}")) {{ @A = 1 }}\n'
            f'@B = extract($Message, "{quoted}")',
            source="<bench>",
        )
        tokens = {"Message": text}
        compiled = re.compile(pattern)
        peer = _capped(lambda c=compiled, t=text: (c.search(t), c.search(t)))
        ours = _max_us(lambda p=prog, t=tokens: p.run(t, ctx))
        _row(f"{pattern[:28]!r} on {len(text):,} chars", ours, peer)

    print(f"  {'shipped rules (rules/syslog.rules), 64 KiB lines':<52}")
    run = program.run  # type: ignore[attr-defined]
    hostile = {
        "sshd, 64 KiB user name": b"<38>Nov 22 04:04:33 web1 sshd[1]: Failed password for "
        + b"a" * 64 * KIB,
        "kernel, 64 KiB of 'Link '": b"<6>Nov 22 04:04:35 db2 kernel: " + b"Link " * 13 * KIB,
        "64 KiB of blanks": b"<13>Nov 22 04:05:03 app3 myapp[77]: " + b" " * 64 * KIB,
        "64 KiB without a header": b"x" * 64 * KIB,
    }
    for label, raw in hostile.items():
        _row(label, _max_us(lambda raw=raw: run(tokenise("syslog", raw), ctx)), "-")

    old_nvp = re.compile(r'([^=;]+)="((?:[^"\\]|\\.)*)"')  # the pattern nvp_add had on re
    scan = fn.scan_pattern("%s %d %s")
    old_scan = re.compile(r"\s*(\S+)(?:\s*\s*([-+]?\d+)(?:\s*\s*(\S+))?)?")
    text = "a" * 64 * KIB
    blanks = "a" + " " * 64 * KIB + "x"
    builtins: list[tuple[str, object, object]] = [
        ("nvp_add, 64 KiB without '='", lambda: fn.nvp_add(text, ("k", "v")),
         lambda: list(old_nvp.finditer(text))),
        ("nvp_remove, 64 KiB without '='", lambda: fn.nvp_remove(text, ("k",)),
         lambda: list(old_nvp.finditer(text))),
        ("scanformat '%s %d %s', 64 KiB of blanks", lambda: fn.scanformat(scan[0], scan[1], blanks),
         lambda: old_scan.match(blanks)),
        ("regreplace 'a' -> 'bb', 64 KiB of 'a'", lambda: Regex("a").sub(text, "bb"),
         lambda: re.sub("a", "bb", text)),
        ("regreplace '\\s+$', 64 KiB of blanks", lambda: Regex(r"\s+$").sub(blanks[1:], ""),
         lambda: re.sub(r"\s+$", "", blanks[1:])),
        ("split on ' ;', 64 KiB", lambda: fn.split(" ;" * 32 * KIB, {}, " ;"), None),
        ("printable, 64 KiB of control chars", lambda: fn.printable("\x01" * 64 * KIB), None),
        ("int/real/number, 64 KiB of digits",
         lambda: (ar.atoi(text), ar.atof("1" * 64 * KIB), ar.number("1" * 64 * KIB)), None),
        ("substr/md5/lower, 64 KiB", lambda: (fn.substr(text, 2, 99999), fn.md5(text),
                                                text.upper()), None),
        ("date(), 64 KiB of digits", lambda: _fails(lambda: fn.date("1" * 64 * KIB + "x")),
         None),
        ("datetotime(), 64 KiB", lambda: _fails(
            lambda: fn.datetotime("1" * 64 * KIB, "yyyy-MM-dd HH:mm:ss")), None),
        ("datetotime() \"d ' ' M\", 64 KiB of blanks", lambda: _fails(
            lambda: fn.datetotime("1" + " " * 64 * KIB + "x", "d ' ' M")), None),
        ("datetotime() 'yyyyMMddHHmmssSSS', 64 KiB of digits", lambda: _fails(
            lambda: fn.datetotime("1" * 64 * KIB + "x", "yyyyMMddHHmmssSSS")), None),
        ("tokenise syslog 5424, 64 KiB of '[\\]'",
         lambda: tokenise("syslog", b"<1>1 a b c d e " + b"[\\]" * 21 * KIB), None),
        ("tokenise json, 10k keys", lambda: tokenise("json", b"{" + b'"a":1,' * 10_000 + b'"b":1}'),
         None),
    ]
    print(f"  {'built-ins':<52}")
    for label, ours, peer in builtins:
        _row(label, _max_us(ours), _capped(peer) if peer is not None else "-")

    budgeted(ctx)

    print("\nper call, the shipped rules' patterns on a 100-char message (µs):")
    print(f"  {'pattern':<44} {'re':>8} {'RE2':>8} {'re2 module':>11} {'rules use':>10}")
    import re2  # the wrapper, for comparison only

    msg = LINES[0].decode().split(": ", 1)[1]
    for pattern in (r"^probepair take over \S+$", r" from (\S+)", r"Out of memory|oom-kill",
                    r"[Ll]ink (is )?[Dd]own", r"^([\w.-]+):"):
        py, ours = re.compile(pattern), Regex(pattern, backtracking=False)
        wrapped, used = re2.compile(pattern), Regex(pattern)
        n = 100_000
        costs = []
        for f in (py.search, ours.extract, wrapped.search, used.extract):
            start = time.perf_counter()
            for _ in range(n):
                f(msg)
            costs.append((time.perf_counter() - start) / n * 1e6)
        print(f"  {pattern!r:<44} {costs[0]:>8.2f} {costs[1]:>8.2f} {costs[2]:>11.2f}"
              f" {costs[3]:>10.2f}  ({'re' if used.backtracking else 'RE2'})")


BUDGET = 0.020  # seconds: the default RulesTimeBudget

# Rules that repeat work on a hostile line: the loops and regreplace's match loop.
COSTLY = {
    "regreplace 'a(.*b)?', 64 KiB of 'a'": (
        '@B = regreplace($Message, "a(.*b)?", "x")', "a" * 64 * KIB),
    "nested foreach, 32K words": (
        "array w;\n$n = split($Message, w, \" \")\n"
        "foreach (i in w) { foreach (j in w) { @P = w[j] } }", "a " * 32 * KIB),
    "foreach nvp_add, 32K words": (
        'array w;\n$n = split($Message, w, " ")\n'
        'foreach (i in w) { @E = nvp_add(@E, w[i], $Message) }', "a " * 32 * KIB),
    "$s = $s + $s in a foreach (1 MiB cap)": (
        'array w;\n$n = split($Message, w, " ")\n$s = $Message\n'
        "foreach (i in w) { $s = $s + $s }\n@L = length($s)", "a " * 32 * KIB),
    "$x = $x * $x in a foreach (64-bit cap)": (
        'array w;\n$n = split($Message, w, " ")\n$x = 3\n'
        "foreach (i in w) { $x = $x * $x + 1 }", "a " * 32 * KIB),
}


def budgeted(ctx: RulesContext) -> None:
    """What each costly construct costs with the default budget and without one."""
    print(f"  {'rules that repeat work, RulesTimeBudget 20 ms':<52} {'budget µs':>12} "
          f"{'none µs':>14}")
    ctx.clock = time.perf_counter
    for label, (text, message) in COSTLY.items():
        prog = compile_rules(text, source="<bench>")
        tokens = {"Message": message}

        def once(prog: object = prog, tokens: dict[str, str] = tokens,
                 budget: float = BUDGET) -> None:
            ctx.deadline = time.perf_counter() + budget
            prog.run(tokens, ctx)  # type: ignore[attr-defined]

        ours = _max_us(once)
        peer = _capped(lambda once=once: once(budget=math.inf))
        _row(label, ours, peer)
    ctx.deadline = math.inf


def _fails(f: object) -> None:
    try:
        f()  # type: ignore[operator]
    except failures.Fail:
        pass


if __name__ == "__main__":
    main()
