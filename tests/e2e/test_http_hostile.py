"""A real probe's HTTP endpoint under what monitoring tools and scanners send.

`curl -I` used to kill the probe (h11 refused the HEAD answer's body). Here one probe
takes HEAD, every other method, oversized requests, more connections than its cap (raw
sockets and parallel curls), a slowloris and garbage, and afterwards it is alive and
``/metrics`` counts each under its reason. curl comes from ``.ci/setup``; without it the
test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from probepair.ops.endpoint import MAX_CONNECTIONS, READ_TIMEOUT
from tests.e2e.procs import free_port, scrape, start_probe
from tests.servers import need

pytestmark = pytest.mark.e2e


async def _curl(curl: str, *args: str) -> str:
    with trio.fail_after(20):
        done = await trio.run_process(
            [curl, "-s", "--max-time", "10", *args], capture_stdout=True, check=False
        )
    return done.stdout.decode()


async def _raw(address: tuple[str, int], data: bytes) -> bytes:
    with trio.fail_after(READ_TIMEOUT + 5):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(data)
            out = bytearray()
            try:
                while chunk := await stream.receive_some(65536):
                    out += chunk
            except trio.BrokenResourceError:
                pass
            return bytes(out)


async def test_hostile_http_leaves_the_probe_alive_and_counted(tmp_path: Path) -> None:
    curl = need("curl", "curl")
    port = free_port(socket.SOCK_STREAM)
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            [
                "--feedport",
                "0",
                "--rulesfile",
                "",
                "--sinkfile",
                str(tmp_path / "a.jsonl"),
                "--name",
                "h1",
                "--metricsaddress",
                "127.0.0.1",
                "--metricsport",
                str(port),
            ],
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        address = ("127.0.0.1", port)

        head = await _curl(curl, "-I", f"{base}/metrics")
        assert head.startswith("HTTP/1.1 200"), head
        get = await _curl(curl, "-D", "-", f"{base}/status")
        length = next(
            int(x.split(":")[1]) for x in head.splitlines() if x.lower().startswith("content-len")
        )
        assert length > 0
        assert "HTTP/1.1 200" in get
        for method in ("DELETE", "PUT", "OPTIONS", "TRACE", "PATCH"):
            code = await _curl(
                curl, "-o", "/dev/null", "-w", "%{http_code}", "-X", method, f"{base}/metrics"
            )
            assert code == "405", (method, code)
        code = await _curl(
            curl,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-Big: " + "a" * 20000,
            f"{base}/metrics",
        )
        assert code == "431"
        code = await _curl(curl, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/{'a' * 9000}")
        assert code == "414"

        # More connections than the cap: the extra ones get 503 at once.
        extra = 8
        idle = [await trio.open_tcp_stream(*address) for _ in range(MAX_CONNECTIONS + extra)]
        urls = [arg for _ in range(60) for arg in ("-o", "/dev/null", f"{base}/metrics")]
        codes = (
            await _curl(curl, "-w", "%{http_code}\n", "--parallel", "--parallel-max", "50", *urls)
        ).split()
        assert len(codes) == 60 and set(codes) <= {"200", "503", "000"}, codes
        assert "503" in codes
        refused = [await _raw_read(s) for s in idle[MAX_CONNECTIONS:]]
        assert all(r.startswith(b"HTTP/1.1 503") for r in refused), refused
        for s in idle:
            await s.aclose()  # closed without a byte: not an error

        # A slowloris is answered 408 after READ_TIMEOUT; garbage is 400.
        start = trio.current_time()
        slow = await _raw(address, b"GET /metrics HTTP/1.1\r\nHost")
        assert slow.startswith(b"HTTP/1.1 408"), slow
        assert trio.current_time() - start >= READ_TIMEOUT - 0.5
        rng = random.Random(19)
        garbage = bytes(rng.randrange(256) for _ in range(3000)) + b"\r\n\r\n"
        assert (await _raw(address, garbage)).startswith(b"HTTP/1.1 400")

        assert probe.process.returncode is None
        samples = await scrape(probe)

        def errors(reason: str) -> float:
            return samples[f'probepair_http_errors_total{{reason="{reason}"}}']

        assert errors("method") == 5
        assert errors("headers_too_large") == 1
        assert errors("uri_too_long") == 1
        assert errors("timeout") == 1
        assert errors("bad_request") == 1
        assert errors("internal") == 0
        assert errors("connections") == extra + sum(c != "200" for c in codes)
        assert await probe.stop() == 0


async def _raw_read(stream: trio.SocketStream) -> bytes:
    out = bytearray()
    with trio.fail_after(5):
        try:
            while chunk := await stream.receive_some(65536):
                out += chunk
        except trio.BrokenResourceError:
            pass
    return bytes(out)


def test_curl_is_installed_by_ci_setup() -> None:
    setup = (Path(__file__).resolve().parents[2] / ".ci" / "setup").read_text()
    assert "command -v curl >/dev/null || need+=(curl)" in setup
    assert (
        subprocess.run(
            ["bash", "-n", str(Path(__file__).resolve().parents[2] / ".ci" / "setup")]
        ).returncode
        == 0
    )
