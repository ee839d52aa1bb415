"""StreamingResponse: chunks written as the handler's iterator yields them.

On the mock transport (what goes out after each chunk, errors, HEAD, HTTP/1.0, flow
control, a client that leaves) and once over a real socket read by http.client.
Every test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import http.client
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fastserve._testbase import parse_response, parse_responses
from fastserve.errors import InvalidInputError
from fastserve.http.messages import Response, StreamingResponse
from fastserve.http.router import Router
from fastserve.http.server import HttpServer

pytestmark = pytest.mark.usefixtures("loop")


def request(method: str = "GET", path: str = "/stream", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: test\r\n\r\n".encode()


async def until(condition: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


class Producer:
    """An async iterator of chunks that yields one chunk per ``step()`` of the test."""

    def __init__(self, chunks: list[Any], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.steps = asyncio.Queue()  # type: asyncio.Queue[None]
        self.closed = False
        self.yielded = 0

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.steps.put_nowait(None)

    async def run(self) -> AsyncIterator[Any]:
        try:
            for i, chunk in enumerate(self.chunks):
                await self.steps.get()
                if i == self.fail_at:
                    raise InvalidInputError("the producer failed")
                self.yielded += 1
                yield chunk
        finally:
            self.closed = True


def stream_router(producer: Producer, sync: bool = False, **kw: Any) -> Router:
    router = Router()
    if sync:
        def handler(request: Any) -> StreamingResponse:
            return StreamingResponse(producer.run(), **kw)
    else:
        async def handler(request: Any) -> StreamingResponse:  # type: ignore[misc]
            await asyncio.sleep(0)
            return StreamingResponse(producer.run(), **kw)
    router.add("GET", "/stream", handler)
    router.add("GET", "/hello", lambda request: Response(b'{"hello":"world"}'))
    return router


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_each_chunk_is_written_as_it_is_produced(connect, sync):
    producer = Producer([b"one", b"two-", memoryview(b"three")])
    protocol = connect(router=stream_router(producer, sync, content_type=b"text/plain",
                                            headers=[(b"x-kind", b"tokens")]))
    protocol.data_received(request())
    await asyncio.sleep(0.01)
    assert protocol.transport.buffer == b""  # nothing before the first chunk exists
    producer.step()
    await until(lambda: b"one" in protocol.transport.buffer)
    head, _, first = bytes(protocol.transport.buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head and b"content-length" not in head
    assert b"content-type: text/plain" in head and b"x-kind: tokens" in head
    assert first == b"3\r\none\r\n"  # the first chunk, and not the end of the body yet
    producer.step()
    await until(lambda: protocol.transport.buffer.endswith(b"4\r\ntwo-\r\n"))
    producer.step()
    await until(lambda: protocol.transport.buffer.endswith(b"0\r\n\r\n"))
    response = parse_response(protocol.transport.take())
    assert response.status == 200 and response.body == b"onetwo-three"
    assert "connection" not in response.headers
    assert producer.closed and not protocol.busy
    protocol.data_received(request(path="/hello"))  # the connection is kept alive
    assert parse_response(protocol.transport.take()).json() == {"hello": "world"}


async def test_empty_chunks_are_skipped_and_an_empty_stream_is_a_valid_body(connect):
    producer = Producer([b"", b"a", b"", bytearray(b"b")])
    protocol = connect(router=stream_router(producer))
    producer.step(4)
    protocol.data_received(request())
    await until(lambda: protocol.transport.buffer.endswith(b"0\r\n\r\n"))
    raw = protocol.transport.take()
    assert b"\r\n0\r\n\r\n" not in raw[:-5]  # no premature last chunk
    assert parse_response(raw).body == b"ab"

    nothing = Producer([])
    protocol = connect(router=stream_router(nothing))
    protocol.data_received(request())
    await until(lambda: protocol.transport.buffer.endswith(b"0\r\n\r\n"))
    response = parse_response(protocol.transport.take())
    assert response.status == 200 and response.body == b""


async def test_error_before_the_first_chunk_is_an_ordinary_answer(connect):
    producer = Producer([b"never"], fail_at=0)
    protocol = connect(router=stream_router(producer))
    producer.step()
    protocol.data_received(request())
    await until(lambda: b"\r\n\r\n" in protocol.transport.buffer)
    response = parse_response(protocol.transport.take())
    assert response.status == 400
    assert response.json() == {"error": "the producer failed"}
    assert producer.closed and not protocol.transport.closed


async def test_error_after_the_first_chunk_aborts_the_connection(connect, caplog):
    producer = Producer([b"one", b"two"], fail_at=1)
    protocol = connect(router=stream_router(producer))
    producer.step(2)
    protocol.data_received(request() + request(path="/hello"))
    await until(lambda: protocol.transport.aborted)
    raw = protocol.transport.take()
    assert raw.endswith(b"3\r\none\r\n")  # no last chunk: the client sees a broken body
    responses, rest = parse_responses(raw)
    assert responses == [] and rest == raw
    assert producer.closed
    assert "streamed answer to GET /stream failed" in caplog.text


async def test_head_sends_the_head_only(connect):
    producer = Producer([b"one", b"two"])
    protocol = connect(router=stream_router(producer))
    producer.step(2)
    protocol.data_received(request("HEAD"))
    await until(lambda: not protocol.busy and protocol.transport.buffer)
    raw = protocol.transport.take()
    assert raw.endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert producer.closed and producer.yielded == 1


async def test_http10_gets_the_raw_body_and_a_close(connect):
    producer = Producer([b"one", b"two"])
    protocol = connect(router=stream_router(producer))
    producer.step(2)
    protocol.data_received(request(version="1.0"))
    await until(lambda: protocol.transport.closed)
    head, _, body = protocol.transport.take().partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert body == b"onetwo"


async def test_client_leaving_mid_stream_closes_the_producer(connect):
    producer = Producer([b"one", b"two", b"three"])
    protocol = connect(router=stream_router(producer))
    producer.step()
    protocol.data_received(request())
    await until(lambda: b"one" in protocol.transport.buffer)
    protocol.transport.lose()
    await until(lambda: producer.closed)
    assert producer.yielded == 1 and protocol.task is None


async def test_a_full_client_window_holds_the_next_chunk(connect):
    producer = Producer([b"one", b"two", b"three"])
    protocol = connect(router=stream_router(producer))
    producer.step()
    protocol.data_received(request())
    await until(lambda: b"one" in protocol.transport.buffer)
    protocol.pause_writing()  # the peer stopped reading
    producer.step(2)
    await until(lambda: b"two" in protocol.transport.buffer)
    await asyncio.sleep(0.01)
    assert b"three" not in protocol.transport.buffer  # waits for the window
    protocol.resume_writing()
    await until(lambda: protocol.transport.buffer.endswith(b"0\r\n\r\n"))
    assert parse_response(protocol.transport.take()).body == b"onetwothree"


async def test_pipelined_requests_wait_for_the_stream(connect):
    producer = Producer([b"one", b"two"])
    protocol = connect(router=stream_router(producer))
    producer.step()
    protocol.data_received(request() + request(path="/hello"))
    await until(lambda: b"one" in protocol.transport.buffer)
    assert len(protocol.pipeline) == 1 and b"hello" not in protocol.transport.buffer
    producer.step()
    await until(lambda: b"hello" in protocol.transport.buffer)
    first, second = parse_responses(protocol.transport.take())[0]
    assert first.body == b"onetwo" and second.json() == {"hello": "world"}


async def test_streamed_over_a_socket_read_by_http_client(loop):
    async def tokens(request: Any) -> StreamingResponse:
        async def produce() -> AsyncIterator[bytes]:
            for i in range(50):
                await asyncio.sleep(0)
                yield b"token %d;" % i
        return StreamingResponse(produce(), content_type=b"text/plain")

    router = Router()
    router.add("GET", "/tokens", tokens)
    server = HttpServer(router)
    port = await server.listen("127.0.0.1", 0)

    def fetch() -> tuple[int, str | None, bytes, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/tokens")
            response = conn.getresponse()
            body = response.read()
            conn.request("GET", "/tokens")  # the same connection, kept alive
            again = conn.getresponse().read()
            return response.status, response.getheader("transfer-encoding"), body, again
        finally:
            conn.close()

    try:
        status, framing, body, again = await loop.run_in_executor(None, fetch)
    finally:
        await server.close(1.0)
    want = b"".join(b"token %d;" % i for i in range(50))
    assert (status, framing, body, again) == (200, "chunked", want, want)


async def test_no_content_type_header_when_the_type_is_empty(connect):
    producer = Producer([b"raw"])
    router = stream_router(producer, content_type=b"")
    router.add("GET", "/untyped", lambda request: Response(b"raw", content_type=b""))
    protocol = connect(router=router)
    producer.step()
    protocol.data_received(request() + request(path="/untyped"))
    await until(lambda: protocol.transport.buffer.count(b"raw") == 2)
    streamed, complete = parse_responses(protocol.transport.take())[0]
    for response in (streamed, complete):
        assert response.body == b"raw" and "content-type" not in response.headers
    assert complete.headers["content-length"] == "3"
