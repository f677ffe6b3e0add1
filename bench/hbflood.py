"""The heartbeat port under a forged flood: reject cost per stage, and a real pair flooded.

1. Reject cost per datagram per stage (µs), in process: the driver's path for one
   datagram (``screen``, then ``decode`` + ``ReplayGuard.check`` only if it passes, and
   the count), for a forged datagram failing at each stage, best of 5 runs of 20,000.
2. A loopback pair (tests/e2e/test_heartbeat_flood.py: 0.2 s beats, 0.6 s bound,
   1,000 numbered events/s) whose standby is flooded for ``--seconds`` by ``--flooders``
   Python flooders from another port; with ``--spoof`` (root) the flood is raw IP
   packets claiming the master's own address and port, so it lands in the peer's queue
   and every datagram costs an HMAC. Prints the flood rate, what the standby counted,
   real heartbeats received vs expected, the largest heartbeat age its /metrics showed
   (polled every 50 ms), failovers and events lost.

    .venv/bin/python bench/hbflood.py [--seconds 10] [--flooders 1] [--spoof] [--no-pair]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probepair.errors import HeartbeatDecodeError
from probepair.metrics import Metrics
from probepair.failover.wire import Flag, Heartbeat, ReplayGuard, Role, decode, make_boot_id, screen
from tests.e2e.test_heartbeat_flood import flood
from tests.test_heartbeat_port import BOOT, SECRET, stage_datagrams

RUNS, NUMBER = 5, 20_000


def stage_costs() -> dict[str, float]:
    guard = ReplayGuard(make_boot_id(1_700_000_000, b"mine"))
    guard.check(Heartbeat(7, BOOT, 0, 10, Role.MASTER, Flag.NONE, 2.0, bytes(4)))
    counter = Metrics().heartbeats_rejected
    children = {}

    def one(data: bytes) -> None:  # what PeerDriver._receive_loop does, minus the log call
        reason = screen(data, SECRET, guard)
        if reason is None:
            try:
                guard.check(decode(data, SECRET))
            except HeartbeatDecodeError as exc:
                reason = exc.reason
        if reason is not None:
            child = children.get(reason)
            if child is None:
                child = children[reason] = counter.labels(reason=reason)
            child.inc()

    costs = {}
    for name, data in stage_datagrams(BOOT).items():
        best = min(timeit.repeat(lambda d=data: one(d), number=NUMBER, repeat=RUNS))
        costs[name.strip() + (" (ack)" if name.endswith(" ") else "")] = best / NUMBER * 1e6
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flooders", type=int, default=1)
    parser.add_argument("--spoof", action="store_true")
    parser.add_argument("--no-pair", action="store_true")
    args = parser.parse_args(argv)
    print("reject cost per datagram, by the stage that refuses it (µs):")
    for name, us in stage_costs().items():
        print(f"  {name:14s} {us:6.2f}")
    if args.no_pair:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        result = trio.run(lambda: flood(Path(tmp), seconds=args.seconds,
                                        flooders=args.flooders, spoof=args.spoof))
    kind = "spoofing the master's address+port" if args.spoof else "from another port"
    print(f"flood {kind}: {result}")
    print(f"  max heartbeat gap <= {result.max_age:.3f} s (age polled every 50 ms)")
    return 0 if result.failovers == 0 and result.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
