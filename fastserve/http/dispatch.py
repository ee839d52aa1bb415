"""Answering a connection's requests one at a time, in the order they came.

The half of ``HttpProtocol`` that writes: a complete ``RequestCycle`` runs at once or
waits in ``pipeline``; a synchronous handler answers inline, a coroutine handler or a
streamed answer runs as the connection's one task (``running``); errors become answers
through the one error mapping; ``on_response`` hears of every answer sent.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..errors import FastServeError
from .cycle import Phase, RequestCycle
from .flow_control import MAX_PIPELINE, FlowControl
from .messages import Request, Response, StreamingResponse, error_answer
from .writer import write_response, write_stream

if TYPE_CHECKING:
    from .router import Router
    from .server import ServerState

log = logging.getLogger("fastserve.http")

_error_ids = itertools.count(1)
_SENT: Any = object()  # what _stream returns once it has answered (or given up)


async def _ready(value: Any) -> Any:
    return value


def request_id(request: Request | None) -> str:
    """The client's X-Request-ID, else a fresh one (answered in X-Request-ID): what an
    error's log line and its answer share, so a user can find one from the other."""
    given = request.headers.get(b"x-request-id") if request is not None else None
    if given:
        return given[:128].decode("latin-1")
    return f"{os.getpid():x}-{next(_error_ids)}"


class Dispatch:
    """Mixed into HttpProtocol, which owns these attributes (set in its __init__)."""

    state: ServerState
    router: Router
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: FlowControl
    closed: bool
    last_activity: float
    running: RequestCycle | None
    task: asyncio.Task[Any] | None
    pipeline: deque[RequestCycle]

    def _idle(self) -> bool:
        return self.running is None and not self.pipeline

    def _queue_or_run(self, cycle: RequestCycle, canned: Response | None) -> None:
        cycle.canned = canned
        if self.running is not None or self.pipeline:
            self.pipeline.append(cycle)
            if len(self.pipeline) >= MAX_PIPELINE:
                self.flow.queue_full = True
                self.flow.update()
            return
        self._run(cycle)

    def _run(self, cycle: RequestCycle) -> None:
        request: Request = cycle.request  # type: ignore[assignment]
        if cycle.canned is not None:
            self._send(cycle, cycle.canned)
            return
        try:
            if self.state.guard is not None:  # before routing: 401 says nothing of paths
                self.state.guard(request)
            route, request.params = self.router.resolve(request.method, request.path)
            if route.is_async:
                self._start(cycle, route.handler(request))
                return
            response = route.handler(request)
            if type(response) is StreamingResponse:
                self._start(cycle, _ready(response))
                return
        except Exception as exc:
            response = self._error_response(request, exc)
        self._send_checked(cycle, response)

    def _start(self, cycle: RequestCycle, answer: Awaitable[Any]) -> None:
        self.running = cycle
        self.task = self.loop.create_task(self._run_async(cycle, answer))

    async def _run_async(self, cycle: RequestCycle, answer: Awaitable[Any]) -> None:
        request: Request = cycle.request  # type: ignore[assignment]
        try:
            response = await answer
            if type(response) is StreamingResponse:
                response = await self._stream(cycle, response)
        except asyncio.CancelledError:
            if self.closed:
                return  # the client went away; nothing to answer
            raise
        except Exception as exc:
            response = self._error_response(request, exc)
        finally:
            self.running = None
            self.task = None
        if response is not _SENT:
            self._send_checked(cycle, response)
        self._drain_pipeline()

    def _drain_pipeline(self) -> None:
        while self.pipeline and self.running is None and not self.closed:
            self._run(self.pipeline.popleft())
        if self.flow.queue_full and len(self.pipeline) < MAX_PIPELINE // 2:
            self.flow.queue_full = False
            self.flow.update()

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

    def _send_checked(self, cycle: RequestCycle, response: Response) -> None:
        """_send a handler's answer; one it cannot send (not a Response, str headers) is a 500.

        Raised from a task, the error would leave the connection busy forever.
        """
        try:
            self._send(cycle, response)
        except Exception as exc:
            cycle.keep_alive = False
            self._send(cycle, self._error_response(cycle.request, exc))

    def _send(self, cycle: RequestCycle, response: Response) -> None:
        if self.closed:
            return
        request: Request = cycle.request  # type: ignore[assignment]
        keep_alive = cycle.keep_alive and not self.state.draining
        write_response(self.transport, request, response, keep_alive, cycle.http10,
                       self.state.date_header())
        self._answered(cycle, request, response.status, keep_alive)

    async def _stream(self, cycle: RequestCycle, response: StreamingResponse) -> Any:
        """Send a streamed answer; an error before its first chunk is answered as usual."""
        request: Request = cycle.request  # type: ignore[assignment]
        chunks = aiter(response.chunks)
        try:
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                first = b""
            except Exception as exc:
                return self._error_response(request, exc)
            if self.closed:
                return _SENT
            # HTTP/1.0 has no chunked framing: the close marks the end.
            keep_alive = cycle.keep_alive and not cycle.http10 and not self.state.draining
            try:
                await write_stream(self.transport, self.flow, request, response, chunks, first,
                                   keep_alive, cycle.http10, self.state.date_header())
            except Exception:
                # The status is out: all a client can be told is that the body broke off.
                log.exception("streamed answer to %s %s failed", request.method, request.path)
                self.closed = True
                self.transport.abort()
                return _SENT
            self._answered(cycle, request, response.status, keep_alive)
            return _SENT
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()

    def _answered(self, cycle: RequestCycle, request: Request, status: int,
                  keep_alive: bool) -> None:
        if self.state.on_response is not None:
            try:
                self.state.on_response(request, status, time.perf_counter() - request.started)
            except Exception:  # the answer is out: a hook's bug must not break the connection
                self._hook_failed()
        # The keep-alive clock starts when the answer is out, not when the request came.
        self.last_activity = time.monotonic()
        if not keep_alive:
            if cycle.phase is Phase.DISCARD:
                # Our 413 is out but its body is still coming: closing with unread data
                # makes the kernel send a reset, and the client may never read the 413.
                # on_message_complete (or the discard cap) closes instead.
                return
            self.closed = True
            self.transport.close()

    def _close_after_pending(self) -> None:
        if self._idle():
            self.closed = True
            self.transport.close()

    def _hook_failed(self) -> None:
        log.exception("response hook failed")
