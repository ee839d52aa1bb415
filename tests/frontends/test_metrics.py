"""GET /metrics: Prometheus text that moves as requests are served (CONTRACT §6)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ops_helpers import infer, metric_samples, mgmt, sample, wait_for

FAMILIES = {  # CONTRACT §6: names, types and labels are fixed
    "fastserve_requests": ("counter", {"model", "version", "api", "code"}),
    "fastserve_request_duration_seconds": ("histogram", {"model", "version", "stage"}),
    "fastserve_batch_size": ("histogram", {"model", "version"}),
    "fastserve_queue_depth": ("gauge", {"model", "version"}),
    "fastserve_model_state": ("gauge", {"model", "version", "state"}),
    "fastserve_requests_cancelled": ("counter", {"model", "version"}),
}


def test_metrics_families_and_types(ops):
    status, headers, raw = ops.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    infer(ops, "digits")
    status, headers, raw = ops.request("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(raw.decode())}
    for name, (kind, labels) in FAMILIES.items():
        assert families[name].type == kind, name
        for s in families[name].samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    status, _, only = ops.request("GET", "/metrics?name[]=fastserve_queue_depth")
    assert b"fastserve_queue_depth" in only and b"fastserve_requests_total" not in only


def test_metrics_values_move_as_requests_are_served(ops):
    before = metric_samples(ops)
    for _ in range(5):
        assert infer(ops, "digits")[0] == 200
    assert infer(ops, "digits", body=b'{"inputs": [}')[0] == 400
    assert infer(ops, "fragile", body=b'{"inputs": [{"name": "x", "shape": [1, 2], '
                                      b'"datatype": "FP32", "data": [-1, 2]}]}')[0] == 500
    assert infer(ops, "nope")[0] == 404
    for path in ("/v2/health/ready", "/v2/health/live", "/v2/models/digits/ready", "/metrics"):
        ops.request("GET", path)  # probes and scrapes are not counted
    after = metric_samples(ops)

    def moved(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    digits = {"model": "digits", "version": "1"}
    assert moved("fastserve_requests_total", api="kserve_v2", code="200", **digits) == 5
    assert moved("fastserve_requests_total", api="kserve_v2", code="400", **digits) == 1
    assert moved("fastserve_requests_total", api="kserve_v2", code="500", model="fragile",
                 version="1") == 1
    # An unknown model counts under "" (clients cannot grow the label set).
    assert moved("fastserve_requests_total", api="kserve_v2", code="404", model="",
                 version="") == 1
    for stage in ("queue", "compute", "total"):
        assert moved("fastserve_request_duration_seconds_count", stage=stage, **digits) == 5
        assert moved("fastserve_request_duration_seconds_sum", stage=stage, **digits) > 0
    assert moved("fastserve_batch_size_count", **digits) >= 1
    assert moved("fastserve_batch_size_sum", **digits) == 5  # one row per request
    assert sample(after, "fastserve_model_state", state="READY", **digits) == 1
    assert sample(after, "fastserve_model_state", state="LOADING", **digits) == 0
    assert ("fastserve_queue_depth", frozenset(digits.items())) in after
    # 8 requests counted, and not the probes or scrapes around them.
    total = sum(v - before.get(k, 0.0) for k, v in after.items()
                if k[0] == "fastserve_requests_total")
    assert total == 8


def test_metrics_model_state_follows_unload_and_load(ops):
    spare = {"model": "spare", "version": "1"}
    assert mgmt(ops, "POST", "/v2/repository/models/spare/unload")[0] == 200
    after = metric_samples(ops)
    assert ("fastserve_model_state", frozenset({**spare, "state": "READY"}.items())) \
        not in after
    assert mgmt(ops, "POST", "/v2/repository/models/spare/load")[0] == 200
    wait_for(lambda: sample(metric_samples(ops), "fastserve_model_state", state="READY",
                            **spare) == 1, 10, "spare READY in /metrics")
