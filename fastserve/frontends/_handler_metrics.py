"""TorchServe handlers' own metrics (``context.metrics``) as Prometheus families."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric as PromMetric

from ..core.control import ModelControl


class HandlerMetricsCollector:
    """What TorchServe handlers record in ``context.metrics`` (add_counter, add_time,
    add_metric_to_cache ...), under the names they give, labelled with the model, the
    version and the handler's dimensions. Counters add up, gauges keep the last value,
    histograms show as a summary's count and sum."""

    KINDS = {"counter": "counter", "gauge": "gauge", "histogram": "summary"}

    def __init__(self, control: ModelControl) -> None:
        self.control = control

    def collect(self) -> Iterator[PromMetric]:
        families: dict[tuple[str, str], PromMetric] = {}
        for model, version, recorded in self.control.handler_metrics():
            for name, kind, unit, dims, values in recorded:
                name = _metric_name(name)
                family = families.get((name, kind))
                if family is None:
                    family = families[(name, kind)] = PromMetric(
                        name, f"handler metric {name} ({unit or 'no unit'})", self.KINDS[kind])
                labels = {"model": model, "version": version,
                          **{_metric_name(k): str(v) for k, v in dims.items()}}
                if kind == "counter":
                    family.add_sample(name + "_total", labels, values[0])
                elif kind == "gauge":
                    family.add_sample(name, labels, values[0])
                else:
                    family.add_sample(name + "_count", labels, values[0])
                    family.add_sample(name + "_sum", labels, values[1])
        yield from families.values()


def _metric_name(name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "_:" else "_" for c in name)
    return clean if clean[:1].isalpha() or clean[:1] in "_:" else "_" + clean
