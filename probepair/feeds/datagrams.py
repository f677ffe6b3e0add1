"""Reading datagrams with their senders, in batches: ``recvmmsg`` where there is one.

Every event of a network feed carries its sender (``Event.source``: ``$PeerAddress``,
``$PeerPort``), so the udp feed cannot use ``recv``. A ``recvfrom`` per datagram costs
~0.6 µs more than a ``recv`` (measured on the 2-core VM: 1.25 -> 1.9 µs, about 8% of a
whole event's cost in bench/throughput.py): it builds a new address string and tuple
for every datagram. Linux's ``recvmmsg(2)`` reads up to ``VLEN`` datagrams and their
addresses in one system call; the address of each is then 16 (IPv4) or 28 (IPv6) raw
bytes, looked up in a small cache of ``(host, port)`` tuples, so a sender's address is
formatted once, not per datagram. Python's ``socket`` module has no ``recvmmsg``; it is
called through ``ctypes`` (glibc). Where that is not available (another libc, no
``ctypes``), ``recvfrom`` does the same job, slower.

The buffers are one anonymous ``mmap`` of ``VLEN`` 64 KiB slots: pages the kernel never
writes are never allocated, so 200-byte datagrams keep ~one page per slot resident.

Addresses come back as the sender's ``(host, port)``; an IPv6 socket's IPv4 senders
(``::ffff:192.0.2.1``) as IPv4 (``192.0.2.1``), as the snmp feed shows them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import socket
import struct
from collections.abc import Callable
from typing import Final

from probepair.feeds.lines import TRAILER

RECV_SIZE: Final = 65535  # the largest UDP payload
VLEN: Final = 64  # datagrams per recvmmsg call: the call's ~2 µs spread over 64
_SLOT: Final = 65536  # bytes of buffer per datagram: the largest UDP payload fits
_NAME: Final = 32  # bytes of address space per datagram: a sockaddr_in6 is 28
_MAPPED: Final = "::ffff:"  # the prefix of an IPv4-mapped IPv6 address
_CACHE_LIMIT: Final = 4096  # addresses kept formatted; more (port scans) start it afresh

Source = tuple[str, int]
# (raws, sources, limit) -> True when the socket is empty: appends up to ``limit``.
ReadBatch = Callable[[list[bytes], list[Source], int], bool]


def host_of(address: str) -> str:
    """``address`` without the IPv4-mapped prefix (``::ffff:1.2.3.4`` is ``1.2.3.4``)."""
    return address[len(_MAPPED):] if address.startswith(_MAPPED) and "." in address else address


def source_of(peer: tuple[object, ...]) -> Source:
    """A socket's ``(host, port[, flow, scope])`` as ``(host, port)``, IPv4-mapped shown as IPv4."""
    return host_of(str(peer[0])), int(str(peer[1]))


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint32)]


def _libc_recvmmsg() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    return fn


_RECVMMSG: Final = _libc_recvmmsg()


class _Recvmmsg:
    """One socket's recvmmsg buffers and address cache."""

    def __init__(self, sock: socket.socket, call: Callable[..., int]) -> None:
        self._fd = sock.fileno()
        self._call = call
        self._data = mmap.mmap(-1, VLEN * _SLOT)
        self._names = mmap.mmap(-1, VLEN * _NAME)
        self._hdrs = (_Mmsghdr * VLEN)()
        self._iovs = (_Iovec * VLEN)()
        data = ctypes.addressof(ctypes.c_char.from_buffer(self._data))
        names = ctypes.addressof(ctypes.c_char.from_buffer(self._names))
        for i in range(VLEN):
            self._iovs[i].iov_base = data + i * _SLOT
            self._iovs[i].iov_len = _SLOT
            hdr = self._hdrs[i].msg_hdr
            hdr.msg_name = names + i * _NAME
            # Value-result: the kernel writes the sender's address length back. Every
            # sender of one socket has the same family, so it stays what it was set to
            # here (16 for IPv4, 28 for IPv6), and no call needs to reset it.
            hdr.msg_namelen = _NAME
            hdr.msg_iov = ctypes.addressof(self._iovs[i])
            hdr.msg_iovlen = 1
        self._hdrs_at = ctypes.addressof(self._hdrs)
        # msg_len of each mmsghdr as one strided view: one slice gives every length.
        size = ctypes.sizeof(_Mmsghdr)
        assert size % 4 == 0 and _Mmsghdr.msg_len.offset % 4 == 0
        self._lens = memoryview(self._hdrs).cast("B").cast("I")[
            _Mmsghdr.msg_len.offset // 4 :: size // 4
        ]
        self._namelen = 28 if sock.family == socket.AF_INET6 else 16
        self._cache: dict[bytes, Source] = {}

    def read(self, raws: list[bytes], sources: list[Source], limit: int) -> bool:
        call, fd, hdrs, data, names = self._call, self._fd, self._hdrs_at, self._data, self._names
        lens, cache, namelen = self._lens, self._cache, self._namelen
        append, add = raws.append, sources.append
        trailer = TRAILER
        while limit > 0:
            want = min(limit, VLEN)
            got = call(fd, hdrs, want, 0, None)
            if got < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return True
                if err == errno.EINTR:
                    continue
                return False  # an ICMP error surfacing on an unconnected socket
            for i, size in enumerate(lens[:got].tolist()):
                at = i * _SLOT
                append(data[at : at + size].rstrip(trailer))
                key = names[i * _NAME : i * _NAME + namelen]
                src = cache.get(key)
                if src is None:
                    src = self._remember(key)
                add(src)
            if got < want:
                return True  # a non-blocking recvmmsg stops where the queue ran dry
            limit -= got
        return False

    def _remember(self, key: bytes) -> Source:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        family = int.from_bytes(key[:2], "little" if _LITTLE else "big")
        port = struct.unpack_from("!H", key, 2)[0]
        if family == socket.AF_INET6:
            host = host_of(socket.inet_ntop(socket.AF_INET6, key[8:24]))
        else:
            host = socket.inet_ntop(socket.AF_INET, key[4:8])
        src = self._cache[key] = (host, port)
        return src


_LITTLE: Final = struct.pack("=H", 1) == b"\x01\x00"  # sa_family is host order


def reader(sock: socket.socket, *, batched: bool = True) -> ReadBatch:
    """The batch reader of the non-blocking datagram socket ``sock`` (``batched``:
    recvmmsg when the platform has it; False: recvfrom, the fallback, for tests).

    The reader appends up to ``limit`` payloads (trailing CR, LF and NUL stripped) to
    ``raws`` and their senders to ``sources``; it returns True when the socket is empty.
    """
    if batched and _RECVMMSG is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        return _Recvmmsg(sock, _RECVMMSG).read
    recvfrom = sock.recvfrom
    mapped = sock.family == socket.AF_INET6

    def read(raws: list[bytes], sources: list[Source], limit: int) -> bool:
        append, add = raws.append, sources.append
        try:
            for _ in range(limit):
                data, peer = recvfrom(RECV_SIZE)
                append(data.rstrip(TRAILER))
                add(source_of(peer) if mapped else peer)
        except BlockingIOError:
            return True
        except OSError:
            pass  # ICMP errors surfacing on an unconnected socket: nothing to read now
        return False

    return read
