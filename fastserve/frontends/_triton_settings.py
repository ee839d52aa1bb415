"""Triton's log and trace settings, one implementation: ``/v2/logging`` and
``/v2/trace/setting`` (frontends/triton.py) and the gRPC LogSettings / TraceSetting RPCs
(grpc/triton_extras.py) only translate. Reads answer on every port; updates only on the
management ports (they change the server), as repository load/unload.

Logging is Python's: Triton's flags map onto the root logger's level, which nests them
(``log_verbose_level`` > 0 is DEBUG, else ``log_info`` INFO, ``log_warning`` WARNING,
``log_error`` ERROR, none of them CRITICAL); answers report the flags in effect.
fastserve records no traces: the settings are kept and answered as Triton keeps them,
but a ``trace_level`` other than OFF is refused (UNIMPLEMENTED).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError, UnsupportedError

LOG_FORMATS = ("default", "ISO8601")
LOG_FLAGS = ("log_info", "log_warning", "log_error")
ISO8601 = "%Y-%m-%dT%H:%M:%SZ"
TRACE_DEFAULTS = {"trace_level": ["OFF"], "trace_rate": ["1000"], "trace_count": ["-1"],
                  "log_frequency": ["0"], "trace_file": [""], "trace_mode": ["triton"]}
TRACE_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
UINT32_MAX = 2**32 - 1


class LogSettings:
    """Triton's log settings over the root logger."""

    def __init__(self) -> None:
        self.format = "default"

    def get(self) -> dict[str, Any]:
        level = logging.getLogger().getEffectiveLevel()
        return {"log_file": "", "log_info": level <= logging.INFO,
                "log_warning": level <= logging.WARNING, "log_error": level <= logging.ERROR,
                "log_verbose_level": 1 if level <= logging.DEBUG else 0,
                "log_format": self.format}

    def update(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Apply what ``settings`` names (None values are left as they are), all or none."""
        current = self.get()
        for key, value in settings.items():
            if value is None:
                continue
            if key == "log_file":
                raise UnsupportedError("log file location can not be updated through network "
                                       "protocol")
            if key in LOG_FLAGS:
                if not isinstance(value, bool):
                    raise InvalidInputError(f"expect boolean for '{key}'")
            elif key == "log_verbose_level":
                if isinstance(value, bool) or not isinstance(value, int) or \
                        not 0 <= value <= UINT32_MAX:
                    raise InvalidInputError(f"expect a non-negative integer for '{key}', "
                                            f"got {value!r}")
            elif key == "log_format":
                if value not in LOG_FORMATS:
                    raise InvalidInputError(f"invalid argument for log_format, got: {value}")
            else:
                raise InvalidInputError(f"unknown log setting '{key}'; known: "
                                        f"{', '.join(self.get())}")
            current[key] = value
        logging.getLogger().setLevel(_level(current))
        if current["log_format"] != self.format:
            self.format = current["log_format"]
            _set_time_format(ISO8601 if self.format == "ISO8601" else None)
        return self.get()


def _level(flags: dict[str, Any]) -> int:
    if flags["log_verbose_level"]:
        return logging.DEBUG
    for key, level in zip(LOG_FLAGS, (logging.INFO, logging.WARNING, logging.ERROR),
                          strict=True):
        if flags[key]:
            return level
    return logging.CRITICAL


def _set_time_format(datefmt: str | None) -> None:
    """Text log lines' time: ISO 8601 in UTC, or logging's default. JSON lines always carry
    ISO 8601 (their formatter ignores datefmt)."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if formatter is not None:
            formatter.datefmt = datefmt
            formatter.converter = time.gmtime if datefmt else time.localtime


class TraceSettings:
    """Triton's trace settings, server-wide and per model (a model's own override the
    server's; clearing a model's setting falls back to the server's)."""

    def __init__(self, known_model: Callable[[str], Any]) -> None:
        self.known_model = known_model  # raises ModelNotFoundError for an unknown name
        self.server: dict[str, list[str]] = {k: list(v) for k, v in TRACE_DEFAULTS.items()}
        self.models: dict[str, dict[str, list[str]]] = {}

    def get(self, model: str | None = None) -> dict[str, list[str]]:
        if model:
            self.known_model(model)
        return {**self.server, **self.models.get(model or "", {})}

    def update(self, model: str | None, settings: dict[str, list[str] | None]
               ) -> dict[str, list[str]]:
        """An empty list or None clears a setting; all or none are applied."""
        if model:
            self.known_model(model)
        changes = {key: _check_trace(key, value) for key, value in settings.items()}
        target = self.models.setdefault(model, {}) if model else self.server
        for key, value in changes.items():
            if value:
                target[key] = value
            elif model:
                target.pop(key, None)
            else:
                target[key] = list(TRACE_DEFAULTS[key])
        return self.get(model)


def _check_trace(key: str, value: list[str] | None) -> list[str] | None:
    if not value:
        return None
    if key not in TRACE_DEFAULTS:
        raise InvalidInputError(f"unknown trace setting '{key}'; known: "
                                f"{', '.join(TRACE_DEFAULTS)}")
    if key == "trace_level":
        for level in value:
            if level not in TRACE_LEVELS:
                raise InvalidInputError(f"invalid trace_level '{level}': one of "
                                        f"{', '.join(TRACE_LEVELS)}")
        if value != ["OFF"]:
            raise UnsupportedError("fastserve does not record traces: trace_level can only "
                                   "be OFF (use /metrics and the access log for timings)")
        return value
    if len(value) != 1:
        raise InvalidInputError(f"expect only 1 value for '{key}'")
    if key in ("trace_file", "trace_mode"):
        if value != TRACE_DEFAULTS[key]:
            raise UnsupportedError(f"{key} can not be changed here: fastserve records no "
                                   "traces")
        return value
    low = -1 if key == "trace_count" else 0
    try:
        number = int(value[0])
    except ValueError:
        raise InvalidInputError(f"Unable to parse '{key}', got: {value[0]}") from None
    if not low <= number <= UINT32_MAX:
        raise InvalidInputError(f"Unable to parse '{key}', value is out of range [ {low}, "
                                f"{UINT32_MAX} ], got: {value[0]}")
    return [str(number)]


def trace_json(settings: dict[str, list[str]]) -> dict[str, Any]:
    """HTTP's shape: trace_level a list, every other setting one string."""
    return {k: v if k == "trace_level" else v[0] for k, v in settings.items()}


def trace_values(doc: dict[str, Any]) -> dict[str, list[str] | None]:
    out: dict[str, list[str] | None] = {}
    for key, value in doc.items():
        if value is None or isinstance(value, list):
            out[key] = None if value is None else [str(v) for v in value]
        else:
            out[key] = [str(value).lower() if isinstance(value, bool) else str(value)]
    return out


class TritonSettings:
    """The process's one copy of both, shared by HTTP and gRPC."""

    def __init__(self, known_model: Callable[[str], Any]) -> None:
        self.logs = LogSettings()
        self.traces = TraceSettings(known_model)
