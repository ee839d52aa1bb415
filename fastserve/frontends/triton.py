"""Triton's HTTP extensions on the v2 paths: model configuration and statistics; log and
trace settings (frontends/_triton_settings.py).

perf_analyzer and model analyzer read ``/v2/models/{m}/config`` before they start
(the documents: frontends/_triton.py).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ForbiddenError, InvalidInputError
from ..http.messages import Request, Response
from ..http.router import Router
from ._base import json_response, load_json
from ._triton import TritonDocs
from ._triton_settings import TritonSettings, trace_json, trace_values

EXTENSIONS = ["model_configuration", "statistics"]


class TritonExtensionsFrontend(TritonDocs):
    def register(self, router: Router) -> None:
        tag = ("Triton extensions",)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            router.add("GET", base + "/config", self.model_config,
                       "Model configuration (Triton's ModelConfig JSON)", tag)
            router.add("GET", base + "/stats", self.model_stats, "Model statistics", tag)
        router.add("GET", "/v2/models/stats", self.model_stats, "Statistics of every model", tag)

    def model_config(self, request: Request) -> Response:
        p = request.params
        return json_response(self.config_doc(p["model"], p.get("version")))

    def model_stats(self, request: Request) -> Response:
        p = request.params
        return json_response(self.stats_doc(p.get("model"), p.get("version")))


class SettingsFrontend:
    """/v2/logging and /v2/trace/setting on both HTTP ports; updates on management only."""

    def __init__(self, settings: TritonSettings) -> None:
        self.logs = settings.logs
        self.traces = settings.traces

    def register(self, inference: Router, management: Router,
                 management_address: Callable[[], str]) -> None:
        def refuse(request: Request) -> Response:
            raise ForbiddenError(
                f"changing settings is not allowed on the inference port; it answers on the "
                f"management port: POST http://{management_address()}{request.path}")

        tag = ("Triton extensions",)
        paths = {"/v2/logging": (self.get_log, self.update_log, "Log settings"),
                 "/v2/trace/setting": (self.get_trace, self.update_trace, "Trace settings"),
                 "/v2/models/{model}/trace/setting": (self.get_trace, self.update_trace,
                                                      "A model's trace settings")}
        for path, (get, update, what) in paths.items():
            for router in (inference, management):
                router.add("GET", path, get, what, tag)
            management.add("POST", path, update, f"Change the {what.lower()}", tag)
            inference.add("POST", path, refuse, "403: changes answer on the management port",
                          tag)

    def get_log(self, request: Request) -> Response:
        return json_response(self.logs.get())

    def update_log(self, request: Request) -> Response:
        doc = load_json(request.body) if request.body else {}
        if not isinstance(doc, dict):
            raise InvalidInputError("the log settings must be a JSON object")
        return json_response(self.logs.update(doc))

    def get_trace(self, request: Request) -> Response:
        return json_response(trace_json(self.traces.get(request.params.get("model"))))

    def update_trace(self, request: Request) -> Response:
        doc = load_json(request.body) if request.body else {}
        if not isinstance(doc, dict):
            raise InvalidInputError("the trace settings must be a JSON object")
        return json_response(trace_json(self.traces.update(request.params.get("model"),
                                                           trace_values(doc))))
