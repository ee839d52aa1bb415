"""The management port: TorchServe's management API and KServe v2's repository extension.

TorchServe (docs/management_api.md), with its JSON keys:
    GET    /models[?limit=100&next_page_token=N]      list, paginated
    GET    /models/{m}[/{v}|/all]                     describe (default version, one, all)
    POST   /models?url=<folder or .mar in DIR>[&model_name&batch_size&max_batch_delay
                  &initial_workers&response_timeout&synchronous]
    PUT    /models/{m}[/{v}]?min_worker=N             instances
    DELETE /models/{m}[/{v}]                          unload (drains first)
    PUT    /models/{m}/{v}/set-default                pin the default version
KServe v2 / Triton repository extension:
    POST   /v2/repository/index                       [{"name", "version", "state", "reason"}]
    POST   /v2/repository/models/{m}/load             load, or reload when loaded
    POST   /v2/repository/models/{m}/unload

Every error is ``{"error": "..."}``. Calls act on this process's repository only:
``apply`` runs one without HTTP, for a parent that forwards calls to its workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any
from urllib.parse import parse_qs

from ..core.control import ModelControl
from ..core.info import FAILED, LOADING, READY, UNLOADING, LoadResult, VersionDetail
from ..errors import BackendError, FastServeError, ForbiddenError, InvalidInputError
from ..http.messages import Request, Response, error_answer
from ..http.router import Router
from ._base import error_body, json_response, load_json

log = logging.getLogger("fastserve.management")

PAGE_LIMIT = 100  # TorchServe: default and largest page
# TorchServe's query parameters -> config.toml keys (and the type they take)
REGISTER_KEYS = {"batch_size": ("max_batch_size", int),
                 "max_batch_delay": ("batch_delay_ms", float),
                 "initial_workers": ("instances", int)}
# Triton's index states
V2_STATE = {READY: "READY", LOADING: "LOADING", UNLOADING: "UNLOADING", FAILED: "UNAVAILABLE"}


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


def process_rss() -> int:
    """This serving process's resident memory in bytes (TorchServe's per-worker
    memoryUsage: each instance runs in this process)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is what there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _raise_if_failed(loaded: LoadResult) -> None:
    """A register or load answers 2xx only when every version it loaded is READY; else
    500 naming each failed version and its error (the READY ones stay loaded)."""
    failed = [f"version {v}: {error}" for v, error in loaded.failed]
    if failed or not loaded.ready:
        kept = (f" (version(s) {', '.join(loaded.ready)} loaded and serving)"
                if loaded.ready else "")
        raise BackendError(f"model \"{loaded.name}\" failed to load: "
                           + ("; ".join(failed) or loaded.error) + kept)


def _status(message: str, status: int = 200) -> Response:
    return json_response({"status": message}, status)


def _iso(seconds: float) -> str:
    whole = int(seconds)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            + f".{int((seconds - whole) * 1000):03d}Z")


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
        tag = ("KServe v2 repository",)
        add("POST", "/v2/repository/index", self.v2_index, "Models of the repository", tag)
        add("POST", "/v2/repository/models/{model}/load", self.v2_load,
            "Load (or reload) a model", tag)
        add("POST", "/v2/repository/models/{model}/unload", self.v2_unload, "Unload a model",
            tag)
        router.set_error_formatter("/models", error_body)
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
        return json_response([_describe(v) for v in versions])

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
        _raise_if_failed(loaded)
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

    # KServe v2 repository extension

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
        _raise_if_failed(loaded)
        return json_response({"name": loaded.name, "load": True})

    async def v2_unload(self, request: Request) -> Response:
        name = request.params["model"]
        # Not loaded, but in DIR: kept so (the poller would otherwise load it).
        await self.control.keep_unloaded(name)
        return json_response({"name": name, "unload": True})

    # Describe

    def _describe_model(self, name: str) -> dict[str, Any]:
        """A model with no version to describe: none on disk, or every one unloaded."""
        return {"modelName": name, "modelVersion": None,
                "modelUrl": self.control.folder_name(name), "status": "FAILED", "versions": [],
                "workers": [],
                "error": self.control.model_error(name) or f"model '{name}' has no version"}


def _describe(v: VersionDetail) -> dict[str, Any]:
    delay = v.batch_delay_ms
    doc: dict[str, Any] = {
        "modelName": v.name,
        "modelVersion": v.version,
        "modelUrl": v.folder,
        "engine": "Torch",
        "runtime": "python",
        "minWorkers": v.instances,
        "maxWorkers": v.instances,
        "batchSize": v.max_batch_size,
        "maxBatchDelay": int(delay) if delay == int(delay) else delay,
        "jobQueueSize": v.max_queue_size,
        "status": v.state,
        "default": v.default,
        "versions": list(v.versions),
        "device": v.device,
        "platform": v.platform,
        "queueDepth": v.queue_depth,
        "workers": [],
    }
    if v.state == READY:
        doc["workers"] = [{"id": f"{v.name}-{v.version}-{i}",
                           "startTime": _iso(v.loaded_at), "status": "READY",
                           "gpu": v.device.startswith("cuda"), "memoryUsage": process_rss()}
                          for i in range(v.instances)]
    if v.error:
        doc["error"] = v.error
    return doc
