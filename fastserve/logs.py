"""Logging: text or JSON lines (``--log-format``), and the access log (``--access-log``).

The access log writes one line per answered request -- client, method, path, status,
latency and model -- and never the query string or a header, so a bearer token cannot
reach it. Tracebacks come only with server errors: the transport logs a 5xx with its
exception once, where the error is mapped; a 4xx is the client's and gets no traceback.
In JSON every record is one object on one line (a traceback is the ``exc_info`` string),
as log shippers (Fluent Bit, Vector, Promtail) want.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

ACCESS_LOGGER = "fastserve.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if access:
            doc.update(access)
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str = "info", fmt: str = "text", access_log: bool = False,
                  stream: IO[str] | None = None) -> None:
    """Configure the root logger once per process (replaces logging.basicConfig).

    ``access_log`` lines are written whatever ``level`` is: asking for them is explicit.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)


def _printable(text: str) -> str:
    # A path is client input: a newline in it must not forge a second log line.
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """The transport's ``on_response`` hook writing one access line per request."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(ACCESS_LOGGER)

    def __call__(self, request: Any, status: int, seconds: float) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        params = request.params
        model = params.get("model")
        version = params.get("version")
        peer = getattr(request, "client", None)
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"
        path = _printable(request.path)
        method = _printable(request.method)
        ms = seconds * 1000.0
        self.log.info(
            '%s "%s %s" %d %.3fms model=%s%s', client, method, path, status, ms,
            _printable(model) if model else "-", f" version={_printable(version)}" if version
            else "",
            extra={"access": {"client": client, "method": method, "path": path,
                              "status": status, "latency_ms": round(ms, 3), "model": model,
                              "version": version}},
        )
