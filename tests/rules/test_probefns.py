"""Issue 23 item 5: getenv, expand, charcount, contains, setlog, service, getload and
updateload; scanformat's arrays and a leading '?' in a regex."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from probepair.errors import RulesCompileError
from probepair.rules import RulesContext
from probepair.rules import probefns as pf
from probepair.rules.compiler import compile_rules  # takes the environment as ``env``
from probepair.rules.failures import MAX_VALUE
from probepair.rules.patterns import Regex
from tests.rules.conftest import Recorder

Run = Callable[..., dict[str, object] | None]


def compile_error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(RulesCompileError) as info:
        compile_rules(text, source="t.rules", env=env)
    return str(info.value)


# -- getenv ------------------------------------------------------------------------------


def test_getenv_reads_the_environment_the_loader_gives() -> None:
    program = compile_rules(
        '@Site = getenv("SITE")\n@None = getenv("UNSET_VAR")\n@Len = length(getenv("SITE"))\n',
        source="t.rules",
        env={"SITE": "lon-1"},
    )
    assert program.run({}, Recorder().ctx()) == {"Site": "lon-1", "None": "", "Len": 5}


def test_getenv_names_only_a_literal_so_feed_text_cannot_choose_the_variable() -> None:
    assert compile_error('@S = getenv($Token1)\n', env={"SECRET": "x"}) == (
        "t.rules:1:13: getenv() takes the variable's name as a string literal, so no feed "
        "text can choose which environment variable an alert shows"
    )
    assert compile_error('@S = getenv("A", "B")\n') == (
        "t.rules:1:6: getenv() takes 1 argument, got 2"
    )


def test_getenv_of_a_value_past_max_value_is_a_compile_error() -> None:
    message = compile_error('\n  @S = getenv("BIG")\n', env={"BIG": "x" * (MAX_VALUE + 1)})
    assert message.startswith("t.rules:2:15: environment variable 'BIG' holds ")


# -- expand ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r"a\x41\101b", "aAAb"),
        (r"bell\a tab\t", "bell\a tab\t"),
        (r"keep \q and \d", r"keep \q and \d"),
        ("", ""),
        (r"\0", "\x00"),
    ],
)
def test_expand(literal: str, value: str) -> None:
    assert pf.expand(literal) == value


def test_expand_in_rules_is_compile_time_and_takes_a_literal(run: Run) -> None:
    assert run('@S = expand("x\\x3dy")\n') == {"S": "x=y"}
    assert compile_error("@S = expand($a)\n") == "t.rules:1:13: expand() takes a string literal"


# -- charcount, contains -----------------------------------------------------------------


def test_charcount_counts_characters(run: Run) -> None:
    assert run("@N = charcount($a)\n@E = charcount($b)\n", a="héllo ✓", b="") == {"N": 7, "E": 0}
    assert compile_error("@N = charcount()\n") == "t.rules:1:6: charcount() takes 1 argument, got 0"


def test_contains(run: Run) -> None:
    text = (
        'if (contains($a, "root")) { @R = 1 }\n'
        'if (contains($a, "ROOT")) { @Case = 1 }\n'
        'if (contains($a, "")) { @Empty = 1 }\n'
        'if (!contains($b, "x")) { @Not = 1 }\n'
    )
    assert run(text, a="Failed password for root", b="") == {"R": 1, "Empty": 1, "Not": 1}
    assert compile_error('@X = contains($a)\n') == (
        "t.rules:1:6: contains() takes 2 arguments, got 1"
    )


def test_contains_on_the_largest_value_is_linear(run: Run) -> None:
    big = "a" * (MAX_VALUE - 1) + "b"
    start = time.perf_counter()
    assert run('if (contains($a, "aaaaaaaaaaaaaaaaaaaaaaaab")) { @Y = 1 }\n', a=big) == {"Y": 1}
    assert time.perf_counter() - start < 0.5


# -- setlog ------------------------------------------------------------------------------


def test_setlog_calls_the_probe_and_sets_message_level() -> None:
    levels: list[str] = []
    ctx = Recorder().ctx()
    ctx.set_log_level = levels.append
    program = compile_rules("setlog(WARNING)\n@L = %MessageLevel\nsetlog(\"debug\")\n",
                            source="t.rules")
    assert program.run({}, ctx) == {"L": "warn"}
    assert levels == ["WARNING", "DEBUG"]
    assert ctx.props["MessageLevel"] == "debug"
    assert ctx.assigned == {}  # not a property assignment the runtime acts on


def test_setlog_without_a_level_is_a_compile_error() -> None:
    assert compile_error("setlog(LOUD)\n") == (
        "t.rules:1:8: expected a log level (DEBUG, INFO, WARNING, ERROR, FATAL)"
    )


def test_probe_log_level_changes_only_when_it_differs() -> None:
    import logging

    from probepair.pipeline.processor import set_probe_log_level

    root = logging.getLogger()
    before = root.level
    try:
        set_probe_log_level("ERROR")
        assert root.level == logging.ERROR
        set_probe_log_level("DEBUG")
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)


# -- service -----------------------------------------------------------------------------


def test_service_is_accepted_and_does_nothing(run: Run) -> None:
    text = 'service("WebFarm", GOOD)\nservice($a, "bad", "ops", "down")\n@Done = 1\n'
    assert run(text, a="x") == {"Done": 1}


def test_service_checks_its_status_and_arity() -> None:
    assert compile_error("service(\"S\", FINE)\n") == (
        "t.rules:1:14: expected a service status (GOOD, MARGINAL, BAD, UNKNOWN), found 'FINE'"
    )
    assert compile_error('service("S")\n') == "t.rules:1:1: service() takes 2 to 4 arguments, got 1"
    assert compile_error('@X = service("S", GOOD)\n') == (
        "t.rules:1:6: service() is a statement and has no value"
    )


# -- getload / updateload ----------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def load_ctx(clock: Clock, rec: Recorder) -> RulesContext:
    ctx = rec.ctx({"load": ""})
    ctx.wall_clock = clock
    return ctx


LOAD_RULES = "%load = updateload(%load)\n@Rate = getload(%load)\n"


def test_the_load_is_the_event_rate_over_the_window(rec: Recorder) -> None:
    clock = Clock(1000.0)
    ctx = load_ctx(clock, rec)
    ctx.props["load"] = "10.100"
    program = compile_rules(LOAD_RULES, source="t.rules")
    rates = []
    for _ in range(30):  # 2 events a second for 15 s
        rates.append(program.run({}, ctx)["Rate"])  # type: ignore[index]
        clock.now += 0.5
    assert rates[0] == 0.1 and rates[-1] == 2.0  # 1 in the window, then 20 in 10 s
    assert str(ctx.props["load"]).startswith("10.100:")
    assert str(ctx.props["load"]).count(":") == 20
    assert rec.errors == []


def test_a_full_load_measures_over_the_span_its_samples_cover(rec: Recorder) -> None:
    clock = Clock(1000.0)
    ctx = load_ctx(clock, rec)
    ctx.props["load"] = "60.10"
    program = compile_rules(LOAD_RULES, source="t.rules")
    for _ in range(50):  # 100 events a second: 10 samples span 0.09 s
        alert = program.run({}, ctx)
        clock.now += 0.01
    assert alert is not None and 100 <= float(alert["Rate"]) <= 112  # type: ignore[arg-type]
    assert str(ctx.props["load"]).count(":") == 10


def test_an_empty_load_is_the_default_and_a_bad_one_fails_the_statement(rec: Recorder) -> None:
    program = compile_rules(LOAD_RULES, source="t.rules")
    ctx = load_ctx(Clock(5.0), rec)
    assert program.run({}, ctx) == {"Rate": round(1 / 60, 3)}
    assert str(ctx.props["load"]).startswith(pf.DEFAULT_LOAD + ":")
    ctx.props["load"] = "fast please"
    assert program.run({}, ctx) == {}
    assert [str(e) for e in rec.errors] == [
        "t.rules:1:1: updateload: expected a load 'SECONDS.SAMPLES' such as '60.100', "
        "found 'fast please'",
        "t.rules:2:1: getload: expected a load 'SECONDS.SAMPLES' such as '60.100', "
        "found 'fast please'",
    ]
    rec.errors.clear()
    ctx.props["load"] = "60.5000"
    assert program.run({}, ctx) == {}
    assert "samples 1 to 1000" in str(rec.errors[0])


def test_a_huge_load_string_costs_at_most_its_samples(rec: Recorder) -> None:
    ctx = load_ctx(Clock(5.0), rec)
    ctx.props["load"] = "60.10:" + "1.0:" * 250_000
    program = compile_rules(LOAD_RULES, source="t.rules")
    start = time.perf_counter()
    program.run({}, ctx)
    assert time.perf_counter() - start < 0.2
    assert str(ctx.props["load"]).count(":") <= 10


def test_load_functions_check_arity() -> None:
    assert compile_error("@R = getload()\n") == "t.rules:1:6: getload() takes 1 argument, got 0"
    assert compile_error("@R = updateload(%a, %b)\n") == (
        "t.rules:1:6: updateload() takes 1 argument, got 2"
    )


# -- scanformat arrays, a leading '?' ----------------------------------------------------


def test_scanformat_creates_the_arrays_of_its_targets(run: Run) -> None:
    text = (
        '[parts[1], parts[2]] = scanformat($a, "%s is %d")\n'
        "@Who = parts[1]\n@Age = parts[2]\n"
    )
    assert run(text, a="jim is 34") == {"Who": "jim", "Age": 34}


def test_a_question_mark_with_nothing_to_repeat_is_a_literal(run: Run) -> None:
    assert run('@S = extract($a, "?(x+)")\n', a="a?xx") == {"S": "xx"}
    assert Regex("(?i)X").search("x") is not None  # a '(?' group flag stays one
    assert Regex("a|?b").search("?b") is not None and Regex("a|?b").search("b") is None
    assert Regex("^?q").search("?q") is not None
    assert Regex("ab?").extract("abbb") == "ab"  # an optional stays one
