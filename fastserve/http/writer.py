"""The response writer: status line and headers in one piece, then the body as it is.

``write_response`` sends a complete ``Response`` (Content-Length known; compressed when
the client asks); ``write_stream`` sends a ``StreamingResponse`` chunk by chunk as its
iterator yields (Transfer-Encoding: chunked; HTTP/1.0: unframed until the close).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .encoding import encode_body
from .flow_control import FlowControl
from .messages import STATUS_LINE, Request, Response, StreamingResponse

# status line, date line, content type, length, further header lines
_HEAD = b"%s%scontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
_STREAM_HEAD = b"%s%scontent-type: %s\r\n%s\r\n"
LAST_CHUNK = b"0\r\n\r\n"
# content_type b"": no Content-Type header (a TorchServe handler's untyped answer: TorchServe
# sends none either).
_HEAD_UNTYPED = b"%s%scontent-length: %d\r\n%s\r\n"
_STREAM_HEAD_UNTYPED = b"%s%s%s\r\n"


def _header_lines(response: Response | StreamingResponse, keep_alive: bool,
                  http10: bool) -> bytes:
    extra = b""
    if response.headers:
        extra = b"".join(name + b": " + value + b"\r\n" for name, value in response.headers)
    if not keep_alive:
        extra += b"connection: close\r\n"
    elif http10:
        extra += b"connection: keep-alive\r\n"
    return extra


def write_response(transport: asyncio.Transport, request: Request, response: Response,
                   keep_alive: bool, http10: bool, date: bytes) -> None:
    body = response.body
    buffers = response.buffers
    extra = b""
    accept = request.headers.get(b"accept-encoding")
    if accept is not None and (body or buffers):
        body, buffers, extra = encode_body(accept, body, buffers)
    length = len(body)
    if buffers:
        length += sum(memoryview(b).nbytes for b in buffers)
    if response.headers or not keep_alive or http10:
        extra += _header_lines(response, keep_alive, http10)
    # NOTE: one %-format for the whole head: cheaper than building and joining a list.
    if response.content_type:
        head = _HEAD % (STATUS_LINE[response.status], date, response.content_type, length,
                        extra)
    else:
        head = _HEAD_UNTYPED % (STATUS_LINE[response.status], date, length, extra)
    if request.method == "HEAD":
        transport.write(head)
        return
    transport.write(head + body)
    if buffers:
        transport.writelines(buffers)


async def write_stream(transport: asyncio.Transport, flow: FlowControl, request: Request,
                       response: StreamingResponse, chunks: AsyncIterator[Any], first: Any,
                       keep_alive: bool, http10: bool, date: bytes) -> None:
    """Head and ``first``, then every further chunk as ``chunks`` yields it.

    The caller has taken ``first`` from ``chunks`` already (so that an error before any
    byte is sent still gets an ordinary answer); HTTP/1.0 callers pass keep_alive=False.
    """
    extra = _header_lines(response, keep_alive, http10)
    if not http10:
        extra += b"transfer-encoding: chunked\r\n"
    if response.content_type:
        transport.write(_STREAM_HEAD % (STATUS_LINE[response.status], date,
                                        response.content_type, extra))
    else:
        transport.write(_STREAM_HEAD_UNTYPED % (STATUS_LINE[response.status], date, extra))
    if request.method == "HEAD":
        return
    _write_chunk(transport, first, http10)
    async for chunk in chunks:
        if transport.is_closing():
            return
        _write_chunk(transport, chunk, http10)
        await flow.drain()  # the peer reads slower than we produce: wait, do not buffer
    if not http10:
        transport.write(LAST_CHUNK)


def _write_chunk(transport: asyncio.Transport, chunk: Any, http10: bool) -> None:
    size = memoryview(chunk).nbytes
    if not size:
        return  # an empty chunk would end a chunked body
    if http10:
        transport.write(chunk)
    else:
        transport.writelines((b"%x\r\n" % size, chunk, b"\r\n"))
