"""Request and Response objects and status lines (error statuses: error_map.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

from .error_map import (  # noqa: F401  (re-exported: where callers found them before)
    RETRY_AFTER_CODES,
    RETRY_AFTER_SECONDS,
    STATUS_BY_CODE,
    ErrorAnswer,
    error_answer,
    status_for,
)

STATUS_LINE = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus
}

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"


class Request:
    """One HTTP request, as a plain message: method, path, query, lower-cased headers,
    the whole body, the route's path parameters and the client's address.

    ``body`` is the buffer the transport filled (a bytearray when Content-Length was
    sent, so views over it are writable and zero-copy). Nothing here reaches back into
    the connection except ``disconnected``, which asks the transport's probe.
    """

    __slots__ = ("method", "path", "query", "headers", "body", "params", "client", "started",
                 "_is_disconnected")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[bytes, bytes],
        body: bytes | bytearray | memoryview,
        client: tuple[str, int] | None = None,
        is_disconnected: Callable[[], bool] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.params: dict[str, str] = {}
        self.client = client
        # time.perf_counter() when the request was complete (access log and metrics latency)
        self.started = time.perf_counter()
        self._is_disconnected = is_disconnected

    @property
    def disconnected(self) -> bool:
        """True once the client's connection is gone (its answer would go nowhere)."""
        probe = self._is_disconnected
        return probe is not None and probe()

    def header(self, name: bytes, default: bytes | None = None) -> bytes | None:
        return self.headers.get(name, default)

    @property
    def content_type(self) -> str:
        value = self.headers.get(b"content-type", b"")
        return value.split(b";", 1)[0].strip().lower().decode("latin-1")


class Response:
    """A complete answer. ``buffers`` are extra body parts sent after ``body`` as they are;
    ``content_type=b""`` sends no Content-Type header (as TorchServe for untyped answers)."""

    __slots__ = ("status", "body", "content_type", "headers", "buffers")

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        content_type: bytes = JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
        buffers: list[Any] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.buffers = buffers

    @property
    def length(self) -> int:
        n = len(self.body)
        if self.buffers:
            n += sum(memoryview(b).nbytes for b in self.buffers)
        return n


class StreamingResponse:
    """An answer whose body is produced while it is sent: ``chunks`` (an async iterator
    of bytes-like objects) are written one by one as they come, with
    ``Transfer-Encoding: chunked`` (HTTP/1.0 clients: unframed, then the connection
    closes). A route handler returns one like a ``Response``.

    The head goes out with the first chunk, so an exception raised before it becomes an
    ordinary error answer; one raised later aborts the connection (the status is gone),
    which a client sees as a truncated chunked body. The transport waits for the peer to
    read (flow control) between chunks, and closes the iterator if the client leaves.
    Not compressed. Example::

        async def tokens(request: Request) -> StreamingResponse:
            async def produce() -> AsyncIterator[bytes]:
                for token in generate():
                    yield token.encode()
            return StreamingResponse(produce(), content_type=b"text/plain")
    """

    __slots__ = ("status", "chunks", "content_type", "headers")

    def __init__(
        self,
        chunks: AsyncIterator[Any],
        status: int = 200,
        content_type: bytes = OCTET_STREAM,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.content_type = content_type
        self.headers = headers


# Formats an error for a path family: (status, message, exception or None) -> Response.
ErrorFormatter = Callable[[int, str, "BaseException | None"], Response]
