"""A forged-heartbeat flooder: ``python -m tests.e2e.hbflooder HOST PORT SECONDS [SPOOF_PORT]``.

Sends the same well-formed heartbeat, signed with a wrong secret and carrying a fresh
boot id (so only the MAC can refuse it: the dearest datagram to reject), in a tight
``sendto`` loop for SECONDS, then prints ``SENT <count> <seconds>``. With SPOOF_PORT
(root only, IPv4) it writes raw IP packets whose source is HOST:SPOOF_PORT, i.e. the
flood claims to come from the peer itself. Loopback only: HOST must be 127.x.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

from probepair.failover.wire import Flag, Heartbeat, Role, encode, make_boot_id


def forged() -> bytes:
    hb = Heartbeat(0xDEAD, make_boot_id(time.time() + 3600, os.urandom(4)), 99, 1,
                   Role.MASTER, Flag.CONFIGURED_MASTER, 0.2, bytes(4))
    return encode(hb, b"not the secret")


def raw_packet(host: str, src_port: int, dst_port: int, payload: bytes) -> bytes:
    addr = socket.inet_aton(host)
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    # IP checksum and id are filled in by the kernel for IP_HDRINCL sockets.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP,
                     0, addr, addr)
    return ip + udp


def main(argv: list[str]) -> int:
    host, port, seconds = argv[0], int(argv[1]), float(argv[2])
    if not host.startswith("127."):
        raise SystemExit("loopback only")
    data = forged()
    if len(argv) > 3:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        data = raw_packet(host, int(argv[3]), port, data)
        target: tuple[str, int] = (host, 0)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = (host, port)
    sock.setblocking(False)
    send = sock.sendto
    sent = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        for _ in range(1000):
            try:
                send(data, target)
                sent += 1
            except BlockingIOError:
                pass
            except ConnectionRefusedError:
                pass
        if time.monotonic() >= end:
            break
    print(f"SENT {sent} {time.monotonic() - start:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
