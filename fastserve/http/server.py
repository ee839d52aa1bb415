"""Listening sockets, the connections behind them, and graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from .messages import Request
from .probes import ProbeAnswers
from .protocol import HttpProtocol
from .router import Router

SWEEP_INTERVAL = 1.0

# (request, status, seconds since the request was complete) -> None; must not raise.
ResponseHook = Callable[[Request, int, float], None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Limits:
    max_body: int = 100 * 1024 * 1024
    # A body over the limit is read and thrown away up to this many bytes, so the
    # client reads our 413 instead of a connection reset.
    discard_cap: int = 64 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    keepalive_timeout: float = 75.0
    header_timeout: float = 30.0


class ServerState:
    """What every connection of one listening port shares."""

    def __init__(
        self,
        router: Router,
        limits: Limits,
        loop: asyncio.AbstractEventLoop,
        guard: Callable[[Request], None] | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.router = router
        self.limits = limits
        self.loop = loop
        # Called before every handler; raises to refuse the request (auth).
        self.guard = guard
        # Called after every answer is written (access log, metrics).
        self.on_response = on_response
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self._date_second = 0
        self._date = b""
        self.probes = ProbeAnswers(router.probes, guard, on_response, loop, self.date_header)

    def date_header(self) -> bytes:
        """The Date header line, formatted once a second rather than per response."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date


class HttpServer:
    """One listening port: a router behind an httptools protocol."""

    def __init__(
        self,
        router: Router,
        limits: Limits | None = None,
        guard: Callable[[Request], None] | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.router = router
        self.limits = limits or Limits()
        self.guard = guard
        self.on_response = on_response
        self.state: ServerState | None = None
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(
        self, host: str, port: int, reuse_port: bool = False, sock: socket.socket | None = None
    ) -> int:
        """Bind and start accepting; return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self.state = ServerState(self.router, self.limits, loop, self.guard, self.on_response)
        state = self.state
        if sock is not None:
            self._server = await loop.create_server(lambda: HttpProtocol(state), sock=sock,
                                                    backlog=2048)
        else:
            self._server = await loop.create_server(
                lambda: HttpProtocol(state), host, port, backlog=2048,
                reuse_port=reuse_port or None,
            )
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
        return self._server.sockets[0].getsockname()[1]

    async def listen_unix(self, path: str) -> None:
        """Listen on a unix socket (a worker's private control channel)."""
        loop = asyncio.get_running_loop()
        self.state = ServerState(self.router, self.limits, loop, self.guard, self.on_response)
        state = self.state
        self._server = await loop.create_unix_server(lambda: HttpProtocol(state), path)
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        # NOTE: one timer for all connections, instead of arming one per request.
        assert self.state is not None
        now = time.monotonic()
        for conn in list(self.state.connections):
            conn.check_timeouts(now)
        self._sweeper = self.state.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def stop_accepting(self) -> None:
        """Close the listening socket and mark the state draining (answers close after)."""
        if self.state is not None:
            self.state.draining = True
        if self._server is not None:
            self._server.close()

    def busy_connections(self) -> int:
        if self.state is None:
            return 0
        return sum(1 for c in self.state.connections if c.busy or c.pipeline)

    async def close(self, timeout: float) -> None:
        """Stop accepting, wait up to ``timeout`` for answers in flight, then close all."""
        self.stop_accepting()
        deadline = time.monotonic() + timeout
        while self.busy_connections() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.state is not None:
            for conn in list(self.state.connections):
                conn.shutdown()
                if not conn.closed:
                    conn.transport.abort()
        await asyncio.sleep(0)
