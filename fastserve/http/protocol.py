"""HTTP/1.1 on httptools: one HttpProtocol per connection, requests answered in order.

The shape follows uvicorn's httptools_impl: parser callbacks fill the request being
read; complete requests run one at a time (later pipelined ones wait in a deque);
synchronous handlers answer inline, coroutine handlers run as a task that is
cancelled if the client goes away.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from ..errors import FastServeError, InvalidInputError, RequestTooLargeError
from .flow_control import MAX_PIPELINE, FlowControl
from .messages import (
    STATUS_LINE,
    Request,
    Response,
    error_answer,
)

if TYPE_CHECKING:
    from .server import ServerState

log = logging.getLogger("fastserve.http")
_error_ids = itertools.count(1)


def request_id(request: Request | None) -> str:
    """The client's X-Request-ID, else a fresh one (answered in X-Request-ID): what an
    error's log line and its answer share, so a user can find one from the other."""
    given = request.headers.get(b"x-request-id") if request is not None else None
    if given:
        return given[:128].decode("latin-1")
    return f"{os.getpid():x}-{next(_error_ids)}"

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# status line, date line, content type, length, further header lines
_HEAD = b"%s%scontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
_HEAD_UNTYPED = b"%s%scontent-length: %d\r\n%s\r\n"  # content_type b"": no such header
METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}


class _HeadersTooLarge(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


def _inflate(body: bytes | bytearray, encoding: bytes, limit: int) -> bytearray:
    """Decompress a gzip/deflate request body, refusing output past ``limit`` bytes."""
    if encoding == b"gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == b"deflate":
        # RFC 9110 deflate is zlib-wrapped; some clients send raw deflate.
        wbits = zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 else -zlib.MAX_WBITS
    else:
        raise InvalidInputError(f"unsupported Content-Encoding {encoding.decode('latin-1')!r}")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"bad {encoding.decode()} request body: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise RequestTooLargeError(f"request body inflates past the {limit}-byte limit")
    if not d.eof:
        raise InvalidInputError(f"truncated {encoding.decode()} request body")
    return bytearray(out)


def _pick_encoding(accept: bytes) -> bytes | None:
    """gzip or deflate if Accept-Encoding allows it (q=0 excludes), else None."""
    allowed = {}
    for item in accept.lower().split(b","):
        name, _, params = item.strip().partition(b";")
        q = 1.0
        params = params.strip()
        if params.startswith(b"q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        allowed[name.strip()] = q
    for enc in (b"gzip", b"deflate"):
        if allowed.get(enc, allowed.get(b"*", 0.0)) > 0:
            return enc
    return None


def _compress(data: bytes, encoding: bytes) -> bytes:
    if encoding == b"gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    else:
        c = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


# Bodies at least this large are read straight into their buffer, not through httptools.
RAW_BODY_MIN = 64 * 1024
READ_BUFFER = 64 * 1024


class HttpProtocol(asyncio.BufferedProtocol):
    """One connection. As a BufferedProtocol the loop reads into our buffers: headers into
    a scratch buffer fed to httptools, a large body straight into its own bytearray (the
    only user-space copy is the kernel's). ``data_received`` serves the same logic for
    callers that hand over bytes."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.router = state.router
        self.limits = state.limits
        self.loop = state.loop
        # Per-connection state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.closed = False
        self.peer: Any = None
        self.last_activity = time.monotonic()
        self.pipeline: deque[Request] = deque()
        self.busy = False  # a coroutine handler is running for this connection
        self.task: asyncio.Task[Any] | None = None
        # Per-request state (the request being parsed)
        self.in_headers = False
        self.in_body = False
        self.headers_started = 0.0
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._header_chunk_bytes = 0
        self._body: Any = None
        self._body_pos = 0
        self._rejected: Request | None = None  # the request answered 413 while its body arrives
        self._discarded = 0
        # Direct body intake: the remaining body is read into ``_raw`` without httptools.
        self._scratch = memoryview(bytearray(READ_BUFFER))
        self._raw: memoryview | None = None
        self._raw_ready = False
        self._method = b""
        self._keep_alive = True
        self._http10 = False
        self._upgrade = False

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
        if self.task is not None and not self.task.done():
            # The client left: its answer would go nowhere, so stop the work behind it.
            self.task.cancel()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._raw is not None:
            return self._raw[self._body_pos:]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self._raw is not None:
            # The kernel wrote straight into the body: nothing to copy.
            self.last_activity = time.monotonic()
            self._body_pos += nbytes
            if self._body_pos == len(self._raw):
                self._finish_raw_body()
            return
        self.data_received(self._scratch[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.last_activity = time.monotonic()
        if self._raw is not None:
            n = min(len(data), len(self._raw) - self._body_pos)
            self._raw[self._body_pos:self._body_pos + n] = data[:n]
            self._body_pos += n
            if self._body_pos < len(self._raw):
                return
            self._finish_raw_body()
            data = data[n:]
            if not data:
                return
        if self.in_headers:
            # httptools gathers a header's pieces itself and reports it only once whole,
            # so count what arrives while the headers are still open.
            self._header_chunk_bytes += len(data)
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
                    log.error("error in HTTP parser callback", exc_info=cause)
                    self._fail_connection(500, "internal error while reading the request")
            except httptools.HttpParserUpgrade as exc:
                # A body-less request was answered as plain HTTP/1.1 (RFC 9110 §7.8 lets a
                # server ignore Upgrade); what follows it is parsed as more HTTP/1.1.
                data = data[exc.args[0]:] if exc.args else b""
                if data and not self.closed and not self._declares_body():
                    continue
            except httptools.HttpParserError as exc:
                self._fail_connection(400, f"malformed HTTP request: {exc}")
            else:
                if self.in_headers and self._header_chunk_bytes > self.limits.max_header_bytes:
                    self._fail_connection(431, "request headers too large")
                elif self._raw_ready and self.in_body and not self.closed:
                    # The rest of this body bypasses the parser (see get_buffer).
                    self._raw_ready = False
                    self._raw = memoryview(self._body)
            return

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.flow.write_paused = True
        self.flow.update()

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        self.flow.update()

    # Parser callbacks

    def on_message_begin(self) -> None:
        self.in_headers = True
        self.headers_started = self.last_activity
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._header_chunk_bytes = 0
        self._body = None
        self._body_pos = 0
        self._rejected = None
        self._discarded = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            raise _HeadersTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            raise _HeadersTooLarge()
        name = name.lower()
        old = self._headers.get(name)
        self._headers[name] = value if old is None else old + b", " + value

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.in_body = True
        parser = self.parser
        self._method = parser.get_method()
        self._keep_alive = parser.should_keep_alive()
        self._http10 = parser.get_http_version() == "1.0"
        self._upgrade = parser.should_upgrade()
        headers = self._headers
        length = headers.get(b"content-length")
        if length is not None:
            size = int(length)  # httptools has validated the digits
            if size > self.limits.max_body:
                self._reject_too_large()
                return
            self._body = bytearray(size) if size else b""
            self._raw_ready = size >= RAW_BODY_MIN and not self._upgrade
        else:
            # No Content-Length: chunked (httptools decodes it), else no body at all.
            self._body = _CHUNKED_LIST() if b"transfer-encoding" in headers else b""
        expect = headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self._idle():
            self.transport.write(CONTINUE)

    def on_body(self, chunk: bytes) -> None:
        if self._rejected:
            self._discarded += len(chunk)
            if self._discarded > self.limits.discard_cap:
                raise _BodyTooLarge()
            return
        body = self._body
        if type(body) is bytearray:
            end = self._body_pos + len(chunk)
            body[self._body_pos : end] = chunk
            self._body_pos = end
        else:
            body.append(chunk)
            body.size += len(chunk)
            if body.size > self.limits.max_body:
                self._reject_too_large()

    def on_message_complete(self) -> None:
        self.in_body = False
        self._raw_ready = False
        keep_alive = self._keep_alive
        if self._rejected:
            # The 413 has gone out (or waits in the queue); the body was discarded.
            self._close_after_pending()
            return
        if self._upgrade and self._declares_body():
            # httptools stops at an Upgrade request's headers and never reads its body:
            # refuse it rather than run the handler on an empty buffer.
            self._fail_connection(400, "Upgrade on a request with a body is not supported")
            return
        url = self._url
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
        body = self._body
        if type(body) is _CHUNKED_LIST:
            body = bytearray().join(body)
        method = self._method
        request = Request(METHODS.get(method) or method.decode("latin-1"), path, query,
                          self._headers, body, self)
        request.keep_alive = keep_alive
        request.http10 = self._http10
        encoding = self._headers.get(b"content-encoding")
        if encoding is not None and body and encoding.lower() != b"identity":
            try:
                request.body = _inflate(body, encoding.strip().lower(), self.limits.max_body)
            except FastServeError as exc:
                request.keep_alive = False
                self._queue_or_run(request, self._error_response(request, exc))
                return
        self._queue_or_run(request, None)

    def _finish_raw_body(self) -> None:
        """The body read past the parser is complete: a fresh parser takes the next request."""
        self._raw = None
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()

    # Request dispatch

    def _declares_body(self) -> bool:
        headers = self._headers
        return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"

    def _idle(self) -> bool:
        return not self.busy and not self.pipeline

    def _queue_or_run(self, request: Request, canned: Response | None) -> None:
        request.canned = canned
        if self.busy or self.pipeline:
            self.pipeline.append(request)
            if len(self.pipeline) >= MAX_PIPELINE:
                self.flow.queue_full = True
                self.flow.update()
            return
        self._run(request)

    def _run(self, request: Request) -> None:
        if request.canned is not None:
            self._send(request, request.canned)
            return
        try:
            if self.state.guard is not None:  # before routing: 401 says nothing of paths
                self.state.guard(request)
            route, request.params = self.router.resolve(request.method, request.path)
            if route.is_async:
                self.busy = True
                self.task = self.loop.create_task(self._run_async(route.handler, request))
                return
            response = route.handler(request)
        except Exception as exc:
            response = self._error_response(request, exc)
        self._send_checked(request, response)

    async def _run_async(self, handler: Any, request: Request) -> None:
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            if self.closed:
                return  # the client went away; nothing to answer
            raise
        except Exception as exc:
            response = self._error_response(request, exc)
        finally:
            self.busy = False
            self.task = None
        self._send_checked(request, response)
        self._drain_pipeline()

    def _drain_pipeline(self) -> None:
        while self.pipeline and not self.busy and not self.closed:
            self._run(self.pipeline.popleft())
        if self.flow.queue_full and len(self.pipeline) < MAX_PIPELINE // 2:
            self.flow.queue_full = False
            self.flow.update()

    # Response interface

    def _error_response(self, request: Request | None, exc: BaseException) -> Response:
        status, headers, message = error_answer(exc)
        rid = request_id(request)
        if not isinstance(exc, FastServeError):
            log.error("unexpected error answering %s %s [request %s]", request and request.method,
                      request and request.path, rid, exc_info=exc)
        elif status >= 500 and status != 503 and status != 504:
            log.error("%s %s failed [request %s]: %s", request and request.method,
                      request and request.path, rid, message, exc_info=exc.__cause__)
        elif status < 500:  # the client's mistake: never ERROR (CONTRACT section 3, Errors)
            log.warning("%s %s -> %d [request %s]: %s", request and request.method,
                        request and request.path, status, rid, message)
        headers = [*(headers or ()), (b"x-request-id", rid.encode("latin-1"))]
        path = request.path if request is not None else ""
        response = self.router.error_formatter(path)(status, message, exc)
        if headers:
            response.headers = (response.headers or []) + headers
        return response

    def _send_checked(self, request: Request, response: Response) -> None:
        """_send a handler's answer; one it cannot send (not a Response, str headers) is a 500.

        Raised from a task, the error would leave the connection busy forever.
        """
        try:
            self._send(request, response)
        except Exception as exc:
            request.keep_alive = False
            self._send(request, self._error_response(request, exc))

    def _send(self, request: Request, response: Response) -> None:
        if self.closed:
            return
        keep_alive = request.keep_alive and not self.state.draining
        body = response.body
        buffers = response.buffers
        extra = b""
        accept = request.headers.get(b"accept-encoding")
        if accept is not None and (body or buffers):
            encoding = _pick_encoding(accept)
            if encoding is not None:
                raw = b"".join([body, *buffers]) if buffers else body
                body, buffers = _compress(raw, encoding), None
                extra = b"content-encoding: " + encoding + b"\r\nvary: accept-encoding\r\n"
        length = len(body)
        if buffers:
            length += sum(memoryview(b).nbytes for b in buffers)
        if response.headers:
            extra += b"".join(name + b": " + value + b"\r\n" for name, value in response.headers)
        if not keep_alive:
            extra += b"connection: close\r\n"
        elif request.http10:
            extra += b"connection: keep-alive\r\n"
        # NOTE: one %-format for the whole head: cheaper than building and joining a list.
        if response.content_type:
            parts = [_HEAD % (STATUS_LINE[response.status], self.state.date_header(),
                              response.content_type, length, extra)]
        else:  # a TorchServe handler's answer without a type: TorchServe sends none
            parts = [_HEAD_UNTYPED % (STATUS_LINE[response.status], self.state.date_header(),
                                      length, extra)]
        if request.method != "HEAD":
            parts.append(body)
        self.transport.write(b"".join(parts))
        if buffers and request.method != "HEAD":
            self.transport.writelines(buffers)
        if self.state.on_response is not None:
            try:
                self.state.on_response(request, response.status,
                                       time.perf_counter() - request.started)
            except Exception:  # the answer is out: a hook's bug must not break the connection
                log.exception("response hook failed")
        # The keep-alive clock starts when the answer is out, not when the request came.
        self.last_activity = time.monotonic()
        if not keep_alive:
            if request is self._rejected and self.in_body:
                # Our 413 is out but its body is still coming: closing with unread data
                # makes the kernel send a reset, and the client may never read the 413.
                # on_message_complete (or the discard cap) closes instead.
                return
            self.closed = True
            self.transport.close()

    def _reject_too_large(self) -> None:
        """Answer 413 now, before reading the body, and discard what still arrives."""
        self._body = None
        request = Request(self.parser.get_method().decode("latin-1"),
                          httptools.parse_url(self._url).path.decode("latin-1"), "",
                          self._headers, b"", self)
        self._rejected = request
        request.keep_alive = False
        request.http10 = False
        exc = RequestTooLargeError(self._too_large_message())
        self._queue_or_run(request, self._error_response(request, exc))

    def _too_large_message(self) -> str:
        return (f"request body is larger than the {self.limits.max_body}-byte limit "
                "(--max-request-size)")

    def _fail_connection(self, status: int, message: str) -> None:
        """A request we cannot parse: answer it (after what is queued) and close."""
        if self.closed:
            return
        self.transport.pause_reading()
        if self._rejected is not None:
            # This request already has its 413 (sent or queued): just stop reading it.
            self.in_headers = self.in_body = False
            self._close_after_pending()
            return
        path = ""
        try:
            path = httptools.parse_url(self._url).path.decode("latin-1") if self._url else ""
        except httptools.HttpParserInvalidURLError:
            pass
        request = Request("GET", path, "", self._headers, b"", self)
        request.keep_alive = False
        request.http10 = False
        response = self.router.error_formatter(path)(status, message, None)
        # Nothing more is parsed on this connection: no second 408 from the sweep.
        self.in_headers = self.in_body = False
        if self.busy or self.pipeline:
            request.canned = response
            self.pipeline.append(request)
        else:
            self._send(request, response)

    def _close_after_pending(self) -> None:
        if self._idle():
            self.closed = True
            self.transport.close()

    # Timeouts, driven by ServerState's once-a-second sweep

    def check_timeouts(self, now: float) -> None:
        if self.closed:
            return
        if self.in_headers:
            if now - self.headers_started > self.limits.header_timeout:
                self._fail_connection(408, "request headers not received in time")
        elif self.in_body:
            # A body that stops arriving would hold its preallocated buffer forever.
            if (now - self.last_activity > self.limits.header_timeout
                    and self.transport.is_reading()):
                self._fail_connection(408, "request body not received in time")
        elif (self._idle()
              and now - self.last_activity > self.limits.keepalive_timeout):
            self.closed = True
            self.transport.close()

    def shutdown(self) -> None:
        """Close now if idle; otherwise the answer in flight goes out with Connection: close."""
        if self._idle() and not self.in_headers and not self.in_body and not self.closed:
            self.closed = True
            self.transport.close()


class _CHUNKED_LIST(list):  # noqa: N801
    """Chunks of a body without Content-Length, joined once at the end."""

    size = 0

