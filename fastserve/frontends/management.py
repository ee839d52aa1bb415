"""The management port: TorchServe's management API (KServe v2's repository extension, which
shares the port, is frontends/v2_repository.py).

TorchServe (docs/management_api.md), with its JSON keys:
    GET    /models[?limit=100&next_page_token=N]      list, paginated
    GET    /models/{m}[/{v}|/all]                     describe (default version, one, all)
    POST   /models?url=<folder or .mar in DIR>[&model_name&batch_size&max_batch_delay
                  &initial_workers&response_timeout&synchronous]
    PUT    /models/{m}[/{v}]?min_worker=N             instances
    DELETE /models/{m}[/{v}]                          unload (drains first)
    PUT    /models/{m}/{v}/set-default                pin the default version

Every error is ``{"error": "..."}``. Calls act on this process's repository only:
``apply`` runs one without HTTP, for a parent that forwards calls to its workers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from ..core.control import ModelControl
from ..errors import BackendError, FastServeError, InvalidInputError
from ..http.messages import Request, Response, error_answer
from ..http.router import Router
from ._base import error_body, json_response
from ._load_outcome import raise_if_failed
from ._ts_describe import describe_version

log = logging.getLogger("fastserve.management")

PAGE_LIMIT = 100  # TorchServe: default and largest page
# TorchServe's query parameters -> config.toml keys (and the type they take)
REGISTER_KEYS = {"batch_size": ("max_batch_size", int),
                 "max_batch_delay": ("batch_delay_ms", float),
                 "initial_workers": ("instances", int)}


def _query(request: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.query, keep_blank_values=True).items()}


def _number(query: dict[str, str], name: str, kind: type = int) -> Any:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return kind(text)
    except ValueError:
        raise InvalidInputError(f"query parameter '{name}' must be "
                                f"{'an integer' if kind is int else 'a number'}, got {text!r}"
                                ) from None


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    text = query.get(name)
    if text is None or text == "":
        return default
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise InvalidInputError(f"query parameter '{name}' must be true or false, got {text!r}")



def _status(message: str, status: int = 200) -> Response:
    return json_response({"status": message}, status)




class ManagementFrontend:
    def __init__(self, control: ModelControl | Any) -> None:
        # A ModelRepository is taken too: wrapped in the door.
        self.control = control if isinstance(control, ModelControl) else ModelControl(control)
        self.router: Router | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def register(self, router: Router) -> None:
        self.router = router
        add = router.add
        tag = ("Management",)
        add("GET", "/models", self.list_models, "List models (paginated)", tag)
        add("POST", "/models", self.register_model, "Register a model folder of DIR", tag)
        add("GET", "/models/{model}", self.describe, "Describe the default version", tag)
        add("GET", "/models/{model}/{version}", self.describe,
            "Describe a version ('all': every version)", tag)
        add("PUT", "/models/{model}", self.scale, "Set the instances of a model", tag)
        add("PUT", "/models/{model}/{version}", self.scale, "Set the instances of a version",
            tag)
        add("DELETE", "/models/{model}", self.unregister, "Unload a model", tag)
        add("DELETE", "/models/{model}/{version}", self.unregister, "Unload a version", tag)
        add("PUT", "/models/{model}/{version}/set-default", self.set_default,
            "Make a version the default", tag)
        router.set_error_formatter("/models", error_body)

    async def apply(self, method: str, path: str, query: str = "", body: bytes = b""
                    ) -> Response:
        """Run one management call on this process, without HTTP; errors become answers."""
        assert self.router is not None, "register() first"
        request = Request(method, path, query, {}, body)
        try:
            route, request.params = self.router.resolve(method, path)
            result = route.handler(request)
            return await result if route.is_async else result
        except Exception as exc:
            answer = error_answer(exc)
            response = error_body(answer.status, answer.message, exc)
            response.headers = answer.headers or None
            return response

    # TorchServe

    def list_models(self, request: Request) -> Response:
        query = _query(request)
        limit = _number(query, "limit")
        if limit is None or not 0 < limit <= PAGE_LIMIT:
            limit = PAGE_LIMIT  # as TorchServe: out of range means the default
        start = _number(query, "next_page_token") or 0
        if start < 0:
            raise InvalidInputError(f"next_page_token must be >= 0, got {start}")
        names = self.control.names()
        page = names[start:start + limit]
        doc: dict[str, Any] = {}
        if start + limit < len(names):
            doc["nextPageToken"] = str(start + limit)
        doc["models"] = [{"modelName": n, "modelUrl": self.control.folder_name(n)}
                         for n in page]
        return json_response(doc)

    def describe(self, request: Request) -> Response:
        p = request.params
        versions = self.control.describe(p["model"], p.get("version"))
        if not versions:
            return json_response([self._describe_model(p["model"])])
        return json_response([describe_version(v) for v in versions])

    async def register_model(self, request: Request) -> Response:
        query = _query(request)
        folder = self.control.resolve_folder(query.get("url", ""))
        overrides = {}
        for key, (config_key, kind) in REGISTER_KEYS.items():
            value = _number(query, key, kind)
            if value is not None and not (key == "initial_workers" and value == 0):
                overrides[config_key] = value  # initial_workers=0: TorchServe's default
        timeout = _number(query, "response_timeout", float)
        if timeout is not None:
            if timeout <= 0:
                raise InvalidInputError(f"response_timeout must be > 0 seconds, got {timeout}")
            overrides["timeout_ms"] = timeout * 1000.0
        name = query.get("model_name")
        # TorchServe: an archive serves under model_name; a folder's model keeps its name.
        if name and not self.control.name_archive(folder, name):
            known = await self.control.on_disk()
            if known.get(name) != folder:
                raise InvalidInputError(
                    f"model_name {name!r} does not match folder {folder.name!r} (a model serves "
                    "under its folder's name, or config.toml's name)")
        if not _flag(query, "synchronous", True):
            task = asyncio.get_running_loop().create_task(self._register_later(folder, overrides))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return _status(f"Registering model folder \"{folder.name}\"; GET /models/"
                           f"{name or folder.name} shows its state", 202)
        loaded = await self.control.load(folder, overrides)
        raise_if_failed(loaded)
        return _status(f"Model \"{loaded.name}\" Version: {', '.join(loaded.ready)} registered "
                       f"with {loaded.instances} initial workers")

    async def _register_later(self, folder: Any, overrides: dict[str, Any]) -> None:
        try:
            await self.control.load(folder, overrides)
        except FastServeError as exc:
            log.error("registering %s failed: %s", folder, exc.message)

    async def scale(self, request: Request) -> Response:
        p = request.params
        query = _query(request)
        low, high = _number(query, "min_worker"), _number(query, "max_worker")
        if low is None and high is None:
            raise InvalidInputError("give min_worker=N (the model's instances; max_worker is "
                                    "accepted and must not be lower)")
        if low is not None and high is not None and high < low:
            raise InvalidInputError(f"max_worker ({high}) is lower than min_worker ({low})")
        instances = low if low is not None else high
        version = p.get("version")
        if not _flag(query, "synchronous", True):
            self.control.check_known(p["model"])
            task = asyncio.get_running_loop().create_task(
                self.control.scale(p["model"], instances, version))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return _status("Processing worker updates...", 202)
        errors = await self.control.scale(p["model"], instances, version)
        if errors:
            raise BackendError(f"model \"{p['model']}\" could not run {instances} instances "
                               f"(the loaded ones keep serving): {'; '.join(errors)}")
        what = f"model: {p['model']}" + (f" version: {version}" if version else "")
        return _status(f"Workers scaled to {instances} for {what}")

    async def unregister(self, request: Request) -> Response:
        p = request.params
        version = p.get("version")
        await self.control.unload(p["model"], version)
        if version is None:
            return _status(f"Model \"{p['model']}\" unregistered")
        return _status(f"Model \"{p['model']}\" version: {version} unregistered")

    def set_default(self, request: Request) -> Response:
        p = request.params
        found = self.control.set_default(p["model"], p["version"])
        return _status(f"Default version successfully updated for model \"{found.name}\" to "
                       f"\"{found.version}\"")

    # Describe

    def _describe_model(self, name: str) -> dict[str, Any]:
        """A model with no version to describe: none on disk, or every one unloaded."""
        return {"modelName": name, "modelVersion": None,
                "modelUrl": self.control.folder_name(name), "status": "FAILED", "versions": [],
                "workers": [],
                "error": self.control.model_error(name) or f"model '{name}' has no version"}
