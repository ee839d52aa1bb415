"""TorchServe's inference API: /ping, /predictions, /explanations, KServe v1 :explain.

    OPTIONS /                                      OpenAPI 3.0.1 of every endpoint on the port
    GET     /ping                                  {"status": "Healthy", "health": "healthy!"}
    POST|PUT /predictions/{m}[/{v}]                one body (or multipart parts) -> answer(s)
    POST|PUT /explanations/{m}[/{v}]               Captum attributions of one body
    POST    /v1/models/{m}[/versions/{v}]:explain  {"instances": [...]} -> {"explanations": ...}

A body is one instance. Multipart/form-data (``curl -F data=@kitten.jpg``): one part
answers like a raw body; two or more parts are that many instances, answered as a
JSON list in order. Errors on /ping, /predictions and /explanations have TorchServe's
shape ``{"code": 404, "type": "ModelNotFoundException", "message": "..."}``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..core.dataplane import DataPlane
from ..core.info import HandlerCall
from ..core.payloads import reply_value
from ..errors import (
    AlreadyExistsError,
    BackendError,
    DeadlineExceededError,
    ForbiddenError,
    InvalidInputError,
    MethodNotAllowedError,
    ModelNotFoundError,
    ModelNotReadyError,
    QueueFullError,
    RequestTooLargeError,
    RouteNotFoundError,
    UnauthorizedError,
    UnsupportedError,
    VersionNotFoundError,
)
from ..http.messages import Request, Response
from ..http.router import Router
from ..types import HandlerReply
from ._ts_answer import answer_response, dumps
from ._ts_archive import handler_answer, reply_response
from ._ts_body import ExplainBody, TorchServeBody
from .openapi import ApiDescription

# python-multipart logs every malformed body it sees; the client gets the 400 instead.
logging.getLogger("python_multipart.multipart").setLevel(logging.CRITICAL)

MAX_PARTS = 256
_HEALTHY = orjson.dumps({"status": "Healthy", "health": "healthy!"})
_UNHEALTHY = orjson.dumps({"status": "Unhealthy", "health": "unhealthy"})
_TS_PREFIXES = ("/ping", "/predictions", "/explanations")

# TorchServe's exception names (CONTRACT §3, errors table), by exception class: the most
# specific class in an error's MRO wins (starlette's _lookup_exception_handler).
ERROR_TYPES: dict[type[BaseException], str] = {
    InvalidInputError: "BadRequestException",
    UnauthorizedError: "InvalidKeyException",
    ForbiddenError: "ForbiddenException",
    ModelNotFoundError: "ModelNotFoundException",
    VersionNotFoundError: "ModelVersionNotFoundException",
    RouteNotFoundError: "ModelNotFoundException",
    MethodNotAllowedError: "MethodNotAllowedException",
    AlreadyExistsError: "ConflictStatusException",
    RequestTooLargeError: "RequestTooLargeException",
    BackendError: "InternalServerException",
    UnsupportedError: "NotImplementedException",
    ModelNotReadyError: "ServiceUnavailableException",
    QueueFullError: "ServiceUnavailableException",
    DeadlineExceededError: "RequestTimeoutException",
}
# Errors without a class above (the transport's own answers carry no exception): by status.
STATUS_ERROR_TYPES = {
    400: "BadRequestException",
    401: "InvalidKeyException",
    403: "ForbiddenException",
    404: "ModelNotFoundException",
    405: "MethodNotAllowedException",
    408: "RequestTimeoutException",
    409: "ConflictStatusException",
    413: "RequestTooLargeException",
    431: "BadRequestException",
    500: "InternalServerException",
    501: "NotImplementedException",
    503: "ServiceUnavailableException",
    504: "RequestTimeoutException",
}


def error_type(status: int, exc: BaseException | None) -> str:
    """TorchServe's ``type`` for an error: by the exception's class, else by status."""
    if exc is not None:
        for cls in type(exc).__mro__:
            kind = ERROR_TYPES.get(cls)
            if kind is not None:
                return kind
    return STATUS_ERROR_TYPES.get(status) or (
        "InternalServerException" if status >= 500 else "BadRequestException")


class TorchServeErrorBody:
    """TorchServe's error shape (``ErrorResponse.java``) for its own paths."""

    openapi_schema = ("TorchServeError", {
        "type": "object",
        "required": ["code", "type", "message"],
        "properties": {"code": {"type": "integer"}, "type": {"type": "string"},
                       "message": {"type": "string"}},
    })

    def __call__(self, status: int, message: str, exc: BaseException | None) -> Response:
        return Response(orjson.dumps({"code": status, "type": error_type(status, exc),
                                      "message": message}), status)


ts_error_body = TorchServeErrorBody()


class _Part:
    __slots__ = ("name", "content_type", "data", "is_file")

    def __init__(self) -> None:
        self.name = ""
        self.content_type = "text/plain"  # RFC 7578: a part without one is text
        self.data = bytearray()
        self.is_file = False  # a filename was given (TorchServe types only file parts)


def parse_multipart(body: Any, content_type: bytes) -> list[_Part]:
    """The parts of a multipart/form-data body, in order (each part's bytes copied once).

    Raises:
        InvalidInputError: no boundary, a malformed or truncated body, no part, or more
            than MAX_PARTS parts (400).
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInputError("multipart/form-data without a boundary parameter")
    parts: list[_Part] = []
    header: list[bytes] = [b"", b""]
    ended = [False]

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise InvalidInputError(f"more than {MAX_PARTS} parts in one multipart request")
        parts.append(_Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        name, value = header[0].lower(), header[1]
        header[0] = header[1] = b""
        if name == b"content-disposition":
            _, params = parse_options_header(value)
            parts[-1].name = params.get(b"name", b"").decode("utf-8", "replace")
            parts[-1].is_file = b"filename" in params
        elif name == b"content-type":
            parts[-1].content_type = value.split(b";", 1)[0].strip().lower().decode("latin-1")

    def on_end() -> None:
        ended[0] = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_end": on_end,
    })
    try:
        parser.write(bytes(body) if isinstance(body, memoryview) else body)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInputError(f"malformed multipart/form-data body: {exc}") from None
    if not ended[0]:
        raise InvalidInputError("truncated multipart/form-data body: no closing boundary")
    if not parts:
        raise InvalidInputError("multipart/form-data body without any part")
    return parts


class TorchServeFrontend:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.router: Router | None = None

    def register(self, router: Router) -> None:
        self.router = router
        add = router.add
        tag = ("TorchServe",)
        self.describe = ApiDescription(
            router, "fastserve APIs", self.dataplane.server_metadata()["version"],
            "Inference API: the TorchServe, KServe v1/v2 and TF Serving endpoints of this port")
        self.describe.register(tag)
        add("GET", "/api-description", self.describe,
            "OpenAPI 3.0.1 description of every endpoint on this port", tag)
        router.add_probe("/ping", self.ping, "Health: Healthy once the models have loaded", tag)
        for base in ("/predictions/{model}", "/predictions/{model}/{version}"):
            for method in ("POST", "PUT"):
                add(method, base, self.predictions, "Predict: one body (raw, JSON, .npy or "
                    "image) or multipart parts through the model's handler", tag)
        for base in ("/explanations/{model}", "/explanations/{model}/{version}"):
            for method in ("POST", "PUT"):  # TorchServe's own example sends curl -T (PUT)
                add(method, base, self.explanations,
                    "Captum attributions of one body, shaped like the model input", tag)
        for base in ("/v1/models/{model}", "/v1/models/{model}/versions/{version}"):
            add("POST", base + ":explain", self.kserve_explain,
                "KServe v1 explain: {\"instances\": [...]} -> {\"explanations\": [...]}",
                ("KServe v1",))
        for prefix in _TS_PREFIXES:
            router.set_error_formatter(prefix, ts_error_body)

    # Health

    def ping(self, request: Request) -> Response:
        if self.dataplane.ready():
            return Response(_HEALTHY)
        return Response(_UNHEALTHY, 503)

    # Predictions and explanations

    async def predictions(self, request: Request) -> Any:
        p = request.params
        # One call through the door: it resolves the model, then by its handler reads the
        # body's instances, or starts an archive's handler on the whole request.
        answer = await self.dataplane.predictions(p["model"], p.get("version"),
                                                  TorchServeBody(request, parse_multipart))
        if isinstance(answer, HandlerCall):  # an archive's: answers as TorchServe's
            return await handler_answer(answer)
        if len(answer) == 1:
            return answer_response(answer[0])
        return Response(dumps(answer))

    async def explanations(self, request: Request) -> Response:
        p = request.params
        answers = await self.dataplane.explanations(p["model"], p.get("version"),
                                                    TorchServeBody(request, parse_multipart))
        if len(answers) == 1 and isinstance(answers[0], HandlerReply):
            return reply_response(answers[0])
        return Response(dumps(answers[0] if len(answers) == 1 else answers))

    async def kserve_explain(self, request: Request) -> Response:
        p = request.params
        answers = await self.dataplane.explanations(p["model"], p.get("version"),
                                                    ExplainBody(request.body))
        # An archive's handler answers with its JSON.
        return Response(dumps({"explanations": [reply_value(a) for a in answers]}))
