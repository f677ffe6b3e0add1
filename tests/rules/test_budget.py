"""The rules-time budget: no event's rules run past its deadline, and none is lost for it.

Spec (issue 19): an event over budget is delivered with the fields set so far plus
``@RulesOverBudget`` (the location that found the time used up), and reported; a
straight run of rules is bounded by the size caps, loops by the clock. The clock here
is a counter that ticks on every read, so the tests do not depend on the machine.
"""

from __future__ import annotations

import pytest

from probepair.errors import RulesRuntimeError
from probepair.rules import OVER_BUDGET_FIELD, RulesContext, compile_rules
from probepair.rules.failures import MAX_VALUE
from probepair.rules.patterns import CHECK_EVERY, Regex, ResultTooLong


class Ticks:
    """A clock that advances one unit per read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def ctx_with(deadline: float, clock: Ticks | None = None) -> tuple[RulesContext, list, list]:
    errors: list[RulesRuntimeError] = []
    over: list[tuple[str, int, int]] = []
    ctx = RulesContext(
        props={},
        assigned={},
        log=lambda level, msg: None,
        on_error=errors.append,
        wall_clock=lambda: 0.0,
        hostname="h",
        clock=clock or Ticks(),
        deadline=deadline,
        on_over_budget=over.append,
    )
    return ctx, errors, over


LOOP = """\
array words;
@Summary = "start"
$n = split($Message, words, " ")
foreach (w in words) {
    @Last = words[w]
}
@Done = "yes"
"""


def test_loop_past_the_deadline_delivers_fields_so_far_with_the_marker() -> None:
    program = compile_rules(LOOP, source="loop.rules")
    ctx, errors, over = ctx_with(deadline=5.0)
    fields = program.run({"Message": " ".join(["w"] * 100)}, ctx)
    assert fields is not None
    assert fields["Summary"] == "start"
    assert "Done" not in fields  # the run stopped in the loop
    assert fields[OVER_BUDGET_FIELD] == "loop.rules:4:1"
    assert over == [("loop.rules", 4, 1)]
    assert errors == []


def test_within_budget_nothing_is_marked() -> None:
    program = compile_rules(LOOP, source="loop.rules")
    ctx, errors, over = ctx_with(deadline=1e9)
    fields = program.run({"Message": "a b c"}, ctx)
    assert fields is not None and fields["Done"] == "yes"
    assert OVER_BUDGET_FIELD not in fields and over == [] and errors == []


def test_a_discard_not_reached_yet_does_not_lose_the_event() -> None:
    text = 'foreach (t in $*) { @X = "y" }\ndiscard\n'
    ctx, _, over = ctx_with(deadline=1.0)
    fields = compile_rules(text, source="d.rules").run({"A": "1", "B": "2"}, ctx)
    assert fields is not None and OVER_BUDGET_FIELD in fields and len(over) == 1


def test_the_budget_is_not_a_statement_error() -> None:
    # A statement that can fail sits in try/except Exception: the budget must pass it.
    text = 'foreach (t in $*) { @X = int($A) / int($B) }\n@Y = "after"\n'
    ctx, errors, over = ctx_with(deadline=2.0)
    fields = compile_rules(text, source="s.rules").run({"A": "4", "B": "2", "C": "x"}, ctx)
    assert fields is not None and "Y" not in fields and len(over) == 1 and errors == []


def test_nested_loops_stop_at_the_inner_check() -> None:
    text = """\
array a;
$n = split($Message, a, " ")
foreach (i in a) {
    foreach (j in a) {
        @Pairs = @Pairs + a[i] + a[j]
    }
}
"""
    ctx, _, over = ctx_with(deadline=50.0)
    fields = compile_rules(text, source="n.rules").run({"Message": " ".join("x" * 500)}, ctx)
    assert fields is not None and fields[OVER_BUDGET_FIELD] == "n.rules:4:5"
    assert ctx.clock.now < 60  # type: ignore[attr-defined]  # stopped promptly


def test_regreplace_match_loop_checks_the_budget() -> None:
    # "a(.*b)?" runs on RE2's loop (Python's re only takes proven-linear patterns).
    text = '@Out = regreplace($Message, "a(.*b)?", "b")\n@After = "x"\n'
    ctx, _, over = ctx_with(deadline=3.0)
    fields = compile_rules(text, source="r.rules").run({"Message": "a" * 10_000}, ctx)
    assert fields is not None and fields[OVER_BUDGET_FIELD] == "r.rules:1:8"
    assert "Out" not in fields and len(over) == 1
    assert ctx.clock.now <= 4  # type: ignore[attr-defined]  # one read per CHECK_EVERY matches


def test_regreplace_scanning_far_past_each_match_is_stopped_by_the_clock() -> None:
    # a(.*b)? on a line of "a": every search scans to the end, quadratic in all.
    regex = Regex("a(.*b)?")
    reads = []

    def check() -> None:
        reads.append(1)
        if len(reads) > 2:
            raise TimeoutError

    with pytest.raises(TimeoutError):
        regex.sub("a" * 65_536, "x", check=check)
    assert len(reads) == 3  # after 3 * CHECK_EVERY of 65,536 matches
    assert CHECK_EVERY * 3 < 65_536


def test_doubling_concatenation_fails_the_statement_at_the_cap(rec) -> None:
    text = """\
array l;
$n = split("a b c d e f g h i j k l m n o p q r s t u v w x y z", l, " ")
$s = $Message
foreach (i in l) {
    $s = $s + $s
}
@Len = length($s)
"""
    ctx = rec.ctx()
    fields = compile_rules(text, source="c.rules").run({"Message": "x" * 100}, ctx)
    assert fields is not None
    assert MAX_VALUE // 2 < int(fields["Len"]) <= MAX_VALUE  # type: ignore[call-overload]
    assert rec.errors and "longer than the" in rec.errors[0].message
    assert (rec.errors[0].line, rec.errors[0].col) == (5, 5)


def test_regreplace_result_is_capped() -> None:
    with pytest.raises(ResultTooLong):
        Regex("a").sub("a" * 1000, "b" * 2000, limit=MAX_VALUE)
    assert Regex("a").sub("a" * 10, "bb", limit=MAX_VALUE) == "b" * 20


def test_squaring_integers_fail_outside_64_bits(rec) -> None:
    text = """\
array l;
$n = split("a b c d e f g h i j k l m n o p q r s t", l, " ")
$x = 3
foreach (i in l) {
    $x = $x * $x
}
@X = $x
"""
    fields = compile_rules(text, source="m.rules").run({}, rec.ctx())
    assert fields is not None and int(fields["X"]) == 3**32  # type: ignore[call-overload]
    assert rec.errors and "integer overflow" in rec.errors[0].message


def test_hostile_rules_on_hostile_lines_stop_at_the_first_check_past_the_deadline() -> None:
    """The shapes the issue reported; without the budget these runs take minutes."""
    text = """\
array l;
if (regmatch($Message, "^(\\w+\\s?)*$")) { @A = "words" }
@B = regreplace($Message, "a(.*b)?", "x")
$n = split($Message, l, "a")
foreach (i in l) { foreach (j in l) { @C = nvp_add(@C, "k", l[j]) } }
"""
    program = compile_rules(text, source="h.rules")
    for line in ("a" * 26 + "!", "a" * 65_536, "a=" * 30_000):
        clock = Ticks()
        ctx, _, over = ctx_with(deadline=50.0, clock=clock)
        fields = program.run({"Message": line}, ctx)
        assert fields is not None
        if len(line) > 1_000:  # (the 27-byte line is within budget)
            assert fields[OVER_BUDGET_FIELD].startswith("h.rules:")  # type: ignore[union-attr]
            assert clock.now == 51.0 and len(over) == 1
