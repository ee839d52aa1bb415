"""frontends/torchserve.py without a server: /ping states, error types, multipart parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastserve.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    UnauthorizedError,
    UnsupportedError,
    VersionNotFoundError,
)
from fastserve.frontends import torchserve
from fastserve.frontends.torchserve import TorchServeFrontend, parse_multipart, ts_error_body
from fastserve.http.messages import Request, status_for
from fastserve.http.router import Router


class FakePlane:
    def __init__(self, ready: bool) -> None:
        self._ready = ready

    def ready(self) -> bool:
        return self._ready

    def server_metadata(self) -> dict[str, Any]:
        return {"version": "0"}


@pytest.mark.parametrize("ready,status,body", [
    (True, 200, {"status": "Healthy", "health": "healthy!"}),
    (False, 503, {"status": "Unhealthy", "health": "unhealthy"}),
])
def test_ts_ping_states(ready: bool, status: int, body: dict[str, str]) -> None:
    frontend = TorchServeFrontend(FakePlane(ready))  # type: ignore[arg-type]
    frontend.register(Router())
    response = frontend.ping(Request("GET", "/ping", "", {}, b""))
    assert response.status == status and json.loads(response.body) == body


@pytest.mark.parametrize("exc,kind", [
    (InvalidInputError("x"), "BadRequestException"),
    (UnauthorizedError("x"), "InvalidKeyException"),
    (ModelNotFoundError("x"), "ModelNotFoundException"),
    (VersionNotFoundError("x"), "ModelVersionNotFoundException"),
    (UnsupportedError("x"), "NotImplementedException"),
    (DeadlineExceededError("x"), "RequestTimeoutException"),
    (RuntimeError("x"), "InternalServerException"),
])
def test_ts_error_types_follow_the_contract_table(exc: Exception, kind: str) -> None:
    status = status_for(exc)
    body = json.loads(ts_error_body(status, "msg", exc).body)
    assert body == {"code": status, "type": kind, "message": "msg"}


@pytest.mark.parametrize("status,kind", [(405, "MethodNotAllowedException"),
                                         (413, "RequestTooLargeException"),
                                         (503, "ServiceUnavailableException"),
                                         (418, "BadRequestException"),
                                         (507, "InternalServerException")])
def test_ts_error_types_for_transport_statuses(status: int, kind: str) -> None:
    assert json.loads(ts_error_body(status, "m", None).body)["type"] == kind


def test_ts_error_formatter_covers_the_torchserve_paths_only() -> None:
    router = Router()
    TorchServeFrontend(FakePlane(True)).register(router)  # type: ignore[arg-type]
    for path in ("/ping", "/predictions/m", "/explanations/m/1"):
        assert router.error_formatter(path) is ts_error_body
    assert router.error_formatter("/v1/models/m:explain") is not ts_error_body


def _body(*parts: tuple[str, bytes], boundary: str = "b0") -> bytes:
    out = b""
    for name, data in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                .encode() + data + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


def test_ts_multipart_parts_in_order_with_default_text_type() -> None:
    parts = parse_multipart(_body(("b", b"2"), ("a", b"1\r\n--x")),
                            b'multipart/form-data; boundary="b0"')
    assert [(p.name, bytes(p.data), p.content_type) for p in parts] == [
        ("b", b"2", "text/plain"), ("a", b"1\r\n--x", "text/plain")]


def test_ts_multipart_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchserve, "MAX_PARTS", 2)
    with pytest.raises(InvalidInputError, match="more than 2 parts"):
        parse_multipart(_body(("a", b"1"), ("b", b"2"), ("c", b"3")),
                        b"multipart/form-data; boundary=b0")
    with pytest.raises(InvalidInputError, match="without any part"):
        parse_multipart(b"--b0--\r\n", b"multipart/form-data; boundary=b0")
