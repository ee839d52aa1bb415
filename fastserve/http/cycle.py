"""One request's life on a connection: what the parser has read of it, and its answer's
framing (uvicorn's ``RequestResponseCycle``; the connection keeps only what outlives it)."""

from __future__ import annotations

import enum
from typing import Any

from .messages import Request, Response


class Phase(enum.Enum):
    """How far the reading of one request has come."""

    HEADERS = "headers"  # request line and headers arriving (the header timeout runs)
    BODY = "body"  # body arriving (the body timeout runs)
    DISCARD = "discard"  # refused with 413 (sent or queued); the rest of its body is dropped
    DONE = "done"  # read whole (its Request exists), or nothing more is read: answered alone


class RequestCycle:
    """Per-request state: the parser's callbacks fill it; ``request`` exists once complete.

    ``keep_alive``/``http10``/``upgrade`` are what this request asked of the connection;
    ``canned`` is an answer the transport decided itself (413, 400 ...), sent in turn.
    """

    __slots__ = ("phase", "started", "method", "url", "headers", "header_bytes",
                 "chunk_bytes", "body", "body_pos", "direct", "discarded", "keep_alive",
                 "http10", "upgrade", "request", "canned")

    def __init__(self, started: float) -> None:
        self.phase = Phase.HEADERS
        self.started = started  # monotonic time the request began (the header timeout)
        self.method = b""
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0  # URL and header lines as parsed (the header size limit)
        self.chunk_bytes = 0  # raw bytes received while the headers were still open
        self.body: Any = None  # bytearray(Content-Length), a ChunkedBody, or b""
        self.body_pos = 0
        self.direct = False  # the body's rest is read straight into it, past the parser
        self.discarded = 0
        self.keep_alive = True
        self.http10 = False
        self.upgrade = False
        self.request: Request | None = None
        self.canned: Response | None = None

    @classmethod
    def answer_only(cls, request: Request, response: Response, started: float) -> RequestCycle:
        """A cycle that only carries the transport's own answer, then closes the connection."""
        cycle = cls(started)
        cycle.phase = Phase.DONE
        cycle.keep_alive = False
        cycle.request = request
        cycle.canned = response
        return cycle

    def declares_body(self) -> bool:
        headers = self.headers
        return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


class ChunkedBody(list):  # type: ignore[type-arg]
    """Chunks of a body without Content-Length, joined once at the end."""

    size = 0
