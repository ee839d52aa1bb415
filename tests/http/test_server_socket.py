"""A real HttpServer on 127.0.0.1, driven by raw sockets (asyncio streams) on the test's loop.

Tier 3 of STYLE §8 (uvicorn test_fragmentation, run_server): keep-alive, pipelining,
large and fragmented bodies, 413 without a reset, timeouts, disconnects, draining.
Every test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from fastserve._testbase import RawResponse, parse_response
from fastserve.http import server as server_module
from fastserve.http.messages import Response
from fastserve.http.server import HttpServer, Limits

pytestmark = pytest.mark.usefixtures("loop")


def request(method: str = "GET", path: str = "/hello", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> bytes:
    headers = dict(headers or {})
    if body is not None and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def digest(request):
    body = request.body
    return Response(orjson.dumps({"sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                                  "type": type(body).__name__}))


def big(request):
    size = int(request.params["size"])
    return Response(b"", content_type=b"application/octet-stream",
                    buffers=[bytes([i % 251]) * (size // 4) for i in range(4)])


@pytest.fixture
def app(echo_app):
    echo_app.router.add("POST", "/digest", digest)
    echo_app.router.add("GET", "/big/{size}", big)
    return echo_app


@contextlib.asynccontextmanager
async def serving(app, limits: Limits | None = None) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(app.router, limits)
    port = await server.listen("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.close(1.0)
        await settle()


async def settle() -> None:
    """Let transports finish closing (their connection_lost runs on a later iteration)."""
    for _ in range(3):
        await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                         socket.TCP_NODELAY, 1)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader, head: bool = False) -> RawResponse:
    header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in header.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and not head:
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return parse_response(header + body, head)


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


# Keep-alive and pipelining


async def test_keep_alive_across_requests(app):
    async with serving(app) as (server, port), connection(port) as (reader, writer):
        for i in range(5):
            writer.write(request("POST", "/echo", b"ping %d" % i))
            response = await read_response(reader)
            assert (response.status, response.body) == (200, b"ping %d" % i)
            assert "connection" not in response.headers
        writer.write(request("HEAD", "/hello"))
        assert (await read_response(reader, head=True)).headers["content-length"] == "17"
        writer.write(request("GET", "/hello"))
        assert (await read_response(reader)).json() == {"hello": "world"}
        assert len(server.state.connections) == 1


async def test_fifty_pipelined_requests_in_one_send(app):
    raw = b"".join(request("POST", "/aecho", b"%d" % i) if i % 3 == 0
                   else request("GET", f"/fast/{i}") for i in range(50))
    async with serving(app) as (_, port), connection(port) as (reader, writer):
        writer.write(raw)
        bodies = [(await read_response(reader)).body for _ in range(50)]
        assert bodies == [b"%d" % i for i in range(50)]
        writer.write(request())
        assert (await read_response(reader)).status == 200


async def test_big_pipelined_answers_to_a_client_that_reads_late(app):
    # The client sends everything before reading anything: our writes back up, the protocol
    # pauses reading, and every answer still arrives whole and in order.
    size = 1 << 20
    async with serving(app) as (server, port), connection(port) as (reader, writer):
        writer.write(request("GET", f"/big/{size}") * 20)
        await writer.drain()
        (conn,) = server.state.connections
        await until(lambda: conn.flow.write_paused)
        for _ in range(20):
            response = await read_response(reader)
            assert len(response.body) == size
            assert response.body[0] == 0 and response.body[-1] == 3
        await until(lambda: not conn.flow.write_paused)


# Bodies


async def test_four_megabyte_body_in_small_fragments(app):
    body = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)
    raw = request("POST", "/digest", body)
    async with serving(app) as (_, port), connection(port) as (reader, writer):
        step = 16 * 1024
        for i in range(0, len(raw), step):
            writer.write(raw[i:i + step])
            await writer.drain()
        response = await read_response(reader)
        assert response.json() == {"sha256": hashlib.sha256(body).hexdigest(),
                                   "size": len(body), "type": "bytearray"}


async def test_chunked_body_over_a_socket(app):
    parts = [b"x" * 1000, b"y" * 70_000, b"z"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    async with serving(app) as (_, port), connection(port) as (reader, writer):
        writer.write(request("POST", "/digest", headers={"Transfer-Encoding": "chunked"}))
        for i in range(0, len(body), 4096):
            writer.write(body[i:i + 4096])
            await writer.drain()
        expected = hashlib.sha256(b"".join(parts)).hexdigest()
        assert (await read_response(reader)).json()["sha256"] == expected


async def test_100_continue_over_a_socket(app):
    async with serving(app) as (_, port), connection(port) as (reader, writer):
        writer.write(request("POST", "/echo", headers={"Content-Length": "5",
                                                      "Expect": "100-continue"}))
        assert (await read_response(reader)).status == 100
        writer.write(b"hello")
        assert (await read_response(reader)).body == b"hello"


async def test_413_is_read_while_the_client_still_sends_20_mb(app):
    limits = Limits(max_body=1024 * 1024)
    total = 20 * 1024 * 1024
    async with serving(app, limits) as (_, port), connection(port) as (reader, writer):
        writer.write(request("POST", "/echo", headers={"Content-Length": str(total)}))

        async def send_body() -> None:
            chunk = b"\0" * (256 * 1024)
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(send_body())
        response = await read_response(reader)
        assert response.status == 413
        assert response.headers["connection"] == "close"
        assert "1048576-byte limit" in response.json()["error"]
        await asyncio.wait_for(sender, 10)  # every byte was read (and dropped), no reset
        assert await asyncio.wait_for(reader.read(), 5) == b""


# Timeouts and disconnects


async def test_idle_keep_alive_connection_times_out(app, monkeypatch):
    monkeypatch.setattr(server_module, "SWEEP_INTERVAL", 0.02)
    async with serving(app, Limits(keepalive_timeout=0.15)) as (server, port), \
            connection(port) as (reader, writer):
        writer.write(request())
        assert (await read_response(reader)).status == 200
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started >= 0.1
        await until(lambda: not server.state.connections)


async def test_slow_headers_get_408(app, monkeypatch):
    monkeypatch.setattr(server_module, "SWEEP_INTERVAL", 0.02)
    async with serving(app, Limits(header_timeout=0.1)) as (_, port), \
            connection(port) as (reader, writer):
        writer.write(b"GET /hello HTTP/1.1\r\nHost: te")
        response = await read_response(reader)
        assert response.status == 408
        assert response.headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_client_disconnect_cancels_the_handler(app):
    async with serving(app) as (server, port):
        async with connection(port) as (_, writer):
            writer.write(request("POST", "/wait", b"{}"))
            await asyncio.wait_for(app.started.wait(), 5)
            seen = app.seen[0]
            assert not seen.disconnected
        await until(lambda: app.cancelled == ["/wait"])
        assert seen.disconnected
        await until(lambda: not server.state.connections)


async def test_malformed_request_gets_400_then_eof(app):
    async with serving(app) as (_, port), connection(port) as (reader, writer):
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 400
        assert "malformed HTTP request" in response.json()["error"]
        assert await asyncio.wait_for(reader.read(), 5) == b""


# Draining


async def test_close_drains_in_flight_and_refuses_new_connections(app):
    server = HttpServer(app.router)
    port = await server.listen("127.0.0.1", 0)
    closing = None
    try:
        async with connection(port) as (busy_reader, busy_writer), \
                connection(port) as (idle_reader, idle_writer):
            idle_writer.write(request())
            assert (await read_response(idle_reader)).status == 200
            busy_writer.write(request("GET", "/wait"))
            await asyncio.wait_for(app.started.wait(), 5)

            closing = asyncio.create_task(server.close(5.0))
            await asyncio.sleep(0.01)
            with pytest.raises(OSError):
                _, refused = await asyncio.open_connection("127.0.0.1", port)
                refused.close()
            # A request on a kept-alive connection during the drain is answered, then closed.
            idle_writer.write(request())
            response = await read_response(idle_reader)
            assert (response.status, response.headers["connection"]) == (200, "close")
            assert await asyncio.wait_for(idle_reader.read(), 5) == b""
            assert not closing.done()

            app.release.set()
            response = await read_response(busy_reader)
            assert (response.status, response.headers["connection"]) == (200, "close")
            assert response.json() == {"waited": True}
            assert await asyncio.wait_for(busy_reader.read(), 5) == b""
            await asyncio.wait_for(closing, 5)
            assert app.cancelled == []
    finally:
        if closing is None:
            await server.close(0)
        await settle()


async def test_close_aborts_what_outlives_the_timeout(app):
    server = HttpServer(app.router)
    port = await server.listen("127.0.0.1", 0)
    try:
        async with connection(port) as (reader, writer):
            writer.write(request("GET", "/wait"))
            await asyncio.wait_for(app.started.wait(), 5)
            started = time.monotonic()
            await server.close(0.1)
            assert time.monotonic() - started >= 0.1
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 5) == b""
            await until(lambda: app.cancelled == ["/wait"])
    finally:
        await settle()
