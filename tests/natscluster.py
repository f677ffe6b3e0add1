"""A real NATS JetStream cluster on loopback for the tests: started here, stopped here.

Three ``nats-server`` processes (Debian's package; ``.ci/setup`` installs it) in a temp
directory, each with a client port, a cluster (route) port and a monitoring port on
127.0.0.1, forming one JetStream cluster. The processes run in the caller's nursery, so
leaving it kills them. Reading a stream back uses nats-py on its own asyncio loop in a
worker thread (``trio.to_thread``): a test's check, not the product's bridge.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.net import free_tcp_port as free_tcp_port  # re-exported

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
)
READY_TIMEOUT = 30.0  # seconds for a cluster to elect its JetStream meta leader (CI is slow)


def require_nats_server() -> str:
    """The nats-server binary; a skip locally when missing, a failure with CI=true."""
    if NATS_SERVER is None:
        why = "nats-server not found (Debian: apt-get install nats-server; .ci/setup does)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return NATS_SERVER


def server_conf(name: str, port: int, http: int, store: Path, cluster: int,
                routes: list[int]) -> str:
    """One member's config, in the shape of conf/nats/n1.conf."""
    route_urls = ", ".join(f"nats-route://127.0.0.1:{r}" for r in routes)
    block = f"""cluster {{
  name: probepair-test
  listen: 127.0.0.1:{cluster}
  routes: [{route_urls}]
}}
""" if routes else ""  # a lone server is no cluster (it would wait for peers for ever)
    return f"""server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{http}
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
{block}"""


@dataclass
class NatsServer:
    name: str
    port: int
    http: int
    conf: Path
    process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class NatsCluster:
    """``size`` nats-server processes forming one JetStream cluster."""

    root: Path
    size: int = 3
    servers: list[NatsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.configure()

    def configure(self) -> None:
        """Fresh ports for every member (each picked free, so another process may take
        one before the server binds it: ``start`` then configures again)."""
        self.servers = []
        cluster_ports = [free_tcp_port() for _ in range(self.size)]
        for i in range(self.size):
            name = f"n{i + 1}"
            store = self.root / name
            store.mkdir(parents=True, exist_ok=True)
            server = NatsServer(name, free_tcp_port(), free_tcp_port(), self.root / f"{name}.conf")
            routes = [p for j, p in enumerate(cluster_ports) if j != i]
            server.conf.write_text(
                server_conf(name, server.port, server.http, store, cluster_ports[i], routes)
            )
            self.servers.append(server)

    @property
    def url(self) -> str:
        """SinkUrl for all members, comma-separated."""
        return ",".join(s.url for s in self.servers)

    async def start_server(self, nursery: trio.Nursery, server: NatsServer) -> None:
        binary = require_nats_server()
        # The child gets its own copy of the descriptor; ours closes once it has started.
        log = open(self.root / f"{server.name}.log", "ab")  # noqa: ASYNC230, SIM115
        try:
            server.process = await nursery.start(
                lambda task_status: trio.run_process(  # noqa: ASYNC105 (nursery.start awaits it)
                    [binary, "-c", str(server.conf)], check=False, stdout=log,
                    stderr=subprocess.STDOUT, task_status=task_status,
                )
            )
        finally:
            log.close()

    async def start(self, nursery: trio.Nursery) -> None:
        """Start every member and wait until JetStream is healthy on each.

        A member that could not bind its port (taken between ``free_tcp_port`` and the
        server's bind) restarts the cluster on fresh ports, once; any other failure, or
        no health within READY_TIMEOUT, fails with each member's state and log tail.
        """
        for attempt in range(2):
            for server in self.servers:
                await self.start_server(nursery, server)
            if await self.all_healthy(give_up_on_bind=attempt == 0):
                return
            if attempt == 0 and self.bind_failed():
                await self.stop()
                self.configure()
                continue
            break
        raise AssertionError("nats cluster not healthy:\n" + self.describe())

    async def all_healthy(self, *, give_up_on_bind: bool) -> bool:
        with trio.move_on_after(READY_TIMEOUT):
            for server in self.servers:
                while not await healthy(server):
                    if give_up_on_bind and self.bind_failed():
                        return False
                    await trio.sleep(0.1)
            return True
        return False

    def bind_failed(self) -> bool:
        return any(
            s.process is not None and s.process.returncode is not None
            and b"address already in use" in self.log(s)
            for s in self.servers
        )

    def log(self, server: NatsServer) -> bytes:
        try:
            return (self.root / f"{server.name}.log").read_bytes()
        except OSError:
            return b""

    def describe(self) -> str:
        lines = []
        for s in self.servers:
            state = "running" if s.process and s.process.returncode is None else (
                f"exited {s.process.returncode}" if s.process else "not started")
            tail = self.log(s).decode(errors="replace").splitlines()[-5:]
            lines.append(f"{s.name} (port {s.port}, {state}):\n  " + "\n  ".join(tail))
        return "\n".join(lines)

    async def kill9(self, index: int) -> None:
        """SIGKILL one member and reap it."""
        process = self.servers[index].process
        assert process is not None
        process.kill()
        with trio.fail_after(5):
            await process.wait()

    async def stop(self) -> None:
        for server in self.servers:
            if server.process is not None and server.process.returncode is None:
                server.process.terminate()
                with trio.fail_after(10):
                    await server.process.wait()


async def http_status(port: int, path: str) -> tuple[int, bytes]:
    with trio.fail_after(2):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: n\r\n\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def healthy(server: NatsServer) -> bool:
    """The server's /healthz says JetStream is ready."""
    try:
        status, _ = await http_status(server.http, "/healthz")
    except (OSError, trio.TooSlowError, IndexError, ValueError):
        return False
    return status == 200


# -- reading a stream back (the test's own check) ---------------------------------------


@dataclass(frozen=True)
class StreamContents:
    messages: int  # what the stream reports it holds
    ids: list[str]  # Nats-Msg-Id of every message read, in stream order
    subjects: list[str]
    payloads: list[bytes]


async def _read_stream(url: str, stream: str) -> StreamContents:
    import nats

    nc = await nats.connect(url.split(","), max_reconnect_attempts=5)
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(stream)
        total = int(info.state.messages)
        ids: list[str] = []
        subjects: list[str] = []
        payloads: list[bytes] = []
        if total:
            from nats.js.api import AckPolicy, ConsumerConfig

            config = ConsumerConfig(ack_policy=AckPolicy.NONE, mem_storage=True, num_replicas=1)
            sub = await js.pull_subscribe("", stream=stream, config=config)
            while len(ids) < total:
                msgs: list[Any] = await sub.fetch(min(2000, total - len(ids)), timeout=10)
                for msg in msgs:
                    ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
                    subjects.append(msg.subject)
                    payloads.append(msg.data)
            await sub.unsubscribe()
        return StreamContents(total, ids, subjects, payloads)
    finally:
        await nc.close()


API_TRIES = 10  # a JetStream API call may time out while a killed server's roles move


async def _retrying(make: Any) -> Any:
    """``asyncio.run(make())`` in a worker thread, tried again on NATS errors."""
    import nats.errors

    for attempt in range(API_TRIES):
        try:
            return await trio.to_thread.run_sync(asyncio.run, make())
        except (nats.errors.Error, TimeoutError):
            if attempt == API_TRIES - 1:
                raise
            await trio.sleep(0.5)
    raise AssertionError("unreachable")


async def read_stream(url: str, stream: str) -> StreamContents:
    """Every message of ``stream`` with its Nats-Msg-Id (nats-py in a worker thread)."""
    return await _retrying(lambda: _read_stream(url, stream))  # type: ignore[no-any-return]


async def _stream_info(url: str, stream: str) -> Any:
    import nats

    nc = await nats.connect(url.split(","), max_reconnect_attempts=5)
    try:
        return await nc.jetstream(timeout=10).stream_info(stream)
    finally:
        await nc.close()


async def stream_info(url: str, stream: str) -> Any:
    """The stream's info (config and state)."""
    return await _retrying(lambda: _stream_info(url, stream))
