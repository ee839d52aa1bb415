"""TorchServe-style request bodies, read when the data plane asks (core.info's
PredictionsBody, PayloadsBody): once it knows the model is there and READY, so an
unknown model is a 404 and a loading one a 503 whatever the body holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from ..core.info import ModelInfo
from ..core.payloads import Payload, kserve_payload
from ..errors import InvalidInputError
from ..http.messages import Request
from ._base import load_json
from ._ts_archive import MULTIPART, archive_payload


class TorchServeBody:
    """A /predictions or /explanations body. ``parts`` splits a multipart body (the
    front-end's parser, with its limits)."""

    __slots__ = ("request", "parts")

    def __init__(self, request: Request, parts: Callable[[Any, bytes], list[Any]]) -> None:
        self.request = request
        self.parts = parts

    def payloads(self, info: ModelInfo) -> list[Payload]:
        """The request's instances: its body, or each part of a multipart body."""
        request = self.request
        extra = dict(parse_qsl(request.query)) if request.query else {}
        if request.content_type == MULTIPART:
            ctype = request.headers.get(b"content-type", b"")
            return [Payload(part.data, part.content_type, part.name or "data", extra,
                            request.headers) for part in self.parts(request.body, ctype)]
        if not len(request.body):
            raise InvalidInputError("the request has no body: send the input as the body "
                                    "(curl -T file, --data-binary @file) or -F data=@file")
        return [Payload(request.body, request.content_type, "body", extra, request.headers)]

    def whole(self) -> Payload:
        """The one request an archive's handler takes (TorchServe's form fields)."""
        return archive_payload(self.request, self.parts)


class ExplainBody:
    """A KServe v1 :explain body: ``{"instances": [...]}``, each instance as one request
    (TorchServe's envelope: ``{"data": <base64>}``, ``{"b64": ...}`` or a JSON value)."""

    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body

    def payloads(self, info: ModelInfo) -> list[Payload]:
        doc = load_json(self.body)
        instances = doc.get("instances") if isinstance(doc, dict) else None
        if not isinstance(instances, list) or not instances:
            raise InvalidInputError("the request must be {\"instances\": [...]} with at least "
                                    "one instance")
        # A string under "data" is a base64 image or body for image and handler.py models.
        binary = info.handler != "tensor"
        return [kserve_payload(value, binary) for value in instances]
