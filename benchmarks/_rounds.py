"""Rounds of requests through connected protocols, in process (no socket): ``conns``
protocols each fed the same raw request at once, as wrk -c<conns> drives a server; a round
ends when every reply has been written. Used by infer_breakdown.py and request_calls.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastserve._testbase import get_connected_protocol
from fastserve.http.router import Router


def connected_rounds(router: Router, raw: bytes, conns: int,
                     expect: bytes | None = None
                     ) -> tuple[Callable[[], Awaitable[None]], list[Any]]:
    """(one_round, the protocols); every reply must contain ``expect`` when given (checked
    inline: request_calls.py counts the calls this makes)."""
    protocols = [get_connected_protocol(router) for _ in range(conns)]
    loop = asyncio.get_running_loop()
    waiting: list[Any] = [0, None]  # replies still to come, the future the round awaits

    def replied(data: Any) -> None:  # each transport's write: one whole reply
        if expect is not None:
            assert expect in bytes(data), bytes(data)
        waiting[0] -= 1
        if waiting[0] == 0:
            waiting[1].set_result(None)

    for p in protocols:
        p.transport.write = replied  # type: ignore[attr-defined, method-assign]

    async def one_round() -> None:
        waiting[:] = [conns, loop.create_future()]
        for p in protocols:
            p.data_received(raw)
        await waiting[1]

    return one_round, protocols
