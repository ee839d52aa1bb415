"""The compiled protocol (_protocol.pyx) and its pure-Python twin answer alike.

Random request streams (valid, oversized, compressed, malformed, cut at random points)
go to both over mock transports; the bytes written back (Date and generated request ids
aside) and what happens to the connection must be the same (yarl's hypothesis tests of
its C and Python quoting, asyncpg's of its codecs).
"""

from __future__ import annotations

import asyncio
import gzip
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastserve._testbase import MockTransport
from fastserve.http import protocol as protocol_module
from fastserve.http.server import Limits, ServerState

pytestmark = pytest.mark.usefixtures("loop")

LIMITS = Limits(max_body=256, discard_cap=512, max_header_bytes=400)
PATHS = ["/hello", "/echo", "/aecho", "/items/a%20b", "/v1/models/m:predict", "/nope",
         "/raise/invalid", "/araise/plain", "/buffers", "/ts/echo", "/ts/nope", "*",
         "/health", "/health"]
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)


@st.composite
def one_request(draw: Any) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE"]))
    path = draw(st.sampled_from(PATHS))
    if draw(st.booleans()):
        path += "?" + draw(TOKEN) + "=" + draw(TOKEN)
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    headers = [(draw(TOKEN), draw(TOKEN)) for _ in range(draw(st.integers(0, 3)))]
    body = draw(st.binary(max_size=700))  # past max_body (413) and discard_cap sometimes
    framing = draw(st.sampled_from(["length", "length", "chunked", "none"]))
    if draw(st.integers(0, 5)) == 0:
        headers.append(("Connection", draw(st.sampled_from(["close", "keep-alive"]))))
    if draw(st.integers(0, 5)) == 0:
        headers.append(("Expect", "100-continue"))
    if draw(st.integers(0, 5)) == 0:
        headers.append(("Accept-Encoding", draw(st.sampled_from(["gzip", "deflate;q=0", "*"]))))
    if body and draw(st.integers(0, 5)) == 0:
        body = gzip.compress(body) if draw(st.booleans()) else body[:5]
        headers.append(("Content-Encoding", "gzip"))
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        cut = draw(st.integers(0, len(body)))
        parts = [p for p in (body[:cut], body[cut:]) if p]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    else:
        body = b""
    head = f"{method} {path} HTTP/{version}\r\nHost: t\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1") + b"\r\n" + body


@st.composite
def stream(draw: Any) -> tuple[bytes, list[int]]:
    data = b"".join(draw(st.lists(one_request(), min_size=1, max_size=4)))
    if draw(st.integers(0, 4)) == 0:  # something malformed somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\x00", b"GARBAGE", b"\r\n\r\n", b" "])) \
            + data[at:]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return data, cuts


_VOLATILE = re.compile(rb"(date: [^\r]*|x-request-id: [^\r]*)")


def run(protocol_class: type, router: Any, loop: asyncio.AbstractEventLoop, data: bytes,
        cuts: list[int], limits: Limits = LIMITS, seen: list[Any] | None = None
        ) -> tuple[bytes, bool, bool]:
    state = ServerState(router, limits, loop)
    protocol = protocol_class(state)
    if seen is not None:
        seen.append(protocol)
    transport = MockTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    pos = 0
    for cut in [*cuts, len(data)]:
        if transport.closed:
            break
        protocol.data_received(data[pos:cut])
        pos = cut
        loop.run_until_complete(asyncio.sleep(0.002))  # async routes answer
    for _ in range(50):
        if not protocol.busy:
            break
        loop.run_until_complete(asyncio.sleep(0.002))
    protocol.connection_lost(None)
    loop.run_until_complete(asyncio.sleep(0))
    return _VOLATILE.sub(b"-", bytes(transport.buffer)), transport.closed, protocol.busy


def test_the_fixture_switches_the_implementation(connect, protocol_impl):
    want = protocol_module.HttpProtocol if protocol_impl == "c" else protocol_module.PyHttpProtocol
    assert type(connect()) is want
    assert (want.__module__ == "fastserve.http.protocol") == (protocol_impl == "c")


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=stream())
def test_compiled_and_twin_write_the_same_bytes(case, echo_app, loop, protocol_impl):
    if protocol_impl != "c":
        pytest.skip("compares the two implementations once (on the c run)")
    data, cuts = case
    compiled = run(protocol_module.HttpProtocol, echo_app.router, loop, data, cuts)
    echo_app.release.set()
    twin = run(protocol_module.PyHttpProtocol, echo_app.router, loop, data, cuts)
    assert compiled == twin


@pytest.mark.skipif(protocol_module.NO_EXTENSIONS, reason="FASTSERVE_NO_EXTENSIONS is set")
def test_compiled_protocol_really_loaded():
    # A broken build must not hide behind the twin (as test__extensions for the codec).
    from fastserve.http import _protocol  # type: ignore[attr-defined]

    assert protocol_module.IMPLEMENTATION == "c"
    assert issubclass(protocol_module.HttpProtocol, _protocol.HttpCore)
    assert _protocol.__file__.endswith((".so", ".pyd"))


@pytest.mark.skipif(not protocol_module.NO_EXTENSIONS, reason="FASTSERVE_NO_EXTENSIONS is not set")
def test_twin_chosen_by_the_environment():
    assert protocol_module.IMPLEMENTATION == "py"
    assert protocol_module.HttpProtocol is protocol_module.PyHttpProtocol
