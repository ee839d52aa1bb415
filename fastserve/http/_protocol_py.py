"""HTTP/1.1 on httptools, in pure Python: one HttpProtocol per connection, one RequestCycle
per request (protocol.py picks this or the compiled one; _protocol.pyx says which parts).

The shape follows uvicorn's httptools_impl: parser callbacks fill the cycle being read;
complete cycles are answered one at a time, in order (later pipelined ones wait in a
deque); synchronous handlers answer inline, coroutine handlers and streamed answers run
as a task that is cancelled if the client goes away. This module reads; dispatch.py
answers; writer.py frames the bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from ..errors import FastServeError, RequestTooLargeError
from .cycle import ChunkedBody, Phase, RequestCycle
from .dispatch import Dispatch
from .encoding import inflate
from .flow_control import FlowControl
from .messages import Request

if TYPE_CHECKING:
    from .server import ServerState

log = logging.getLogger("fastserve.http")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
# Bodies at least this large are read straight into their buffer, not through httptools.
RAW_BODY_MIN = 64 * 1024
READ_BUFFER = 64 * 1024

HEADERS, BODY, DISCARD, DONE = Phase.HEADERS, Phase.BODY, Phase.DISCARD, Phase.DONE


class _HeadersTooLarge(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


class HttpProtocol(Dispatch, asyncio.BufferedProtocol):
    """One connection. As a BufferedProtocol the loop reads into our buffers: headers into
    a scratch buffer fed to httptools, a large body straight into its own bytearray (the
    only user-space copy is the kernel's). ``data_received`` serves the same logic for
    callers that hand over bytes.

    ``cycle`` is the request being read (or the last one read); ``running`` the one whose
    task runs; ``pipeline`` the complete ones waiting their turn.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.router = state.router
        self.limits = state.limits
        self.loop = state.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.closed = False
        self.peer: Any = None
        self.last_activity = time.monotonic()
        self.cycle: RequestCycle | None = None
        self.running: RequestCycle | None = None
        self.task: asyncio.Task[Any] | None = None
        self.pipeline: deque[RequestCycle] = deque()
        # Direct body intake: the body's rest is read into ``_raw`` without httptools.
        self._scratch = memoryview(bytearray(READ_BUFFER))
        self._raw: memoryview | None = None
        self._is_closed = self._closed_probe  # one bound method per connection, not request

    @property
    def busy(self) -> bool:
        """A task (async handler or streamed answer) is answering for this connection."""
        return self.running is not None

    def _closed_probe(self) -> bool:
        return self.closed

    # Protocol interface

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(self.transport)
        self.peer = transport.get_extra_info("peername")
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self.pipeline.clear()
        if self.flow is not None:
            self.flow.release()
        if self.task is not None and not self.task.done():
            # The client left: its answer would go nowhere, so stop the work behind it.
            self.task.cancel()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._raw is not None:
            return self._raw[self.cycle.body_pos:]  # type: ignore[union-attr]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self._raw is not None:
            # The kernel wrote straight into the body: nothing to copy.
            self.last_activity = time.monotonic()
            cycle = self.cycle
            cycle.body_pos += nbytes  # type: ignore[union-attr]
            if cycle.body_pos == len(self._raw):  # type: ignore[union-attr]
                self._finish_raw_body()
            return
        self.data_received(self._scratch[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.last_activity = time.monotonic()
        if self._raw is not None:
            cycle = self.cycle
            pos = cycle.body_pos  # type: ignore[union-attr]
            n = min(len(data), len(self._raw) - pos)
            self._raw[pos:pos + n] = data[:n]
            cycle.body_pos = pos + n  # type: ignore[union-attr]
            if pos + n < len(self._raw):
                return
            self._finish_raw_body()
            data = data[n:]
            if not data:
                return
        cycle = self.cycle
        if cycle is not None and cycle.phase is HEADERS:
            # httptools gathers a header's pieces itself and reports it only once whole,
            # so count what arrives while the headers are still open.
            cycle.chunk_bytes += len(data)
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                if isinstance(cause, _HeadersTooLarge):
                    self._fail_connection(431, "request headers too large")
                elif isinstance(cause, _BodyTooLarge):
                    self._fail_connection(413, self._too_large_message())
                elif isinstance(cause, httptools.HttpParserInvalidURLError):
                    self._fail_connection(400, f"malformed HTTP request: {cause}")
                else:
                    self._parser_callback_failed(cause)
            except httptools.HttpParserUpgrade as exc:
                # A body-less request was answered as plain HTTP/1.1 (RFC 9110 §7.8 lets a
                # server ignore Upgrade); what follows it is parsed as more HTTP/1.1.
                data = data[exc.args[0]:] if exc.args else b""
                if data and not self.closed and not self.cycle.declares_body():  # type: ignore[union-attr]
                    continue
            except httptools.HttpParserError as exc:
                self._fail_connection(400, f"malformed HTTP request: {exc}")
            else:
                cycle = self.cycle
                if cycle is None:
                    pass
                elif cycle.phase is HEADERS:
                    if cycle.chunk_bytes > self.limits.max_header_bytes:
                        self._fail_connection(431, "request headers too large")
                elif cycle.direct and cycle.phase is BODY and not self.closed:
                    # The rest of this body bypasses the parser (see get_buffer).
                    cycle.direct = False
                    self._raw = memoryview(cycle.body)
            return

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.flow.write_paused = True
        self.flow.update()

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        self.flow.update()

    # Parser callbacks: they fill self.cycle

    def on_message_begin(self) -> None:
        self.cycle = RequestCycle(self.last_activity)

    def on_url(self, url: bytes) -> None:
        cycle = self.cycle
        cycle.url += url  # type: ignore[union-attr]
        cycle.header_bytes += len(url)  # type: ignore[union-attr]
        if cycle.header_bytes > self.limits.max_header_bytes:  # type: ignore[union-attr]
            raise _HeadersTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        cycle: RequestCycle = self.cycle  # type: ignore[assignment]
        cycle.header_bytes += len(name) + len(value) + 4
        if cycle.header_bytes > self.limits.max_header_bytes:
            raise _HeadersTooLarge()
        name = name.lower()
        headers = cycle.headers
        old = headers.get(name)
        headers[name] = value if old is None else old + b", " + value

    def on_headers_complete(self) -> None:
        cycle: RequestCycle = self.cycle  # type: ignore[assignment]
        cycle.phase = BODY
        parser = self.parser
        cycle.method = parser.get_method()
        cycle.keep_alive = parser.should_keep_alive()
        cycle.http10 = parser.get_http_version() == "1.0"
        cycle.upgrade = parser.should_upgrade()
        headers = cycle.headers
        length = headers.get(b"content-length")
        if length is not None:
            size = int(length)  # httptools has validated the digits
            if size > self.limits.max_body:
                self._reject_too_large(cycle)
                return
            cycle.body = bytearray(size) if size else b""
            cycle.direct = size >= RAW_BODY_MIN and not cycle.upgrade
        else:
            # No Content-Length: chunked (httptools decodes it), else no body at all.
            cycle.body = ChunkedBody() if b"transfer-encoding" in headers else b""
        expect = headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self._idle():
            self.transport.write(CONTINUE)

    def on_body(self, chunk: bytes) -> None:
        cycle: RequestCycle = self.cycle  # type: ignore[assignment]
        if cycle.phase is DISCARD:
            cycle.discarded += len(chunk)
            if cycle.discarded > self.limits.discard_cap:
                raise _BodyTooLarge()
            return
        body = cycle.body
        if type(body) is bytearray:
            end = cycle.body_pos + len(chunk)
            body[cycle.body_pos : end] = chunk
            cycle.body_pos = end
        else:
            body.append(chunk)
            body.size += len(chunk)
            if body.size > self.limits.max_body:
                self._reject_too_large(cycle)

    def on_message_complete(self) -> None:
        cycle: RequestCycle = self.cycle  # type: ignore[assignment]
        if cycle.phase is DISCARD:
            # The 413 has gone out (or waits in the queue); the body was discarded.
            cycle.phase = DONE
            self._close_after_pending()
            return
        cycle.phase = DONE
        if cycle.upgrade and cycle.declares_body():
            # httptools stops at an Upgrade request's headers and never reads its body:
            # refuse it rather than run the handler on an empty buffer.
            self._fail_connection(400, "Upgrade on a request with a body is not supported")
            return
        url = cycle.url
        if url[:1] == b"/":  # origin-form, as every client sends: split it ourselves
            path_bytes, _, query_bytes = url.partition(b"?")
            path = path_bytes.decode("latin-1")
            query = query_bytes.partition(b"#")[0].decode("latin-1")
        else:
            parsed = httptools.parse_url(url)
            path = parsed.path.decode("latin-1")
            query = parsed.query.decode("latin-1") if parsed.query else ""
        if "%" in path:
            path = unquote(path)
        body = cycle.body
        if type(body) is ChunkedBody:
            body = bytearray().join(body)
        method = cycle.method
        headers = cycle.headers
        request = Request(METHODS.get(method) or method.decode("latin-1"), path, query,
                          headers, body, self.peer, self._is_closed)
        cycle.request = request
        encoding = headers.get(b"content-encoding")
        if encoding is not None and body and encoding.lower() != b"identity":
            try:
                request.body = inflate(body, encoding.strip().lower(), self.limits.max_body)
            except FastServeError as exc:
                cycle.keep_alive = False
                self._queue_or_run(cycle, self._error_response(request, exc))
                return
        self._queue_or_run(cycle, None)

    def _parser_callback_failed(self, cause: BaseException | None) -> None:
        log.error("error in HTTP parser callback", exc_info=cause)
        self._fail_connection(500, "internal error while reading the request")

    def _finish_raw_body(self) -> None:
        """The body read past the parser is complete: a fresh parser takes the next request."""
        self._raw = None
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()

    def _reject_too_large(self, cycle: RequestCycle) -> None:
        """Answer 413 now, before reading the body, and discard what still arrives."""
        cycle.phase = DISCARD
        cycle.body = None
        cycle.keep_alive = False
        cycle.http10 = False
        cycle.request = Request(self.parser.get_method().decode("latin-1"),
                                httptools.parse_url(cycle.url).path.decode("latin-1"), "",
                                cycle.headers, b"", self.peer, self._is_closed)
        exc = RequestTooLargeError(self._too_large_message())
        self._queue_or_run(cycle, self._error_response(cycle.request, exc))

    def _too_large_message(self) -> str:
        return (f"request body is larger than the {self.limits.max_body}-byte limit "
                "(--max-request-size)")

    def _fail_connection(self, status: int, message: str) -> None:
        """A request we cannot parse: answer it (after what is queued) and close."""
        if self.closed:
            return
        self.transport.pause_reading()
        cycle = self.cycle
        if cycle is not None and cycle.phase is DISCARD:
            # This request already has its 413 (sent or queued): just stop reading it.
            cycle.phase = DONE
            self._close_after_pending()
            return
        path = ""
        headers: dict[bytes, bytes] = {}
        if cycle is not None:
            headers = cycle.headers
            try:
                path = httptools.parse_url(cycle.url).path.decode("latin-1") if cycle.url else ""
            except httptools.HttpParserInvalidURLError:
                pass
            # Nothing more is parsed on this connection: no second 408 from the sweep.
            cycle.phase = DONE
        request = Request("GET", path, "", headers, b"", self.peer, self._is_closed)
        response = self.router.error_formatter(path)(status, message, None)
        failed = RequestCycle.answer_only(request, response, self.last_activity)
        if self.running is not None or self.pipeline:
            self.pipeline.append(failed)
        else:
            self._send(failed, response)

    # Timeouts, driven by ServerState's once-a-second sweep

    def _reading(self) -> bool:
        return self.cycle is not None and self.cycle.phase is not DONE

    def check_timeouts(self, now: float) -> None:
        if self.closed:
            return
        cycle = self.cycle
        phase = cycle.phase if cycle is not None else DONE
        if phase is HEADERS:
            if now - cycle.started > self.limits.header_timeout:  # type: ignore[union-attr]
                self._fail_connection(408, "request headers not received in time")
        elif phase is not DONE:
            # A body that stops arriving would hold its preallocated buffer forever.
            if (now - self.last_activity > self.limits.header_timeout
                    and self.transport.is_reading()):
                self._fail_connection(408, "request body not received in time")
        elif self._idle() and now - self.last_activity > self.limits.keepalive_timeout:
            self.closed = True
            self.transport.close()

    def shutdown(self) -> None:
        """Close now if idle; otherwise the answer in flight goes out with Connection: close."""
        if self._idle() and not self._reading() and not self.closed:
            self.closed = True
            self.transport.close()
