"""Probe routes (Router.add_probe): the compiled protocol answers a plain GET of one from
bytes it encoded earlier in the same loop iteration (http/probes.py, _probe_head.pxi);
every other request for it, however close to plain, takes the ordinary path. Either way
the bytes written are the twin's, which always takes the ordinary path.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protocol_twins import run

from fastserve._testbase import MockTransport, parse_responses
from fastserve.http import protocol as protocol_module
from fastserve.http.server import Limits, ServerState

pytestmark = pytest.mark.usefixtures("loop")

PLAIN = b"GET /health HTTP/1.1\r\nHost: t\r\nUser-Agent: wrk\r\n\r\n"
SMALL = Limits(max_header_bytes=120)


def both(router: Any, loop: asyncio.AbstractEventLoop, data: bytes, cuts: list[int],
         limits: Limits = SMALL) -> tuple[tuple[bytes, bool, bool], tuple[bytes, bool, bool],
                                          int]:
    """What the compiled protocol and the twin wrote, and how many the fast path answered."""
    seen: list[Any] = []
    compiled = run(protocol_module.HttpProtocol, router, loop, data, cuts, limits, seen)
    twin = run(protocol_module.PyHttpProtocol, router, loop, data, cuts, limits)
    return compiled, twin, answered_fast(seen[0])


def answered_fast(protocol: Any) -> int:
    return getattr(protocol, "probes_answered", 0)


def read_responses(data: bytes) -> list[Any]:
    responses, rest = parse_responses(data)
    assert rest == b""
    return responses


def test_a_plain_get_is_answered_without_the_parser(connect, echo_app, protocol_impl):
    protocol = connect()
    protocol.data_received(PLAIN + PLAIN)
    (first, second) = read_responses(protocol.transport.take())
    assert (first.status, first.body, second.body) == (200, b'{"ok":true}', b'{"ok":true}')
    assert first.headers["content-type"] == "application/json"
    assert "connection" not in first.headers
    assert answered_fast(protocol) == (2 if protocol_impl == "c" else 0)
    assert not protocol._reading() and not protocol.closed  # nothing half-read is left


async def test_a_state_change_is_answered_from_the_next_loop_iteration(connect, echo_app):
    protocol = connect()
    protocol.data_received(PLAIN)
    echo_app.healthy = False
    await asyncio.sleep(0)
    protocol.data_received(PLAIN)
    ok, down = read_responses(protocol.transport.take())
    assert (ok.status, down.status, down.body) == (200, 503, b'{"ok":false}')


@pytest.mark.parametrize("request_bytes", [
    b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /health HTTP/1.0\r\nHost: t\r\n\r\n",
    b"GET /health?verbose=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /health HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
    b"GET /health HTTP/1.1\r\nAccept-Encoding: gzip\r\nAccept-Encoding: br\r\n\r\n",
    b"GET /health HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET /health HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
    b"GET /health HTTP/1.1\r\nX: a\x7fb\r\n\r\n",  # DEL: httptools decides
    b"GET /health HTTP/1.1\r\nX : b\r\n\r\n",
    b"GET /health HTTP/1.1\r\n X: b\r\n\r\n",
    b"GET /health HTTP/1.1\nHost: t\n\n",
    b"GET /health HTTP/1.1\r\nHost: t\r\n\rX",
    b"GET  /health HTTP/1.1\r\n\r\n",
    b"get /health HTTP/1.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nX-Long: " + b"v" * 200 + b"\r\n\r\n",  # past max_header_bytes
    b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 13 + b"\r\n",  # 128 bytes: past 120
    b"GET /health HTTP/1.1\r\nHost: t\r\n",  # incomplete
])
def test_anything_but_a_plain_get_takes_the_ordinary_path(request_bytes, echo_app, loop,
                                                          protocol_impl):
    if protocol_impl != "c":
        pytest.skip("compares the two implementations once (on the c run)")
    compiled, twin, fast = both(echo_app.router, loop, request_bytes, [])
    assert compiled == twin
    assert fast == 0


@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.1\r\nCONNECTION: Keep-Alive\r\n\r\n",
    b"GET /health HTTP/1.1\r\naccept-encoding: gzip\r\n\r\n",
    b"GET /health HTTP/1.1\r\nAccept-Encoding: \t deflate, gzip;q=0 \r\n\r\n",
    b"GET /health HTTP/1.1\r\nAccept-Encoding: gzip;q=0, deflate;q=0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nAccept-Encoding:\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n"
    b"Connection: keep-alive\r\nUser-Agent: python-requests/2.32\r\n\r\n",
])
def test_keep_alive_and_accept_encoding_are_answered_early_too(request_bytes, echo_app, loop,
                                                               protocol_impl):
    # What HTTP clients send on every request (python-requests: both headers).
    if protocol_impl != "c":
        pytest.skip("compares the two implementations once (on the c run)")
    compiled, twin, fast = both(echo_app.router, loop, request_bytes + request_bytes, [],
                                limits=Limits())
    assert compiled == twin
    assert fast == 2


def test_a_head_at_the_limit_is_still_plain(echo_app, loop, protocol_impl):
    if protocol_impl != "c":
        pytest.skip("compiled protocol only")
    # 12 lines of "X-A: b": a 120-byte head, counted 12 * 8 + 7 ("/health") = 103 bytes.
    within = b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 12 + b"\r\n"
    compiled, twin, fast = both(echo_app.router, loop, within, [])
    assert compiled == twin
    assert fast == 1


def test_a_guard_or_a_hook_that_listens_turns_the_fast_answer_off(echo_app, loop,
                                                                  protocol_impl):
    heard: list[tuple[str, int]] = []

    def hook(request: Any, status: int, seconds: float) -> None:
        heard.append((request.path, status))

    def quiet(request: Any, status: int, seconds: float) -> None:
        heard.append(("quiet", status))

    quiet.quiet_paths = frozenset({"/health"})  # type: ignore[attr-defined]
    for kwargs, fast in (({"guard": lambda request: None}, 0), ({"on_response": hook}, 0),
                         ({"on_response": quiet}, 1)):
        state = ServerState(echo_app.router, Limits(), loop, **kwargs)
        protocol = (protocol_module.HttpProtocol if protocol_impl == "c"
                    else protocol_module.PyHttpProtocol)(state)
        protocol.connection_made(MockTransport())
        protocol.data_received(PLAIN)
        assert read_responses(protocol.transport.take())[0].status == 200
        assert answered_fast(protocol) == (fast if protocol_impl == "c" else 0)
    assert heard == [("/health", 200), ("quiet", 200)] if protocol_impl == "py" else \
        [("/health", 200)]


def test_a_probe_that_raises_is_answered_by_the_error_mapping(connect, echo_app):
    echo_app.healthy = "raise"
    protocol = connect()
    protocol.data_received(PLAIN)
    (answer,) = read_responses(protocol.transport.take())
    assert answer.status == 503
    assert b"health check broke" in answer.body
    assert answered_fast(protocol) == 0


def test_a_request_in_progress_keeps_its_turn(connect, echo_app, loop, protocol_impl):
    # A slow answer is running: the probe waits its turn behind it, not in front.
    protocol = connect()
    protocol.data_received(b"GET /slow/a HTTP/1.1\r\n\r\n" + PLAIN)
    loop.run_until_complete(asyncio.sleep(0.05))
    slow, health = read_responses(protocol.transport.take())
    assert (slow.body, health.body) == (b"a", b'{"ok":true}')
    assert answered_fast(protocol) == 0


HEADER_BYTES = st.binary(max_size=12) | st.sampled_from(
    [b"Host", b"Content-Length", b"connection", b"Accept-Encoding", b"X-Request-ID", b"te",
     b"Transfer-Encoding", b"Expect", b"proxy-connection", b"Content-Encoding", b"upgrade"])
VALUE_BYTES = st.binary(max_size=12) | st.sampled_from(
    [b"close", b"keep-alive", b"Keep-Alive ", b"0", b"gzip", b" gzip;q=0, deflate", b" \t x",
     b"", b"100-continue", b"keep-alive, upgrade"])


@st.composite
def probe_stream(draw: Any) -> tuple[bytes, list[int]]:
    """Near-plain GETs of /health (hostile header bytes, odd line ends) among others."""
    requests = []
    for _ in range(draw(st.integers(1, 4))):
        head = draw(st.sampled_from([b"GET /health HTTP/1.1", b"GET /health HTTP/1.0",
                                     b"GET /hello HTTP/1.1", b"GET /healthz HTTP/1.1",
                                     b"GET /health HTTP/1.1 ", b"POST /echo HTTP/1.1"]))
        lines = [draw(HEADER_BYTES) + draw(st.sampled_from([b": ", b":", b" : ", b""]))
                 + draw(VALUE_BYTES) for _ in range(draw(st.integers(0, 3)))]
        end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"]))
        requests.append(end.join([head, *lines, b"", b""]))
    data = b"".join(requests)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    return data, cuts


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=probe_stream())
def test_compiled_and_twin_answer_probes_alike(case, echo_app, loop, protocol_impl):
    if protocol_impl != "c":
        pytest.skip("compares the two implementations once (on the c run)")
    data, cuts = case
    compiled, twin, _ = both(echo_app.router, loop, data, cuts)
    assert compiled == twin


def test_random_bytes_after_a_plain_get(echo_app, loop, protocol_impl):
    # What follows an answered probe goes to httptools from a message boundary.
    if protocol_impl != "c":
        pytest.skip("compiled protocol only")
    rng = random.Random(18)
    answered = 0
    for _ in range(300):
        tail = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        if rng.random() < 0.3:  # a near-plain GET, one byte changed
            near = bytearray(PLAIN)
            near[rng.randrange(len(near))] = rng.randrange(256)
            tail = bytes(near) + tail
        compiled, twin, fast = both(echo_app.router, loop, PLAIN + tail, [])
        assert compiled == twin
        answered += fast
    assert answered >= 300
