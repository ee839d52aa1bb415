"""The management port: TorchServe's management API and the v2 repository extension."""

from __future__ import annotations

import shutil
import time

import orjson
import pytest

from ops_helpers import infer, mgmt, wait_for

ERROR_CASES = [
    # (url, status, words the message must contain)
    ("", 400, "url"),
    # Outside the repository: 400, as CONTRACT section 7 says (TorchServe's answer)
    ("../../etc", 400, "outside the model repository"),
    ("/etc", 400, "outside the model repository"),
    ("versioned/../../x", 400, "outside the model repository"),
    ("https://example.com/m.mar", 400, "only folders and archives inside"),
    ("squeezenet.mar", 404, "no model archive 'squeezenet.mar'"),
    ("versioned/1", 400, "directly inside"),
    ("no_such_model", 404, "no model folder"),
    ("versioned", 409, "already loaded"),
]


def test_management_list_paginated(ops):
    status, everything = mgmt(ops, "GET", "/models")
    assert status == 200 and "nextPageToken" not in everything
    names = [m["modelName"] for m in everything["models"]]
    assert names == sorted(names) and {"digits", "versioned", "slow"} <= set(names)
    assert {"modelName": "digits", "modelUrl": "digits"} in everything["models"]
    seen, token = [], "0"
    while token is not None:
        status, page = mgmt(ops, "GET", f"/models?limit=2&next_page_token={token}")
        assert status == 200 and 1 <= len(page["models"]) <= 2
        seen += [m["modelName"] for m in page["models"]]
        token = page.get("nextPageToken")
    assert seen == names
    assert mgmt(ops, "GET", "/models?limit=x")[0] == 400
    assert mgmt(ops, "GET", "/models?next_page_token=-1")[0] == 400


def test_management_describe(ops):
    status, doc = mgmt(ops, "GET", "/models/versioned")
    assert status == 200 and len(doc) == 1
    d = doc[0]
    assert (d["modelName"], d["modelVersion"], d["status"], d["default"]) == (
        "versioned", "2", "READY", True)
    assert d["batchSize"] == 4 and d["maxBatchDelay"] == 1
    assert d["minWorkers"] == d["maxWorkers"] == 1 and len(d["workers"]) == 1
    assert d["versions"] == ["1", "2"] and d["device"] == "cpu" and "error" not in d
    status, every = mgmt(ops, "GET", "/models/versioned/all")
    assert [v["modelVersion"] for v in every] == ["1", "2"]
    status, one = mgmt(ops, "GET", "/models/versioned/1")
    assert one[0]["modelVersion"] == "1" and one[0]["default"] is False
    for path in ("/models/versioned/9", "/models/nope"):
        status, body = mgmt(ops, "GET", path)
        assert status == 404 and isinstance(body["error"], str), (path, body)


def test_management_not_on_inference_port(ops):
    for method, path in (("GET", "/models"), ("POST", "/models?url=spare"),
                         ("DELETE", "/models/spare")):
        status, _, _ = ops.request(method, path)
        assert status in (404, 405), (method, path, status)
    # The v2 repository extension: the index answers there too, load and unload are 403.
    for action in ("load", "unload"):
        status, _, raw = ops.request("POST", f"/v2/repository/models/spare/{action}")
        error = orjson.loads(raw)["error"]
        assert status == 403 and "management port" in error, (action, raw)
        assert f"127.0.0.1:{ops.management_port}/v2/repository/models/spare/{action}" in error
    assert mgmt(ops, "GET", "/models/spare")[0] == 200  # still loaded


def test_tritonclient_repository_calls_on_inference_port(ops):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(f"127.0.0.1:{ops.port}")
    index = client.get_model_repository_index()
    assert index == mgmt(ops, "POST", "/v2/repository/index")[1]
    assert {"name": "versioned", "version": "2", "state": "READY", "reason": ""} in index
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException, match="management port"):
            call("versioned")
    assert infer(ops, "versioned")[0] == 200
    client.close()


@pytest.mark.parametrize(("url", "status", "words"), ERROR_CASES)
def test_management_register_errors(ops, url, status, words):
    code, body = mgmt(ops, "POST", f"/models?url={url}")
    assert code == status, body
    assert words in body["error"], body


def test_management_unload_stays_unloaded_then_register(ops):
    status, body = mgmt(ops, "DELETE", "/models/spare")
    assert status == 200 and body == {"status": 'Model "spare" unregistered'}
    assert infer(ops, "spare")[0] == 404
    assert mgmt(ops, "DELETE", "/models/spare")[0] == 404
    time.sleep(1.0)  # four polls: the poller must not bring it back
    assert infer(ops, "spare")[0] == 404
    status, index = mgmt(ops, "POST", "/v2/repository/index")
    assert {"name": "spare", "state": "UNAVAILABLE", "reason": "unloaded"} in index

    status, body = mgmt(ops, "POST", "/models?url=spare&batch_size=8&max_batch_delay=5"
                                     "&initial_workers=2")
    assert status == 200, body
    assert body["status"].startswith('Model "spare" Version: 1 registered with 2')
    status, (d,) = mgmt(ops, "GET", "/models/spare")
    assert (d["batchSize"], d["maxBatchDelay"], d["minWorkers"], len(d["workers"])) == (
        8, 5, 2, 2)
    assert infer(ops, "spare")[0] == 200
    status, body = mgmt(ops, "POST", "/models?url=spare")
    assert status == 409 and "already loaded" in body["error"]


def test_management_set_default(ops):
    status, body = mgmt(ops, "PUT", "/models/pinned/1/set-default")
    assert status == 200 and "successfully" in body["status"]
    status, doc = infer(ops, "pinned")
    assert doc["model_version"] == "1" and doc["outputs"][0]["data"] == [2.0, 3.0, 4.0]
    assert mgmt(ops, "GET", "/models/pinned")[1][0]["modelVersion"] == "1"
    assert mgmt(ops, "PUT", "/models/pinned/7/set-default")[0] == 404
    assert mgmt(ops, "PUT", "/models/nope/1/set-default")[0] == 404
    # The pin lasts until the version goes: unloading version 1 makes 2 the default.
    assert mgmt(ops, "DELETE", "/models/pinned/1")[0] == 200
    assert infer(ops, "pinned")[1]["model_version"] == "2"
    assert infer(ops, "pinned", "1")[0] == 404
    time.sleep(0.75)  # three polls: its folder is still there, yet it stays unloaded
    assert mgmt(ops, "GET", "/models/pinned")[1][0]["versions"] == ["2"]


def test_management_scale(ops):
    status, body = mgmt(ops, "PUT", "/models/digits?min_worker=2")
    assert status == 200 and body["status"] == "Workers scaled to 2 for model: digits"
    (d,) = mgmt(ops, "GET", "/models/digits")[1]
    assert d["minWorkers"] == 2 and len(d["workers"]) == 2 and d["status"] == "READY"
    assert infer(ops, "digits")[0] == 200
    for query, status in (("min_worker=0", 400), ("min_worker=x", 400), ("", 400),
                          ("min_worker=3&max_worker=2", 400)):
        code, body = mgmt(ops, "PUT", f"/models/digits?{query}")
        assert code == status and "error" in body, (query, body)
    assert mgmt(ops, "PUT", "/models/nope?min_worker=1")[0] == 404
    assert mgmt(ops, "PUT", "/models/digits?min_worker=1")[0] == 200


def test_v2_repository_extension(ops):
    status, index = mgmt(ops, "POST", "/v2/repository/index")
    assert status == 200
    assert {"name": "versioned", "version": "2", "state": "READY", "reason": ""} in index
    status, ready = mgmt(ops, "POST", "/v2/repository/index", {"ready": True})
    assert all(r["state"] == "READY" for r in ready)
    assert mgmt(ops, "POST", "/v2/repository/models/nope/load")[0] == 404
    assert mgmt(ops, "POST", "/v2/repository/models/nope/unload")[0] == 404

    status, body = mgmt(ops, "POST", "/v2/repository/models/spare/unload")
    assert status == 200 and body == {"name": "spare", "unload": True}
    assert infer(ops, "spare")[0] == 404
    status, body = mgmt(ops, "POST", "/v2/repository/models/spare/load")
    assert status == 200 and body == {"name": "spare", "load": True}
    assert infer(ops, "spare")[0] == 200
    # Loading a loaded model reloads it (load, warm up, swap) and keeps serving.
    status, body = mgmt(ops, "POST", "/v2/repository/models/spare/load")
    assert status == 200
    wait_for(lambda: infer(ops, "spare")[0] == 200, 5, "spare answers after a reload")


def _check_twin(ops) -> None:
    for version in ("1", "2"):
        status, doc = infer(ops, "twin", version)
        assert status == 200, doc
        assert doc["outputs"][0]["data"] == [x + int(version) for x in (1.0, 2.0, 3.0)]


def test_management_register_and_load_exported_versions(ops):
    """A model of two .pt2 versions: register and v2 load both load them at once."""
    assert mgmt(ops, "DELETE", "/models/twin")[0] == 200
    status, body = mgmt(ops, "POST", "/models?url=twin")
    assert status == 200, body
    assert body["status"].startswith('Model "twin" Version: 1, 2 registered'), body
    _check_twin(ops)
    status, body = mgmt(ops, "POST", "/v2/repository/models/twin/load")  # reloads both
    assert status == 200 and body == {"name": "twin", "load": True}, body
    _check_twin(ops)
    status, (d,) = mgmt(ops, "GET", "/models/twin")
    assert d["status"] == "READY" and d["platform"] == "pytorch_export"


def test_register_and_load_with_a_failed_version_answer_500(ops, ops_repo, tmp_path):
    """Version 1 loads, version 2 is truncated: 500 naming version 2; version 1 serves."""
    staging = tmp_path / "mixed"
    shutil.copytree(ops_repo / "versioned", staging)
    model = staging / "2" / "model.pt"
    model.write_bytes(model.read_bytes()[:100])
    staging.rename(ops_repo / "mixed")
    try:
        wait_for(lambda: mgmt(ops, "GET", "/models/mixed/2")[0] == 200
                 and mgmt(ops, "GET", "/models/mixed/2")[1][0]["status"] == "FAILED", 30,
                 "the poller to load 'mixed'", ops)
        assert mgmt(ops, "DELETE", "/models/mixed")[0] == 200
        status, body = mgmt(ops, "POST", "/models?url=mixed")
        assert status == 500, body
        assert "version 2: cannot load model.pt" in body["error"], body
        assert "version 1" not in body["error"].split("(")[0], body
        assert infer(ops, "mixed", "1")[1]["outputs"][0]["data"] == [2.0, 3.0, 4.0]
        status, body = mgmt(ops, "POST", "/v2/repository/models/mixed/load")
        assert status == 500 and "version 2: cannot load model.pt" in body["error"], body
        assert infer(ops, "mixed", "1")[0] == 200
    finally:
        shutil.rmtree(ops_repo / "mixed")
    wait_for(lambda: infer(ops, "mixed")[0] == 404, 30, "model 'mixed' to unload", ops)
