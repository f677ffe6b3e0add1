"""FeedFormat omnibus: the elements of IBM's syslog probes (pipeline/omnibus.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.events import Event
from probepair.pipeline.omnibus import MAX_TOKENS, OmnibusOptions, OmnibusTokeniser

# 2026-12-07 12:00:00 UTC: the arrival of most events here.
ARRIVAL = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC).timestamp()
SSHD = b"<38>Nov 22 10:00:00 myhost sshd[123]: Failed password for root from 10.1.2.3 port 22 ssh2"


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def tokens_of(
    raw: bytes,
    received: float = ARRIVAL,
    source: tuple[str, int] | None = None,
    **options: object,
) -> dict[str, str]:
    return OmnibusTokeniser(OmnibusOptions(**options)).tokens(  # type: ignore[arg-type]
        Event(raw, b"k" * 8, received, source=source)
    )


def test_the_issue_sshd_line_gives_the_syslogd_probes_elements() -> None:
    tokens = tokens_of(SSHD, source=("10.9.8.7", 40514))
    assert tokens == {
        "Raw": SSHD.decode(),
        "EventCount": "1",
        "ArrivalTime": str(int(ARRIVAL)),
        "RemoteHostInfo": "10.9.8.7",
        "PeerAddress": "10.9.8.7",
        "PeerPort": "40514",
        "Priority": "38",
        "Facility": "auth",
        "Severity": "6",
        "Token1": "Nov", "Token2": "22", "Token3": "10:00:00", "Token4": "myhost",
        "Token5": "sshd[123]:", "Token6": "Failed", "Token7": "password", "Token8": "for",
        "Token9": "root", "Token10": "from", "Token11": "10.1.2.3", "Token12": "port",
        "Token13": "22", "Token14": "ssh2",
        "TokenCount": "14",
        "Details": "Failed password for root from 10.1.2.3 port 22 ssh2",
        "Time": str(utc(2026, 11, 22, 10, 0, 0)),
    }


def test_a_log_file_line_without_pri_is_read_as_the_syslog_probe_does() -> None:
    tokens = tokens_of(b"Nov  2 03:04:05 web1 CRON[991]: (root) CMD (run-parts /etc/cron.hourly)")
    assert not {"Priority", "Facility", "Severity", "RemoteHostInfo"} & tokens.keys()
    assert tokens["Token2"] == "2" and tokens["Token4"] == "web1"
    assert tokens["Details"] == "(root) CMD (run-parts /etc/cron.hourly)"
    assert tokens["Time"] == str(utc(2026, 11, 2, 3, 4, 5))


def test_break_characters_end_tokens_and_make_no_empty_ones() -> None:
    raw = b"<13>Jan  5 01:02:03 h app: user=bob, id=7,,x"
    tokens = tokens_of(raw)
    assert [tokens[f"Token{i}"] for i in range(6, 11)] == ["user", "bob", "id", "7", "x"]
    assert tokens["TokenCount"] == "10"
    assert tokens_of(raw, break_characters="")["Token6"] == "user=bob,"


def test_offsets_decide_tokens_and_details() -> None:
    assert tokens_of(SSHD, offset_one=3)["TokenCount"] == "3"
    assert "Token4" not in tokens_of(SSHD, offset_one=3)
    # Details does not depend on how many tokens are kept.
    assert tokens_of(SSHD, offset_one=3)["Details"].startswith("Failed password")
    assert tokens_of(SSHD, offset_two=5)["Details"].startswith("sshd[123]: Failed")
    assert tokens_of(SSHD, offset_two=40)["Details"] == ""
    skipped = tokens_of(b"<38>XX Nov 22 10:00:00 h p: m", offset_zero=3)
    assert skipped["Token1"] == "Nov" and skipped["Details"] == "m"
    assert skipped["Time"] == str(utc(2026, 11, 22, 10, 0, 0))


def test_time_takes_the_year_nearest_the_arrival() -> None:
    january = utc(2027, 1, 1, 0, 5, 0)
    # A December line read just after New Year belongs to the year before.
    assert tokens_of(b"Dec 31 23:59:58 h p: m", received=january)["Time"] == str(
        utc(2026, 12, 31, 23, 59, 58)
    )
    # A January line from a sender whose clock runs ahead, read on Dec 31: the next year.
    assert tokens_of(b"Jan  1 00:00:05 h p: m", received=utc(2026, 12, 31, 23, 59, 0))[
        "Time"
    ] == str(utc(2027, 1, 1, 0, 0, 5))


@pytest.mark.parametrize(
    "raw",
    [b"<13>no time here at all", b"Feb 30 10:00:00 h p: m", b"Nov 22 25:00:00 h p: m", b""],
)
def test_a_time_that_does_not_read_is_the_arrival(raw: bytes) -> None:
    assert tokens_of(raw)["Time"] == str(int(ARRIVAL))


def test_time_format_is_strptime() -> None:
    raw = b"2026-03-04T05:06:07 host app: m"
    tokens = tokens_of(raw, time_format="%Y-%m-%dT%H:%M:%S", offset_two=4)
    assert tokens["Time"] == str(utc(2026, 3, 4, 5, 6, 7))
    assert tokens["Details"] == "m"
    # A format without a year, other than the default: still the nearest year; Feb 29 too.
    leap = tokens_of(b"29/02 10:00 h p: m", received=utc(2028, 3, 1), time_format="%d/%m %H:%M")
    assert leap["Time"] == str(utc(2028, 2, 29, 10, 0))


def test_event_count_counts_per_tokeniser() -> None:
    tokeniser = OmnibusTokeniser()
    counts = [tokeniser.tokens(Event(SSHD, b"k" * 8, ARRIVAL))["EventCount"] for _ in range(3)]
    assert counts == ["1", "2", "3"]


def test_cost_is_bounded_by_the_tokens_it_looks_for() -> None:
    """A 1 MiB line of tokens: only the first OffsetOne/OffsetTwo are looked at."""
    raw = b"<13>Nov 22 10:00:00 h p: " + b"x " * (1 << 19)
    start = time.perf_counter()
    tokens = tokens_of(raw)
    assert time.perf_counter() - start < 0.05
    assert tokens["TokenCount"] == "20"
    assert len(tokens["Details"]) == len(raw) - len("<13>Nov 22 10:00:00 h p: ")
    huge = tokens_of(b"a " * 5000, offset_one=MAX_TOKENS)
    assert huge["TokenCount"] == str(MAX_TOKENS)


lines = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda head, body: head + body.encode(),
        st.sampled_from([b"<38>Nov 22 10:00:00 h sshd[1]: ", b"Nov  2 03:04:05 ", b"<999>", b"<"]),
        st.text(max_size=120),
    ),
)
options = st.builds(
    OmnibusOptions,
    offset_zero=st.integers(0, 30),
    offset_one=st.integers(0, 40),
    offset_two=st.integers(1, 40),
    break_characters=st.text(max_size=4),
    time_format=st.sampled_from(["%b %d %H:%M:%S", "%Y-%m-%d", "%H:%M", "%d %b"]),
)


@settings(max_examples=300, deadline=None)
@given(lines, options, st.floats(0, 4e9), st.none() | st.tuples(st.just("10.0.0.1"), st.just(514)))
def test_any_bytes_give_consistent_tokens(
    raw: bytes, opts: OmnibusOptions, received: float, source: tuple[str, int] | None
) -> None:
    tokens = OmnibusTokeniser(opts).tokens(Event(raw, b"k" * 8, received, source=source))
    line = raw.decode("utf-8", "replace")
    assert tokens["Raw"] == line
    assert all(isinstance(v, str) for v in tokens.values())
    names = [k for k in tokens if k.startswith("Token") and k != "TokenCount"]
    assert int(tokens["TokenCount"]) == len(names) <= opts.offset_one
    assert names == [f"Token{i}" for i in range(1, len(names) + 1)]
    assert line.endswith(tokens["Details"])
    for name in names:
        assert tokens[name] and not any(c.isspace() or c in opts.break_characters
                                        for c in tokens[name])
    int(tokens["Time"])
    assert ("RemoteHostInfo" in tokens) == (source is not None)
