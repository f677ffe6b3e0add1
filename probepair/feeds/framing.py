"""Syslog over TCP: RFC 6587 octet counting or newline framing, decided per connection.

PURE (sans-IO, h11's shape): bytes in, message payloads out; no trio, sockets or clocks
(an import-linter contract in pyproject keeps it so). ``feeds/tcp.py`` is the shell.

Firewalls, appliances, rsyslog (``TCP_Framing="octet-counted"``), syslog-ng and ``logger
--octet-count`` send RFC 6587 §3.4.1 frames, ``MSG-LEN SP SYSLOG-MSG``, often over TLS
(RFC 5425 §4.3 uses the same framing). A message may hold newlines (a stack trace): with
newline framing (§3.4.2) it breaks into several events, with octet counting it is one.

Detection, as rsyslog's imtcp does it at the start of a frame, but once per connection
(a sender does not switch framings on one connection, and a plain line that starts with
a number is then never mistaken for a frame): a connection whose first byte is a digit
1-9, then digits, then a space, is octet-counted; anything else is newline-framed, and
the bytes read while deciding are the start of its first line (``2024-05-01 ...``).
Only a first line of the exact form ``<digits> <text>`` is taken for a frame; a syslog
message starts with ``<``, so that concerns the ``line`` format only.

The payload is the message, not the framing. Newline framing: the line without its LF
and trailing CRs and NULs; octet counting: the MSG-LEN bytes without trailing CRs, LFs
and NULs (some senders count a trailing newline); a UDP datagram: the same
(``lines.TRAILER``). Either way the event key is computed over that payload, so the
same message gets the same key on both probes of a pair however each of them was sent
it (one octet-counted, one newline-framed, one by UDP), as long as the message has no
newline inside. Empty payloads are no records. LF and CR between two octet-counted
frames are skipped (a sender that ends each frame with a newline).

Bounds: at most ``max_frame`` bytes (``lines.MAX_LINE``, 1 MiB) are held per
connection, plus the chunk being fed. A MSG-LEN above ``max_frame`` is ``too_big`` as
soon as its digits say so (the payload is never read); bytes that are not a MSG-LEN
where one is due are ``malformed``; a frame cut off by the end of the stream is
``truncated`` (dropped, as rsyslog drops it: it is not a message). Each is a
``FrameError``: octet counting gives no way to find the next frame, so the caller
closes that connection; the frames completed before the error come with it. Newline
framing has no errors: a line longer than ``max_frame`` is cut into records of that size.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

from probepair.feeds.lines import MAX_LINE, TRAILER, NewlineFramer

FrameErrorReason = Literal["too_big", "malformed", "truncated"]
FRAME_ERROR_REASONS: Final[tuple[FrameErrorReason, ...]] = ("too_big", "malformed", "truncated")
_DIGITS: Final = frozenset(b"0123456789")
_NONZERO: Final = frozenset(b"123456789")
_BETWEEN: Final = frozenset(b"\r\n")  # skipped between octet-counted frames


class Framing(enum.Enum):
    """How a connection's messages are delimited."""

    UNDECIDED = "undecided"  # no byte read yet, or only the digits of a possible MSG-LEN
    OCTET_COUNTED = "octet-counted"  # RFC 6587 §3.4.1
    NEWLINE = "newline"  # RFC 6587 §3.4.2 (non-transparent framing, LF trailer)


class FrameError(Exception):
    """The stream broke the framing; the connection cannot go on.

    Attributes:
        reason: ``too_big``, ``malformed`` or ``truncated`` (``FRAME_ERROR_REASONS``).
        offset: the stream offset (from 0) of the byte that showed the error.
        frames: the payloads completed by the same ``feed`` call before the error.
    """

    def __init__(self, reason: FrameErrorReason, offset: int, detail: str,
                 frames: list[bytes] | None = None) -> None:
        self.reason: FrameErrorReason = reason
        self.offset = offset
        self.detail = detail
        self.frames: list[bytes] = frames if frames is not None else []
        super().__init__(f"byte {offset}: {detail}")


class SyslogFramer:
    """Frames one connection's byte stream (see the module docstring).

    Feeding any bytes in any chunking gives the same payloads and, if the stream is
    bad, the same ``FrameError``; after an error every call raises it again.
    """

    def __init__(self, max_frame: int = MAX_LINE) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, got {max_frame!r}")
        self.framing = Framing.UNDECIDED
        self._max = max_frame
        self._max_digits = len(str(max_frame))
        self._lines = NewlineFramer(max_frame)
        self._offset = 0  # stream offset of the next byte to look at
        self._header = bytearray()  # MSG-LEN digits read so far (or the first bytes)
        self._remaining = 0  # payload bytes still due for the current frame; 0 = none
        self._parts: list[bytes] = []  # payload bytes of the current frame so far
        self._error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes held for frames not complete yet (bounded by ``max_frame`` + digits)."""
        return len(self._header) + sum(map(len, self._parts)) + self._lines.pending

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads completed by ``chunk``, in order.

        Raises:
            FrameError: the stream is not framed as detected (``frames`` holds the
                payloads this chunk completed before the error).
        """
        if self._error is not None:
            raise self._error
        if self.framing is Framing.NEWLINE:
            self._offset += len(chunk)
            return self._lines.feed(chunk)
        frames: list[bytes] = []
        try:
            self._feed_octets(chunk, frames)
        except FrameError as exc:
            exc.frames = frames
            self._error = exc
            raise
        return frames

    def finish(self) -> list[bytes]:
        """The last payload at end of stream: an unterminated line (newline framing).

        Raises:
            FrameError: ``truncated``, an octet-counted frame was cut off.
        """
        if self._error is not None:
            raise self._error
        if self.framing is Framing.UNDECIDED and self._header:
            # Digits and then the end: a (short) line, never a frame.
            self._newline(b"")
        if self.framing is Framing.NEWLINE:
            return self._lines.finish()
        if self._header or self._remaining:
            self._error = FrameError(
                "truncated", self._offset,
                f"end of stream inside a frame ({self._remaining} of its bytes missing)"
                if self._remaining else "end of stream inside a MSG-LEN")
            raise self._error
        return []

    # -- octet counting --------------------------------------------------------------

    def _feed_octets(self, chunk: bytes, frames: list[bytes]) -> None:
        pos, end = 0, len(chunk)
        while pos < end:
            if self._remaining:
                take = min(self._remaining, end - pos)
                self._parts.append(chunk[pos:pos + take])
                pos += take
                self._offset += take
                self._remaining -= take
                if not self._remaining:
                    payload = b"".join(self._parts).rstrip(TRAILER)
                    self._parts = []
                    if payload:
                        frames.append(payload)
                continue
            byte = chunk[pos]
            if self.framing is Framing.UNDECIDED:
                if self._header and byte == 0x20:  # digits and a space: octet counting
                    self.framing = Framing.OCTET_COUNTED
                elif byte in (_DIGITS if self._header else _NONZERO) and (
                        len(self._header) < self._max_digits):
                    self._header.append(byte)
                    pos += 1
                    self._offset += 1
                    continue
                else:
                    frames.extend(self._newline(chunk[pos:]))
                    return
            if not self._header and byte in _BETWEEN:
                pos += 1
                self._offset += 1
                continue
            if byte == 0x20 and self._header:
                size = int(self._header)
                if size > self._max:
                    raise FrameError("too_big", self._offset,
                                     f"MSG-LEN {size} exceeds the {self._max}-byte limit")
                self._header.clear()
                self._remaining = size
                pos += 1
                self._offset += 1
                continue
            if byte not in (_DIGITS if self._header else _NONZERO):
                want = "a digit or a space" if self._header else "a MSG-LEN (digit 1-9)"
                raise FrameError("malformed", self._offset,
                                 f"expected {want}, got {bytes((byte,))!r}")
            self._header.append(byte)
            if int(self._header) > self._max:
                raise FrameError("too_big", self._offset,
                                 f"a MSG-LEN of at least {self._header.decode()} exceeds "
                                 f"the {self._max}-byte limit")
            pos += 1
            self._offset += 1

    def _newline(self, rest: bytes) -> list[bytes]:
        """Decide newline framing; the digits read so far begin the first line."""
        self.framing = Framing.NEWLINE
        start = bytes(self._header)
        self._header.clear()
        self._offset += len(rest)
        return self._lines.feed(start + rest) if start or rest else []
