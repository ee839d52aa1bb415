"""A bare uvloop + httptools server answering every request with a fixed small JSON body.

The reference for the transport: whatever fastserve does beyond this costs throughput.
Keep-alive per HTTP/1.1 rules; pipelined requests are answered in order, since each
reply is written as soon as its request is complete. Any method, any path, any body:
by default never read (without an on_body callback httptools skips it, and no byte of it
reaches Python); with --keep-body each body is copied into a buffer of its
Content-Length, as a server that uses the body must (the floor of receiving it).
Run: python benchmarks/bare_server.py --port 8090 [--keep-body]
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import uvloop

BODY = b'{"ready":true}'
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BareProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(REPLY)
        if not self.parser.should_keep_alive():
            self.transport.close()


class KeepBodyProtocol(BareProtocol):
    """The body copied into one buffer per request (bytearray of Content-Length)."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.length = b"0"

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-length":
            self.length = value

    def on_headers_complete(self) -> None:
        self.body = bytearray(int(self.length))
        self.view = memoryview(self.body)
        self.pos = 0
        self.length = b"0"

    def on_body(self, chunk: bytes) -> None:
        end = self.pos + len(chunk)
        self.view[self.pos:end] = chunk
        self.pos = end


async def serve(host: str, port: int, keep_body: bool = False) -> None:
    loop = asyncio.get_running_loop()
    protocol = KeepBodyProtocol if keep_body else BareProtocol
    server = await loop.create_server(protocol, host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--keep-body", action="store_true",
                   help="copy each body into a buffer of its Content-Length")
    args = p.parse_args()
    try:
        uvloop.run(serve(args.host, args.port, args.keep_body))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
