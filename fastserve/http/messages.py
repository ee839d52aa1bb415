"""Request and Response objects and status lines (error statuses: error_map.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
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
    """One HTTP request: method, path, query, lower-cased headers and the whole body.

    ``body`` is the buffer the transport filled (a bytearray when Content-Length was
    sent, so views over it are writable and zero-copy).
    """

    __slots__ = ("method", "path", "query", "headers", "body", "params", "_conn",
                 "keep_alive", "http10", "canned", "started")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[bytes, bytes],
        body: bytes | bytearray | memoryview,
        conn: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.params: dict[str, str] = {}
        self._conn = conn
        # Set by the transport: connection reuse, and an answer already decided (an error).
        self.keep_alive = True
        self.http10 = False
        self.canned: Response | None = None
        # time.perf_counter() when the request was complete (access log and metrics latency)
        self.started = time.perf_counter()

    @property
    def disconnected(self) -> bool:
        """True once the client's connection is gone (its answer would go nowhere)."""
        return self._conn is not None and self._conn.closed

    def header(self, name: bytes, default: bytes | None = None) -> bytes | None:
        return self.headers.get(name, default)

    @property
    def content_type(self) -> str:
        value = self.headers.get(b"content-type", b"")
        return value.split(b";", 1)[0].strip().lower().decode("latin-1")


class Response:
    """A complete answer. ``buffers`` are extra body parts sent after ``body`` as they are."""

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


# Formats an error for a path family: (status, message, exception or None) -> Response.
ErrorFormatter = Callable[[int, str, "BaseException | None"], Response]
