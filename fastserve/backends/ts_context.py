"""The ``context`` a TorchServe handler gets, re-created in process (ts/context.py's API).

One ``TsContext`` per model instance, as each TorchServe worker process has one. Before
each batch the runtime sets the batch's request ids and per-request state; the handler
reads headers and sets each answer's status, content type and headers through it, and
records metrics in ``context.metrics`` (shown on ``/metrics``).
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

from .._version import __version__

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ResourceWarning)  # ts/__init__.py leaves a file open
    try:  # handlers may check isinstance(context, ts.context.Context)
        from ts.context import Context as _TsContextBase
    except ImportError:  # the optional extra fastserve[torchserve] is not installed
        _TsContextBase = object  # type: ignore[assignment,misc]


class RequestState:
    """One request of a batch: its headers in, its status and response headers out
    (TorchServe's RequestProcessor)."""

    __slots__ = ("_request_header", "_status_code", "_reason_phrase", "_response_header")

    def __init__(self, request_header: dict[str, Any]) -> None:
        self._request_header = request_header
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}

    def get_request_property(self, key: str) -> Any:
        # HTTP header names are case-insensitive; the transport hands them lower-cased.
        value = self._request_header.get(key)
        return self._request_header.get(key.lower()) if value is None else value

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)


class TsContext(_TsContextBase):  # type: ignore[misc,valid-type]
    """What ``initialize(context)`` and ``handle(data, context)`` receive.

    Attributes (as TorchServe's): model_name, manifest, system_properties (model_dir,
    gpu_id, batch_size, server_name, server_version, limit_max_image_pixels),
    model_yaml_config, request_ids ({batch index: id}), metrics, cl_socket (where
    ``send_intermediate_predict_response`` writes a streamed part).
    """

    def __init__(self, model_name: str, model_dir: str, manifest: dict[str, Any],
                 batch_size: int, gpu: int | None, model_yaml_config: dict[str, Any],
                 metrics: Any, cl_socket: Any) -> None:
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties = {
            "model_dir": model_dir, "gpu_id": gpu, "batch_size": batch_size,
            "server_name": "fastserve", "server_version": __version__,
            "limit_max_image_pixels": True,
        }
        self.request_ids: dict[int, str] | None = None
        self._request_processor: list[RequestState] | None = None
        self._metrics = metrics
        self._limit_max_image_pixels = True
        self.model_yaml_config = model_yaml_config
        self.stopping_criteria = None
        self.cl_socket = cl_socket
        self.header_key_sequence_id = os.getenv("TS_REQUEST_SEQUENCE_ID",
                                                "ts_request_sequence_id")
        self.header_key_sequence_start = os.getenv("TS_REQUEST_SEQUENCE_START",
                                                   "ts_request_sequence_start")
        self.header_key_sequence_end = os.getenv("TS_REQUEST_SEQUENCE_END",
                                                 "ts_request_sequence_end")

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    @property
    def request_processor(self) -> list[RequestState] | None:
        return self._request_processor

    @request_processor.setter
    def request_processor(self, value: list[RequestState] | None) -> None:
        self._request_processor = value

    @property
    def metrics(self) -> Any:
        return self._metrics

    @metrics.setter
    def metrics(self, value: Any) -> None:
        self._metrics = value

    def start_batch(self, request_ids: dict[int, str], states: list[RequestState]) -> None:
        self.request_ids = request_ids
        self._request_processor = states
        self._metrics.request_ids = request_ids

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._states()[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self._states()[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        state = self._states()[idx]
        return state.get_response_status_code(), state.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self._request_processor is not None:
            self._request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for state in self._states():
            state.report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._states()[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._states()[idx].add_response_property(key, value)

    def get_sequence_id(self, idx: int) -> Any:
        return self._states()[idx].get_request_property(self.header_key_sequence_id)

    def _states(self) -> list[RequestState]:
        if self._request_processor is None:
            raise RuntimeError("no request is being handled (the context's request "
                               "methods work inside handle())")
        return self._request_processor


# Metrics (ts/metrics/metric_cache_abstract.py's API)

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


def _kind(metric_type: Any) -> str:
    value = getattr(metric_type, "value", metric_type)  # ts MetricTypes enum or a str
    return str(value).lower() if str(value).lower() in (COUNTER, GAUGE, HISTOGRAM) else COUNTER


class HandlerMetric:
    """One named metric a handler records into (ts CachingMetric's ``add_or_update``)."""

    def __init__(self, store: MetricsStore, name: str, unit: str, dimension_names: list[str],
                 kind: str) -> None:
        self.store = store
        self.name = name
        self.unit = unit
        self.dimension_names = list(dimension_names)
        self.kind = kind

    def add_or_update(self, value: float, dimension_values: list[str] | None = None,
                      request_id: str = "") -> None:
        dims = tuple(zip(self.dimension_names, dimension_values or (), strict=False))
        self.store.record(self, dims, float(value))

    def update(self, value: float, request_id: str = "",
               dimensions: list[Any] | None = None) -> None:
        self.add_or_update(value, [d.value for d in dimensions or ()], request_id)


class MetricsStore:
    """The metrics of one model version, shared by its instances; read by /metrics.

    Counters add up; gauges keep the last value; histograms keep count and sum.
    """

    def __init__(self) -> None:
        self.request_ids: Any = None
        self._lock = threading.Lock()
        self._metrics: dict[tuple[str, str], HandlerMetric] = {}
        # (name, kind, unit, dims) -> [value] or [count, sum]
        self.values: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], list[float]] = {}

    def record(self, metric: HandlerMetric, dims: tuple[tuple[str, str], ...],
               value: float) -> None:
        key = (metric.name, metric.kind, metric.unit, dims)
        with self._lock:
            slot = self.values.setdefault(key, [0.0, 0.0])
            if metric.kind == COUNTER:
                slot[0] += value
            elif metric.kind == GAUGE:
                slot[0] = value
            else:
                slot[0] += 1
                slot[1] += value

    def samples(self) -> list[tuple[str, str, str, dict[str, str], list[float]]]:
        """(name, kind, unit, dimensions, values) of every recorded series."""
        with self._lock:
            return [(n, k, u, dict(d), list(v)) for (n, k, u, d), v in self.values.items()]

    # The API handlers call (ts MetricCacheAbstract)

    def add_metric_to_cache(self, metric_name: str, unit: str, dimension_names: list[str]
                            | None = None, metric_type: Any = COUNTER) -> HandlerMetric:
        kind = _kind(metric_type)
        with self._lock:
            metric = self._metrics.get((metric_name, kind))
            if metric is None:
                metric = HandlerMetric(self, metric_name, unit, dimension_names or [], kind)
                self._metrics[(metric_name, kind)] = metric
            return metric

    def get_metric(self, metric_name: str, metric_type: Any = COUNTER) -> HandlerMetric:
        metric = self._metrics.get((metric_name, _kind(metric_type)))
        if metric is None:
            raise KeyError(f"metric {metric_name!r} ({_kind(metric_type)}) was not added")
        return metric

    def add_metric(self, name: str, value: float, unit: str, idx: Any = None,
                   dimensions: list[Any] | None = None, metric_type: Any = COUNTER) -> None:
        dimensions = dimensions or []
        metric = self.add_metric_to_cache(name, unit, [d.name for d in dimensions], metric_type)
        metric.add_or_update(value, [d.value for d in dimensions])

    def add_counter(self, name: str, value: float, idx: Any = None,
                    dimensions: list[Any] | None = None) -> None:
        self.add_metric(name, value, "count", idx, dimensions, COUNTER)

    def add_time(self, name: str, value: float, idx: Any = None, unit: str = "ms",
                 dimensions: list[Any] | None = None, metric_type: Any = GAUGE) -> None:
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_size(self, name: str, value: float, idx: Any = None, unit: str = "MB",
                 dimensions: list[Any] | None = None, metric_type: Any = GAUGE) -> None:
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_percent(self, name: str, value: float, idx: Any = None,
                    dimensions: list[Any] | None = None, metric_type: Any = GAUGE) -> None:
        self.add_metric(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name: str, value: float, dimensions: list[Any] | None = None) -> None:
        self.add_metric(name, value, "", None, dimensions, COUNTER)
