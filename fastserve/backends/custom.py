"""handler.py models: a TorchServe-style handler class in the model folder, run per batch.

    <model>/handler.py    class with initialize(context), preprocess(data),
                          inference(x), postprocess(y) (or handle(data, context));
                          or a module function handle(data, context)
    <model>/<version>/    model.pt2 | model.pt (BaseHandler loads it; a handler may
                          load whatever it likes from context.model_dir)

Each instance (config ``instances``) gets its own handler object and ``Context``, as
each TorchServe worker has. A batch is ``data``: one dict per request, TorchServe's
shape — ``{"body": <value>}`` for a raw body, ``{"<field>": <value>}`` for a multipart
part, plus the query parameters; JSON bodies arrive decoded, text as str, anything
else as a bytearray. The handler returns one answer per request, in order.
"""

from __future__ import annotations

import inspect
import logging
import threading
from pathlib import Path
from typing import Any

import torch

from ..errors import (
    BackendError,
    ConfigError,
    FastServeError,
    InvalidInputError,
    ModelNotReadyError,
    UnsupportedError,
)
from .devices import resolve_device
from .handler_context import Context
from .handler_file import HANDLER_FILE, find_entry, import_handler
from .model_files import load_exported, load_torchscript

log = logging.getLogger("fastserve.backends.custom")


class BaseHandler:
    """A starting point, as TorchServe's BaseHandler: loads the version's model file.

    ``initialize`` loads ``model.pt2`` (torch.export) or ``model.pt`` (TorchScript) from
    ``context.model_dir`` onto ``context.device``; ``preprocess`` stacks each request's
    "data" (or "body") as a tensor; ``inference`` runs the model under inference_mode;
    ``postprocess`` returns one list per row. Override what your model needs.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.device: torch.device | None = None
        self.context: Context | None = None
        self.mapping: dict[str, str] = {}
        self.initialized = False

    def initialize(self, context: Context) -> None:
        self.context = context
        self.device = torch.device(context.device)
        self.mapping = context.labels
        folder = Path(context.model_dir)
        if (folder / "model.pt2").exists():
            self.model = load_exported(folder / "model.pt2").module().to(self.device)
        elif (folder / "model.pt").exists():
            self.model = load_torchscript(folder / "model.pt", str(self.device))
            self.model.eval()
        self.initialized = True

    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        rows = [row.get("data", row.get("body")) for row in data]
        return torch.stack([torch.as_tensor(r, dtype=torch.float32) for r in rows])

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return self.model(data.to(self.device), *args, **kwargs)

    def postprocess(self, data: Any) -> list[Any]:
        return data.tolist()

    def handle(self, data: list[dict[str, Any]], context: Context) -> list[Any]:
        self.context = context
        return self.postprocess(self.inference(self.preprocess(data)))


def _plain(value: Any) -> Any:
    """Tensors inside an answer become lists (the front-ends write JSON, without torch)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class CustomBackend:
    """A handler.py model version (see backends._base.PayloadRunner)."""

    opaque = True
    platform = "pytorch_handler"

    def __init__(self, folder: Path, config: Any, labels: dict[str, str]) -> None:
        self.folder = folder
        self.config = config
        self.labels = labels
        self.device = resolve_device(config.device)
        self.inputs = config.inputs or ()
        self.outputs = config.outputs or ()
        self.declared = config.inputs is not None
        path = folder.parent / HANDLER_FILE
        if not path.exists():
            raise ConfigError(f"handler = \"handler.py\" but {path} does not exist")
        self.module = import_handler(path, config.name)
        self.entry = find_entry(self.module)
        self.label = (f"{HANDLER_FILE} of model '{config.name}' "
                      f"({getattr(self.entry, '__qualname__', 'handle')})")
        self._workers = [self._new_worker() for _ in range(config.instances)]
        self._explainer: tuple[Any, Context] | None = None
        self._explainer_lock = threading.Lock()

    def _new_worker(self) -> tuple[Any, Context]:
        context = Context(self.folder, self.config, self.device, self.labels)
        try:
            if inspect.isclass(self.entry):
                handler = self.entry()
                if hasattr(handler, "initialize"):
                    handler.initialize(context)
            else:
                handler = self.entry
                handler(None, context)  # TorchServe's function handlers initialise so
        except FastServeError:
            raise
        except Exception as exc:
            raise BackendError(f"{self.label} failed to initialize: {type(exc).__name__}: "
                               f"{exc}") from exc
        return handler, context

    # Running (instance threads)

    def run_batch(self, payloads: list[Any], instance: int) -> list[Any]:
        """The handler over a whole batch; one answer per request, or the error for all."""
        handler, context = self._workers[instance]
        data = [self._row(p) for p in payloads]
        context._headers = [p.headers or {} for p in payloads]
        answers = self._call(handler, context, data)
        n = len(payloads)
        if not isinstance(answers, list) or len(answers) != n:
            got = (f"{len(answers)} answers" if isinstance(answers, list)
                   else f"a {type(answers).__name__}, not a list")
            # NOTE: not retried one request at a time: the batch fails (CONTRACT §4).
            error = BackendError(f"{self.label} returned {got} for a batch of {n} requests; "
                                 "it must return a list with one answer per request, in order")
            return [error] * n
        return [_plain(a) for a in answers]

    def _call(self, handler: Any, context: Context, data: list[dict[str, Any]]) -> Any:
        stage = "handle"
        try:
            if not inspect.isclass(self.entry):
                return handler(data, context)
            if hasattr(handler, "handle"):
                return handler.handle(data, context)
            handler.context = context
            stage = "preprocess"
            x = handler.preprocess(data)
            stage = "inference"
            y = handler.inference(x)
            stage = "postprocess"
            return handler.postprocess(y)
        except FastServeError:
            raise
        except Exception as exc:
            raise self._error(stage, exc) from exc

    def _error(self, stage: str, exc: Exception) -> FastServeError:
        message = f"{self.label} raised {type(exc).__name__} in {stage}: {exc}"
        code = getattr(exc, "error_code", None)  # TorchServe's PredictionException
        if isinstance(code, int) and 400 <= code < 500:
            return InvalidInputError(message)
        if code == 501:
            return UnsupportedError(message)
        if code == 503:
            return ModelNotReadyError(message)
        return BackendError(message)

    @staticmethod
    def _row(payload: Any) -> dict[str, Any]:
        # The core has typed the body (core.payloads.decode_body, handler_py=True).
        value = payload.data
        if isinstance(value, (bytes, memoryview)):
            value = bytearray(value)
        row = dict(payload.extra)
        row[payload.name] = value
        return row

    def explain(self, inputs: dict[str, Any], method: str, target: Any = None) -> Any:
        raise UnsupportedError(f"{self.label} explains whole requests (explain_payload), "
                               "not tensors")

    def explain_payload(self, payload: Any, method: str, target: Any = None) -> Any:
        """TorchServe's explain path: preprocess, then the handler's explain_handle."""
        handler, context = self._explain_worker()
        if not hasattr(handler, "explain_handle"):
            raise UnsupportedError(f"{self.label} defines no explain_handle(data_preprocess, "
                                   "raw_data); add one to serve explanations")
        row = self._row(payload)
        if target is not None:
            row["target"] = target
        data = [row]
        context._headers = [payload.headers or {}]
        try:
            handler.context = context
            result = handler.explain_handle(handler.preprocess(data), data)
        except FastServeError:
            raise
        except Exception as exc:
            raise self._error("explain_handle", exc) from exc
        if isinstance(result, list) and len(result) == 1:
            result = result[0]
        return _plain(result)

    def _explain_worker(self) -> tuple[Any, Context]:
        # Its own handler object: explanations run beside predictions, on another thread.
        with self._explainer_lock:
            if self._explainer is None:
                if not inspect.isclass(self.entry):
                    raise UnsupportedError(f"{self.label} is a function; explanations need a "
                                           "handler class with explain_handle")
                self._explainer = self._new_worker()
            return self._explainer

    # Backend protocol

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        raise UnsupportedError(
            f"model '{self.config.name}' is served by its {HANDLER_FILE}: send its requests to "
            f"/predictions/{self.config.name} (TorchServe API) or :predict (KServe v1)")

    def warmup(self) -> None:
        log.info("model %s: handler.py models are not warmed up", self.config.name)

    def close(self) -> None:
        self._workers.clear()
        self._explainer = None


def load(folder: Path, config: Any, labels: dict[str, str]) -> CustomBackend:
    """The BackendLoader for handler = "handler.py" (model_loader.TorchLoader picks it)."""
    return CustomBackend(folder, config, labels)
