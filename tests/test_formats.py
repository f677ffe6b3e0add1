"""Tokenisers: RFC 3164 / RFC 5424 syslog, json and line records to $tokens."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probepair.pipeline.tokenise import (
    FORMATS,
    tokenise,
    tokenise_json,
    tokenise_line,
    tokenise_syslog,
)

HEADER = ("Facility", "SyslogSeverity", "Timestamp", "Hostname", "Program", "ProcId", "Message")


def header(tokens: dict[str, str], *names: str) -> dict[str, str | None]:
    return {name: tokens.get(name) for name in names or HEADER}


def whitespace_tokens(line: str) -> dict[str, str]:
    return {f"Token{i}": word for i, word in enumerate(line.split(), 1)}


# --- RFC 3164 section 5.4 examples ---------------------------------------------------


def test_rfc3164_example_1() -> None:
    raw = b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"
    tokens = tokenise_syslog(raw)
    assert header(tokens, "Priority", *HEADER) == {
        "Priority": "34", "Facility": "auth", "SyslogSeverity": "2",
        "Timestamp": "Oct 11 22:14:15", "Hostname": "mymachine", "Program": "su",
        "ProcId": "", "Message": "'su root' failed for lonvick on /dev/pts/8",
    }
    assert tokens["Line"] == raw.decode()
    assert tokens["Token1"] == "Oct"  # the text after the PRI, as OMNIbus numbers them
    assert tokens["Token4"] == "mymachine"
    assert tokens["Token5"] == "su:"
    assert tokens["Token12"] == "/dev/pts/8"
    assert "Token13" not in tokens


def test_rfc3164_example_3_without_tag_colon() -> None:
    # RFC 3164 4.1.3: a non-alphanumeric character ends the TAG, so "Use" is the TAG.
    tokens = tokenise_syslog(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
    assert header(tokens) == {
        "Facility": "user", "SyslogSeverity": "5", "Timestamp": "Feb  5 17:32:18",
        "Hostname": "10.0.0.99", "Program": "Use", "ProcId": "", "Message": "the BFG!",
    }
    assert tokens["Token2"] == "5"


def test_rfc3164_example_4_unparsable_timestamp_keeps_pri() -> None:
    raw = (b"<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: "
           b"That's All Folks!")
    tokens = tokenise_syslog(raw)
    assert header(tokens) == {
        "Facility": "kern", "SyslogSeverity": "0", "Timestamp": None, "Hostname": None,
        "Program": None, "ProcId": None, "Message": raw.decode()[len("<0>"):],
    }


def test_rfc3164_with_pid_and_without_pri() -> None:
    tokens = tokenise_syslog(b"Oct  1 02:03:04 web1 sshd[4242]: Accepted publickey for root")
    assert "Priority" not in tokens
    assert header(tokens) == {
        "Facility": None, "SyslogSeverity": None, "Timestamp": "Oct  1 02:03:04",
        "Hostname": "web1", "Program": "sshd", "ProcId": "4242",
        "Message": "Accepted publickey for root",
    }


def test_rfc3164_without_hostname() -> None:
    tokens = tokenise_syslog(b"<86>Oct 11 22:14:15 su[1]: session opened")
    assert header(tokens, "Hostname", "Program", "ProcId", "Message") == {
        "Hostname": "", "Program": "su", "ProcId": "1", "Message": "session opened",
    }


# --- RFC 5424 section 6.5 examples ---------------------------------------------------


def test_rfc5424_example_1_with_bom() -> None:
    raw = (b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
           b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8")
    tokens = tokenise_syslog(raw)
    assert header(tokens, *HEADER, "MsgId", "StructuredData") == {
        "Facility": "auth", "SyslogSeverity": "2", "Timestamp": "2003-10-11T22:14:15.003Z",
        "Hostname": "mymachine.example.com", "Program": "su", "ProcId": "", "MsgId": "ID47",
        "StructuredData": "", "Message": "'su root' failed for lonvick on /dev/pts/8",
    }
    assert tokens["Line"] == raw.decode()
    assert tokens["Token1"] == "1"
    assert tokens["Token6"] == "ID47"


def test_rfc5424_example_2() -> None:
    raw = (b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
           b"%% It's time to make the do-nuts.")
    tokens = tokenise_syslog(raw)
    assert header(tokens, *HEADER, "MsgId") == {
        "Facility": "local4", "SyslogSeverity": "5",
        "Timestamp": "2003-08-24T05:14:15.000003-07:00", "Hostname": "192.0.2.1",
        "Program": "myproc", "ProcId": "8710", "MsgId": "",
        "Message": "%% It's time to make the do-nuts.",
    }


def test_rfc5424_example_4_structured_data_without_msg() -> None:
    sd = ('[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
          '[examplePriority@32473 class="high"]')
    raw = f"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {sd}"
    tokens = tokenise_syslog(raw.encode())
    assert header(tokens, *HEADER, "MsgId", "StructuredData") == {
        "Facility": "local4", "SyslogSeverity": "5", "Timestamp": "2003-10-11T22:14:15.003Z",
        "Hostname": "mymachine.example.com", "Program": "evntslog", "ProcId": "",
        "MsgId": "ID47", "StructuredData": sd, "Message": "",
    }


def test_rfc5424_escaped_bracket_in_structured_data() -> None:
    raw = rb'<14>1 - - - - - [x@1 a="b\]c"] hello'
    tokens = tokenise_syslog(raw)
    assert tokens["StructuredData"] == r'[x@1 a="b\]c"]'
    assert tokens["Message"] == "hello"
    # every "-" (NILVALUE) header field is empty, the timestamp too
    assert header(tokens, "Timestamp", "Hostname", "Program", "ProcId", "MsgId") == {
        "Timestamp": "", "Hostname": "", "Program": "", "ProcId": "", "MsgId": "",
    }


# --- tolerance -------------------------------------------------------------------------


def test_pri_only() -> None:
    tokens = tokenise_syslog(b"<191>something odd")
    assert header(tokens, "Facility", "SyslogSeverity", "Timestamp", "Message") == {
        "Facility": "local7", "SyslogSeverity": "7", "Timestamp": None,
        "Message": "something odd",
    }


def test_pri_beyond_the_facility_table() -> None:
    tokens = tokenise_syslog(b"<999>x")
    assert (tokens["Facility"], tokens["SyslogSeverity"], tokens["Message"]) == ("124", "7", "x")


@pytest.mark.parametrize(
    "raw", [b"Use the BFG!", b"", b"   ", b"<abc>not a pri", b"\xff\xfe binary \x00 junk",
            "<\u0661>Oct 11 22:14:15 h p: non-ASCII digits are no PRI".encode()]
)
def test_non_conforming_line_is_all_message(raw: bytes) -> None:
    line = raw.decode("utf-8", "replace")
    assert tokenise_syslog(raw) == {"Line": line, "Message": line, **whitespace_tokens(line)}


# --- Line and TokenN for every format -------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "raw", [b"a  b\tc", b"<13>Oct 11 22:14:15 h p: m", b'{"k": "v w"}', b"", b"one"]
)
def test_every_format_gives_line_and_tokens(fmt: str, raw: bytes) -> None:
    tokens = tokenise(fmt, raw)
    line = raw.decode()
    assert tokens["Line"] == line
    split = line.split(">", 1)[1] if fmt == "syslog" and line.startswith("<13>") else line
    assert {k: v for k, v in tokens.items() if k.startswith("Token")} == whitespace_tokens(split)


@given(st.integers(0, 999), st.text(max_size=40))
def test_syslog_tokens_split_the_text_after_the_pri(pri: int, rest: str) -> None:
    """Issue 23: ``$Token1`` of "<38>Nov 22 ..." is "Nov", not "<38>Nov"."""
    tokens = tokenise_syslog(f"<{pri}>{rest}".encode())
    line = rest.encode().decode()
    assert {k: v for k, v in tokens.items() if k.startswith("Token")} == whitespace_tokens(line)


def test_line_format() -> None:
    assert tokenise_line(b"disk  full on /var") == {
        "Line": "disk  full on /var", "Token1": "disk", "Token2": "full", "Token3": "on",
        "Token4": "/var",
    }


def test_tokens_stop_at_256() -> None:
    tokens = tokenise_line(" ".join(str(i) for i in range(300)).encode())
    assert tokens["Token256"] == "255"
    assert "Token257" not in tokens


def test_unknown_format() -> None:
    with pytest.raises(KeyError):
        tokenise("xml", b"<a/>")


# --- json --------------------------------------------------------------------------------


def test_json_keys_become_tokens() -> None:
    raw = b'{"Node": "web1", "Severity": 4, "Ratio": 0.5, "Up": true, "Down": false, ' \
          b'"Gone": null, "Nested": {"a": [1, 2]}}'
    tokens = tokenise_json(raw)
    assert tokens == {
        "Line": raw.decode(), **whitespace_tokens(raw.decode()),
        "Node": "web1", "Severity": "4", "Ratio": "0.5", "Up": "true", "Down": "false",
        "Gone": "", "Nested": '{"a":[1,2]}',
    }


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"{not json", b"\xff"])
def test_json_that_is_not_an_object_falls_back_to_line(raw: bytes) -> None:
    assert tokenise_json(raw) == tokenise_line(raw)


# --- hypothesis -----------------------------------------------------------------------


syslogish = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda pri, rest: b"<" + str(pri).encode() + b">" + rest,
        st.integers(0, 999), st.binary(max_size=100),
    ),
    st.builds(
        lambda head, rest: head + rest.encode(),
        st.sampled_from([b"<34>1 ", b"<34>Oct 11 22:14:15 ", b"Oct  1 02:03:04 h ", b"<1>1 - - "]),
        st.text(max_size=100),
    ),
)


@given(syslogish)
def test_tokenise_syslog_never_raises(raw: bytes) -> None:
    tokens = tokenise_syslog(raw)
    line = raw.decode("utf-8", "replace")
    assert tokens["Line"] == line
    assert isinstance(tokens["Message"], str)
    assert all(isinstance(v, str) for v in tokens.values())
    pri = re.match(r"<[0-9]{1,3}>", line)
    split = line if pri is None else line[pri.end() :]
    assert {k: v for k, v in tokens.items() if k.startswith("Token")} == whitespace_tokens(split)


@given(st.binary(max_size=200))
def test_tokenise_json_never_raises(raw: bytes) -> None:
    assert tokenise_json(raw)["Line"] == raw.decode("utf-8", "replace")


# The fast RFC 3164 pattern must give exactly the full pattern's groups where it matches.
rfc3164ish = st.builds(
    lambda head, rest: head + rest,
    st.sampled_from(["<34>Oct 11 22:14:15 ", "<7>Jan  1 00:00:00 h", "<191>Dec 31 23:59:59 "]),
    st.text(alphabet="ab1 :[]\t\xa0\u2003-\n", max_size=40),
)


@given(rfc3164ish)
def test_fast_rfc3164_pattern_agrees_with_the_full_one(line: str) -> None:
    from probepair.pipeline.tokenise import _FAST3164, _RFC3164

    fast = _FAST3164.match(line)
    if fast is not None:
        full = _RFC3164.match(line)
        assert full is not None
        assert fast.groups() == full.groups()


@pytest.mark.parametrize("line", [
    "<34>Oct 11 22:14:15 web1 su[12]: msg", "<34>Oct 11 22:14:15 web1 su: msg",
    "<34>Oct 11 22:14:15 web1 su[]: m", "<34>Oct  1 22:14:15 web1 kernel: [1.0] eth0 up",
])
def test_fast_rfc3164_pattern_covers_the_common_shape(line: str) -> None:
    from probepair.pipeline.tokenise import _FAST3164, _RFC3164

    fast = _FAST3164.match(line)
    assert fast is not None
    assert fast.groups() == _RFC3164.match(line).groups()  # type: ignore[union-attr]
