"""Probe answers (health, readiness, liveness): encoded once per event-loop iteration.

A probe route (``Router.add_probe``) answers from the server's state alone, so a plain
keep-alive HTTP/1.1 ``GET`` of it gets the same bytes whoever asks (given the same
Accept-Encoding). The compiled protocol (_protocol.pyx) recognises such a request in the
bytes it read and writes the answer kept here, without httptools, a Request or a
Response per request; anything else about the request (another method or version, a
body, Connection other than keep-alive, Expect ...) takes the ordinary path, which gives
the same answer. The pure-Python twin always takes the ordinary path.

The copy lives until the loop's next iteration (``call_soon``): a state change made by a
callback of this iteration is seen by requests read in the next one, and a client can only
send a request after reading the answer that told it of the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .messages import Request, Response
from .writer import write_response


class _Capture:
    """A transport stand-in that keeps what the writer writes."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> None:
        self.parts.append(bytes(data))

    def writelines(self, data: Any) -> None:
        self.parts.extend(bytes(d) for d in data)


class ProbeAnswers:
    """The probe routes one port may answer this way, and this iteration's answers.

    None are when a guard checks every request (401 depends on the request) or when the
    on_response hook wants to hear of them: a hook passes over the paths it names in its
    ``quiet_paths`` attribute (the metrics hook does not count probes).
    """

    def __init__(self, probes: dict[str, Callable[..., Any]], guard: Any, on_response: Any,
                 loop: asyncio.AbstractEventLoop, date_header: Callable[[], bytes]) -> None:
        quiet = getattr(on_response, "quiet_paths", ()) if on_response is not None else None
        self.handlers: dict[bytes, Callable[..., Any]] = {
            path.encode("latin-1"): handler for path, handler in probes.items()
            if guard is None and (quiet is None or path in quiet)}
        # key -> the whole answer (head and body) to a keep-alive HTTP/1.1 GET: the key is
        # the url, or the url, a space and the request's Accept-Encoding value
        self.answers: dict[bytes, bytes] = {}
        self._loop = loop
        self._date_header = date_header

    def answer(self, key: bytes) -> bytes | None:
        """The encoded answer to the GET ``key`` names, made now if this iteration has
        none yet; None when the handler raises or answers something not a plain Response
        (the ordinary path then answers, error mapping included)."""
        answer = self.answers.get(key)
        if answer is not None:
            return answer
        url, accepts, accept = key.partition(b" ")
        handler = self.handlers.get(url)
        if handler is None:
            return None
        path = url.decode("latin-1")
        try:
            response = handler(Request("GET", path, "", {}, b""))
        except Exception:
            return None
        if type(response) is not Response:
            return None
        capture = _Capture()
        headers = {b"accept-encoding": accept} if accepts else {}
        try:
            write_response(capture, Request("GET", path, "", headers, b""),  # type: ignore[arg-type]
                           response, True, False, self._date_header())
        except Exception:
            return None
        if not self.answers:
            self._loop.call_soon(self.answers.clear)
        answer = self.answers[key] = b"".join(capture.parts)
        return answer
