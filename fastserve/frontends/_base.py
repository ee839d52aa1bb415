"""What every front-end shares: JSON in and out, and the {"error": ...} body."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidInputError
from ..http.messages import Response

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(obj: Any, status: int = 200,
                  headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(orjson.dumps(obj, option=JSON_OPTIONS), status, headers=headers)


def error_body(status: int, message: str, exc: BaseException | None) -> Response:
    """KServe v1/v2, TF Serving and management paths: {"error": "<message>"}."""
    return Response(orjson.dumps({"error": message}), status)


def load_json(body: Any, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None
