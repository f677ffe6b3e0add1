"""What an SNMP trap costs: the snmp feed against net-snmp's snmptrapd, in the same run.

For each kind of trap (v1; v2c with 1 and with 10 varbinds; v3 authPriv, SHA/AES),
a Python sender sends N distinct traps at a paced rate to one standard probe
(FeedType snmp, the shipped rules/mttrapd.rules, file sink) and then to snmptrapd
(logging every trap to a file, -Lf), each alone on its port. Prints, per receiver:
traps written, the rate they came at, and µs of CPU (user + system, /proc) per trap,
which bounds what one core can take (1e6 / µs). ``--rate 0`` floods instead: traps/s
is then what each receiver wrote per second (it drops the rest). Loopback only,
bounded in count.

    .venv/bin/python bench/snmp.py [--traps 15000] [--rate 3000]

Needs snmptrapd (apt-get install snmptrapd) for the comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from probepair.feeds.snmp import ber  # noqa: E402
from probepair.feeds.snmp.usm import Usm, parse_users  # noqa: E402

ENGINE = bytes.fromhex("8000000001020304")
USER = "createUser -e 0x8000000001020304 benchuser SHA benchauth123 AES benchpriv123"
TICK = 0.01  # seconds between bursts
LABEL = ".1.3.6.1.4.1.8072.2.3.2.1"


def _varbinds(seq: int, extra: int) -> list[ber.Varbind]:
    vbs: list[ber.Varbind] = [
        (".1.3.6.1.2.1.1.3.0", ber.TIMETICKS, 4200),
        (".1.3.6.1.6.3.1.1.4.1.0", ber.OID, ".1.3.6.1.6.3.1.1.5.3"),
        (".1.3.6.1.2.1.2.2.1.1.7", ber.INTEGER, seq % 48),
    ]
    for i in range(extra):
        vbs.append((f".1.3.6.1.2.1.2.2.1.{i + 2}.7", ber.OCTET_STRING, b"GigabitEthernet0/%d" % i))
    vbs.append((LABEL, ber.OCTET_STRING, b"bench-%08d" % seq))
    return vbs


def traps(kind: str, n: int) -> list[bytes]:
    """``n`` distinct datagrams of ``kind``."""
    out = []
    usm = Usm(parse_users(USER), ENGINE, boots=1, started=time.monotonic(), salt=7)
    user = parse_users(USER)[0]
    auth, priv = usm.localised(user, ENGINE)
    for seq in range(n):
        if kind == "v1":
            pdu = ber.encode_trap_v1(".1.3.6.1.4.1.8072.2.3", b"\x7f\x00\x00\x01", 2, 0, 4200,
                                     _varbinds(seq, 0)[2:])
            out.append(ber.encode_message(ber.V1, b"public", pdu))
            continue
        extra = 9 if kind == "v2c-10" else 0
        vbl = ber.encode_varbinds(_varbinds(seq, extra))
        pdu = ber.encode_pdu(ber.TRAP_V2, seq + 1, vbl)
        if kind.startswith("v2c"):
            out.append(ber.encode_message(ber.V2C, b"public", pdu))
        else:
            scoped = ber.encode_scoped(ENGINE, b"", pdu)
            out.append(usm.seal(seq + 1, 3, b"benchuser", scoped, ("SHA", auth, priv),
                                time.monotonic()))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send(datagrams: list[bytes], port: int, rate: float) -> float:
    """Send paced at ``rate`` (0: as fast as Python sends); when it started."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        if not rate:
            for data in datagrams:
                sock.sendto(data, ("127.0.0.1", port))
            return start
        sent = 0
        burst = 0
        while sent < len(datagrams):
            burst += 1
            due = min(len(datagrams), int(burst * TICK * rate))
            while sent < due:
                sock.sendto(datagrams[sent], ("127.0.0.1", port))
                sent += 1
            delay = start + burst * TICK - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return start


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_count(path: Path, marker: bytes, n: int, timeout: float) -> tuple[int, float]:
    """Lines with ``marker`` once there are ``n`` or they stop growing for a second
    (a flood loses some), and when the last of them was seen."""
    deadline = time.monotonic() + timeout
    found, last = 0, time.monotonic()
    while time.monotonic() < deadline:
        now_found = path.read_bytes().count(marker) if path.exists() else 0
        if now_found != found:
            found, last = now_found, time.monotonic()
        if found >= n or time.monotonic() - last > 1.0:
            break
        time.sleep(0.05)
    return found, last


def run_probe(tmp: Path, datagrams: list[bytes], rate: float) -> tuple[int, float, float]:
    port = free_port()
    sink = tmp / "probe.jsonl"
    sink.unlink(missing_ok=True)
    users = tmp / "users.conf"
    users.write_text(USER + "\n")
    cmd = [sys.executable, "-m", "probepair", "run", "--name", "bench-snmp", "--feedtype", "snmp",
           "--feedport", str(port), "--rulesfile", str(ROOT / "rules" / "mttrapd.rules"),
           "--nonameresolution", "true", "--snmpusersfile", str(users),
           "--sinkfile", str(sink), "--controlsocket", str(tmp / "ctl.sock")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp,
                            env=dict(os.environ, STATE_DIRECTORY=str(tmp)))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"READY")
        before = cpu_seconds(proc.pid)
        start = send(datagrams, port, rate)
        got, last = wait_count(sink, b"\"Class\":300", len(datagrams), 60)  # trap alerts
        used = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(10)
    return got, last - start, used


def run_snmptrapd(tmp: Path, datagrams: list[bytes], rate: float) -> tuple[int, float, float]:
    binary = shutil.which("snmptrapd") or "/usr/sbin/snmptrapd"
    port = free_port()
    log = tmp / "snmptrapd.log"
    log.unlink(missing_ok=True)
    conf = tmp / "snmptrapd.conf"
    conf.write_text(f"disableAuthorization yes\n{USER}\n")
    cmd = [binary, "-f", "-n", "-C", "-c", str(conf), "-Lf", str(log), "-On",
           f"udp:127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp), HOME=str(tmp)))
    try:
        wait_count(log, b"NET-SNMP version", 1, 10)  # its start-up line
        before = cpu_seconds(proc.pid)
        start = send(datagrams, port, rate)
        got, last = wait_count(log, b"bench-", len(datagrams), 60)
        used = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(10)
    return got, last - start, used


def decode_costs() -> None:
    """µs to decode a v2c trap with ber.py and with pyasn1 (pysnmp's spec), if installed."""
    import timeit

    try:
        from pyasn1.codec.ber import decoder
        from pysnmp.proto import api
    except ImportError:
        return
    spec = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C].Message
    for kind in ("v2c-1", "v2c-10"):
        data = traps(kind, 1)[0]
        ours = timeit.timeit(lambda d=data: ber.decode_message(d), number=5000) / 5000 * 1e6
        theirs = timeit.timeit(lambda d=data: decoder.decode(d, asn1Spec=spec()), number=300)
        theirs = theirs / 300 * 1e6
        ratio = theirs / ours
        print(f"decode {kind:<8} ber.py {ours:6.1f} µs   pyasn1 {theirs:6.0f} µs   x{ratio:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--traps", type=int, default=15000)
    parser.add_argument("--rate", type=float, default=3000.0, help="traps/s; 0: a flood")
    args = parser.parse_args()
    decode_costs()
    have_trapd = bool(shutil.which("snmptrapd") or Path("/usr/sbin/snmptrapd").exists())
    pace = f"at {args.rate:.0f}/s" if args.rate else "as fast as the sender goes (a flood)"
    print(f"{args.traps} traps per case {pace}; CPU = user + system of the receiver; traps/s ="
          " written / (last written - first sent)")
    print(f"{'trap':<14} {'receiver':<10} {'written':>8} {'traps/s':>8} {'µs CPU/trap':>12}"
          f" {'1-core max/s':>12}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for kind in ("v1", "v2c-1", "v2c-10", "v3-authPriv"):
            datagrams = traps(kind, args.traps)
            runs = [("probepair", run_probe)]
            if have_trapd:
                runs.append(("snmptrapd", run_snmptrapd))
            for name, run in runs:
                got, took, used = run(tmp, datagrams, args.rate)
                per = used / max(got, 1) * 1e6
                print(f"{kind:<14} {name:<10} {got:>8} {got / took:>8.0f} {per:>12.1f}"
                      f" {1e6 / per if per else 0:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
