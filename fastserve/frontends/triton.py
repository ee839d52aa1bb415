"""Triton's HTTP extensions on the v2 paths: model configuration and statistics.

perf_analyzer and model analyzer read ``/v2/models/{m}/config`` before they start
(the documents: frontends/_triton.py).
"""

from __future__ import annotations

from ..http.messages import Request, Response
from ..http.router import Router
from ._base import json_response
from ._triton import TritonDocs

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
