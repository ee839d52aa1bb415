"""GET /metrics in Prometheus text format, through prometheus_client (CONTRACT §6).

Where the numbers come from:
- ``fastserve_requests_total{model,version,api,code}``: ``observe_response``, the
  transport's per-answer hook, so no front-end has to count. Health and metrics
  requests are not counted; an unknown model or version counts under "".
- ``fastserve_request_duration_seconds{stage}`` (queue, compute, total),
  ``fastserve_batch_size`` and ``fastserve_requests_cancelled_total``: a
  ``VersionObserver`` that each version's scheduler calls (core/stats.StatsObserver).
- ``fastserve_queue_depth`` and ``fastserve_model_state``: set from the repository on
  every state change and every scrape.

The per-request hooks only count, in plain Python numbers; ``flush`` hands the counts to
prometheus_client on every scrape (and every second with several processes, so another
process's scrape lags by at most that).

Several processes (``--workers N``): when PROMETHEUS_MULTIPROC_DIR is set before
prometheus_client is first imported, every process writes its values to files there and
any process's /metrics answers the sum over all of them (prometheus_client's multiprocess
mode; gauges: queue depth summed over live processes, model state the max). The parent
empties the folder before starting workers and calls
``prometheus_client.multiprocess.mark_process_dead(pid)`` when one exits.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from ..core.control import ModelControl
from ..core.info import STATES, VersionChange
from ..http.messages import Request, Response
from ..http.router import Router
from ._handler_metrics import HandlerMetricsCollector
from ._metric_families import Metrics
from ._metric_observer import VersionObserver

# Not counted: probes and scrapes (model readiness, /v2/models/{m}/ready, too).
NOT_COUNTED = frozenset({"/metrics", "/ping", "/v2/health/live", "/v2/health/ready"})
REFRESH_SECONDS = 1.0  # multiprocess: how often a process publishes its gauges
PATH_LABELS = 1024  # paths whose api label a response hook remembers


def api_of(path: str) -> str:
    """The API family a path belongs to (the ``api`` label)."""
    if path.startswith("/v2"):
        if path.startswith("/v2/repository"):
            return "management"
        if path.endswith(("/config", "/stats")) or "sharedmemory" in path:
            return "triton"
        return "kserve_v2"
    if path.startswith(("/predictions", "/explanations")) or path in ("/", "/api-description"):
        return "torchserve"
    if path.startswith(("/v1/", "/model-serving/")):
        return "tfserving"  # TF Serving and KServe v1 share these paths
    if path.startswith("/models"):
        return "management"
    return "other"


class MetricsFrontend:
    """``GET /metrics`` plus the hooks that feed it; one per process."""

    def __init__(self, control: ModelControl | Any,
                 registry: CollectorRegistry | None = None) -> None:
        # A ModelRepository is taken too (as the tests build one): wrapped in the door.
        self.control = control if isinstance(control, ModelControl) else ModelControl(control)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        disable_created_metrics()  # no *_created series: they double the output for nothing
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        if not self.multiprocess and registry is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        # TorchServe handlers' context.metrics (with N processes: through files, as ours)
        self.handler_metrics = HandlerMetricsCollector(
            self.control, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if not self.multiprocess:
            self.registry.register(self.handler_metrics)
        # Answers counted since the last flush: label values -> [counter child, count].
        self._requests: dict[tuple[str, str, str, int], list[Any]] = {}
        self._observers: list[VersionObserver] = []
        self._timer: asyncio.TimerHandle | None = None

    def register(self, router: Router) -> None:
        router.add("GET", "/metrics", self.scrape, "Prometheus metrics (text format)",
                   ("Metrics",))

    # GET /metrics

    def scrape(self, request: Request) -> Response:
        self.flush()
        self.refresh()
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            registry.register(self.handler_metrics)
        names = parse_qs(request.query).get("name[]") if request.query else None
        if names:
            registry = registry.restricted_registry(names)  # TorchServe's ?name[]=...
        accept = request.headers.get(b"accept", b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        return Response(encoder(registry), 200, content_type.encode("latin-1"))

    # Hooks

    def response_hook(self, api: str | None = None) -> Any:
        """The transport's ``on_response`` for one port (``api`` fixes the label)."""

        labels: dict[str, str] = {}  # path -> its api label ("": not counted)

        def observe(request: Request, status: int, seconds: float) -> None:
            path = request.path
            label = labels.get(path)
            if label is None:
                label = "" if path in NOT_COUNTED or (
                    path.endswith("/ready") and path.startswith("/v2/")) else api or api_of(path)
                if len(labels) < PATH_LABELS:  # paths are the client's: bounded
                    labels[path] = label
            if label:
                self.count(request.params, label, status)

        observe.quiet_paths = NOT_COUNTED  # type: ignore[attr-defined]  # http/probes.py
        return observe

    def count(self, params: dict[str, str], api: str, status: int) -> None:
        """One answer of ``api`` with an HTTP(-equivalent) status, for the model in params."""
        # Only names the repository knows: a client cannot grow the label set at will.
        model, version = self.control.known(params.get("model", ""), params.get("version"))
        key = (model, version, api, status)
        pending = self._requests.get(key)
        if pending is None:
            pending = self._requests[key] = [self.metrics.requests.labels(
                model, version, api, str(status)), 0]
        pending[1] += 1

    def flush(self) -> None:
        """Hand what the hooks counted to prometheus_client: on each scrape, and each
        second with several processes (another process may be the one scraped)."""
        for pending in self._requests.values():
            if pending[1]:
                pending[0].inc(pending[1])
                pending[1] = 0
        for observer in self._observers:
            observer.flush()
        self.handler_metrics.publish()

    def on_model_change(self, change: VersionChange) -> None:
        """ModelControl's ``on_change``: observe new versions, publish the state."""
        if change.registered:
            if change.stats.observer is None:
                observer = VersionObserver(self.metrics, change.name, change.version)
                self._observers.append(observer)
                change.stats.observer = observer
            self._publish(change.name, change.version, change.state, change.queue_depth)
        else:
            self._forget(change)

    # Gauges

    def refresh(self) -> None:
        """Publish every version's state and queue depth (each scrape; each second with N)."""
        for name, version, state, depth in self.control.queue_depths():
            self._publish(name, version, state, depth)

    def start(self) -> None:
        """With several processes, publish this one's gauges every second (others scrape)."""
        if self.multiprocess and self._timer is None:
            self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def _tick(self) -> None:
        self.flush()
        self.refresh()
        self._timer = asyncio.get_running_loop().call_later(REFRESH_SECONDS, self._tick)

    def _publish(self, name: str, version: str, current: str, depth: int) -> None:
        m = self.metrics
        for state in STATES:
            m.model_state.labels(name, version, state).set(1 if state == current else 0)
        m.queue_depth.labels(name, version).set(depth)

    def _forget(self, change: VersionChange) -> None:
        """An unloaded version leaves the gauges (counters and histograms stay)."""
        observer = change.stats.observer
        if isinstance(observer, VersionObserver) and observer in self._observers:
            observer.flush()
            self._observers.remove(observer)
        m = self.metrics
        labels = (change.name, change.version)
        if self.multiprocess:  # files keep every series: zero them instead
            for state in STATES:
                m.model_state.labels(*labels, state).set(0)
            m.queue_depth.labels(*labels).set(0)
            return
        for state in STATES:
            try:
                m.model_state.remove(*labels, state)
            except KeyError:
                pass
        try:
            m.queue_depth.remove(*labels)
        except KeyError:
            pass
