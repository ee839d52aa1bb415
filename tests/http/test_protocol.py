"""HttpProtocol without sockets: raw bytes in through data_received, MockTransport.buffer out.

Tier 2 of STYLE §8 (uvicorn tests/protocols). Every test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib

import pytest

from fastserve._testbase import parse_response, parse_responses
from fastserve.errors import UnauthorizedError
from fastserve.http.flow_control import MAX_PIPELINE
from fastserve.http.messages import Response
from fastserve.http.router import Router
from fastserve.http.server import Limits

pytestmark = pytest.mark.usefixtures("loop")


def request(method: str = "GET", path: str = "/hello", body: bytes | None = None,
            headers: dict[str, str] | None = None, version: str = "1.1") -> bytes:
    """A raw request; Content-Length is added for ``body`` unless a header says otherwise."""
    headers = dict(headers or {})
    if body is not None and "Content-Length" not in headers \
            and "Transfer-Encoding" not in headers:
        headers["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/{version}", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(*chunks: bytes) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return out + b"0\r\n\r\n"


async def until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def responses(protocol, count: int | None = None, head=False):
    got, rest = parse_responses(protocol.transport.take(), head)
    assert rest == b""
    if count is not None:
        assert len(got) == count, [r.status for r in got]
    return got


# Simple requests


async def test_get(connect):
    protocol = connect()
    protocol.data_received(request())
    response = parse_response(protocol.transport.take())
    assert response.status == 200
    assert response.reason == "OK"
    assert response.json() == {"hello": "world"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == "17"
    assert "date" in response.headers
    assert "connection" not in response.headers
    assert not protocol.transport.closed


async def test_post_body_is_a_writable_bytearray(connect, echo_app):
    protocol = connect()
    raw = request("POST", "/echo?a=1&b=%20", b'{"x": [1, 2, 3]}',
                  {"Content-Type": "application/json"})
    protocol.data_received(raw)
    response = parse_response(protocol.transport.take())
    assert response.status == 200
    assert response.body == b'{"x": [1, 2, 3]}'
    assert response.headers["x-body-type"] == "bytearray"
    assert response.headers["x-query"] == "a=1&b=%20"
    seen = echo_app.seen[0]
    assert seen.method == "POST"
    assert seen.path == "/echo"
    assert seen.headers[b"content-type"] == b"application/json"
    assert seen.headers[b"host"] == b"test"
    assert seen.content_type == "application/json"


async def test_empty_post_and_repeated_headers(connect, echo_app):
    protocol = connect()
    protocol.data_received(b"POST /echo HTTP/1.1\r\nContent-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    response = parse_response(protocol.transport.take())
    assert (response.status, response.body) == (200, b"")
    assert echo_app.seen[0].headers[b"x-a"] == b"1, 2"


async def test_percent_encoded_path_is_decoded(connect):
    protocol = connect()
    protocol.data_received(request("GET", "/items/a%20b"))
    assert parse_response(protocol.transport.take()).json() == {"item": "a b"}


async def test_suffix_template(connect):
    protocol = connect()
    protocol.data_received(request("GET", "/v1/models/resnet:predict"))
    assert parse_response(protocol.transport.take()).json() == {"model": "resnet"}


async def test_response_buffers_follow_the_body(connect):
    protocol = connect()
    protocol.data_received(request("GET", "/buffers"))
    response = parse_response(protocol.transport.take())
    assert response.body == b"head-one-two-three"
    assert response.headers["content-length"] == "18"
    assert response.headers["content-type"] == "application/octet-stream"


# Fragmentation (httptools test_parser_request_fragmented): every split of a small request


async def test_request_split_at_every_byte(connect, echo_app):
    body = bytes(range(256)) * 5
    raw = request("POST", "/echo?q=1", body, {"Content-Type": "application/x-test",
                                               "X-Long": "v" * 200})
    assert len(raw) < 2048
    for cut in range(1, len(raw)):
        protocol = connect()
        protocol.data_received(raw[:cut])
        protocol.data_received(raw[cut:])
        response = parse_response(protocol.transport.take())
        assert response.status == 200, cut
        assert response.body == body, cut
        assert response.headers["x-query"] == "q=1"
    assert len(echo_app.seen) == len(raw) - 1


async def test_request_byte_by_byte_keeps_the_connection(connect):
    protocol = connect()
    raw = request("POST", "/echo", b"abc" * 100) + request("GET", "/hello")
    for i in range(len(raw)):
        protocol.data_received(raw[i:i + 1])
    first, second = responses(protocol, 2)
    assert first.body == b"abc" * 100
    assert second.json() == {"hello": "world"}


# Pipelining


async def test_pipelined_slow_async_then_fast_sync_in_order(connect, echo_app):
    protocol = connect()
    protocol.data_received(request("GET", "/slow/1") + request("GET", "/fast/2")
                           + request("GET", "/slow/3") + request("GET", "/fast/4"))
    # The fast one waits for the slow one in front of it.
    assert protocol.transport.buffer == b""
    assert echo_app.order == []  # the task has not started; the sync one waits behind it
    await until(lambda: protocol.transport.buffer.count(b"HTTP/1.1") == 4)
    bodies = [r.body for r in responses(protocol, 4)]
    assert bodies == [b"1", b"2", b"3", b"4"]
    assert echo_app.order == ["slow start 1", "slow end 1", "fast 2", "slow start 3",
                              "slow end 3", "fast 4"]
    assert not protocol.busy and not protocol.pipeline


async def test_pipelined_sync_requests_in_one_packet(connect):
    protocol = connect()
    raw = b"".join(request("POST", "/echo", str(i).encode()) for i in range(20))
    protocol.data_received(raw)
    assert [r.body for r in responses(protocol, 20)] == [str(i).encode() for i in range(20)]


async def test_long_pipeline_pauses_reading_until_drained(connect, echo_app):
    protocol = connect()
    transport = protocol.transport
    raw = request("GET", "/wait") + request("GET", "/fast/x") * MAX_PIPELINE
    protocol.data_received(raw)
    await until(echo_app.started.is_set)
    assert len(protocol.pipeline) == MAX_PIPELINE
    assert transport.read_paused
    echo_app.release.set()
    await until(lambda: not protocol.busy and not protocol.pipeline)
    assert not transport.read_paused
    assert len(responses(protocol)) == MAX_PIPELINE + 1


# Expect: 100-continue


async def test_100_continue_is_sent_when_asked(connect):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "5",
                                                              "Expect": "100-continue"}))
    assert protocol.transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    protocol.data_received(b"hello")
    response = parse_response(protocol.transport.take())
    assert (response.status, response.body) == (200, b"hello")


async def test_100_continue_is_not_sent_unasked(connect):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "5"}))
    assert protocol.transport.take() == b""
    protocol.data_received(b"hello")
    assert parse_response(protocol.transport.take()).body == b"hello"


async def test_100_continue_over_the_limit_gets_413_instead(connect):
    protocol = connect(Limits(max_body=4))
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "5",
                                                              "Expect": "100-continue"}))
    response = parse_response(protocol.transport.take())
    assert response.status == 413


# Chunked and compressed request bodies


async def test_chunked_body_is_reassembled(connect, echo_app):
    protocol = connect()
    body = chunked(b"hello ", b"chunked ", b"world" * 100)
    protocol.data_received(request("POST", "/echo", body, {"Transfer-Encoding": "chunked"}))
    response = parse_response(protocol.transport.take())
    assert response.body == b"hello chunked " + b"world" * 100
    assert response.headers["x-body-type"] == "bytearray"


async def test_chunked_body_split_at_every_byte(connect):
    raw = request("POST", "/echo", chunked(b"a" * 10, b"b" * 300, b"c"),
                  {"Transfer-Encoding": "chunked"})
    for cut in range(1, len(raw)):
        protocol = connect()
        protocol.data_received(raw[:cut])
        protocol.data_received(raw[cut:])
        assert parse_response(protocol.transport.take()).body == b"a" * 10 + b"b" * 300 + b"c"


async def test_chunked_empty_body(connect):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", b"0\r\n\r\n", {"Transfer-Encoding": "chunked"}))
    assert parse_response(protocol.transport.take()).body == b""


PAYLOAD = b'{"inputs": [' + b", ".join(b"%d" % i for i in range(2000)) + b"]}"


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress),
    ("GZIP", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", raw_deflate),
], ids=["gzip", "gzip-upper", "deflate-zlib", "deflate-raw"])
async def test_compressed_request_body(connect, encoding, compress):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", compress(PAYLOAD),
                                   {"Content-Encoding": encoding}))
    response = parse_response(protocol.transport.take())
    assert response.status == 200
    assert response.body == PAYLOAD
    assert response.headers["x-body-type"] == "bytearray"
    assert not protocol.transport.closed


async def test_chunked_and_gzipped_request_body(connect):
    protocol = connect()
    data = gzip.compress(PAYLOAD)
    body = chunked(data[:100], data[100:])
    protocol.data_received(request("POST", "/echo", body, {"Transfer-Encoding": "chunked",
                                                           "Content-Encoding": "gzip"}))
    assert parse_response(protocol.transport.take()).body == PAYLOAD


@pytest.mark.parametrize("encoding, body, message", [
    ("gzip", b"this is not gzip", "bad gzip request body"),
    ("gzip", gzip.compress(PAYLOAD)[:-20], "truncated gzip request body"),
    ("deflate", b"\x78\x9c garbage", "bad deflate request body"),
    ("br", b"whatever", "unsupported Content-Encoding 'br'"),
], ids=["bad-gzip", "truncated-gzip", "bad-deflate", "unsupported"])
async def test_bad_compressed_body_is_400_and_close(connect, echo_app, encoding, body, message):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", body, {"Content-Encoding": encoding}))
    response = parse_response(protocol.transport.take())
    assert response.status == 400
    assert message in response.json()["error"]
    assert response.headers["connection"] == "close"
    assert protocol.transport.closed
    assert echo_app.seen == []


async def test_gzip_bomb_past_the_limit_is_413(connect, echo_app):
    limit = 64 * 1024
    bomb = gzip.compress(b"\0" * (limit * 100))
    assert len(bomb) < limit
    protocol = connect(Limits(max_body=limit))
    protocol.data_received(request("POST", "/echo", bomb, {"Content-Encoding": "gzip"}))
    response = parse_response(protocol.transport.take())
    assert response.status == 413
    assert "inflates past the 65536-byte limit" in response.json()["error"]
    assert echo_app.seen == []


async def test_gzip_exactly_at_the_limit_is_accepted(connect):
    protocol = connect(Limits(max_body=1000))
    protocol.data_received(request("POST", "/echo", gzip.compress(b"z" * 1000),
                                   {"Content-Encoding": "gzip"}))
    assert parse_response(protocol.transport.take()).body == b"z" * 1000


async def test_identity_content_encoding_is_passed_through(connect):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", b"plain", {"Content-Encoding": "identity"}))
    assert parse_response(protocol.transport.take()).body == b"plain"


# Compressed responses


@pytest.mark.parametrize("accept, expected", [
    ("gzip", "gzip"),
    ("gzip, deflate, br", "gzip"),
    ("deflate", "deflate"),
    ("br;q=1.0, deflate;q=0.5", "deflate"),
    ("gzip;q=0, deflate", "deflate"),
    ("*", "gzip"),
    ("*;q=0", None),
    ("gzip;q=0", None),
    ("gzip;q=0.0, deflate;q=0", None),
    ("identity", None),
    ("br", None),
    ("gzip;q=bogus", None),
    (None, None),
])
async def test_response_compression_follows_accept_encoding(connect, accept, expected):
    protocol = connect()
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    protocol.data_received(request("POST", "/echo", PAYLOAD, headers))
    response = parse_response(protocol.transport.take())
    assert response.headers.get("content-encoding") == expected
    assert int(response.headers["content-length"]) == len(response.body)
    if expected == "gzip":
        assert gzip.decompress(response.body) == PAYLOAD
        assert response.headers["vary"] == "accept-encoding"
    elif expected == "deflate":
        assert zlib.decompress(response.body) == PAYLOAD
    else:
        assert response.body == PAYLOAD


async def test_compressed_response_includes_buffers(connect):
    protocol = connect()
    protocol.data_received(request("GET", "/buffers", headers={"Accept-Encoding": "gzip"}))
    response = parse_response(protocol.transport.take())
    assert gzip.decompress(response.body) == b"head-one-two-three"


# Size limits


async def test_413_before_the_body_then_discard_and_close(connect, echo_app):
    protocol = connect(Limits(max_body=1000, discard_cap=100_000))
    transport = protocol.transport
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "50000",
                                                              "Expect": "100-continue"}))
    # Answered from the headers alone: no 100 Continue, no body read yet.
    response = parse_response(transport.take())
    assert response.status == 413
    assert response.json() == {
        "error": "request body is larger than the 1000-byte limit (--max-request-size)"}
    assert response.headers["connection"] == "close"
    # The body still arrives: it is read and dropped so the client sees the 413, not a reset.
    for _ in range(49):
        protocol.data_received(b"x" * 1000)
        assert not transport.closed
    protocol.data_received(b"x" * 1000)
    assert transport.closed
    assert transport.take() == b""
    assert echo_app.seen == []


async def test_413_discard_stops_at_the_cap(connect):
    protocol = connect(Limits(max_body=10, discard_cap=5000))
    transport = protocol.transport
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "100000"}))
    assert parse_response(transport.take()).status == 413
    protocol.data_received(b"x" * 4000)
    assert not transport.closed
    protocol.data_received(b"x" * 4000)
    assert transport.closed
    assert transport.take() == b"", "only one 413 is sent"


async def test_413_behind_a_busy_handler_waits_its_turn(connect, echo_app):
    protocol = connect(Limits(max_body=10, discard_cap=1000))
    transport = protocol.transport
    protocol.data_received(request("GET", "/wait")
                           + request("POST", "/echo", headers={"Content-Length": "500"}))
    await until(echo_app.started.is_set)
    assert transport.buffer == b""
    protocol.data_received(b"x" * 500)
    assert transport.buffer == b"" and not transport.closed
    echo_app.release.set()
    await until(lambda: transport.closed)
    first, second = responses(protocol, 2)
    assert (first.status, second.status) == (200, 413)


async def test_body_exactly_at_the_limit_is_accepted(connect):
    protocol = connect(Limits(max_body=100))
    protocol.data_received(request("POST", "/echo", b"y" * 100))
    assert parse_response(protocol.transport.take()).body == b"y" * 100


async def test_chunked_body_over_the_limit_is_413(connect, echo_app):
    protocol = connect(Limits(max_body=1000, discard_cap=10_000))
    transport = protocol.transport
    protocol.data_received(request("POST", "/echo", headers={"Transfer-Encoding": "chunked"}))
    protocol.data_received(b"200\r\n" + b"a" * 0x200 + b"\r\n")
    assert transport.buffer == b""
    protocol.data_received(b"200\r\n" + b"a" * 0x200 + b"\r\n")
    response = parse_response(transport.take())
    assert response.status == 413
    assert response.headers["connection"] == "close"
    protocol.data_received(b"200\r\n" + b"a" * 0x200 + b"\r\n0\r\n\r\n")
    assert transport.closed
    assert transport.take() == b""
    assert echo_app.seen == []


async def test_huge_headers_are_431(connect, echo_app):
    protocol = connect(Limits(max_header_bytes=4096))
    protocol.data_received(request("GET", "/hello", headers={"X-Big": "b" * 5000}))
    response = parse_response(protocol.transport.take())
    assert response.status == 431
    assert response.json() == {"error": "request headers too large"}
    assert protocol.transport.closed
    assert echo_app.seen == []


async def test_many_headers_are_431(connect):
    protocol = connect(Limits(max_header_bytes=4096))
    headers = {f"X-H{i}": "v" * 40 for i in range(200)}
    protocol.data_received(request("GET", "/hello", headers=headers))
    assert parse_response(protocol.transport.take()).status == 431


async def test_huge_url_is_431(connect):
    protocol = connect(Limits(max_header_bytes=1024))
    protocol.data_received(request("GET", "/hello?" + "q" * 2000))
    assert parse_response(protocol.transport.take()).status == 431


async def test_endless_header_in_fragments_is_431(connect):
    # httptools gathers one header's pieces itself; the limit must hold while it does.
    protocol = connect(Limits(max_header_bytes=4096))
    protocol.data_received(b"GET /hello HTTP/1.1\r\nX-Endless: ")
    for _ in range(10):
        protocol.data_received(b"e" * 1000)
        if protocol.transport.closed:
            break
    assert parse_response(protocol.transport.take()).status == 431
    assert protocol.transport.closed


async def test_headers_just_under_the_limit_in_fragments_pass(connect):
    protocol = connect(Limits(max_header_bytes=4096))
    raw = request("GET", "/hello", headers={"X-Big": "b" * 3900})
    for i in range(0, len(raw), 100):
        protocol.data_received(raw[i:i + 100])
    assert parse_response(protocol.transport.take()).status == 200


# Malformed requests


@pytest.mark.parametrize("raw, message", [
    (b"GARBAGE\r\n\r\n", "malformed HTTP request"),
    (b"GET /hello HTTP/9.9\r\n\r\n", "malformed HTTP request"),
    (b"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n", "malformed HTTP request"),
    (b"POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "malformed HTTP request"),
    (b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     "malformed HTTP request"),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed HTTP request"),
    (b"GET http://[::1/x HTTP/1.1\r\n\r\n", "invalid"),
    (b"GET http://host:99999/hello HTTP/1.1\r\n\r\n", "invalid"),
], ids=["garbage", "version", "header", "length", "two-lengths", "chunk-size", "url-bracket",
        "url-port"])
async def test_malformed_request_is_400_json_and_close(connect, echo_app, raw, message):
    protocol = connect()
    protocol.data_received(raw)
    response = parse_response(protocol.transport.take())
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["connection"] == "close"
    assert message in response.json()["error"]
    assert protocol.transport.closed
    assert echo_app.seen == []


@pytest.mark.parametrize("upgrade", ["websocket", "h2c"])
async def test_upgrade_is_ignored_and_the_connection_goes_on(connect, upgrade):
    # RFC 9110 §7.8: a server may ignore Upgrade; curl --http2 on http:// sends h2c.
    protocol = connect()
    headers = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": upgrade,
               "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}
    raw = request("GET", "/hello", headers=headers)
    protocol.data_received(raw + raw + request("POST", "/echo", b"after"))
    hello, again, echo = responses(protocol, 3)
    assert (hello.status, again.status, echo.body) == (200, 200, b"after")
    assert not protocol.transport.closed
    protocol.data_received(raw[:10])
    protocol.data_received(raw[10:])
    assert responses(protocol, 1)[0].status == 200


@pytest.mark.parametrize("body_headers, body", [
    ({"Content-Length": "5"}, b"hello"),
    ({"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n"),
], ids=["length", "chunked"])
async def test_upgrade_with_a_body_is_refused_not_run_empty(connect, echo_app, body_headers,
                                                            body):
    # httptools reads no body after an Upgrade request's headers.
    protocol = connect()
    headers = {"Connection": "Upgrade", "Upgrade": "h2c", **body_headers}
    protocol.data_received(request("POST", "/echo", headers=headers) + body[:2])
    protocol.data_received(body[2:] + request())
    response = parse_response(protocol.transport.take())
    assert response.status == 400
    assert response.json() == {"error": "Upgrade on a request with a body is not supported"}
    assert protocol.transport.closed
    assert echo_app.seen == []


async def test_malformed_request_after_a_good_one(connect):
    protocol = connect()
    protocol.data_received(request() + b"NOT HTTP\r\n\r\n")
    first, second = responses(protocol, 2)
    assert (first.status, second.status) == (200, 400)
    assert protocol.transport.closed


async def test_malformed_request_behind_a_busy_handler_waits_its_turn(connect, echo_app):
    protocol = connect()
    protocol.data_received(request("GET", "/wait") + b"NOT HTTP\r\n\r\n")
    await until(echo_app.started.is_set)
    assert protocol.transport.buffer == b""
    echo_app.release.set()
    await until(lambda: protocol.transport.closed)
    first, second = responses(protocol, 2)
    assert (first.status, second.status) == (200, 400)


# Routing errors and the per-prefix error formatter


async def test_unknown_path_is_404(connect):
    protocol = connect()
    protocol.data_received(request("GET", "/nope"))
    response = parse_response(protocol.transport.take())
    assert response.status == 404
    assert response.json() == {"error": "no endpoint at /nope"}
    assert not protocol.transport.closed


async def test_wrong_method_is_405_with_allow(connect):
    protocol = connect()
    protocol.data_received(request("DELETE", "/echo"))
    response = parse_response(protocol.transport.take())
    assert response.status == 405
    assert response.headers["allow"] == "POST, PUT"
    assert "DELETE is not allowed on /echo" in response.json()["error"]
    assert not protocol.transport.closed


@pytest.mark.parametrize("raw, status, kind", [
    (request("GET", "/ts/nope"), 404, "ModelNotFoundException"),
    (request("DELETE", "/ts/hello"), 405, "MethodNotAllowedException"),
    (request("POST", "/ts/echo", headers={"Content-Length": "999999"}), 413,
     "RequestTooLargeException"),
    (request("POST", "/ts/echo", b"xx", {"Content-Encoding": "gzip"}), 400,
     "BadRequestException"),
    (b"GET /ts/hello HTTP/1.1\r\nBad Header\r\n\r\n", 400, "BadRequestException"),
], ids=["404", "405", "413", "bad-gzip", "malformed"])
async def test_prefix_formatter_shapes_transport_errors(connect, raw, status, kind):
    protocol = connect(Limits(max_body=1000))
    protocol.data_received(raw)
    response = parse_response(protocol.transport.take())
    assert response.status == status
    body = response.json()
    assert body["code"] == status
    assert body["type"] == kind
    assert body["message"]


async def test_default_formatter_outside_the_prefix(connect):
    protocol = connect()
    protocol.data_received(request("GET", "/tsx"))
    assert parse_response(protocol.transport.take()).json() == {"error": "no endpoint at /tsx"}


# Handler errors


@pytest.mark.parametrize("prefix", ["/raise", "/araise"], ids=["sync", "async"])
@pytest.mark.parametrize("kind, status, retry_after", [
    ("invalid", 400, False),
    ("codec", 400, False),
    ("unauthorized", 401, False),
    ("forbidden", 403, False),
    ("model", 404, False),
    ("version", 404, False),
    ("exists", 409, False),
    ("toolarge", 413, False),
    ("backend", 500, False),
    ("unsupported", 501, False),
    ("notready", 503, True),
    ("queuefull", 503, True),
    ("deadline", 504, False),
])
async def test_fastserve_errors_map_to_status(connect, prefix, kind, status, retry_after):
    protocol = connect()
    protocol.data_received(request("GET", f"{prefix}/{kind}") + request())
    await until(lambda: protocol.transport.buffer.count(b"HTTP/1.1") == 2)
    error, after = responses(protocol, 2)
    assert error.status == status
    assert error.json() == {"error": "it went wrong"}
    assert ("retry-after" in error.headers) == retry_after
    if retry_after:
        assert error.headers["retry-after"] == "1"
    assert after.status == 200, "the connection stays usable"
    assert not protocol.transport.closed


@pytest.mark.parametrize("prefix", ["/raise", "/araise"], ids=["sync", "async"])
async def test_plain_exception_is_500_and_the_connection_survives(connect, prefix, caplog):
    protocol = connect()
    protocol.data_received(request("GET", f"{prefix}/plain"))
    await until(lambda: protocol.transport.buffer.count(b"HTTP/1.1") == 1)
    response = parse_response(protocol.transport.take())
    assert response.status == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal error: ValueError: it went wrong"}
    assert "unexpected error answering GET" in caplog.text
    protocol.data_received(request())
    assert parse_response(protocol.transport.take()).status == 200


@pytest.mark.parametrize("answer", [None, Response(b"x", content_type="text/plain"),
                                    Response(b"x", status=799)], ids=["none", "str", "status"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_answer_that_cannot_be_sent_is_500_not_a_hang(connect, answer, is_async, caplog):
    router = Router()
    if is_async:
        async def handler(req):
            return answer
    else:
        def handler(req):
            return answer
    router.add("GET", "/bad", handler)
    protocol = connect(router=router)
    protocol.data_received(request("GET", "/bad") + request("GET", "/bad"))
    await until(lambda: protocol.transport.closed)
    response = parse_response(protocol.transport.take())
    assert response.status == 500
    assert response.headers["connection"] == "close"
    assert response.json()["error"].startswith("internal error: ")


async def test_guard_refuses_before_the_handler(connect, echo_app):
    def guard(req):
        if req.headers.get(b"authorization") != b"Bearer s3cret":
            raise UnauthorizedError("missing or wrong bearer token")

    protocol = connect(guard=guard)
    protocol.data_received(request("GET", "/hello"))
    response = parse_response(protocol.transport.take())
    assert response.status == 401
    assert echo_app.seen == []
    protocol.data_received(request("GET", "/hello", headers={"Authorization": "Bearer s3cret"}))
    assert parse_response(protocol.transport.take()).status == 200


# Methods, versions and Connection


async def test_head_gets_headers_without_body(connect):
    protocol = connect()
    protocol.data_received(request("HEAD", "/hello") + request("GET", "/hello"))
    head, get = responses(protocol, 2, head=[True, False])
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == "17"
    assert get.body == b'{"hello":"world"}'


async def test_head_on_buffers_sends_no_body(connect):
    protocol = connect()
    protocol.data_received(request("HEAD", "/buffers"))
    data = protocol.transport.take()
    assert data.endswith(b"\r\n\r\n")
    assert parse_response(data, head=True).headers["content-length"] == "18"


async def test_http10_without_keep_alive_closes(connect):
    protocol = connect()
    protocol.data_received(request(version="1.0"))
    response = parse_response(protocol.transport.take())
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert protocol.transport.closed


async def test_http10_with_keep_alive_stays_open(connect):
    protocol = connect()
    protocol.data_received(request(version="1.0", headers={"Connection": "keep-alive"}))
    response = parse_response(protocol.transport.take())
    assert response.headers["connection"] == "keep-alive"
    assert not protocol.transport.closed
    protocol.data_received(request(version="1.0"))
    assert parse_response(protocol.transport.take()).headers["connection"] == "close"
    assert protocol.transport.closed


async def test_connection_close_is_honored(connect, echo_app):
    protocol = connect()
    protocol.data_received(request(headers={"Connection": "close"}) + request("POST", "/echo", b""))
    response = parse_response(protocol.transport.take())
    assert response.headers["connection"] == "close"
    assert protocol.transport.closed
    assert len(echo_app.seen) == 1


async def test_connection_close_on_an_async_handler(connect):
    protocol = connect()
    protocol.data_received(request("POST", "/aecho", b"bye", {"Connection": "close"}))
    await until(lambda: protocol.transport.closed)
    response = parse_response(protocol.transport.take())
    assert (response.body, response.headers["connection"]) == (b"bye", "close")


# Connection loss


async def test_connection_lost_cancels_the_running_handler(connect, echo_app):
    protocol = connect()
    transport = protocol.transport
    protocol.data_received(request("GET", "/wait") + request("GET", "/fast/queued"))
    await until(echo_app.started.is_set)
    the_request = echo_app.seen[0]
    assert not the_request.disconnected
    transport.lose()
    assert the_request.disconnected
    await until(lambda: echo_app.cancelled == ["/wait"])
    echo_app.release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.buffer == b"", "nothing is written after the client left"
    assert echo_app.order == [], "the queued request never runs"
    assert protocol.task is None and not protocol.pipeline


async def test_connection_lost_while_idle(connect):
    protocol = connect()
    protocol.data_received(request())
    protocol.transport.take()
    protocol.transport.lose(ConnectionResetError())
    assert protocol.closed
    assert protocol not in protocol.state.connections


async def test_disconnected_flips_after_connection_lost(connect, echo_app):
    protocol = connect()
    protocol.data_received(request("POST", "/echo", b"x"))
    seen = echo_app.seen[0]
    assert not seen.disconnected
    protocol.connection_lost(None)
    assert seen.disconnected


# Flow control


async def test_pause_and_resume_writing_drive_reading(connect):
    protocol = connect()
    transport = protocol.transport
    protocol.pause_writing()
    assert transport.read_paused and transport.pause_count == 1
    protocol.pause_writing()
    assert transport.pause_count == 1
    protocol.resume_writing()
    assert not transport.read_paused and transport.resume_count == 1
    protocol.resume_writing()
    assert transport.resume_count == 1


async def test_reading_stays_paused_while_the_queue_is_full(connect, echo_app):
    protocol = connect()
    transport = protocol.transport
    protocol.data_received(request("GET", "/wait") + request("GET", "/fast/x") * MAX_PIPELINE)
    await until(echo_app.started.is_set)
    assert transport.read_paused
    protocol.pause_writing()
    protocol.resume_writing()
    assert transport.read_paused, "the long queue still holds reading"
    echo_app.release.set()
    await until(lambda: not protocol.pipeline)
    assert not transport.read_paused


# Timeouts (the server's once-a-second sweep calls check_timeouts)


async def test_idle_keep_alive_connection_is_closed(connect):
    protocol = connect(Limits(keepalive_timeout=5))
    protocol.data_received(request())
    protocol.transport.take()
    now = time.monotonic()
    protocol.check_timeouts(now + 4)
    assert not protocol.transport.closed
    protocol.check_timeouts(now + 6)
    assert protocol.transport.closed
    assert protocol.transport.take() == b"", "an idle close sends nothing"


async def test_slow_headers_get_408(connect):
    protocol = connect(Limits(header_timeout=2, keepalive_timeout=100))
    protocol.data_received(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    now = time.monotonic()
    protocol.check_timeouts(now + 1)
    assert protocol.transport.buffer == b""
    protocol.check_timeouts(now + 3)
    response = parse_response(protocol.transport.take())
    assert response.status == 408
    assert response.json() == {"error": "request headers not received in time"}
    assert protocol.transport.closed


async def test_slow_headers_behind_a_busy_handler_get_one_408(connect, echo_app):
    protocol = connect(Limits(header_timeout=2, keepalive_timeout=100))
    protocol.data_received(request("GET", "/wait") + b"GET /hello HTTP/1.1\r\n")
    await until(echo_app.started.is_set)
    now = time.monotonic()
    for step in range(3, 8):
        protocol.check_timeouts(now + step)
    assert len(protocol.pipeline) == 1, "one 408 waits, not one per sweep"
    echo_app.release.set()
    await until(lambda: protocol.transport.closed)
    assert [r.status for r in responses(protocol)] == [200, 408]


async def test_stalled_body_gets_408(connect):
    protocol = connect(Limits(header_timeout=2, keepalive_timeout=100))
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "100"}) + b"x")
    now = time.monotonic()
    protocol.check_timeouts(now + 1)
    assert protocol.transport.buffer == b""
    protocol.check_timeouts(now + 3)
    response = parse_response(protocol.transport.take())
    assert response.status == 408
    assert response.json() == {"error": "request body not received in time"}
    assert protocol.transport.closed


async def test_body_wait_does_not_count_while_we_hold_reading(connect):
    protocol = connect(Limits(header_timeout=2))
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "100"}))
    protocol.pause_writing()  # the client is not reading us; we stopped reading it
    protocol.check_timeouts(time.monotonic() + 10)
    assert not protocol.transport.closed
    protocol.resume_writing()
    protocol.data_received(b"y" * 100)
    assert parse_response(protocol.transport.take()).body == b"y" * 100


async def test_stalled_refused_body_closes_without_a_second_answer(connect):
    protocol = connect(Limits(max_body=10, header_timeout=2))
    protocol.data_received(request("POST", "/echo", headers={"Content-Length": "100"}) + b"x")
    assert parse_response(protocol.transport.take()).status == 413
    protocol.check_timeouts(time.monotonic() + 3)
    assert protocol.transport.closed
    assert protocol.transport.take() == b""


async def test_busy_connection_is_not_idle(connect, echo_app):
    protocol = connect(Limits(keepalive_timeout=1))
    protocol.data_received(request("GET", "/wait"))
    await until(echo_app.started.is_set)
    protocol.check_timeouts(time.monotonic() + 100)
    assert not protocol.transport.closed
    echo_app.release.set()
    await until(lambda: protocol.transport.buffer != b"")
    assert parse_response(protocol.transport.take()).status == 200


async def test_idle_time_counts_from_the_answer(connect, echo_app):
    protocol = connect(Limits(keepalive_timeout=5))
    protocol.data_received(request("GET", "/wait"))
    await until(echo_app.started.is_set)
    protocol.last_activity -= 60  # the handler ran for a minute
    echo_app.release.set()
    await until(lambda: protocol.transport.buffer != b"")
    protocol.check_timeouts(time.monotonic() + 1)
    assert not protocol.transport.closed, "a long handler must not make the answer's " \
                                          "connection look idle"


async def test_closed_protocol_ignores_timeouts(connect):
    protocol = connect(Limits(keepalive_timeout=1))
    protocol.connection_lost(None)
    protocol.check_timeouts(time.monotonic() + 100)
    assert not protocol.transport.closed


# Draining


async def test_draining_answers_with_connection_close(connect):
    protocol = connect()
    protocol.state.draining = True
    protocol.data_received(request())
    assert parse_response(protocol.transport.take()).headers["connection"] == "close"
    assert protocol.transport.closed


async def test_shutdown_closes_idle_but_not_busy(connect, echo_app):
    idle = connect()
    idle.shutdown()
    assert idle.transport.closed
    busy = connect()
    busy.data_received(request("GET", "/wait"))
    await until(echo_app.started.is_set)
    busy.shutdown()
    assert not busy.transport.closed
    busy.state.draining = True
    echo_app.release.set()
    await until(lambda: busy.transport.closed)
    response = parse_response(busy.transport.take())
    assert (response.status, response.headers["connection"]) == (200, "close")
