"""Test helpers for the HTTP transport: a fake transport, a connected protocol, a response parser.

Shaped after uvicorn's ``tests/protocols`` (``MockTransport``, ``get_connected_protocol``):
feed raw bytes with ``protocol.data_received(raw)`` and assert on ``transport.buffer``.
Nothing here opens a socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .http.protocol import HttpProtocol
from .http.router import Router
from .http.server import Limits, ServerState


class MockTransport(asyncio.Transport):
    """Records what the protocol writes and how it drives the transport."""

    def __init__(self, peername: tuple[str, int] = ("127.0.0.1", 8001)) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.read_paused = False
        self.pause_count = 0
        self.resume_count = 0
        self.protocol: asyncio.Protocol | None = None
        self._extra = {"peername": peername, "sockname": ("127.0.0.1", 8000)}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        chunk = bytes(data)
        self.writes.append(chunk)
        self.buffer += chunk

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.read_paused = True
        self.pause_count += 1

    def resume_reading(self) -> None:
        self.read_paused = False
        self.resume_count += 1

    def is_reading(self) -> bool:
        return not self.read_paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False

    def take(self) -> bytes:
        """Everything written so far, clearing the buffer."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def lose(self, exc: Exception | None = None) -> None:
        """Simulate the peer going away: close and tell the protocol, as a loop would."""
        self.closed = True
        if self.protocol is not None:
            self.protocol.connection_lost(exc)


def get_connected_protocol(
    router: Router,
    limits: Limits | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    guard: Any = None,
) -> HttpProtocol:
    """An HttpProtocol for ``router`` already connected to a fresh MockTransport.

    Without ``loop`` the running loop is used (async handlers become its tasks).
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    state = ServerState(router, limits or Limits(), loop, guard)
    protocol = HttpProtocol(state)
    transport = MockTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol


@dataclass
class RawResponse:
    """One parsed HTTP/1.x response; header names are lower-cased, repeats joined by ', '."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    version: str = "HTTP/1.1"
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


def parse_responses(data: bytes, head: bool | list[bool] = False) -> tuple[list[RawResponse],
                                                                          bytes]:
    """Split ``data`` into complete responses; return them and the unparsed rest.

    ``head`` says which responses answer a HEAD (no body despite Content-Length): one flag
    for all, or one per response. Chunked bodies come back decoded (a response whose last
    chunk has not arrived is left in the rest); without Content-Length or chunked framing
    the body runs to the end of ``data``. ``100 Continue`` interim responses
    come back as responses of their own.
    """
    out: list[RawResponse] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        raw_headers = []
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            raw_headers.append((name, value))
            headers[name] = headers[name] + ", " + value if name in headers else value
        start = end + 4
        status = int(code)
        is_head = head[len(out)] if isinstance(head, list) else head
        if status < 200 or status in (204, 304) or is_head:
            length = 0
        elif headers.get("transfer-encoding") == "chunked":
            decoded = _dechunk(data, start)
            if decoded is None:
                break
            body, pos = decoded
            out.append(RawResponse(status, reason, headers, body, version, raw_headers))
            continue
        elif "content-length" in headers:
            length = int(headers["content-length"])
        else:
            length = len(data) - start
        if start + length > len(data):
            break
        out.append(RawResponse(status, reason, headers, bytes(data[start:start + length]),
                               version, raw_headers))
        pos = start + length
    return out, bytes(data[pos:])


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``pos``: (its bytes, where it ends), None if incomplete."""
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(data[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n", pos)  # no trailers from fastserve: just the blank line
            return (bytes(body), end + 2) if end >= 0 else None
        if pos + size + 2 > len(data):
            return None
        body += data[pos:pos + size]
        assert data[pos + size:pos + size + 2] == b"\r\n", "chunk not followed by CRLF"
        pos += size + 2


def parse_response(data: bytes, head: bool = False) -> RawResponse:
    """Exactly one complete response in ``data`` (nothing after it)."""
    responses, rest = parse_responses(data, head)
    assert len(responses) == 1 and not rest, (len(responses), rest[:200], data[:500])
    return responses[0]
