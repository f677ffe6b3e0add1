"""Syslog TCP framing (RFC 6587), sans-IO: feeds/framing.py's SyslogFramer.

- A connection is octet-counted when it starts ``<digits> ``, newline-framed otherwise.
- An octet-counted message is one payload, newlines and all; the payload is the message
  without the framing, so it keys like the same message newline-framed.
- Any chunking of the same bytes gives the same payloads and the same error.
- Any bytes give payloads or a FrameError, never another exception, within
  ``max_frame`` bytes held.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair import metrics
from probepair.events import KeyMaker, key_of
from probepair.feeds.framing import FRAME_ERROR_REASONS, FrameError, Framing, SyslogFramer
from probepair.feeds.lines import MAX_LINE, LineSplitter


def octets(*messages: bytes) -> bytes:
    """RFC 6587 §3.4.1 frames: MSG-LEN SP SYSLOG-MSG."""
    return b"".join(b"%d %s" % (len(m), m) for m in messages)


def frame_all(data: bytes, chunks: list[bytes] | None = None,
              max_frame: int = MAX_LINE) -> tuple[list[bytes], str | None]:
    """(payloads, error reason or None) of ``data`` fed as ``chunks`` (whole if None)."""
    framer = SyslogFramer(max_frame)
    got: list[bytes] = []
    try:
        for chunk in chunks if chunks is not None else [data]:
            got += framer.feed(chunk)
        got += framer.finish()
    except FrameError as exc:
        return got + exc.frames, exc.reason
    return got, None


# -- detection -------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "framing", "payloads"), [
    (octets(b"<34>1 2024-05-01T10:00:00Z fw1 - - - - hi"), Framing.OCTET_COUNTED,
     [b"<34>1 2024-05-01T10:00:00Z fw1 - - - - hi"]),
    (b"<13>Oct 11 22:14:15 web1 app: hi\n", Framing.NEWLINE, [b"<13>Oct 11 22:14:15 web1 app: hi"]),
    (b"2024-05-01 10:00 up\n", Framing.NEWLINE, [b"2024-05-01 10:00 up"]),  # digits, no space
    (b"0 is no MSG-LEN\n", Framing.NEWLINE, [b"0 is no MSG-LEN"]),  # MSG-LEN has no leading 0
    (b"12345678 digits past a 1 MiB MSG-LEN\n", Framing.NEWLINE,
     [b"12345678 digits past a 1 MiB MSG-LEN"]),
    (b"42", Framing.NEWLINE, [b"42"]),  # digits and the end: a short line
    (b"", Framing.UNDECIDED, []),
])
def test_the_first_bytes_decide_the_framing_of_the_connection(
        data: bytes, framing: Framing, payloads: list[bytes]) -> None:
    framer = SyslogFramer()
    got = framer.feed(data) + framer.finish()
    assert (framer.framing, got) == (framing, payloads)


def test_once_newline_framed_a_line_that_looks_like_a_frame_is_a_line() -> None:
    assert frame_all(b"<13>first\n5 hello\n") == ([b"<13>first", b"5 hello"], None)


def test_a_multiline_message_octet_counted_is_one_payload() -> None:
    trace = b"<11>1 - app1 java - - - Exception in main\n\tat A.b(A.java:1)\n\tat C.d(C.java:2)"
    assert frame_all(octets(trace, b"<14>next")) == ([trace, b"<14>next"], None)
    # ... and three when newline-framed (RFC 6587 §3.4.2 cannot tell).
    assert len(frame_all(trace + b"\n")[0]) == 3


def test_the_payload_is_the_message_without_the_framing() -> None:
    # Trailing CR/LF inside the count (a sender counting its newline) are not the message,
    # and LF/CR between frames are skipped.
    assert frame_all(octets(b"<13>a\n", b"<13>b\r\n") + b"\n" + octets(b"<13>c")) == (
        [b"<13>a", b"<13>b", b"<13>c"], None)
    assert frame_all(octets(b"\n", b"<13>d")) == ([b"<13>d"], None)  # empty: no record


def test_the_same_message_keys_alike_octet_counted_and_newline_framed() -> None:
    message = b"<13>Oct 11 22:14:15 web1 app[7]: disk full"
    (counted,), _ = frame_all(octets(message))
    (line,), _ = frame_all(message + b"\r\n")
    assert counted == line == message
    assert KeyMaker().key(counted, 0.0) == KeyMaker().key(line, 0.0) == key_of(message)


def test_line_splitter_and_the_newline_framing_give_the_same_records() -> None:
    data = b"a\r\n\nb c\nlast"
    splitter = LineSplitter(KeyMaker(), lambda: 0.0, lambda: 0.0)
    records = [ev.raw for ev in splitter.feed(data) + splitter.finish()]
    assert frame_all(data) == (records, None) == ([b"a", b"b c", b"last"], None)


# -- errors and bounds -----------------------------------------------------------------


@pytest.mark.parametrize(("data", "reason", "detail", "before"), [
    (octets(b"ok") + b"1048577 x", "too_big", "byte 10: a MSG-LEN of at least 1048577 "
     "exceeds the 1048576-byte limit", [b"ok"]),
    (b"1048577 x", "too_big", "byte 7: MSG-LEN 1048577 exceeds the 1048576-byte limit", []),
    (octets(b"ok") + b"99999999", "too_big", "byte 10: a MSG-LEN of at least 9999999 "
     "exceeds the 1048576-byte limit", [b"ok"]),
    (octets(b"ok") + b"<13>plain\n", "malformed",
     "byte 4: expected a MSG-LEN (digit 1-9), got b'<'", [b"ok"]),
    (octets(b"ok") + b"12x", "malformed", "byte 6: expected a digit or a space, got b'x'",
     [b"ok"]),
    (octets(b"ok") + b"05 hello", "malformed",
     "byte 4: expected a MSG-LEN (digit 1-9), got b'0'", [b"ok"]),
    (octets(b"ok") + b"10 cut", "truncated",
     "byte 10: end of stream inside a frame (7 of its bytes missing)", [b"ok"]),
    (octets(b"ok") + b"10", "truncated", "byte 6: end of stream inside a MSG-LEN", [b"ok"]),
])
def test_framing_errors_name_the_reason_and_the_byte(
        data: bytes, reason: str, detail: str, before: list[bytes]) -> None:
    framer = SyslogFramer()
    got: list[bytes] = []
    with pytest.raises(FrameError, match=f"^{re.escape(detail)}$") as info:
        got += framer.feed(data)
        got += framer.finish()
    assert (info.value.reason, got + info.value.frames) == (reason, before)
    with pytest.raises(FrameError):  # the connection cannot go on
        framer.feed(b"5 hello")


def test_an_oversized_msg_len_is_refused_before_its_payload_is_read() -> None:
    framer = SyslogFramer(max_frame=100)
    assert framer.feed(b"100 ") == [] and framer.pending == 0
    assert framer.feed(b"x" * 100) == [b"x" * 100]
    with pytest.raises(FrameError, match=r"^byte 106: a MSG-LEN of at least 101 exceeds the "
                                         r"100-byte limit$"):
        framer.feed(b"101 ")


def test_a_newline_framed_line_past_the_limit_is_cut_not_refused() -> None:
    assert frame_all(b"<1>" + b"y" * 20 + b"\n", max_frame=10) == (
        [b"<1>yyyyyyy", b"yyyyyyyyyy", b"yyy"], None)


def test_the_reasons_are_the_metric_labels() -> None:
    assert FRAME_ERROR_REASONS == metrics.FRAME_REJECT_REASONS


# -- properties ------------------------------------------------------------------------

messages = st.binary(min_size=1, max_size=40).filter(lambda m: m.rstrip(b"\r\n\x00"))


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.lists(messages, max_size=8), st.lists(st.integers(0, 10**6), max_size=20))
def test_octet_counted_frames_come_out_whole_at_every_chunking(
        msgs: list[bytes], cuts: list[int]) -> None:
    data = octets(*msgs)
    expected = [m.rstrip(b"\r\n\x00") for m in msgs]
    assert frame_all(data, chunked(data, cuts)) == (expected, None)


@given(st.lists(messages, max_size=8), st.integers(0, 400))
def test_one_byte_at_a_time_equals_all_at_once(msgs: list[bytes], cut: int) -> None:
    data = octets(*msgs)
    data = data[: cut % (len(data) + 1)]  # perhaps cut inside a frame: truncated
    assert frame_all(data, [data[i:i + 1] for i in range(len(data))]) == frame_all(data)


alphabet = st.sampled_from([b"0", b"1", b"2", b"9", b" ", b"\n", b"\r", b"<", b"a"])
streams = st.lists(alphabet, max_size=200).map(b"".join)


@settings(max_examples=1000)
@given(streams | st.binary(max_size=200), st.lists(st.integers(0, 10**6), max_size=20),
       st.sampled_from([1, 5, 64, MAX_LINE]))
def test_any_bytes_frame_or_raise_frame_error_alike_at_every_chunking(
        data: bytes, cuts: list[int], max_frame: int) -> None:
    whole = frame_all(data, max_frame=max_frame)  # raises nothing but FrameError
    assert frame_all(data, chunked(data, cuts), max_frame) == whole
    assert whole[1] in (None, *FRAME_ERROR_REASONS)


@settings(max_examples=300)
@given(streams, st.lists(st.integers(0, 10**6), max_size=20), st.sampled_from([1, 8, 64]))
def test_memory_held_is_bounded_by_the_limit(data: bytes, cuts: list[int],
                                             max_frame: int) -> None:
    framer = SyslogFramer(max_frame)
    for chunk in chunked(data, cuts):
        try:
            framer.feed(chunk)
        except FrameError:
            return
        # Octet counting: a frame (<= max_frame) and its MSG-LEN digits; newline framing
        # may hold the digits read while deciding beside the pending line.
        assert framer.pending <= max_frame + 2 * len(str(max_frame))


def test_a_mib_frame_in_small_segments_costs_linear_time() -> None:
    payload = b"<13>" + b"z" * (MAX_LINE - 4)
    data = octets(payload)
    framer = SyslogFramer()
    got = [p for i in range(0, len(data), 64) for p in framer.feed(data[i:i + 64])]
    assert got == [payload]
