"""/predictions for TorchServe archives: the request as TorchServe's frontend hands it to
its worker, the handler's answer as TorchServe writes it.

- The body is one request: ``{"body": ...}`` typed by the handler runtime, or, for a
  multipart or url-encoded form, every field by name (TorchServe's form fields).
- The answer carries the status, content type (none unless the handler set one, as
  TorchServe) and headers the handler set through its context.
- A handler that calls ``send_intermediate_predict_response`` streams: the response is
  chunked, each part written as it is produced, the handler's return value last.
- ``responseTimeout`` (the model's timeout_ms): no answer by then is 504.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from ..core.dataplane import DataPlane
from ..core.info import HandlerCall
from ..core.payloads import Payload
from ..errors import DeadlineExceededError
from ..http import messages
from ..http.messages import STATUS_LINE, Request, Response
from ..types import HandlerReply, ReplyStream

MULTIPART = "multipart/form-data"
# No Content-Type header unless the handler set one (TorchServe's behaviour).
NO_CONTENT_TYPE = b""
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})


def archive_payload(request: Request, parts: Any) -> Payload:
    """The one request a /predictions call is for an archive's handler."""
    headers = request.headers
    if request.content_type == MULTIPART and parts is not None:
        ctype = headers.get(b"content-type", b"")
        # TorchServe passes a file part's content type on and types it by it; a plain field
        # is bytes.
        fields = [(p.name or "data", p.content_type if p.is_file else "", p.data)
                  for p in parts(request.body, ctype)]
        return Payload(fields, MULTIPART, "", {}, headers)
    return Payload(request.body, request.content_type, "body", {}, headers)


def reply_response(reply: Any) -> Response:
    """The handler's answer with its own status, content type and headers."""
    if not isinstance(reply, HandlerReply):  # not from an archive's handler
        raise TypeError(f"expected a HandlerReply, got {type(reply).__name__}")
    return Response(reply.body, _status(reply.status), _content_type(reply),
                    _headers(reply) or None)


def _status(code: int) -> int:
    if code not in STATUS_LINE and 100 <= code <= 599:
        # A status the standard library does not name (TorchServe passes any code on).
        STATUS_LINE[code] = f"HTTP/1.1 {code} {_phrase(code)}\r\n".encode("latin-1")
    return code if code in STATUS_LINE else 500


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _content_type(reply: HandlerReply) -> bytes:
    return reply.content_type.encode("latin-1") if reply.content_type else NO_CONTENT_TYPE


def _headers(reply: HandlerReply) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP]


async def archive_answer(dataplane: DataPlane, request: Request, model: str,
                         version: str | None) -> Any:
    """Run a request the data plane handed back whole (v2, TF Serving: WholeRequest) on
    an archive's handler; stream if it streams."""
    return await handler_answer(dataplane.archive_call(model, version,
                                                       archive_payload(request, None)))


async def handler_answer(call: HandlerCall) -> Any:
    """An archive's handler's answer as TorchServe writes it, streamed if it streams."""
    stream, task, timeout_ms = call.stream, call.answer, call.timeout_ms
    # ``stream.first`` wakes us: with the first streamed part, or None once the answer is
    # there (or the time is up): one future, no asyncio.wait machinery per request.
    task.add_done_callback(lambda _: _wake(stream.first, None))
    timer = (asyncio.get_running_loop().call_later(timeout_ms / 1000.0, _wake, stream.first,
                                                   _EXPIRED) if timeout_ms else None)
    try:
        first = await stream.first
    except asyncio.CancelledError:  # the client left: its call is not run (if still queued)
        task.cancel()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if first is _EXPIRED:
        task.cancel()
        raise DeadlineExceededError(f"model '{call.model}' did not answer within its "
                                    f"responseTimeout ({timeout_ms / 1000.0:g} s)")
    if first is None:
        return reply_response(task.result()[0])
    streaming = getattr(messages, "StreamingResponse", None)
    if streaming is None:  # a transport without streaming: the parts in one answer
        body = b"".join([chunk async for chunk in _chunks(first, stream, task)])
        return Response(body, _status(first.status), _content_type(first),
                        _headers(first) or None)
    return streaming(_chunks(first, stream, task), _status(first.status), _content_type(first),
                     _headers(first) or None)


_EXPIRED = object()


def _wake(first: asyncio.Future[Any], value: Any) -> None:
    if not first.done():
        first.set_result(value)


async def _chunks(first: HandlerReply, stream: ReplyStream, task: asyncio.Future[Any]
                  ) -> AsyncIterator[bytes]:
    """Each part as it arrives, then the handler's own answer (the last part)."""
    try:
        yield first.body
        while True:
            getter = asyncio.ensure_future(stream.next_part())
            await asyncio.wait((task, getter), return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result().body
                continue
            getter.cancel()
            for part in stream.pending():
                yield part.body
            final = task.result()[0]  # an error here cuts the chunked body short
            if isinstance(final, HandlerReply):
                yield final.body
            return
    finally:
        if not task.done():  # the client left: the answer goes nowhere
            task.cancel()
