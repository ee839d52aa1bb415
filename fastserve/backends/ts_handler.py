"""TorchServe archives' handlers, run unchanged in process (what ts/model_service_worker.py,
ts/service.py and ts/model_loader.py do for one worker).

    <archive folder>/MAR-INF/MANIFEST.json   model.handler, serializedFile, modelFile ...
    <archive folder>/<handler>.py, model.py, extra files, model-config.yaml

Each instance (TorchServe's minWorkers) imports the handler afresh, builds its own
context and calls ``initialize(context)`` once. A batch (the scheduler's, up to
batchSize within maxBatchDelay) becomes TorchServe's request list: one dict per request,
``{"body": value}`` for a raw body or ``{field: value}`` per multipart field, plus the
query parameters; JSON bodies decoded, text as str, anything else a bytearray. Each
answer is serialized as the worker does (bytes as they are, str as UTF-8, a tensor
torch.save'd, anything else JSON with indent 2) with the status, content type and
headers the handler set. Parts sent with ``send_intermediate_predict_response`` stream.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, FastServeError, UnsupportedError
from ..types import HandlerReply
from . import ts_envelope, ts_loader
from .torch import resolve_device
from .ts_context import MetricsStore, RequestState, TsContext
from .ts_messages import StreamSocket, check_size, request_row, serialize
from .ts_pt2 import Pt2AsTorchScript

log = logging.getLogger("fastserve.backends.ts_handler")

MANIFEST = Path("MAR-INF") / "MANIFEST.json"


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"not a TorchServe archive: {MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), dict):
        raise ConfigError(f"{MANIFEST} has no \"model\" object")
    return manifest


def read_yaml_config(folder: Path, model: dict[str, Any]) -> dict[str, Any]:
    """model-config.yaml (the manifest's configFile), as context.model_yaml_config."""
    name = model.get("configFile")
    if not name:
        return {}
    import yaml

    try:
        value = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{name} cannot be read: {exc}") from None
    return value if isinstance(value, dict) else {}



class HandlerRaised(BackendError):
    """The handler raised (500); in a batch, each request is then run alone."""


class _Worker:
    """One instance: its handler (module kept alive), context and stream socket."""

    def __init__(self, handle: Any, handler: Any, context: TsContext, socket: StreamSocket,
                 modules: dict[str, Any]) -> None:
        self.handle = handle
        self.handler = handler
        self.context = context
        self.socket = socket
        self.modules = modules


class TorchServeHandlerBackend:
    """A TorchServe archive's handler (see backends._base.PayloadBackend)."""

    opaque = True
    runs_requests = True  # its own runner: bodies typed as TorchServe's worker types them
    platform = "pytorch_torchserve"

    def __init__(self, folder: Path, config: Any, labels: dict[str, str]) -> None:
        self.folder = folder
        self.config = config
        self.manifest = read_manifest(folder)
        self.model = self.manifest["model"]
        self.handler_name = str(self.model.get("handler") or "")
        self.model_yaml_config = read_yaml_config(folder, self.model)
        self.device = resolve_device(config.device)
        self.inputs: tuple[Any, ...] = ()
        self.outputs: tuple[Any, ...] = ()
        self.declared = False
        self.metrics = MetricsStore()
        self.label = f"handler '{self.handler_name}' of model '{config.name}'"
        self._workers = [self._new_worker() for _ in range(config.instances)]

    def _new_worker(self) -> _Worker:
        gpu = int(self.device.partition(":")[2] or 0) if self.device.startswith("cuda") else None
        socket = StreamSocket()
        context = TsContext(self.config.name, str(self.folder), self.manifest,
                            max(self.config.max_batch_size, 1), gpu, self.model_yaml_config,
                            self.metrics, socket)
        with ts_loader.import_scope(self.folder) as modules:
            module, function = ts_loader.import_handler(self.folder, self.handler_name)
            handle, initialize, handler = ts_loader.entry_point(module, function)
            handle = ts_envelope.wrap(handle)  # config.properties service_envelope
            try:
                with Pt2AsTorchScript(handler, self.folder, self.model):
                    initialize(context)
            except FastServeError:
                raise
            except Exception as exc:
                raise BackendError(f"{self.label} failed in initialize: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return _Worker(handle, handler, context, socket, modules)

    # Running (instance threads)

    def run_batch(self, payloads: list[Any], instance: int) -> list[Any]:
        """One HandlerReply (or the exception failing it) per payload, in order."""
        worker = self._workers[instance]
        results = self._run(worker, payloads)
        if len(payloads) > 1 and isinstance(results, HandlerRaised):
            # One request made the handler raise: run each alone so only it fails.
            return [self._one(worker, p) for p in payloads]
        return [results] * len(payloads) if isinstance(results, Exception) else results

    def _one(self, worker: _Worker, payload: Any) -> Any:
        result = self._run(worker, [payload])
        return result if isinstance(result, Exception) else result[0]

    def _run(self, worker: _Worker, payloads: list[Any],
             headers: dict[str, str] | None = None) -> list[Any] | Exception:
        ids = {i: str(uuid.uuid4()) for i in range(len(payloads))}
        rows, states = [], []
        for p in payloads:
            row, request_headers = request_row(p)
            request_headers.update(headers or {})
            rows.append(row)
            states.append(RequestState(request_headers))
        context = worker.context
        context.start_batch(ids, states)
        worker.socket.streams = {ids[i]: getattr(p, "stream", None)
                                 for i, p in enumerate(payloads)
                                 if getattr(p, "stream", None) is not None}
        worker.socket.held = {}
        try:
            answers = worker.handle(rows, context)
        except Exception as exc:
            failure = self._failure(exc)
            return failure if isinstance(failure, Exception) else [failure] * len(rows)
        finally:
            worker.socket.streams = {}
        if not isinstance(answers, list) or len(answers) != len(rows):
            got = (f"{len(answers)} answers" if isinstance(answers, list)
                   else f"a {type(answers).__name__}, not a list")
            return BackendError(f"{self.label} returned {got} for a batch of {len(rows)} "
                                "requests; it must return a list with one answer per request")
        replies: list[Any] = []
        for i, answer in enumerate(answers):
            try:
                body = serialize(answer)
                check_size(body)
            except BackendError as exc:
                replies.append(exc)
                continue
            held = worker.socket.held.get(ids[i])
            if held:
                body = b"".join(held) + body
            status, _ = context.get_response_status(i)
            extra = dict(context.get_response_headers(i))
            extra.pop("ts_stream_next", None)
            ctype = next((extra.pop(k) for k in list(extra) if k.lower() == "content-type"),
                         None)
            replies.append(HandlerReply(body, status or 200, ctype, extra))
        return replies

    def _failure(self, exc: Exception) -> Exception | HandlerReply:
        code = getattr(exc, "error_code", None)  # ts.utils.util.PredictionException
        message = getattr(exc, "message", None) or str(exc)
        log.error("model %s: %s raised %s: %s", self.config.name, self.label,
                  type(exc).__name__, message, exc_info=exc)
        if isinstance(code, int) and 400 <= code < 600:
            body = json.dumps({"code": code, "type": type(exc).__name__, "message": message},
                              indent=2).encode()
            return HandlerReply(body, code, "application/json")
        return HandlerRaised(f"{self.label} raised {type(exc).__name__}: {message}")

    def explain(self, inputs: dict[str, Any], method: str, target: Any = None) -> Any:
        raise UnsupportedError(f"model '{self.config.name}' explains whole requests "
                               "(explain_payload), not tensors")

    def explain_payload(self, payload: Any, method: str, target: Any = None) -> Any:
        """TorchServe's /explanations: the same handle() with the "explain" header."""
        result = self._run(self._workers[0], [payload], {"explain": "True"})
        if isinstance(result, Exception):
            raise result
        return result[0]

    def handler_metrics(self) -> list[tuple[str, str, str, dict[str, str], list[float]]]:
        """What the handlers recorded in context.metrics (for /metrics)."""
        return self.metrics.samples()

    # Backend protocol

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        raise UnsupportedError(
            f"model '{self.config.name}' is a TorchServe archive served by its handler: send "
            f"its requests to /predictions/{self.config.name} (TorchServe API) or :predict "
            "(KServe v1)")

    def warmup(self) -> None:
        log.info("model %s: TorchServe handlers are not warmed up", self.config.name)

    def close(self) -> None:
        self._workers.clear()



def load(folder: Path, config: Any, labels: dict[str, str]) -> TorchServeHandlerBackend:
    """The BackendLoader for TorchServe archives (handler = "torchserve")."""
    return TorchServeHandlerBackend(folder, config, labels)
