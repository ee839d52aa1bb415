"""TorchServe handlers' own metrics (``context.metrics``) as Prometheus families.

With ``--workers N`` (PROMETHEUS_MULTIPROC_DIR set) each process writes what its
handlers recorded to ``handler_metrics_<pid>.json`` in that folder (on every flush: each
scrape, and every second), and a scrape of any process answers all of them together:
counters, and histograms' count and sum, added up over the processes; a gauge is the
value of the process that wrote last. A process that exits leaves its file, so its
counts stay, as prometheus_client's own multiprocess counters do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.metrics_core import Metric as PromMetric

from ..core.control import ModelControl

# (model, version, [(name, kind, unit, dims, values)]) as ModelControl.handler_metrics gives
Recorded = list[tuple[str, str, list[Any]]]
FILE_PREFIX = "handler_metrics_"


class HandlerMetricsCollector:
    """What TorchServe handlers record in ``context.metrics`` (add_counter, add_time,
    add_metric_to_cache ...), under the names they give, labelled with the model, the
    version and the handler's dimensions. Counters add up, gauges keep the last value,
    histograms show as a summary's count and sum."""

    KINDS = {"counter": "counter", "gauge": "gauge", "histogram": "summary"}

    def __init__(self, control: ModelControl, folder: str | None = None) -> None:
        self.control = control
        self.folder = Path(folder) if folder else None  # PROMETHEUS_MULTIPROC_DIR
        self._written = b""

    def publish(self) -> None:
        """Several processes: write this one's values for the others' scrapes."""
        if self.folder is None:
            return
        data = orjson.dumps(self.control.handler_metrics())
        if data == self._written:
            return
        path = self.folder / f"{FILE_PREFIX}{os.getpid()}.json"
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        os.replace(partial, path)  # a scrape never reads half a file
        self._written = data

    def collect(self) -> Iterator[PromMetric]:
        families: dict[tuple[str, str], PromMetric] = {}
        for (model, version, name, kind, unit, dims), values in self._series().items():
            name = _metric_name(name)
            family = families.get((name, kind))
            if family is None:
                family = families[(name, kind)] = PromMetric(
                    name, f"handler metric {name} ({unit or 'no unit'})", self.KINDS[kind])
            labels = {"model": model, "version": version,
                      **{_metric_name(k): str(v) for k, v in dims}}
            if kind == "counter":
                family.add_sample(name + "_total", labels, values[0])
            elif kind == "gauge":
                family.add_sample(name, labels, values[0])
            else:
                family.add_sample(name + "_count", labels, values[0])
                family.add_sample(name + "_sum", labels, values[1])
        yield from families.values()

    def _series(self) -> dict[tuple[Any, ...], list[float]]:
        if self.folder is None:
            return _merge([self.control.handler_metrics()])
        self.publish()
        files = sorted(self.folder.glob(f"{FILE_PREFIX}*.json"),
                       key=_mtime)  # oldest first: the last gauge wins
        recorded = []
        for path in files:
            try:
                recorded.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # removed (the folder emptied) while we looked
        return _merge(recorded)


def _merge(processes: list[Recorded]) -> dict[tuple[Any, ...], list[float]]:
    merged: dict[tuple[Any, ...], list[float]] = {}
    for recorded in processes:
        for model, version, series in recorded:
            for name, kind, unit, dims, values in series:
                key = (model, version, name, kind, unit, tuple(sorted(dims.items())))
                slot = merged.get(key)
                if slot is None or kind == "gauge":
                    merged[key] = list(values)
                else:
                    merged[key] = [a + b for a, b in zip(slot, values, strict=False)]
    return merged


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _metric_name(name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "_:" else "_" for c in name)
    return clean if clean[:1].isalpha() or clean[:1] in "_:" else "_" + clean
