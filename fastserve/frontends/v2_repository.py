"""The management port's KServe v2 / Triton repository extension.

    POST   /v2/repository/index                       [{"name", "version", "state", "reason"}]
    POST   /v2/repository/models/{m}/load             load, or reload when loaded
    POST   /v2/repository/models/{m}/unload

Every error is ``{"error": "..."}``. The inference port serves the index too, read-only.
"""

from __future__ import annotations

from typing import Any

from ..core.control import ModelControl
from ..core.info import FAILED, LOADING, READY, UNLOADING
from ..errors import ForbiddenError, InvalidInputError
from ..http.messages import Request, Response
from ..http.router import Router
from ._base import error_body, json_response, load_json
from ._load_outcome import raise_if_failed

# Triton's index states
V2_STATE = {READY: "READY", LOADING: "LOADING", UNLOADING: "UNLOADING", FAILED: "UNAVAILABLE"}


class V2RepositoryFrontend:
    def __init__(self, control: ModelControl) -> None:
        self.control = control

    def register(self, router: Router) -> None:
        add = router.add
        tag = ("KServe v2 repository",)
        add("POST", "/v2/repository/index", self.v2_index, "Models of the repository", tag)
        add("POST", "/v2/repository/models/{model}/load", self.v2_load,
            "Load (or reload) a model", tag)
        add("POST", "/v2/repository/models/{model}/unload", self.v2_unload, "Unload a model",
            tag)
        router.set_error_formatter("/v2", error_body)

    def register_on_inference(self, router: Router, management_address: Any) -> None:
        """The inference port's share of the repository extension (tritonclient calls it
        there): the index, read-only; load and unload answer 403 naming the management
        port. ``management_address()`` gives "host:port" once it is bound."""

        def refuse(request: Request) -> Response:
            action = request.path.rsplit("/", 1)[-1]
            raise ForbiddenError(
                f"{action} is not allowed on the inference port; it answers on the management "
                f"port: POST http://{management_address()}{request.path}")

        tag = ("KServe v2 repository",)
        router.add("POST", "/v2/repository/index", self.v2_index,
                   "Models of the repository (read-only here)", tag)
        for action in ("load", "unload"):
            router.add("POST", f"/v2/repository/models/{{model}}/{action}", refuse,
                       f"403: {action} answers on the management port", tag)

    async def v2_index(self, request: Request) -> Response:
        body = load_json(request.body) if request.body else {}
        if not isinstance(body, dict):
            raise InvalidInputError("the index request must be a JSON object")
        ready_only = bool(body.get("ready", False))
        rows: list[dict[str, Any]] = []
        names = self.control.names()
        for name in names:
            versions = self.control.versions(name)
            if not versions:
                rows.append({"name": name, "state": "UNAVAILABLE",
                             "reason": self.control.model_error(name)})
            for v in versions:
                rows.append({"name": name, "version": v.version, "state": V2_STATE[v.state],
                             "reason": v.error})
        on_disk = await self.control.on_disk()
        for name in sorted(set(on_disk) - set(names)):
            rows.append({"name": name, "state": "UNAVAILABLE", "reason": "unloaded"})
        if ready_only:
            rows = [r for r in rows if r["state"] == "READY"]
        return json_response(rows)

    async def v2_load(self, request: Request) -> Response:
        name = request.params["model"]
        body = load_json(request.body) if request.body else {}
        if not isinstance(body, dict):
            raise InvalidInputError("the load request must be a JSON object")
        if body.get("parameters"):
            raise InvalidInputError("load parameters (config or file overrides) are not "
                                    "supported: change the model's folder, then load it")
        folder = await self.control.find_folder(name)
        loaded = await self.control.load(folder, reload=True)
        raise_if_failed(loaded)
        return json_response({"name": loaded.name, "load": True})

    async def v2_unload(self, request: Request) -> Response:
        name = request.params["model"]
        # Not loaded, but in DIR: kept so (the poller would otherwise load it).
        await self.control.keep_unloaded(name)
        return json_response({"name": name, "unload": True})
