"""Real servers for the sink tests: a throwaway PostgreSQL cluster and Alertmanager.

Each starts in a temporary directory on loopback (plus any extra listen addresses a
test gives, such as the root-namespace ends of the netns links), and is stopped and
removed on the way out. The binaries come from Debian's ``postgresql`` and
``prometheus-alertmanager`` (``.ci/setup`` installs them). Missing binaries skip the
test locally; with ``CI=true`` they fail it (a skip must never pass for a green run).

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
user (initdb, pg_ctl run as that user); its directory is outside pytest's tmp_path,
which is private to root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.net import free_tcp_port as free_tcp_port  # re-exported

START_TIMEOUT = 30.0  # seconds for a server to answer after start (a loaded CI machine)
PG_USER = "probepair"
PG_PASSWORD = "pp-test-secret"


def need(binary: str, package: str, extra_dirs: Sequence[str] = ()) -> str:
    """The path of ``binary``; skip (locally) or fail (CI=true) when it is missing."""
    found = shutil.which(binary)
    for pattern in extra_dirs:
        if found:
            break
        matches = sorted(glob.glob(os.path.join(pattern, binary)))
        found = matches[-1] if matches else None
    if found:
        return found
    reason = f"{binary} not found: install Debian's {package} (.ci/setup does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class Postgres:
    """A running throwaway cluster: superuser ``probepair`` with a password."""

    port: int
    datadir: Path

    def url(self, dbname: str = "postgres", host: str = "127.0.0.1",
            password: bool = True) -> str:
        auth = f"{PG_USER}:{PG_PASSWORD}" if password else PG_USER
        return f"postgresql://{auth}@{host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A fresh database ``name``; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}"'.encode())
            db.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


def _as_postgres() -> dict[str, object]:
    """subprocess arguments that run a command as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root but there is no postgres user to own the cluster")
    return {"user": pw.pw_uid, "group": pw.pw_gid}


@contextmanager
def postgres(listen: Sequence[str] = ("127.0.0.1",), *, fsync: bool = False) -> Iterator[Postgres]:
    """Start a cluster listening on ``listen`` (a free port); stop and remove it after.

    Args:
        listen: addresses to listen on; the first must be free for the port check.
        fsync: off by default (a test cluster); the bench turns it on.
    """
    bindirs = ["/usr/lib/postgresql/*/bin"]
    initdb = need("initdb", "postgresql", bindirs)
    pg_ctl = need("pg_ctl", "postgresql", bindirs)
    as_pg = _as_postgres()
    top = Path(tempfile.mkdtemp(prefix="probepair-pg-"))
    datadir = top / "data"
    try:
        pwfile = top / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if as_pg:
            os.chown(top, int(as_pg["user"]), int(as_pg["group"]))  # type: ignore[call-overload]
            os.chown(pwfile, int(as_pg["user"]), int(as_pg["group"]))  # type: ignore[call-overload]
        subprocess.run(
            [initdb, "-D", str(datadir), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
             "--no-instructions", "--no-sync"],
            check=True, capture_output=True, timeout=120, **as_pg,  # type: ignore[call-overload]
        )
        hba = ["local all all trust"]
        hba += [f"host all all {addr}/32 scram-sha-256" for addr in ("127.0.0.1", *listen)]
        hba.append("host all all 10.231.0.0/16 scram-sha-256")  # tests/e2e/netns.py links
        (datadir / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        port = free_tcp_port(listen[0])
        options = (f"-c listen_addresses='{','.join(listen)}' -c port={port}"
                   f" -c unix_socket_directories='{top}' -c fsync={'on' if fsync else 'off'}"
                   " -c max_connections=50 -c shared_buffers=64MB")
        subprocess.run(
            [pg_ctl, "-D", str(datadir), "-o", options, "-l", str(top / "log"), "-w",
             "-t", str(int(START_TIMEOUT)), "start"],
            check=True, capture_output=True, timeout=START_TIMEOUT + 10, **as_pg,  # type: ignore[call-overload]
        )
        try:
            yield Postgres(port, datadir)
        finally:
            subprocess.run([pg_ctl, "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, check=False,
                           **as_pg)  # type: ignore[call-overload]
    finally:
        shutil.rmtree(top, ignore_errors=True)


@dataclass(frozen=True)
class Alertmanager:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self) -> list[dict[str, object]]:
        """Every alert Alertmanager holds (active, silenced, inhibited, unprocessed)."""
        import json

        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as resp:
            data: list[dict[str, object]] = json.loads(resp.read())
        return data


AM_CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""


@contextmanager
def alertmanager() -> Iterator[Alertmanager]:
    """Start Alertmanager on a free loopback port, no cluster; stop and remove it after."""
    binary = need("prometheus-alertmanager", "prometheus-alertmanager")
    top = Path(tempfile.mkdtemp(prefix="probepair-am-"))
    try:
        (top / "am.yml").write_text(AM_CONFIG)
        port = free_tcp_port()
        with (top / "log").open("wb") as log:
            proc = subprocess.Popen(
                [binary, f"--config.file={top / 'am.yml'}", f"--storage.path={top / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready",
                                                timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass  # not listening yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"alertmanager did not start: {(top / 'log').read_text()}")
                time.sleep(0.05)
            yield Alertmanager(port)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(top, ignore_errors=True)
