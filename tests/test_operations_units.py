"""Pieces of the operations work that need no server: folder checks, overrides, logs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import orjson
import pytest

from fastserve.core.files import fingerprint, resolve_model_folder, snapshot
from fastserve.core.model_config import ModelConfig
from fastserve.core.repository import apply_overrides
from fastserve.errors import InvalidInputError, ModelNotFoundError
from fastserve.frontends.metrics import api_of
from fastserve.logs import AccessLog, JsonFormatter


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "mlp" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "mlp" / "1" / "model.pt2").write_bytes(b"x" * 10)
    (tmp_path / "outside").mkdir()
    return tmp_path / "repo"


@pytest.mark.parametrize(("url", "error"), [
    ("mlp", None), ("mlp/", None), ("./mlp", None), ("file://{root}/mlp", None),
    ("{root}/mlp", None),
    # Outside the repository: 400, as CONTRACT section 7 says (TorchServe's answer)
    ("../outside", InvalidInputError), ("{root}/../outside", InvalidInputError),
    ("file:///etc", InvalidInputError), ("mlp/../../outside", InvalidInputError),
    ("", InvalidInputError), (".", InvalidInputError), ("mlp/1", InvalidInputError),
    ("s3://bucket/mlp", InvalidInputError), ("mlp.mar", ModelNotFoundError),
    (".hidden", InvalidInputError), ("nope", ModelNotFoundError),
])
def test_resolve_model_folder(root, url, error):
    url = url.format(root=root)
    if error is None:
        assert resolve_model_folder(root, url) == root / "mlp"
    else:
        with pytest.raises(error):
            resolve_model_folder(root, url)


def test_fingerprint_changes_when_a_file_is_written(root):
    folder = root / "mlp" / "1"
    first = fingerprint(folder)
    assert first == fingerprint(folder)
    (folder / "model.pt2").write_bytes(b"y" * 11)
    assert fingerprint(folder) != first
    snap = snapshot(root)
    assert snap[root / "mlp"].name == "mlp" and list(snap[root / "mlp"].versions) == ["1"]


def test_apply_overrides():
    batched = ModelConfig(name="m", max_batch_size=4)
    assert apply_overrides(batched, {"max_batch_size": 16, "instances": 2}) == ModelConfig(
        name="m", max_batch_size=16, instances=2)
    unbatched = ModelConfig(name="m")
    assert apply_overrides(unbatched, {"max_batch_size": 1}) == unbatched
    for bad in ({"max_batch_size": 8}, {"max_batch_size": 0}, {"instances": 0},
                {"batch_delay_ms": -1.0}):
        with pytest.raises(InvalidInputError):
            apply_overrides(unbatched if "max_batch_size" in bad else batched, bad)


@pytest.mark.parametrize(("path", "api"), [
    ("/v2/models/m/infer", "kserve_v2"), ("/v2/models/m/config", "triton"),
    ("/predictions/m", "torchserve"), ("/v1/models/m:predict", "tfserving"),
    ("/model-serving/m:predict", "tfserving"), ("/nowhere", "other"),
])
def test_metrics_api_of(path, api):
    assert api_of(path) == api


class _Request:
    method = "POST"
    query = "token=never"
    headers = {b"authorization": b"Bearer never"}

    def __init__(self, path: str) -> None:
        self.path = path
        self.params = {"model": "m", "version": "2"}


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.access")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def test_access_log_text_and_json_lines():
    logger, stream = _logger(logging.Formatter("%(message)s"))
    AccessLog(logger)(_Request("/v2/models/m/infer\nFAKE 200"), 200, 0.0015)
    line = stream.getvalue()
    assert line.count("\n") == 1 and "never" not in line
    assert line.startswith('- "POST /v2/models/m/infer\\nFAKE 200" 200 1.500ms model=m version=2')

    logger, stream = _logger(JsonFormatter())
    AccessLog(logger)(_Request("/v2/models/m/infer"), 503, 0.25)
    doc = orjson.loads(stream.getvalue())
    assert {k: doc[k] for k in ("method", "path", "status", "latency_ms", "model", "version")} \
        == {"method": "POST", "path": "/v2/models/m/infer", "status": 503,
            "latency_ms": 250.0, "model": "m", "version": "2"}
    assert doc["level"] == "INFO" and doc["time"].endswith("Z")


MULTIPROCESS_SCRIPT = r"""
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from pathlib import Path
from prometheus_client.multiprocess import mark_process_dead
from fastserve.core.repository import ModelRepository
from fastserve.frontends.metrics import MetricsFrontend


class Request:
    method, path, query, headers, params = "POST", "/v2/models/m/infer", "", {}, {}


def worker(count):
    metrics = MetricsFrontend(ModelRepository(Path(sys.argv[2]), None))
    hook = metrics.response_hook()
    for _ in range(count):
        hook(Request(), 200, 0.001)
    metrics.metrics.queue_depth.labels("m", "1").set(count)
    metrics.stop()  # flushes what the hook counted (a worker does so each second, and on exit)
    os._exit(0)


children = []
for count in (3, 4):  # two workers, as the --workers parent forks them
    pid = os.fork()
    if pid == 0:
        worker(count)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
scraper = MetricsFrontend(ModelRepository(Path(sys.argv[2]), None))
sys.stdout.write(scraper.scrape(Request()).body.decode())
for pid in children:
    mark_process_dead(pid)  # the parent does this when a worker exits
sys.stdout.write("----\n" + scraper.scrape(Request()).body.decode())
"""


def test_metrics_multiprocess_aggregates_workers(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, any process's /metrics sums every worker's values."""
    import subprocess
    import sys

    from prometheus_client.parser import text_string_to_metric_families

    (tmp_path / "prom").mkdir()
    (tmp_path / "repo").mkdir()
    out = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRIPT, str(tmp_path / "prom"),
                          str(tmp_path / "repo")], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    live, dead = out.split("----\n")

    def values(text):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    key = ("fastserve_requests_total",
           (("api", "kserve_v2"), ("code", "200"), ("model", ""), ("version", "")))
    depth = ("fastserve_queue_depth", (("model", "m"), ("version", "1")))
    assert values(live)[key] == 7 and values(live)[depth] == 7
    assert values(dead)[key] == 7 and depth not in values(dead)  # live gauges leave with them


def test_pending_histogram_flush_matches_observe_one_by_one():
    """The bulk path writes what prometheus_client's own observe() would, bucket by bucket
    (it uses two private attributes of the Histogram child: this guards them)."""
    from prometheus_client import CollectorRegistry, Histogram

    from fastserve.frontends._metric_families import TIME_BUCKETS
    from fastserve.frontends._metric_observer import PendingHistogram

    registry = CollectorRegistry()
    hist = Histogram("h", "h", ["way"], buckets=TIME_BUCKETS, registry=registry)
    values = [0.0, 0.0001, 0.00011, 0.003, 0.0025, 0.7, 29.9, 30.0, 31.0, 1e9, -1.0]
    pending = PendingHistogram(hist.labels("bulk"), TIME_BUCKETS)
    for v in values:
        hist.labels("one").observe(v)
        pending.observe(v)
    hist.labels("one").observe(0.02)
    hist.labels("one").observe(0.02)
    pending.observe(0.02, times=2)

    def samples(way):
        family = next(iter(registry.collect()))
        return [(s.name, s.labels.get("le"), s.value) for s in family.samples
                if s.labels["way"] == way and not s.name.endswith("_created")]

    assert all(s[2] == 0 for s in samples("bulk"))  # nothing until flushed
    pending.flush()
    assert samples("bulk") == samples("one")
    pending.flush()  # flushing again adds nothing
    assert samples("bulk") == samples("one")


def test_metrics_hook_counts_reach_the_scrape(tmp_path):
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from fastserve.core.repository import ModelRepository
    from fastserve.frontends.metrics import MetricsFrontend

    class Req:
        method, path, query, headers, params = "POST", "/v2/models/m/infer", "", {}, {}

    metrics = MetricsFrontend(ModelRepository(tmp_path, None), CollectorRegistry())
    hook = metrics.response_hook()

    def count(text):
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "fastserve_requests_total" and s.labels["code"] == "400")

    for _ in range(3):
        hook(Req(), 400, 0.001)
    assert count(metrics.scrape(Req()).body.decode()) == 3
    hook(Req(), 400, 0.001)
    assert count(metrics.scrape(Req()).body.decode()) == 4
