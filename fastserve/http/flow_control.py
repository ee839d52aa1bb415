"""Pause reading from a client while it is not reading our answers, or has too many queued;
let a streamed answer wait while the client's window is full."""

from __future__ import annotations

import asyncio

# Pipelined requests queued on one connection before we stop reading more (uvicorn pauses at 1).
MAX_PIPELINE = 64


class FlowControl:
    """Reading is paused while any reason holds: the peer's window is full or the queue is long."""

    __slots__ = ("_transport", "write_paused", "queue_full", "_reading_paused", "_writable")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.write_paused = False
        self.queue_full = False
        self._reading_paused = False
        self._writable: asyncio.Event | None = None  # made when a stream first waits

    def update(self) -> None:
        if self._writable is not None:
            if self.write_paused:
                self._writable.clear()
            else:
                self._writable.set()
        want_pause = self.write_paused or self.queue_full
        if want_pause == self._reading_paused or self._transport.is_closing():
            return
        self._reading_paused = want_pause
        if want_pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    async def drain(self) -> None:
        """Return once the transport accepts writes again (at once when it does now)."""
        if not self.write_paused:
            return
        if self._writable is None:
            self._writable = asyncio.Event()
        await self._writable.wait()

    def release(self) -> None:
        """The connection is gone: nobody waits for a window that will not open."""
        self.write_paused = False
        if self._writable is not None:
            self._writable.set()
