"""The metrics no other e2e test moves, each moved exactly once by the input it counts.

``test_metrics_seen`` requires every README metric to move in some running probe; these
are the ones that only unit tests moved: a TCP frame past 1 MiB, a json record that
names its own ``Manager``, a control-socket request that is not JSON.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import free_port, scrape, start_probe

pytestmark = pytest.mark.e2e


async def test_a_bad_frame_a_feed_manager_and_a_bad_control_request_are_each_counted(
        tmp_path: Path) -> None:
    tcp, udp = free_port(socket.SOCK_STREAM), free_port()
    props = tmp_path / "std.props"
    props.write_text(
        "Feeds:\n"
        f"  - {{FeedType: tcp, FeedAddress: 127.0.0.1, FeedPort: {tcp}, FeedFormat: line}}\n"
        f"  - {{FeedType: udp, FeedAddress: 127.0.0.1, FeedPort: {udp}, FeedFormat: json}}\n"
        "RulesFile: ''\n"
    )
    sink = tmp_path / "alerts.jsonl"
    args = ["--props", str(props), "--name", "std", "--sinkfile", str(sink),
            "--metricsaddress", "127.0.0.1", "--metricsport", str(free_port(socket.SOCK_STREAM)),
            "--messagelog", str(tmp_path / "probe.log")]
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, args, cwd=tmp_path)
        # An octet-counted frame that claims 2 MB: the connection is closed, counted.
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", tcp) as stream:
                await stream.send_all(b"2000000 <13>Nov 22 10:00:00 h app: x")
                while await stream.receive_some(100):
                    pass  # until the probe closes it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(json.dumps({"Manager": "forged", "Summary": "s"}).encode(),
                        ("127.0.0.1", udp))
        # Not JSON on the control socket: an error answer, counted.
        control = probe.addresses["control"]
        with trio.fail_after(10):
            async with await trio.open_unix_socket(control) as client:
                await client.send_all(b"not json\n")
                answer = b""
                while chunk := await client.receive_some(4096):
                    answer += chunk
        assert json.loads(answer)["ok"] is False
        with trio.fail_after(10):
            while True:
                m = await scrape(probe)
                if m.get("probepair_feed_manager_renamed_total"):
                    break
                await trio.sleep(0.05)
        assert await probe.stop() == 0
    assert m['probepair_feed_frames_rejected_total{reason="too_big"}'] == 1
    assert m["probepair_feed_manager_renamed_total"] == 1
    assert m['probepair_control_errors_total{reason="json"}'] == 1
    alerts = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [a.get("Manager") for a in alerts if a.get("Summary") == "s"] != ["forged"]
