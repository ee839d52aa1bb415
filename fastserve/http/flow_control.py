"""Pause reading from a client while it is not reading our answers, or has too many queued."""

from __future__ import annotations

import asyncio

# Pipelined requests queued on one connection before we stop reading more (uvicorn pauses at 1).
MAX_PIPELINE = 64


class FlowControl:
    """Reading is paused while any reason holds: the peer's window is full or the queue is long."""

    __slots__ = ("_transport", "write_paused", "queue_full", "_reading_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.write_paused = False
        self.queue_full = False
        self._reading_paused = False

    def update(self) -> None:
        want_pause = self.write_paused or self.queue_full
        if want_pause == self._reading_paused or self._transport.is_closing():
            return
        self._reading_paused = want_pause
        if want_pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()
