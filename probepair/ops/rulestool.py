"""``probepair rules check`` and ``probepair rules run``: write and test rules files.

``check`` is our nco_p_syntax: compile and summarise, or print the located error.
``run`` pushes records from a stream through a rules file and prints each alert in
the same JSON shape the file sink writes, nothing for a discarded event.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import datetime
from typing import BinaryIO, TextIO

from probepair.config.props import FEED_FORMATS
from probepair.errors import RulesError, RulesRuntimeError
from probepair.events import Event, KeyMaker, derived_key
from probepair.pipeline.alerts import serialise
from probepair.pipeline.omnibus import OmnibusTokeniser
from probepair.pipeline.tokenise import tokenise
from probepair.rules.compiler import Program, RulesContext
from probepair.rules.functions import LOG_LEVELS
from probepair.rules.loader import load_rules, read_text
from probepair.rules.parser import parse_fragment
from probepair.rules.trust import untrusted_mode_assignments

_BATCH = 512  # lines per write(); per-line writes cost ~5x (DESIGN.md)
_LEVEL_RANK = {level: i for i, level in enumerate(LOG_LEVELS)}


def _load(path: str, err: TextIO) -> Program | None:
    try:
        return load_rules(path)
    except RulesError as exc:
        print(exc, file=err)
        return None


def check_command(path: str, out: TextIO, err: TextIO) -> int:
    """Exit 0 and a summary, or 1 and ``path:line:col: message`` on ``err``.

    The summary's first line counts everything; then, per file read, its statements,
    tables and includes (each with the path it resolved to), then the targets. Each
    ``%Mode`` assignment feed text can reach is a ``path:line:col: warning: ...`` line
    on ``err`` (the exit status stays 0: the file compiles).
    """
    program = _load(path, err)
    if program is None:
        return 1
    for stats in program.file_stats:
        for line in mode_warnings(stats.path):
            print(line, file=err)
    lines = [
        f"{path}: OK ({program.statements} statements, {program.tables} tables, "
        f"{program.includes} includes, {len(program.targets)} targets)"
    ]
    for stats in program.file_stats:
        lines.append(
            f"  {stats.path}: {stats.statements} statements, {stats.tables} tables, "
            f"{len(stats.includes)} includes"
        )
        lines.extend(
            f"    line {line}: include {written!r} -> {resolved}"
            for line, written, resolved in stats.includes
        )
    for i, target in enumerate(program.targets):
        default = " (default)" if i == 0 else ""
        lines.append(
            f"  target {target.name}: table {target.table}{default}, "
            f"details {target.details_table}, at {target.where}"
        )
    print("\n".join(lines), file=out)
    return 0


MODE_WARNING = (
    "warning: %Mode is assigned where the feed's text decides: anyone who can send one "
    "line to the feed can switch the pair's roles; guard it with "
    "'if (match(%FeedType, \"file\"))' (a local file feed) or use probepair takeover/release"
)


def mode_warnings(path: str) -> list[str]:
    """``path:line:col: warning`` for each %Mode assignment feed text reaches in ``path``."""
    try:
        module = parse_fragment(read_text(path), source=path)
    except (RulesError, OSError):  # pragma: no cover - it compiled a moment ago
        return []
    return [
        f"{path}:{span.line}:{span.col}: {MODE_WARNING}"
        for span in untrusted_mode_assignments(module)
    ]


def _wall_clock() -> float:
    return datetime.now().timestamp()


def run_command(
    path: str,
    fmt: str,
    inp: BinaryIO,
    out: BinaryIO,
    err: TextIO,
    props: dict[str, object] | None = None,
    wall_clock: Callable[[], float] = _wall_clock,
    hostname: str | None = None,
) -> int:
    """Alerts for each record of ``inp`` as JSON lines; 2 if the rules do not compile.

    Runtime errors and log() output go to ``err``. The clock and hostname are
    parameters because this package stays free of time/socket imports (STYLE.md).
    """
    if fmt not in FEED_FORMATS:
        print(f"unknown format {fmt!r} (expected one of {', '.join(FEED_FORMATS)})", file=err)
        return 2
    program = _load(path, err)
    if program is None:
        return 2

    def on_error(exc: RulesRuntimeError) -> None:
        print(f"{exc} (record {count})", file=err)

    # setlog(LEVEL) raises the threshold of the log() lines printed (all by default).
    threshold = [0]

    def log(level: str, message: str) -> None:
        if _LEVEL_RANK.get(level, 0) >= threshold[0]:
            print(f"{level}: {message}", file=err)

    def set_log_level(level: str) -> None:
        threshold[0] = _LEVEL_RANK.get(level, 0)

    ctx = RulesContext(
        props=dict(props or {"Manager": "rules-run"}),
        assigned={},
        log=log,
        on_error=on_error,
        wall_clock=wall_clock,
        hostname=platform.node() if hostname is None else hostname,
        set_log_level=set_log_level,
    )
    # FeedFormat omnibus with IBM's default properties (OffsetZero 0, OffsetOne 20, ...).
    omnibus = OmnibusTokeniser() if fmt == "omnibus" else None
    keys = KeyMaker()
    batch: list[bytes] = []
    count = 0
    for line in inp:
        count += 1
        raw = line.rstrip(b"\r\n")
        if not raw:
            continue
        now = wall_clock()
        key = keys.key(raw, now)
        tokens = (
            tokenise(fmt, raw) if omnibus is None else omnibus.tokens(Event(raw, key, now))
        )
        alert = program.run(tokens, ctx)
        for i, generated in enumerate(ctx.generated):  # genevent alerts come first
            batch.append(serialise(generated, derived_key(key, i)))
        ctx.generated.clear()
        if alert is not None:
            batch.append(serialise(alert, key))
            if len(batch) >= _BATCH:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
    if batch:
        out.write(b"\n".join(batch) + b"\n")
    out.flush()
    return 0
