"""Memory of a probe pair: RSS per held event, and RSS under overload (issue 9).

Part 1, held events. A pair on loopback whose master beats once an hour (so the slave
stays standby) and never sees these events (so it never acks them); the slave's feed
gets the 4000 syslog lines of bench/throughput.py, cycled, until it holds 10k, 100k and
1M events. Prints the slave's RSS growth per held event beside the mean payload size
(probepair_buffer_bytes / probepair_buffer_depth). In-process, in fresh interpreters,
the same alerts held 100k at a time as the old standby did (OrderedDict of the bytes
orjson.dumps returned), as a dict per event, and in the StandbyBuffer.

Part 2, overload: a fresh pair per case, both feeds getting the same datagrams:
  flood    full speed from one C sender per feed (bench/udpflood.c), --flood datagrams;
  random   --random random datagrams (20 B - 60 KiB) at each feed and each heartbeat port;
  outage   the master's sink (tcp) is down for --outage seconds at --rate events/s, then
           comes back (the master replays its spool; the slave holds until BufferRetention).
For each probe: RSS at start, the peak, RSS settled after the burst (buffers drained),
RSS once BufferRetention more has passed (acked keys expired), and the drops by reason. Goal: peak < BufferBytes + 128 MiB, settled near the start.

    .venv/bin/python bench/memory.py [--parts held,inproc,flood,random,outage]
                                     [--outage 600] [--rate 20000]

Loopback only; needs gcc. Figures move ±20% with the load of the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from throughput import free_port, write_lines  # noqa: E402

MIB = 2**20
SECRET = secrets.token_hex(32)  # the pair refuses short or placeholder secrets


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@dataclass
class Probe:
    name: str
    proc: subprocess.Popen[bytes]
    feed: int
    heartbeat: int
    metrics_port: int
    peak: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def rss(self) -> int:
        value = rss(self.proc.pid)
        self.peak = max(self.peak, value)
        return value

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_port)

    def drops(self) -> str:
        m = self.metrics()
        parts = [f"kernel {m.get('probepair_feed_kernel_drops_total', 0):,.0f}"]
        for reason in ("buffer_full", "buffer_bytes", "retention", "rules"):
            n = m.get(f'probepair_events_discarded_total{{reason="{reason}"}}', 0)
            if n:
                parts.append(f"{reason} {n:,.0f}")
        return ", ".join(parts)


def start_pair(work: Path, common: list[str], master: list[str], slave: list[str]) -> list[Probe]:
    hb = [free_port(), free_port()]
    probes = []
    for i, (name, mode, extra) in enumerate((("m", "master", master), ("s", "slave", slave))):
        feed, metrics = free_port(), free_port()
        cmd = [sys.executable, "-m", "probepair", "run", "--mode", mode, "--name", name,
               "--peerhost", "127.0.0.1", "--peerport", str(hb[1 - i]),
               "--listenport", str(hb[i]), "--listenaddress", "127.0.0.1",
               "--feedport", str(feed), "--metricsport", str(metrics),
               "--sharedsecret", SECRET, "--sinkfile", str(work / f"{name}.jsonl"),
               "--saffilename", str(work / f"{name}.saf"),
               "--rulesfile", str(ROOT / "rules" / "syslog.rules"), *common, *extra]
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE,
                                stderr=open(work / f"{name}.log", "ab"))  # noqa: SIM115
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY"):
            raise SystemExit(f"probe {name} did not start: {(work / f'{name}.log').read_text()}")
        probes.append(Probe(name, proc, feed, hb[i], metrics))
    return probes


def stop(probes: list[Probe]) -> None:
    for p in probes:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    for p in probes:
        try:
            p.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.proc.kill()


@contextlib.contextmanager
def sampling(probes: list[Probe], interval: float = 0.1) -> Iterator[None]:
    """Sample every probe's RSS (for its peak) in a thread while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            for p in probes:
                with contextlib.suppress(OSError):
                    p.rss()
            done.wait(interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def flood(flood_bin: Path, ports: list[int], lines: Path, n: int, rate: float) -> float:
    """Send ``n`` datagrams from ``lines`` to each port (one sender each, in parallel);
    returns the slowest sender's rate."""
    procs = [subprocess.Popen([str(flood_bin), str(port), str(n), str(lines), str(rate)],
                              stdout=subprocess.PIPE, text=True) for port in ports]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        sent, seconds = out.split()
        rates.append(int(sent) / float(seconds))
    return min(rates)


def wait_steady(probe: Probe, series: str, quiet: float = 1.5, timeout: float = 120) -> float:
    """Poll ``series`` until it has not changed for ``quiet`` seconds; its value."""
    last, since, end = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe.metrics().get(series, 0.0)
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.2)
    return last or 0.0


# -- part 1: held events ------------------------------------------------------------------


def part_held(work: Path, flood_bin: Path, lines: Path) -> None:
    hold = ["--bufferretention", "3600", "--buffersize", "2000000",
            "--bufferbytes", str(4 * 2**30)]
    probes = start_pair(work, ["--beatinterval", "3600", "--storeandforward", "false"],
                        [], hold)
    slave = probes[1]
    try:
        time.sleep(2.0)
        base = slave.rss()
        print(f"\nheld events on a standby slave (RSS at start {base / MIB:.0f} MiB)")
        print(f"{'held':>10}{'payload B':>11}{'RSS MiB':>9}{'RSS/event B':>13}{'bound B':>9}")
        sent = 0
        for target in (10_000, 100_000, 1_000_000):
            flood(flood_bin, [slave.feed], lines, target - sent, 50_000)
            sent = target
            depth = wait_steady(slave, "probepair_buffer_depth")
            held_bytes = slave.metrics().get("probepair_buffer_bytes", 0)
            now = slave.rss()
            payload = held_bytes / depth if depth else 0
            per = (now - base) / depth if depth else 0
            print(f"{depth:>10,.0f}{payload:>11.0f}{now / MIB:>9.0f}{per:>13.0f}"
                  f"{2 * payload + 200:>9.0f}")
        print(f"  ({sent:,} sent; {slave.drops()})")
    finally:
        stop(probes)


INPROC = """
import sys, time, orjson
from collections import OrderedDict
sys.path.insert(0, {root!r})
from probepair.failover.buffer import StandbyBuffer
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
items = [(bytes.fromhex(k), p.encode()) for k, p in orjson.loads(open({path!r}, 'rb').read())]
layout = {layout!r}
base = rss()
if layout == 'orjson bytes, OrderedDict (before)':
    held = OrderedDict((k, (orjson.dumps(orjson.loads(p)), time.time())) for k, p in items)
elif layout == 'dict per event, OrderedDict':
    held = OrderedDict((k, (orjson.loads(p), time.time())) for k, p in items)
else:
    held = StandbyBuffer(2_000_000, 3600.0, 2**31)
    for k, p in items:
        held.hold(k, orjson.dumps(orjson.loads(p)), time.monotonic())
print((rss() - base) / len(items))
"""


def part_inproc(work: Path, lines: Path, n: int = 100_000) -> None:
    """The same alerts held in-process three ways, each in a fresh interpreter."""
    import orjson

    from probepair.config import props as props_mod
    from probepair.metrics import Metrics
    from probepair.pipeline.processor import AlwaysForward, Processor
    from probepair.rules import load_rules

    raw = lines.read_bytes().split(b"\n")[:-1]
    from probepair.events import Event, KeyMaker

    p = props_mod.load([("bench", {"RulesFile": str(ROOT / "rules" / "syslog.rules")})])
    proc = Processor(p, load_rules(p.RulesFile), AlwaysForward(), Metrics(), time.time)
    km = KeyMaker(3600)
    payloads = [raw[i % len(raw)] for i in range(n)]
    events = [Event(r, k, 1.0) for r, k in zip(payloads, km.keys(payloads, 0.0), strict=True)]
    items = proc.process(events)
    path = work / "alerts.json"
    path.write_bytes(orjson.dumps([(k.hex(), pl.decode()) for k, pl in items]))
    mean = sum(len(pl) for _, pl in items) / len(items)
    print(f"\n{n:,} alerts held in-process (mean payload {mean:.0f} B; bound "
          f"2 x payload + 200 = {2 * mean + 200:.0f} B)")
    for layout in ("orjson bytes, OrderedDict (before)", "dict per event, OrderedDict",
                   "StandbyBuffer (after)"):
        code = INPROC.format(root=str(ROOT), path=str(path), layout=layout)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        print(f"  {layout:<38}{float(out):>8.0f} B per event (RSS growth)")


# -- part 2: overloads ----------------------------------------------------------------------


def report(label: str, probes: list[Probe], start: dict[str, int], settled: dict[str, int],
           late: dict[str, int], budget: int) -> None:
    for p in probes:
        ok = "ok" if p.peak < budget + 128 * MIB else "OVER"
        print(f"{label:<10}{p.name:<4}{start[p.name] / MIB:>9.0f}{p.peak / MIB:>9.0f}"
              f"{settled[p.name] / MIB:>10.0f}{late[p.name] / MIB:>9.0f}  {ok:<5}{p.drops()}")


SETTLE = 15.0  # seconds after the buffers emptied: a few heap trims (heap.TRIM_INTERVAL)


def settle(probes: list[Probe], seconds: float) -> dict[str, int]:
    """Wait until both buffers are empty (or ``seconds``), then SETTLE seconds more."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(p.metrics().get("probepair_buffer_depth", 0) == 0 for p in probes):
            break
        time.sleep(0.5)
    time.sleep(SETTLE)
    return {p.name: p.rss() for p in probes}


def random_lines(path: Path, seed: int = 1) -> None:
    """4096 random datagrams without newlines: 70% 20-500 B, 25% 500-4000 B, 5% to 60 KiB."""
    rng = random.Random(seed)
    out = []
    for _ in range(4096):
        r = rng.random()
        size = rng.randint(20, 500) if r < 0.7 else rng.randint(500, 4000) if r < 0.95 \
            else rng.randint(4000, 60000)
        out.append(bytes(rng.choice(range(256)) for _ in range(size)).replace(b"\n", b" "))
    path.write_bytes(b"\n".join(out) + b"\n")


def part_overload(which: str, work: Path, flood_bin: Path, lines: Path,
                  args: argparse.Namespace) -> None:
    common = ["--bufferretention", str(args.retention)]
    master: list[str] = []
    if which == "outage":
        with socket.socket() as s:  # a TCP port nothing listens on until the outage ends
            s.bind(("127.0.0.1", 0))
            sink_port = s.getsockname()[1]
        master = ["--sinktype", "tcp", "--sinkaddress", f"127.0.0.1:{sink_port}"]
    probes = start_pair(work, common, master, [])
    budget = 256 * MIB
    try:
        time.sleep(2.0)
        start = {p.name: p.rss() for p in probes}
        with sampling(probes):
            if which == "flood":
                rate = flood(flood_bin, [p.feed for p in probes], lines, args.flood, 0)
                note = f"{args.flood:,} datagrams per feed at {rate:,.0f}/s"
            elif which == "random":
                rnd = work / "random.txt"
                random_lines(rnd)
                ports = [p.feed for p in probes] + [p.heartbeat for p in probes]
                rate = flood(flood_bin, ports, rnd, args.random, 0)
                note = f"{args.random:,} random datagrams per port at {rate:,.0f}/s"
            else:
                n = int(args.outage * args.rate)
                rate = flood(flood_bin, [p.feed for p in probes], lines, n, args.rate)
                note = f"master sink down {args.outage:.0f} s, {n:,} events at {rate:,.0f}/s"
                server = subprocess.Popen(
                    [sys.executable, "-c", SINK_SERVER, str(sink_port)],
                    stdout=subprocess.DEVNULL)
                try:
                    settled = settle(probes, args.retention + 60)
                finally:
                    server.terminate()
            if which != "outage":
                settled = settle(probes, args.retention + 30)
        # Acked keys (the standby's unseen set, the active side's ack log) are kept for
        # BufferRetention: measure again once they have expired.
        time.sleep(args.retention)
        late = {p.name: p.rss() for p in probes}
        report(which, probes, start, settled, late, budget)
        print(f"{'':<14}({note})")
    finally:
        stop(probes)


SINK_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    c, _ = s.accept()
    while c.recv(1 << 20):
        pass
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="held,inproc,flood,random,outage")
    ap.add_argument("--flood", type=int, default=1_000_000, help="datagrams per feed")
    ap.add_argument("--random", type=int, default=1_000_000, help="datagrams per port")
    ap.add_argument("--outage", type=float, default=600.0, help="seconds the sink is down")
    ap.add_argument("--rate", type=float, default=20_000.0, help="events/s during the outage")
    ap.add_argument("--retention", type=float, default=60.0, help="BufferRetention")
    args = ap.parse_args()
    parts = args.parts.split(",")
    work = Path(tempfile.mkdtemp(prefix="probepair-memory-"))
    try:
        flood_bin = work / "udpflood"
        subprocess.run(["gcc", "-O2", "-o", str(flood_bin), str(HERE / "udpflood.c")],
                       check=True)
        lines = work / "lines.txt"
        write_lines(lines)
        if "held" in parts:
            (work / "held").mkdir()
            part_held(work / "held", flood_bin, lines)
        if "inproc" in parts:
            part_inproc(work, lines)
        overloads = [p for p in ("flood", "random", "outage") if p in parts]
        if overloads:
            print(f"\noverload (BufferBytes 256 MiB: goal peak < 384 MiB; "
                  f"BufferRetention {args.retention:g} s)")
            print(f"{'case':<10}{'who':<4}{'start MiB':>9}{'peak MiB':>9}"
                  f"{'settled MiB':>10}{'late MiB':>9}  drops")
            print(f"{'':<14}(settled: {SETTLE:g} s after the buffers emptied; late: "
                  f"BufferRetention later)")
            for which in overloads:
                (work / which).mkdir()
                part_overload(which, work / which, flood_bin, lines, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
