"""TorchServe's API goes through the data plane's door in one call per request (issue
14): /predictions, /explanations and KServe v1 :explain hand it a body object, read only
when the data plane asks (so an unknown model is a 404 whatever the body). No server:
the front-end over a data plane that records every call into it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fastserve.core.info import HandlerCall, ModelInfo
from fastserve.errors import InvalidInputError, ModelNotFoundError
from fastserve.frontends.torchserve import TorchServeFrontend
from fastserve.http.messages import Request
from fastserve.types import HandlerReply, ReplyStream

MULTIPART = b"multipart/form-data; boundary=b0"


def _info(name: str, handler: str) -> ModelInfo:
    return ModelInfo(name, "1", "READY", "", (), (), True, handler, "fake", True)


class RecordingPlane:
    """Records every call into the door. ``predictions`` and ``explanations`` raise
    ``error`` without reading the body, or ask the body (as the data plane does) and
    answer each instance with its bytes reversed (an archive: the whole body), or, for
    explanations, as JSON."""

    def __init__(self, handler: str = "tensor", error: Exception | None = None) -> None:
        self.handler, self.error = handler, error
        self.calls: list[tuple[str, str, str | None]] = []

    def __getattr__(self, name: str) -> Any:  # any other door method: a second entry
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, "", None))
        return record

    async def predictions(self, name: str, version: str | None, body: Any) -> Any:
        self.calls.append(("predictions", name, version))
        if self.error is not None:
            raise self.error
        if self.handler == "torchserve":
            payload = body.whole()
            future = asyncio.get_running_loop().create_future()
            future.set_result([HandlerReply(bytes(payload.data)[::-1], 201, "text/plain", {})])
            return HandlerCall(name, 0, ReplyStream(asyncio.get_running_loop()), future)
        return [bytes(p.data)[::-1].decode() for p in body.payloads(_info(name, self.handler))]

    async def explanations(self, name: str, version: str | None, body: Any) -> list[Any]:
        self.calls.append(("explanations", name, version))
        if self.error is not None:
            raise self.error
        return [p.data if p.content_type is None else json.loads(bytes(p.data))
                for p in body.payloads(_info(name, self.handler))]


def _request(path: str, body: bytes, ctype: bytes = b"application/json",
             **params: str) -> Request:
    request = Request("POST", path, "", {b"content-type": ctype}, body)
    request.params = params
    return request


def _multipart(*parts: bytes) -> bytes:
    out = b"".join(b'--b0\r\nContent-Disposition: form-data; name="data"\r\n\r\n' + p + b"\r\n"
                   for p in parts)
    return out + b"--b0--\r\n"


def _call(plane: RecordingPlane, method: str, request: Request) -> Any:
    return asyncio.run(getattr(TorchServeFrontend(plane), method)(request))  # type: ignore[arg-type]


def test_predictions_is_one_call_with_the_body_read_once_known() -> None:
    plane = RecordingPlane()
    response = _call(plane, "predictions", _request("/predictions/m", b"abc", model="m"))
    assert plane.calls == [("predictions", "m", None)]
    assert response.body == b"cba"
    parts = _call(plane, "predictions", _request("/predictions/m/2", _multipart(b"12", b"34"),
                                                 MULTIPART, model="m", version="2"))
    assert plane.calls[1:] == [("predictions", "m", "2")]
    assert json.loads(parts.body) == ["21", "43"]


def test_predictions_archive_is_one_call_answered_as_its_handler_wrote() -> None:
    plane = RecordingPlane("torchserve")
    response = _call(plane, "predictions", _request("/predictions/a", b"xyz", model="a"))
    assert plane.calls == [("predictions", "a", None)]
    assert (response.status, response.body) == (201, b"zyx")


@pytest.mark.parametrize("method,path,body", [
    ("predictions", "/predictions/nope", b""),
    ("predictions", "/predictions/nope", b"--b0\r\nbroken"),
    ("explanations", "/explanations/nope", b""),
    ("kserve_explain", "/v1/models/nope:explain", b"{}"),
])
def test_unknown_model_is_404_before_anything_about_the_body(method: str, path: str,
                                                            body: bytes) -> None:
    plane = RecordingPlane(error=ModelNotFoundError("unknown model 'nope'"))
    ctype = MULTIPART if b"--b0" in body else b"application/json"
    with pytest.raises(ModelNotFoundError):
        _call(plane, method, _request(path, body, ctype, model="nope"))
    assert len(plane.calls) == 1


def test_bad_bodies_are_400_when_the_data_plane_asks() -> None:
    plane = RecordingPlane()
    with pytest.raises(InvalidInputError, match="the request has no body"):
        _call(plane, "predictions", _request("/predictions/m", b"", model="m"))
    with pytest.raises(InvalidInputError, match="truncated multipart"):
        _call(plane, "explanations", _request("/explanations/m", b"--b0\r\n", MULTIPART,
                                              model="m"))
    with pytest.raises(InvalidInputError, match="with at least one instance"):
        _call(plane, "kserve_explain", _request("/v1/models/m:explain", b'{"instances": []}',
                                                model="m"))
    assert [c[0] for c in plane.calls] == ["predictions", "explanations", "explanations"]


def test_explanations_are_one_call_for_every_instance() -> None:
    plane = RecordingPlane()
    one = _call(plane, "explanations", _request("/explanations/m", b"[1, 2]", model="m"))
    many = _call(plane, "kserve_explain", _request(
        "/v1/models/m:explain", b'{"instances": [[1, 2], {"data": [3]}]}', model="m"))
    assert [c[0] for c in plane.calls] == ["explanations", "explanations"]
    assert json.loads(one.body) == [1, 2]
    assert json.loads(many.body) == {"explanations": [[1, 2], [3]]}


def test_archive_answer_whose_client_left_cancels_its_handler_call() -> None:
    """A client that goes away before the archive's handler answers: the call (queued in
    the scheduler, or running) is cancelled, as a v2 request's is, not left to run."""
    from fastserve.frontends._ts_archive import handler_answer

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        queued = loop.create_future()  # the handler call, still waiting for its turn
        answer = loop.create_task(asyncio.wait_for(queued, None))
        client = loop.create_task(handler_answer(HandlerCall("m", 0, ReplyStream(loop), answer)))
        await asyncio.sleep(0)
        client.cancel()  # the connection closed
        with pytest.raises(asyncio.CancelledError):
            await client
        await asyncio.sleep(0)
        return answer.cancelled() and queued.cancelled()

    assert asyncio.run(main())
