"""The one mapping from an exception to (status, headers, message), and its users."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fastserve.core.repository import ModelRepository
from fastserve.errors import (
    BackendError,
    DeadlineExceededError,
    InvalidInputError,
    MethodNotAllowedError,
    ModelNotReadyError,
    QueueFullError,
    UnauthorizedError,
    VersionNotFoundError,
)
from fastserve.frontends.management import ManagementFrontend
from fastserve.frontends.torchserve import error_type
from fastserve.http.error_map import error_answer
from fastserve.http.router import Router

RETRY = (b"retry-after", b"1")


@pytest.mark.parametrize("exc,status,headers,message", [
    (InvalidInputError("bad"), 400, [], "bad"),
    (UnauthorizedError("who"), 401, [(b"www-authenticate", b"Bearer")], "who"),
    (VersionNotFoundError("v"), 404, [], "v"),
    (MethodNotAllowedError("no", allow="GET, POST"), 405, [(b"allow", b"GET, POST")], "no"),
    (MethodNotAllowedError("no"), 405, [], "no"),
    (BackendError("boom"), 500, [], "boom"),
    (ModelNotReadyError("later"), 503, [RETRY], "later"),
    (QueueFullError("full"), 503, [RETRY], "full"),
    (DeadlineExceededError("late"), 504, [], "late"),
    (KeyError("k"), 500, [], "internal error: KeyError: 'k'"),
])
def test_error_map_status_headers_message(exc: BaseException, status: int,
                                          headers: list[tuple[bytes, bytes]],
                                          message: str) -> None:
    assert error_answer(exc) == (status, headers, message)


@pytest.mark.parametrize("exc,kind", [
    (QueueFullError("x"), "ServiceUnavailableException"),
    (VersionNotFoundError("x"), "ModelVersionNotFoundException"),
    (MethodNotAllowedError("x", allow="GET"), "MethodNotAllowedException"),
    (KeyError("x"), "InternalServerException"),
])
def test_error_map_torchserve_types_by_class(exc: BaseException, kind: str) -> None:
    assert error_type(error_answer(exc).status, exc) == kind


def test_error_map_management_apply_keeps_the_headers(tmp_path: Path) -> None:
    """The --workers parent replays calls through apply(): 405 keeps Allow, 503 Retry-After."""
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "config.toml").write_text("max_batch_size = -1")
    repo = ModelRepository(tmp_path, None)  # type: ignore[arg-type]
    repo.scan()
    api = ManagementFrontend(repo)
    api.register(Router())

    async def calls() -> tuple:
        return (await api.apply("DELETE", "/models"),
                await api.apply("PUT", "/models/broken", "min_worker=2"),
                await api.apply("GET", "/models/nope"))

    wrong_method, not_ready, unknown = asyncio.run(calls())
    assert wrong_method.status == 405 and wrong_method.headers == [(b"allow", b"GET, POST")]
    assert json.loads(wrong_method.body)["error"].startswith("DELETE is not allowed")
    assert not_ready.status == 503 and not_ready.headers == [RETRY]
    assert "failed to load" in json.loads(not_ready.body)["error"]
    assert unknown.status == 404 and not unknown.headers
