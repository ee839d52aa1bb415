"""Management calls from gRPC, replayed on the management API in this process (one
implementation of register, load, unload, scale: the HTTP one), answers as JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from ..errors import ErrorCode, FastServeError, InvalidInputError
from ..http.messages import STATUS_BY_CODE

# 503 means the model is unavailable (a full queue never comes back from management).
_ERROR_BY_STATUS = {status: code for code, status in STATUS_BY_CODE.items()
                    if code is not ErrorCode.RESOURCE_EXHAUSTED}


class ManagementError(FastServeError):
    """An error answer of the management API, with its code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.code = _ERROR_BY_STATUS.get(status, ErrorCode.INTERNAL)  # type: ignore[misc]


class Management:
    """``apply(method, path, query, body) -> Response``: the management front-end's own."""

    def __init__(self, apply: Any, grpc_management: str | None) -> None:
        self.apply = apply
        self.grpc_management = grpc_management

    def where(self) -> str:
        if self.grpc_management is None:
            return "off; start the server with --grpc-management-port PORT"
        return self.grpc_management

    @staticmethod
    def segment(name: str, what: str = "model_name") -> str:
        """A name that goes into a management path: one non-empty segment."""
        if not name or "/" in name:
            raise InvalidInputError(f"{what} must be a model name, got {name!r}")
        return name

    async def call(self, method: str, path: str, body: Any = None,
                   query: dict[str, Any] | None = None) -> Any:
        """The JSON answer of one management call; an error answer raises its code."""
        raw = b"" if body is None else orjson.dumps(body)
        encoded = urlencode({k: v for k, v in (query or {}).items() if v is not None})
        response = await self.apply(method, path, encoded, raw)
        text = bytes(response.body)
        if response.status >= 400:
            try:
                message = orjson.loads(text)["error"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = text.decode("utf-8", "replace")
            raise ManagementError(response.status, message)
        return orjson.loads(text) if text else None

    async def call_text(self, method: str, path: str, query: dict[str, Any] | None = None
                        ) -> str:
        """As ``call``, the answer as the JSON text TorchServe's gRPC ``msg`` carries."""
        answer = await self.call(method, path, query=query)
        return orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()
