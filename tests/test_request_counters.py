"""Per-request bookkeeping kept cheap without changing what it counts: the metrics hook's
path labels, a job's runs in ModelStats, DataType as a dict key."""

from __future__ import annotations

import pickle
import time

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from fastserve.core.repository import ModelRepository
from fastserve.core.stats import BatchStat, ModelStats
from fastserve.frontends import metrics as metrics_module
from fastserve.frontends.metrics import MetricsFrontend
from fastserve.types import BY_WIRE, DataType


class Req:
    method, query, headers, params = "POST", "", {}, {}

    def __init__(self, path: str) -> None:
        self.path = path


def _requests_total(frontend: MetricsFrontend) -> dict[tuple[str, str], float]:
    text = frontend.scrape(Req("/metrics")).body.decode()  # type: ignore[arg-type]
    return {(s.labels["api"], s.labels["code"]): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "fastserve_requests_total"}


def test_hook_counts_each_path_under_its_api_with_few_paths_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_module, "PATH_LABELS", 2)
    frontend = MetricsFrontend(ModelRepository(tmp_path, None), CollectorRegistry())
    hook = frontend.response_hook()
    paths = ["/v2/models/a/infer", "/predictions/a", "/v1/models/a:predict",
             "/v2/models/a/config", "/v2/health/ready", "/metrics", "/v2/models/a/ready"]
    for _ in range(3):  # past the remembered two: the rest still counted, each as before
        for path in paths:
            hook(Req(path), 200, 0.001)
    hook(Req("/v2/models/a/infer"), 404, 0.001)
    assert _requests_total(frontend) == {("kserve_v2", "200"): 3, ("torchserve", "200"): 3,
                                         ("tfserving", "200"): 3, ("triton", "200"): 3,
                                         ("kserve_v2", "404"): 1}


def test_hook_of_a_port_with_a_fixed_api_label(tmp_path):
    frontend = MetricsFrontend(ModelRepository(tmp_path, None), CollectorRegistry())
    hook = frontend.response_hook("management")
    for path in ("/models", "/models/a", "/models", "/ping"):
        hook(Req(path), 200, 0.001)
    assert _requests_total(frontend) == {("management", "200"): 3}


def test_record_runs_counts_rows_runs_and_time_by_batch_size():
    runs = [(1, 0.000021, 1), (4, 0.0005, 4), (1, 0.00003, 1), (32, 0.002, 9)]
    together, one_by_one = ModelStats(), ModelStats()
    before = time.time() * 1000
    together.record_runs(runs)
    together.record_runs([])  # a job with no run (every member skipped) changes nothing
    for run in runs:
        one_by_one.record_runs([run])
    after = time.time() * 1000
    ns = [int(seconds * 1e9) for _, seconds, _ in runs]
    assert (together.inference_count, together.execution_count) == (38, 4)
    assert together.compute_ns == sum(ns)
    assert together.batches == {1: BatchStat(2, ns[0] + ns[2]), 4: BatchStat(1, ns[1]),
                                32: BatchStat(1, ns[3])}
    assert before - 1 <= together.last_inference_ms <= after + 1
    fields = ("inference_count", "execution_count", "compute_ns", "batches")
    assert [getattr(together, f) for f in fields] == [getattr(one_by_one, f) for f in fields]


def test_record_runs_tells_the_observer_each_run():
    seen = []

    class Observer:
        def computed(self, rows: int, items: int, seconds: float) -> None:
            seen.append((rows, items, seconds))

    stats = ModelStats(observer=Observer())  # type: ignore[arg-type]
    stats.record_runs([(1, 0.5, 1), (3, 0.25, 2)])
    assert seen == [(1, 1, 0.5), (3, 2, 0.25)]


def test_datatype_as_a_key_hashes_with_its_identity():
    table = {dt: dt.wire for dt in DataType}
    assert all(table[BY_WIRE[dt.wire]] == dt.wire for dt in DataType)
    assert len({hash(dt) for dt in DataType}) == len(DataType)
    assert pickle.loads(pickle.dumps(DataType.FP32)) is DataType.FP32
    assert hash(pickle.loads(pickle.dumps(DataType.BF16))) == hash(DataType.BF16)
