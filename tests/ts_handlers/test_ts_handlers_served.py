"""TorchServe archives built by the real torch-model-archiver, served by fastserve: each
handler's answers (status, content type, body) as TorchServe's worker gives them,
model outputs checked against local torch. The same requests go to TorchServe itself in
test_vs_torchserve.py, where Java is installed."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mar_cases import (
    BATCH_ROWS,
    EAGER_ROW,
    Case,
    cases,
    expected_batch,
    expected_detector,
    expected_eager,
    expected_mnist,
    expected_segmenter,
    have_torchvision,
    image_png,
    same_json,
    send,
    server_env,
)

from fastserve.http import messages

from _server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(ts_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mar_build

    root = tmp_path_factory.mktemp("fs-handlers") / "model-store"
    root.mkdir()
    for mar in ts_store.glob("*.mar"):
        shutil.copy(mar, root)
    shutil.copytree(mar_build.weights(ts_store), mar_build.weights(root))
    mar_build.build_fastserve_only(root)
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ServerProcess]:
    with ServerProcess("all", "--model-store", str(store), env=server_env()) as srv:
        yield srv


def expected(case: Case, weights: Path) -> tuple[int, str | None, object]:
    """(status, content type, body: a JSON value or bytes) fastserve must answer."""
    def echo(body_type: str, body: object, keys: tuple[str, ...] = ("body",),
             x_name: str | None = None) -> dict[str, object]:  # headers/echo.py's answer
        return {"model": "headers", "version": "1.0", "batch_size": 1, "keys": list(keys),
                "body_type": body_type, "body": body, "x_name": x_name,
                "request_id_set": True}

    match case.id:
        case "mnist-png" | "mnist-png-raw" | "mnist-form":
            seed = {"mnist-png": 0, "mnist-png-raw": 1, "mnist-form": 2}[case.id]
            return 200, None, expected_mnist(weights, image_png(seed))
        case "segmenter-png":
            return 200, None, expected_segmenter(weights, image_png(3))
        case "detector-png":
            return 200, None, expected_detector(weights, image_png(4))
        case "eager-json" | "eager-object" | "eager-version" | "eager-put":
            return 200, None, expected_eager(weights, EAGER_ROW)
        case "batch-text":
            return 200, None, expected_batch(weights, BATCH_ROWS[0])
        case "stream":
            return 200, None, b"part 0;part 1;part 2;part 3;done"
        case "headers-json":
            return 200, None, echo("dict", {"a": 1, "b": [1, 2]}, x_name="al")
        case "headers-json-charset":
            return 200, None, echo("dict", {"x": 1})
        case "headers-bad-json":  # TorchServe's worker hands an unparsable JSON body as bytes
            return 200, None, echo("bytearray", 9)
        case "headers-text":
            return 200, None, echo("str", "some text")
        case "headers-octets":
            return 200, None, echo("bytearray", 6)
        case "headers-empty":
            return 200, None, echo("bytearray", 0)
        case "headers-form":  # form fields by name, each as bytes
            return 200, None, echo("bytearray", 7, ("data", "name"))
        case "headers-json-part":  # a file part: typed by its content type
            return 200, None, echo("dict", {"x": 1}, ("data",))
        case "headers-json-field":  # a plain field: bytes whatever its content type
            return 200, None, echo("bytearray", 8, ("data",))
        case "headers-text-part":
            return 200, None, echo("str", "words")
        case "headers-urlencoded":
            return 200, None, echo("bytearray", 7)
        case "headers-mode-text":
            return 200, "text/plain", b"text for bob"
        case "headers-mode-bytes":
            return 200, "application/octet-stream", bytes(range(8))
        case "headers-mode-status":
            return 422, None, {"error": "rejected by the handler"}
        case "headers-mode-boom":
            return 500, "application/json", {
                "code": 500, "type": "InternalServerException",
                "message": "handler 'echo.py' of model 'headers' raised ValueError: asked to fail"}
        case "unknown-model":
            return 404, "application/json", {"code": 404, "type": "ModelNotFoundException",
                                              "message": "model 'nope' is not known"}
    assert case.id.startswith("batch-"), case.id
    return 200, None, expected_batch(weights, BATCH_ROWS[int(case.id.split("-")[1])])


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_answers_as_torchserve_gives_them(server, store, case: Case) -> None:
    if case.model in ("mnist", "segmenter", "detector") and not have_torchvision():
        pytest.skip("the built-in image_classifier needs torchvision")
    import mar_build

    status, ctype, body = expected(case, mar_build.weights(store))
    got = send(server.port, case)
    assert got.status == status, (got, server.log()[-2000:])
    if case.id == "unknown-model":
        assert got.json()["type"] == "ModelNotFoundException"
        return
    assert got.content_type == ctype, got
    if isinstance(body, bytes):
        assert got.body == body
    else:
        same_json(got.json(), body)


def test_json_is_written_as_the_worker_writes_it(server) -> None:
    """json.dumps(answer, indent=2): byte for byte what TorchServe sends."""
    got = send(server.port, Case("x", "headers", b'{"x": 1}', {"Content-Type": "application/json"}))
    assert got.body == json.dumps(json.loads(got.body), indent=2).encode()


def test_a_batch_runs_the_handler_once_for_many_requests(server, store) -> None:
    """batchSize 4 (model-config.yaml): concurrent requests, each answer its own row; the
    handler's metrics (context.metrics) add up on /metrics."""
    import mar_build

    rows = [[float(i), float(-i), 0.5 * i, 1.0] for i in range(12)]
    answers: dict[int, object] = {}

    def one(i: int) -> None:
        answers[i] = send(server.port, Case("b", "batch", json.dumps(rows[i]).encode(),
                                            {"Content-Type": "application/json"}))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, row in enumerate(rows):
        assert answers[i].status == 200  # type: ignore[attr-defined]
        same_json(answers[i].json(), expected_batch(mar_build.weights(store), row))  # type: ignore[attr-defined]
    metrics = server.request("GET", "/metrics").body.decode()
    rows_seen = [line for line in metrics.splitlines() if line.startswith("RowsSeen")]
    batches = [line for line in metrics.splitlines() if line.startswith("BatchesSeen")]
    assert rows_seen and batches, metrics[-3000:]
    total = float(rows_seen[0].rsplit(" ", 1)[1])
    assert total >= len(rows)  # every request counted (earlier tests sent some too)
    assert float(batches[0].rsplit(" ", 1)[1]) <= total


@pytest.mark.skipif(not hasattr(messages, "StreamingResponse"),
                    reason="the transport cannot stream yet: parts go out in one answer")
def test_a_streaming_handler_sends_each_part_when_it_is_produced(server, tmp_path) -> None:
    """The first part reaches the client while the handler still waits (for a file the
    test writes only after reading that part): the response is chunked."""
    gate = tmp_path / "go"
    body = json.dumps({"parts": 3, "gate": str(gate)}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(b"POST /predictions/stream HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = b""
        while b"part 0;" not in seen:
            chunk = sock.recv(65536)
            assert chunk, seen
            seen += chunk
        assert b"part 1;" not in seen
        head = seen.split(b"\r\n\r\n", 1)[0].lower()
        assert b"transfer-encoding: chunked" in head, head
        gate.write_text("go")
        while not seen.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, seen
            seen += chunk
    finally:
        sock.close()
    assert b"part 1;" in seen and b"part 2;" in seen and b"done" in seen


def test_an_exported_program_behind_base_handler(server, store) -> None:
    """A .pt2 serialized file (torch.export) loads through TorchServe's BaseHandler."""
    import mar_build

    model = torch.export.load(str(mar_build.weights(store) / "exported.pt2")).module()
    with torch.inference_mode():
        out = model(torch.tensor([EAGER_ROW]))[0]
    got = send(server.port, Case("p", "exported", json.dumps(EAGER_ROW).encode(),
                                 {"Content-Type": "application/json"}))
    assert got.status == 200, got
    same_json(got.json(), {"scores": out.tolist(), "label": int(out.argmax())})


@pytest.mark.parametrize("name, words", [
    ("initfails", "no weights here: initialize gave up"),
    ("missingdep", "No module named 'fastserve_missing_package_xyz'"),
])
def test_a_broken_handler_fails_its_model_only(server, name: str, words: str) -> None:
    status, described = server.json("GET", f"/models/{name}", port=server.management_port)
    assert status == 200 and described[0]["status"] == "FAILED", described
    assert words in described[0]["error"], described
    got = send(server.port, Case("x", name, b"{}", {"Content-Type": "application/json"}))
    assert got.status == 503 and words in got.json()["message"], got
    assert words in server.log()
    assert send(server.port, Case("x", "eager", json.dumps(EAGER_ROW).encode(),
                                  {"Content-Type": "application/json"})).status == 200


def test_a_request_that_makes_the_handler_raise_fails_alone(server) -> None:
    boom = Case("b", "headers", b"x", {"Content-Type": "text/plain", "x-mode": "boom"})
    fine = Case("f", "headers", b"x", {"Content-Type": "text/plain"})
    assert send(server.port, boom).status == 500
    assert send(server.port, fine).status == 200
    assert server.request("GET", "/v2/health/live").status == 200


def test_kserve_v1_instances_go_through_the_handler(server, store) -> None:
    import mar_build

    status, answer = server.json("POST", "/v1/models/eager:predict",
                                 {"instances": [EAGER_ROW, EAGER_ROW]})
    assert status == 200, answer
    want = expected_eager(mar_build.weights(store), EAGER_ROW)
    same_json(answer, {"predictions": [want, want]})


def test_http10_client_gets_the_whole_stream(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
    try:
        conn.request("POST", "/predictions/stream", b'{"parts": 2}',
                     {"Content-Type": "application/json"})
        assert conn.getresponse().read() == b"part 0;part 1;done"
    finally:
        conn.close()


def test_no_answer_within_response_timeout_is_504(server, tmp_path) -> None:
    """responseTimeout 1 (model-config.yaml): the handler still waits; the client gets
    504 in TorchServe's shape, and the model's second worker (minWorkers 2) still serves."""
    gate = tmp_path / "release"
    late = Case("late", "slow", json.dumps({"gate": str(gate)}).encode(),
                {"Content-Type": "application/json"})
    try:
        got = send(server.port, late)
        assert got.status == 504, got
        assert got.json()["type"] == "RequestTimeoutException", got
        status, described = server.json("GET", "/models/slow", port=server.management_port)
        assert status == 200 and len(described[0]["workers"]) == 2, described
        quick = Case("quick", "slow", b"{}", {"Content-Type": "application/json"})
        assert send(server.port, quick).body == b"late"
    finally:
        gate.write_text("go")
