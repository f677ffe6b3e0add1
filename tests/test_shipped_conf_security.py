"""The shipped conf is safe as shipped; the files a probe creates are not world-readable."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from probepair import cli
from probepair.config import props
from probepair.config.propsfile import read_props_file
from probepair.config.secret import SECRET_FILES
from probepair.sinks.file import FileSink

CONF = Path(__file__).resolve().parent.parent / "conf"
SHIPPED = sorted(CONF.glob("*.props"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_props_load_and_are_safe(path: Path) -> None:
    p = props.load([(str(path), read_props_file(str(path)))])
    assert not p.SharedSecret, "a secret belongs in a SharedSecretFile, not in a props file"
    assert not p.AllowInsecureHeartbeats
    assert p.MetricsAuth in ("none", "bearer")
    if p.SinkType == "postgres":
        query = parse_qs(urlsplit(p.SinkUrl).query)
        assert query.get("sslmode") == ["verify-full"]
        assert query.get("sslrootcert", [""])[0].startswith("/")
        assert query.get("require_auth") == ["scram-sha-256"]
        assert urlsplit(p.SinkUrl).password is None  # the password lives in a file
    for name in SECRET_FILES:
        value = getattr(p, name)
        assert not value or value.startswith("/etc/probepair/"), (name, value)



async def test_the_file_sink_creates_alerts_0640(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "alerts.jsonl"
        sink = FileSink(props.load([("t", {"SinkFile": str(path)})]))
        await sink.open()
        await sink.aclose()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_message_log_is_created_0640(tmp_path: Path) -> None:
    log = tmp_path / "probe.log"
    old = os.umask(0o022)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        cli.setup_logging(props.load([("t", {"MessageLog": str(log)})]))
    finally:
        os.umask(old)
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    assert stat.S_IMODE(log.stat().st_mode) == 0o640
