"""Content-Encoding: gzip/deflate request bodies inflated, answers compressed on request."""

from __future__ import annotations

import zlib
from typing import Any

from ..errors import InvalidInputError, RequestTooLargeError

ENCODINGS = (b"gzip", b"deflate")  # what we send, in order of preference


def inflate(body: bytes | bytearray, encoding: bytes, limit: int) -> bytearray:
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


def pick_encoding(accept: bytes) -> bytes | None:
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
    for enc in ENCODINGS:
        if allowed.get(enc, allowed.get(b"*", 0.0)) > 0:
            return enc
    return None


def compress(data: bytes, encoding: bytes) -> bytes:
    if encoding == b"gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    else:
        c = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def encode_body(accept: bytes, body: bytes, buffers: list[Any] | None
                ) -> tuple[bytes, list[Any] | None, bytes]:
    """The body as the client accepts it: (body, buffers, extra header lines)."""
    encoding = pick_encoding(accept)
    if encoding is None:
        return body, buffers, b""
    raw = b"".join([body, *buffers]) if buffers else body
    return (compress(raw, encoding), None,
            b"content-encoding: " + encoding + b"\r\nvary: accept-encoding\r\n")
