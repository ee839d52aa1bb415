"""Optional bearer-token auth (``--auth-token-file``), off by default.

A plain file holds one token for both ports; TorchServe's key_file.json holds an
``inference`` key for the inference port and a ``management`` key for the other.
Health and metrics stay open so probes and scrapers need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

import orjson

from .errors import UnauthorizedError
from .http.messages import Request


def read_tokens(path: Path) -> tuple[bytes, bytes]:
    """(inference token, management token) from a plain token file or a key_file.json."""
    raw = path.read_bytes().strip()
    if raw.startswith(b"{"):
        doc = orjson.loads(raw)
        try:
            return (doc["inference"]["key"].encode(), doc["management"]["key"].encode())
        except (KeyError, TypeError, AttributeError):
            raise ValueError(f"{path}: a key file needs inference.key and management.key") \
                from None
    if not raw:
        raise ValueError(f"{path} is empty")
    return raw, raw


def bearer_guard(token: bytes) -> Callable[[Request], None]:
    """A transport guard that refuses requests without ``Authorization: Bearer <token>``."""
    expected = b"Bearer " + token

    def guard(request: Request) -> None:
        path = request.path
        if path == "/ping" or path == "/metrics" or path.startswith("/v2/health/"):
            return
        given = request.headers.get(b"authorization")
        # NOTE: compare_digest keeps the comparison time independent of the token.
        if given is None or not hmac.compare_digest(given.strip(), expected):
            raise UnauthorizedError(
                "missing or wrong token: send 'Authorization: Bearer <token>' "
                "(see --auth-token-file)" if given is None else
                "the bearer token is not valid for this port")

    return guard
