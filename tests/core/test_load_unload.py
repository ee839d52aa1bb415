"""Loading and unloading while serving: other models lose nothing, a version drains."""

from __future__ import annotations

import threading

from ops_helpers import LoadGenerator, infer, mgmt, wait_for


def test_load_unload_while_serving_loses_no_request(ops):
    with LoadGenerator(ops, "digits", threads=2) as load:
        load.wait_ok(20)
        steps = [
            ("DELETE", "/models/spare", 200),
            ("POST", "/models?url=spare", 200),
            ("POST", "/v2/repository/models/spare/load", 200),  # reload: swap
            ("PUT", "/models/spare?min_worker=2", 200),
            ("POST", "/v2/repository/models/spare/unload", 200),
            ("POST", "/v2/repository/models/spare/load", 200),
            ("PUT", "/models/spare?min_worker=1", 200),
        ]
        for method, path, status in steps:
            before = load.ok
            code, body = mgmt(ops, method, path)
            assert code == status, (method, path, body)
            load.wait_ok(before + 5)  # digits kept answering through the change
    assert load.failures == [], load.failures[:5]
    assert load.ok > 50
    assert infer(ops, "spare")[0] == 200


def test_unload_drains_queued_requests(ops):
    results: list[tuple[int, object]] = []
    lock = threading.Lock()

    def call() -> None:
        outcome = infer(ops, "slow")
        with lock:
            results.append(outcome)

    clients = [threading.Thread(target=call) for _ in range(6)]
    for t in clients:
        t.start()
    # Every client's request must be in before the unload starts (one runs, the rest wait
    # or are done); waiting for only two let a late client meet the unload under load.
    wait_for(lambda: mgmt(ops, "GET", "/models/slow")[1][0]["queueDepth"] + len(results) >= 5,
             20, "requests queued on slow")
    unloaded: list[tuple[int, object]] = []
    deleter = threading.Thread(target=lambda: unloaded.append(
        mgmt(ops, "DELETE", "/models/slow/1")))
    deleter.start()
    wait_for(lambda: mgmt(ops, "GET", "/models/slow")[1][0]["status"] == "UNLOADING", 20,
             "slow to be unloading")
    status, body = infer(ops, "slow")  # new work is refused while the queue drains
    assert status == 503 and "unloading" in body["error"]
    deleter.join(60)
    for t in clients:
        t.join(60)
    assert unloaded == [(200, {"status": 'Model "slow" version: 1 unregistered'})]
    assert [status for status, _ in results] == [200] * 6, results
    assert infer(ops, "slow")[0] == 404
    # The last version went, so the model did: it comes back when registered again.
    assert mgmt(ops, "POST", "/models?url=slow")[0] == 200
    assert infer(ops, "slow")[0] == 200
