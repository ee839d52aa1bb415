# cython: language_level=3
"""The per-request path of HttpProtocol as typed C classes.

``HttpCore`` holds a connection's state in C fields and implements what runs for every
request: the buffer intake, the httptools callbacks, dispatch and the response head.
fastserve/http/protocol.py mixes it in front of the pure-Python protocol
(_protocol_py.py), which supplies everything rare (failures, timeouts, streaming,
error answers) and is the twin: each method here has the same behaviour there, and
tests/http runs on both (FASTSERVE_NO_EXTENSIONS=1 chooses the twin).
"""

import time
from urllib.parse import unquote

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytearray cimport PyByteArray_FromStringAndSize
from libc.string cimport memcpy
from libc.time cimport time as c_time, time_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

import httptools

from ..errors import FastServeError
from .cycle import ChunkedBody, Phase
from .encoding import encode_body, inflate
from .flow_control import MAX_PIPELINE, FlowControl
from .messages import STATUS_LINE, Request, StreamingResponse

cdef object HEADERS = Phase.HEADERS
cdef object BODY = Phase.BODY
cdef object DISCARD = Phase.DISCARD
cdef object DONE = Phase.DONE
cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes HEAD_FORMAT = b"%s%scontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
cdef bytes HEAD_UNTYPED = b"%s%scontent-length: %d\r\n%s\r\n"
cdef dict METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD",
                                             "OPTIONS", "PATCH")}
cdef dict STATUS = STATUS_LINE
cdef Py_ssize_t RAW_BODY_MIN = 64 * 1024
cdef object monotonic = time.monotonic
cdef object perf_counter = time.perf_counter


class _HeadersTooLarge(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


async def _ready(value):
    return value


include "_request_cycle.pxi"


cdef class HttpCore:
    """A connection's state; the per-request methods. __init__ is the twin's."""

    cdef public object state, router, limits, loop, transport, flow, parser, peer
    cdef public object cycle, running, task, pipeline, _scratch, _raw, _is_closed
    cdef public bint closed
    cdef public double last_activity
    cdef Py_ssize_t max_header_bytes, max_body, discard_cap  # the Limits, read at connect
    # Probe answers (probes.py): the port's ProbeAnswers, its url -> answer and url ->
    # handler dicts, or None; the scratch buffer's bytearray; plain GETs answered so.
    cdef object _probes, _probe_answers, _probe_handlers, _scratch_bytes
    cdef public Py_ssize_t probes_answered

    def connection_made(self, transport):
        self.transport = transport
        self.flow = FlowControl(transport)
        self.peer = transport.get_extra_info("peername")
        self.state.connections.add(self)
        limits = self.limits
        self.max_header_bytes = limits.max_header_bytes
        self.max_body = limits.max_body
        self.discard_cap = limits.discard_cap
        self._scratch_bytes = self._scratch.obj
        probes = getattr(self.state, "probes", None)
        if probes is not None and probes.handlers:
            self._probes = probes
            self._probe_answers = probes.answers
            self._probe_handlers = probes.handlers

    # Buffer intake

    def get_buffer(self, Py_ssize_t sizehint):
        if self._raw is not None:
            return self._raw[(<RequestCycle>self.cycle).body_pos:]
        return self._scratch

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef RequestCycle cycle
        if self._raw is not None:
            self.last_activity = monotonic()
            cycle = <RequestCycle>self.cycle
            cycle.body_pos += nbytes
            if cycle.body_pos == len(self._raw):
                self._finish_raw_body()
            return
        cdef Py_ssize_t done = 0
        if self._probes is not None:
            done = _answer_probes(
                self, <const unsigned char*>PyByteArray_AS_STRING(self._scratch_bytes), nbytes)
            if done == nbytes:
                return
        self.data_received(self._scratch[done:nbytes])

    def data_received(self, data):
        cdef RequestCycle cycle
        cdef Py_ssize_t pos, n
        if self._probes is not None and type(data) is bytes and self._raw is None:
            n = _answer_probes(self, <const unsigned char*>PyBytes_AS_STRING(data), len(data))
            if n:
                if n == len(data):
                    return
                data = data[n:]
        self.last_activity = monotonic()
        if self._raw is not None:
            cycle = <RequestCycle>self.cycle
            pos = cycle.body_pos
            n = min(len(data), len(self._raw) - pos)
            self._raw[pos:pos + n] = data[:n]
            cycle.body_pos = pos + n
            if pos + n < len(self._raw):
                return
            self._finish_raw_body()
            data = data[n:]
            if not data:
                return
        if self.cycle is not None and (<RequestCycle>self.cycle).phase is HEADERS:
            (<RequestCycle>self.cycle).chunk_bytes += len(data)
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                if isinstance(cause, _HeadersTooLarge):
                    self._fail_connection(431, "request headers too large")
                elif isinstance(cause, _BodyTooLarge):
                    self._fail_connection(413, (<object>self)._too_large_message())
                elif isinstance(cause, httptools.HttpParserInvalidURLError):
                    self._fail_connection(400, f"malformed HTTP request: {cause}")
                else:
                    (<object>self)._parser_callback_failed(cause)
            except httptools.HttpParserUpgrade as exc:
                data = data[exc.args[0]:] if exc.args else b""
                if data and not self.closed and not (<RequestCycle>self.cycle).declares_body():
                    continue
            except httptools.HttpParserError as exc:
                self._fail_connection(400, f"malformed HTTP request: {exc}")
            else:
                if self.cycle is None:
                    return
                cycle = <RequestCycle>self.cycle
                if cycle.phase is HEADERS:
                    if cycle.chunk_bytes > self.max_header_bytes:
                        self._fail_connection(431, "request headers too large")
                elif cycle.direct and cycle.phase is BODY and not self.closed:
                    cycle.direct = False
                    self._raw = memoryview(cycle.body)
            return

    # Parser callbacks

    def on_message_begin(self):
        self.cycle = _new_cycle(self.last_activity)

    def on_url(self, bytes url):
        cdef RequestCycle cycle = <RequestCycle>self.cycle
        cycle.url += url
        cycle.header_bytes += len(url)
        if cycle.header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge()

    def on_header(self, bytes name, bytes value):
        cdef RequestCycle cycle = <RequestCycle>self.cycle
        cycle.header_bytes += len(name) + len(value) + 4
        if cycle.header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge()
        name = name.lower()
        cdef dict headers = cycle.headers
        old = headers.get(name)
        headers[name] = value if old is None else old + b", " + value

    def on_headers_complete(self):
        cdef RequestCycle cycle = <RequestCycle>self.cycle
        cdef Py_ssize_t size
        cycle.phase = BODY
        parser = self.parser
        cycle.method = parser.get_method()
        cycle.keep_alive = parser.should_keep_alive()
        cycle.http10 = parser.get_http_version() == "1.0"
        cycle.upgrade = parser.should_upgrade()
        cdef dict headers = cycle.headers
        length = headers.get(b"content-length")
        if length is not None:
            size = int(length)
            if size > self.max_body:
                (<object>self)._reject_too_large(cycle)
                return
            # NOTE: not zero-filled (the twin's bytearray(size) is): every byte is written
            # before the request exists, and the fill costs a pass over a large body.
            cycle.body = PyByteArray_FromStringAndSize(NULL, size) if size else b""
            cycle.direct = size >= RAW_BODY_MIN and not cycle.upgrade
        else:
            cycle.body = ChunkedBody() if b"transfer-encoding" in headers else b""
        expect = headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self._idle():
            self.transport.write(CONTINUE)

    def on_body(self, bytes chunk):
        cdef RequestCycle cycle = <RequestCycle>self.cycle
        cdef Py_ssize_t end
        if cycle.phase is DISCARD:
            cycle.discarded += len(chunk)
            if cycle.discarded > self.discard_cap:
                raise _BodyTooLarge()
            return
        body = cycle.body
        if type(body) is bytearray:
            end = cycle.body_pos + len(chunk)
            if end <= PyByteArray_GET_SIZE(body):  # always (httptools stops at the length)
                memcpy(PyByteArray_AS_STRING(body) + cycle.body_pos, PyBytes_AS_STRING(chunk),
                       len(chunk))
            else:
                body[cycle.body_pos:end] = chunk
            cycle.body_pos = end
        else:
            body.append(chunk)
            body.size += len(chunk)
            if body.size > self.max_body:
                (<object>self)._reject_too_large(cycle)

    def on_message_complete(self):
        cdef RequestCycle cycle = <RequestCycle>self.cycle
        cdef bytes url
        if cycle.phase is DISCARD:
            cycle.phase = DONE
            (<object>self)._close_after_pending()
            return
        cycle.phase = DONE
        if cycle.upgrade and cycle.declares_body():
            self._fail_connection(400, "Upgrade on a request with a body is not supported")
            return
        url = cycle.url
        if url[:1] == b"/":
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
                request.body = inflate(body, encoding.strip().lower(), self.max_body)
            except FastServeError as exc:
                cycle.keep_alive = False
                self._queue_or_run(cycle, (<object>self)._error_response(request, exc))
                return
        self._queue_or_run(cycle, None)

    def _finish_raw_body(self):
        self._raw = None
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()

    # Dispatch

    cpdef bint _idle(self):
        return self.running is None and not self.pipeline

    def _queue_or_run(self, RequestCycle cycle, canned):
        cycle.canned = canned
        if self.running is not None or self.pipeline:
            self.pipeline.append(cycle)
            if len(self.pipeline) >= MAX_PIPELINE:
                self.flow.queue_full = True
                self.flow.update()
            return
        self._run(cycle)

    def _run(self, RequestCycle cycle):
        request = cycle.request
        if cycle.canned is not None:
            self._send(cycle, cycle.canned)
            return
        try:
            guard = self.state.guard
            if guard is not None:
                guard(request)
            route, request.params = self.router.resolve(request.method, request.path)
            if route.is_async:
                self._start(cycle, route.handler(request))
                return
            response = route.handler(request)
            if type(response) is StreamingResponse:
                self._start(cycle, _ready(response))
                return
        except Exception as exc:
            response = (<object>self)._error_response(request, exc)
        self._send_checked(cycle, response)

    def _send_checked(self, RequestCycle cycle, response):
        """The twin's _send_checked: an answer that cannot be sent becomes a 500."""
        try:
            self._send(cycle, response)
        except Exception as exc:
            cycle.keep_alive = False
            self._send(cycle, (<object>self)._error_response(cycle.request, exc))

    def _start(self, RequestCycle cycle, answer):
        self.running = cycle
        self.task = self.loop.create_task((<object>self)._run_async(cycle, answer))

    def _send(self, RequestCycle cycle, response):
        if self.closed:
            return
        request = cycle.request
        state = self.state
        cdef bint keep_alive = cycle.keep_alive and not state.draining
        _write_response(self.transport, request, response, keep_alive, cycle.http10,
                        _date_line(state))
        self._answered(cycle, request, response.status, keep_alive)

    def _answered(self, RequestCycle cycle, request, status, bint keep_alive):
        hook = self.state.on_response
        if hook is not None:
            try:
                hook(request, status, perf_counter() - request.started)
            except Exception:
                (<object>self)._hook_failed()
        self.last_activity = monotonic()
        if not keep_alive:
            if cycle.phase is DISCARD:
                return
            self.closed = True
            self.transport.close()

    def _fail_connection(self, int status, str message):
        """The twin's _fail_connection; the answer's cycle is a C one."""
        if self.closed:
            return
        self.transport.pause_reading()
        cdef RequestCycle cycle = self.cycle
        if cycle is not None and cycle.phase is DISCARD:
            cycle.phase = DONE
            (<object>self)._close_after_pending()
            return
        path = ""
        headers = {}
        if cycle is not None:
            headers = cycle.headers
            try:
                path = httptools.parse_url(cycle.url).path.decode("latin-1") if cycle.url else ""
            except httptools.HttpParserInvalidURLError:
                pass
            cycle.phase = DONE
        request = Request("GET", path, "", headers, b"", self.peer, self._is_closed)
        response = self.router.error_formatter(path)(status, message, None)
        failed = RequestCycle.answer_only(request, response, self.last_activity)
        if self.running is not None or self.pipeline:
            self.pipeline.append(failed)
        else:
            self._send(failed, response)


include "_probe_head.pxi"
include "_response_head.pxi"
