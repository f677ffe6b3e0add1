"""The shipped JetStream configs load in the nats-server the tests run, and fsync each
write before acking it (``sync_interval: always``: an ack the probes trust is durable)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.natscluster import require_nats_server

CONFS = sorted((Path(__file__).resolve().parents[1] / "conf" / "nats").glob("*.conf"))


@pytest.mark.parametrize("conf", CONFS, ids=[c.name for c in CONFS])
def test_a_shipped_nats_config_syncs_every_write_and_is_valid(conf: Path, tmp_path: Path) -> None:
    text = conf.read_text()
    assert re.search(r"^\s*sync_interval:\s*always\s*$", text, re.M), conf
    server = require_nats_server()
    version = subprocess.run([server, "--version"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    major, minor = (int(x) for x in re.findall(r"v(\d+)\.(\d+)", version)[0])
    if (major, minor) < (2, 10):
        # Debian 12's 2.9 predates the setting (the comment above it says so): check the rest.
        text = re.sub(r"^\s*sync_interval:.*$", "", text, flags=re.M)
    checked = tmp_path / conf.name
    checked.write_text(text)
    result = subprocess.run([server, "-c", str(checked), "-t"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout + result.stderr
