"""scanformat, LDML dates, bitwise helpers: exact cases and properties over any input."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.rules import arith as ar
from probepair.rules import dates, failures
from probepair.rules import functions as fn


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("fmt", "text", "values"),
    [
        ("%s is %d years", "jim is 34 years", ["jim", 34]),
        ("%s is %d years", "jim was 34", ["jim"]),
        ("%d%%", "50%", [50]),
        ("a=%f b=%s", "a=-1.5e2 b=x y", [-150.0, "x"]),
        ("%s,%d", "eth0,3", ["eth0,3"]),  # %s reads a word, as sscanf
        ("%s", "", []),
        ("no conversion", "no conversion", []),
    ],
)
def test_scanformat(fmt: str, text: str, values: list[object]) -> None:
    regex, kinds = fn.scan_pattern(fmt)
    assert fn.scanformat(regex, kinds, text) == values


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.text(max_size=40))
def test_scanformat_reads_or_refuses_any_format_and_text(fmt: str, text: str) -> None:
    try:
        regex, kinds = fn.scan_pattern(fmt)
    except ValueError:
        return
    values = fn.scanformat(regex, kinds, text)
    assert len(values) <= len(kinds)


@pytest.mark.parametrize(
    ("pattern", "text", "seconds"),
    [
        ("EEE MMM dd HH:mm:ss ZZZZ yyyy", "Tue Dec 19 18:33:11 GMT+00:00 2000", 977250791),
        ("EEE MMM dd HH:mm:ss yyyy ZZZ", "Sun Jan 15 08:30:00 2006 +0500", 1137295800),
        ("d/M/yyyy H:m:s", "19/12/2000 18:33:11", 977250791),
        ("yyyy-MM-dd:hh:mma", "2009-03-28:02:00PM", 1238248800),
        ("MMMM d, yy", "december 19, 00", 977184000),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSX", "2000-12-19T18:33:11.250Z", 977250791),
        ("HH:mm", "18:33", 66780),  # no year: 1970, as ICU
    ],
)
def test_ldml_reads(pattern: str, text: str, seconds: int) -> None:
    assert dates.parse_ldml(text, pattern) == seconds


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("HH:mm:ss, MM/dd/yy", "18:33:11, 12/19/00"),
        ("EEE MMM d HH:mm:ss yyyy", "Tue Dec 19 18:33:11 2000"),
        ("EEEE, MMMM d 'at' h:mm a z", "Tuesday, December 19 at 6:33 PM UTC"),
        ("yyyy-MM-dd'T'HH:mm:ssXXX ZZZZ", "2000-12-19T18:33:11Z GMT+00:00"),
        ("''yy''", "'00'"),
    ],
)
def test_ldml_writes(pattern: str, text: str) -> None:
    assert dates.format_ldml(977250791, pattern) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4_000_000_000))
def test_ldml_round_trip(seconds: int) -> None:
    pattern = "yyyy-MM-dd HH:mm:ss Z"
    assert dates.parse_ldml(dates.format_ldml(seconds, pattern), pattern) == seconds


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.text(alphabet="yMdHhmsSaEzZX '-:/.q", max_size=12))
def test_dates_fail_only_with_a_rules_failure(text: str, pattern: str) -> None:
    for call in (
        lambda: fn.datetotime(text, pattern),
        lambda: fn.timetodate(text, pattern),
        lambda: fn.date(text),
    ):
        try:
            call()
        except failures.Fail:
            pass


@pytest.mark.parametrize(
    ("fn_", "args", "result"),
    [
        (ar.band, (12, "10"), 8),
        (ar.bor, (1, 2.9), 3),
        (ar.bxor, (-1, 1), -2),
        (ar.bnot, (5,), -6),
        (ar.shl, (1, 62), 1 << 62),
        (ar.shl, (3, 63), -(1 << 63)),
        (ar.shr, (-8, 1), -4),
        (ar.shr, (1, 1000), 0),
    ],
)
def test_bitwise(fn_: object, args: tuple[object, ...], result: int) -> None:
    assert fn_(*args) == result  # type: ignore[operator]


def test_bitwise_errors() -> None:
    with pytest.raises(failures.Fail, match="negative shift count"):
        ar.shl(1, -1)
    with pytest.raises(failures.Fail, match="expected a number, found 'x'"):
        ar.band("x", 1)


def test_printable_and_nvp_remove() -> None:
    assert fn.printable("a\x00b\x1bc\x7fd\x85é") == "a b c d é"
    assert fn.nvp_remove('a="1";b="x;y";c="3"', ("b", "z")) == 'a="1";c="3"'


def test_a_date_pattern_reads_hostile_text_on_the_linear_engine() -> None:
    # On Python's re, the reader of "d ' ' M" was quadratic in a run of blanks (2.2 s
    # for 16 KB), and both probes read the same event: every reader is RE2 now.
    from probepair.rules.dates import DATE_FORMS, _reader, parse_ldml

    for pattern in (*DATE_FORMS, "d ' ' M", "yyyyMMddHHmmssSSS"):
        assert _reader(pattern)[0].backtracking is False, pattern
    for text, pattern in (("1" + " " * 65536 + "x", "d ' ' M"),
                          ("1" * 65536 + "x", "yyyyMMddHHmmssSSS")):
        with pytest.raises(ValueError, match="does not match"):
            parse_ldml(text, pattern)
    # Punctuation in a pattern is literal (escaped for RE2), matched case-insensitively.
    assert parse_ldml("7.12.2026 [x]", "d.M.yyyy '[x]'") == parse_ldml("2026-12-07", "yyyy-MM-dd")
    assert parse_ldml("7 DEC", "d MMM") == parse_ldml("7 Dec", "d MMM")
