"""/ping and /predictions through real HTTP, answers checked against the models run here."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _ts_support import MAX_REQUEST, SAMPLES, Local, digit_png, rgb_tensor

Server = Any

JSON = {"Content-Type": "application/json"}


def multipart(*parts: tuple[str, bytes, str | None], boundary: str = "fsXboundary") -> tuple[
        bytes, dict[str, str]]:
    body = b""
    for name, data, ctype in parts:
        body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; " \
                f"filename=\"{name}.bin\"\r\n".encode()
        if ctype:
            body += f"Content-Type: {ctype}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def ts_error(result: tuple[int, dict[str, str], bytes], status: int, kind: str) -> str:
    """TorchServe's error body {"code", "type", "message"}; returns the message."""
    assert result[0] == status, result[2]
    body = json.loads(result[2])
    assert set(body) == {"code", "type", "message"}, body
    assert body["code"] == status and body["type"] == kind, body
    return body["message"]


@pytest.fixture(scope="module")
def x7() -> np.ndarray:
    return np.load(SAMPLES / "digit_7.npy")


# Health


def test_ping_healthy(ts_server: Server) -> None:
    status, _, body = ts_server.request("GET", "/ping")
    assert status == 200
    assert json.loads(body) == {"status": "Healthy", "health": "healthy!"}


# tensor handler


@pytest.mark.parametrize("how", ["json", "data", "form", "npy_typed", "npy_sniffed", "raw",
                                 "version"])
def test_predictions_tensor_body_forms(ts_server: Server, local: Local, x7: np.ndarray,
                                       how: str) -> None:
    path, headers = "/predictions/digits", {}
    body: bytes
    if how == "json":
        body, headers = json.dumps(x7.tolist()).encode(), JSON
    elif how == "data":
        body, headers = json.dumps({"data": x7.tolist()}).encode(), JSON
    elif how == "form":  # curl -d: x-www-form-urlencoded is not specific, so it is sniffed
        body = json.dumps(x7.tolist()).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    elif how == "npy_typed":
        body, headers = npy(x7), {"Content-Type": "application/x-npy"}
    elif how == "npy_sniffed":
        body = npy(x7.astype(np.float64))  # cast to FP32 (same kind)
    elif how == "raw":
        body = x7.astype("<f4").tobytes()
        headers = {"Content-Type": "application/octet-stream"}
    else:
        path, body, headers = "/predictions/digits/1", json.dumps(x7.tolist()).encode(), JSON
    status, hdrs, got = ts_server.request("POST", path, body, headers)
    assert status == 200, got
    assert hdrs["content-type"] == "application/json"
    want = local.run("digits", x7[None])[0].numpy()
    assert np.allclose(json.loads(got), want, atol=1e-5)


def test_predictions_put_like_curl_upload(ts_server: Server, local: Local,
                                          x7: np.ndarray) -> None:
    status, _, got = ts_server.request("PUT", "/predictions/digits", npy(x7))
    assert status == 200
    assert np.allclose(json.loads(got), local.run("digits", x7[None])[0].numpy(), atol=1e-5)


def test_predictions_unbatched_model_takes_tensor_as_sent(ts_server: Server, local: Local,
                                                          x7: np.ndarray) -> None:
    rows = np.stack([x7, x7[::-1].copy()])
    status, _, got = ts_server.request("POST", "/predictions/digits_ts",
                                       json.dumps(rows.tolist()).encode(), JSON)
    assert status == 200, got
    assert np.allclose(json.loads(got), local.run("digits_ts", rows).numpy(), atol=1e-5)


def test_predictions_named_inputs_and_several_outputs(ts_server: Server, local: Local) -> None:
    a, b = [1.5, -2.0, 3.0], [2.0, 4.0, -1.0]
    status, _, got = ts_server.request("POST", "/predictions/pair",
                                       json.dumps({"a": a, "b": b}).encode(), JSON)
    assert status == 200, got
    prod, total = local.run("pair", [a], [b])
    assert json.loads(got) == {"prod": prod[0].tolist(), "sum": total[0].tolist()}


def test_predictions_missing_input_is_400(ts_server: Server) -> None:
    result = ts_server.request("POST", "/predictions/pair", json.dumps({"a": [1, 2, 3]}).encode(),
                               JSON)
    assert "missing input(s) b" in ts_error(result, 400, "BadRequestException")


def test_predictions_many_concurrent_answers_stay_apart(ts_server: Server, local: Local) -> None:
    rng = np.random.default_rng(1)
    xs = rng.random((24, 64), dtype=np.float32)
    want = local.run("digits", xs).numpy()
    got: dict[int, Any] = {}

    def one(i: int) -> None:
        got[i] = ts_server.request("POST", "/predictions/digits",
                                   json.dumps(xs[i].tolist()).encode(), JSON)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(xs)):
        status, _, body = got[i]
        assert status == 200
        assert np.allclose(json.loads(body), want[i], atol=1e-5)


# image_classifier


def _top5(answer: dict[str, float]) -> list[tuple[str, float]]:
    return list(answer.items())


def _assert_top5(answer: dict[str, float], want: list[tuple[str, float]]) -> None:
    got = _top5(answer)
    assert [k for k, _ in got] == [k for k, _ in want]
    assert np.allclose([v for _, v in got], [v for _, v in want], atol=1e-6)


@pytest.mark.parametrize("digit", [0, 7, 9])
def test_predictions_image_png_top5(ts_server: Server, local: Local, digit: int) -> None:
    png = (SAMPLES / f"digit_{digit}.png").read_bytes()
    status, _, got = ts_server.request("POST", "/predictions/digits_image", png,
                                       {"Content-Type": "image/png"})
    assert status == 200, got
    x = torch.from_numpy(digit_png(SAMPLES / f"digit_{digit}.png")).reshape(1, 1, 8, 8)
    _assert_top5(json.loads(got), local.top5("digits_image", local.run("digits_image", x)))


def test_predictions_image_json_base64(ts_server: Server, local: Local) -> None:
    png = (SAMPLES / "digit_3.png").read_bytes()
    body = json.dumps({"data": base64.b64encode(png).decode()}).encode()
    status, _, got = ts_server.request("POST", "/predictions/digits_image", body, JSON)
    assert status == 200, got
    x = torch.from_numpy(digit_png(SAMPLES / "digit_3.png")).reshape(1, 1, 8, 8)
    _assert_top5(json.loads(got), local.top5("digits_image", local.run("digits_image", x)))


def test_predictions_rgb_jpeg_resize_crop_and_index_to_name(ts_server: Server, local: Local,
                                                            files: dict[str, Path]) -> None:
    jpeg = files["photo"].read_bytes()
    status, _, got = ts_server.request("POST", "/predictions/rgb", jpeg)
    assert status == 200, got
    logits = local.run("rgb", rgb_tensor(jpeg)[None])
    answer = json.loads(got)
    _assert_top5(answer, local.top5("rgb", logits))
    assert set(answer) <= {"cat", "dog", "owl", "fox", "elk", "emu", "yak"}


def test_predictions_multipart_two_parts_answer_a_list_in_order(ts_server: Server,
                                                               local: Local) -> None:
    parts = [(SAMPLES / f"digit_{d}.png") for d in (3, 8)]
    body, headers = multipart(("data", parts[0].read_bytes(), "image/png"),
                              ("other", parts[1].read_bytes(), None))
    status, _, got = ts_server.request("POST", "/predictions/digits_image", body, headers)
    assert status == 200, got
    answers = json.loads(got)
    assert isinstance(answers, list) and len(answers) == 2
    for answer, path in zip(answers, parts, strict=True):
        x = torch.from_numpy(digit_png(path)).reshape(1, 1, 8, 8)
        _assert_top5(answer, local.top5("digits_image", local.run("digits_image", x)))


def test_predictions_multipart_one_part_answers_like_a_body(ts_server: Server,
                                                           local: Local) -> None:
    body, headers = multipart(("data", (SAMPLES / "digit_5.png").read_bytes(), "image/png"))
    status, _, got = ts_server.request("POST", "/predictions/digits_image", body, headers)
    assert status == 200, got
    x = torch.from_numpy(digit_png(SAMPLES / "digit_5.png")).reshape(1, 1, 8, 8)
    _assert_top5(json.loads(got), local.top5("digits_image", local.run("digits_image", x)))


# handler.py: the worked example of docs/handlers.md


def test_predictions_handler_py_worked_example(ts_server: Server, local: Local) -> None:
    for digit in (2, 7):
        path = SAMPLES / f"digit_{digit}.png"
        status, _, got = ts_server.request("PUT", "/predictions/digits_handler",
                                           path.read_bytes())
        assert status == 200, got
        want = int(local.run("digits_handler", digit_png(path)[None]).argmax(1)[0])
        assert json.loads(got) == want


def test_predictions_handler_py_batch_of_parts(ts_server: Server, local: Local) -> None:
    paths = [SAMPLES / f"digit_{d}.png" for d in (1, 4, 6)]
    body, headers = multipart(*(("data", p.read_bytes(), "image/png") for p in paths))
    status, _, got = ts_server.request("POST", "/predictions/digits_handler", body, headers)
    assert status == 200, got
    want = local.run("digits_handler", np.stack([digit_png(p) for p in paths])).argmax(1)
    assert json.loads(got) == want.tolist()


def test_kserve_v1_predict_envelope_on_handler_and_image_models(ts_server: Server,
                                                                local: Local) -> None:
    paths = [SAMPLES / f"digit_{d}.png" for d in (7, 0)]
    instances = [{"data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    status, _, got = ts_server.request("POST", "/v1/models/digits_handler:predict",
                                       json.dumps({"instances": instances}).encode(), JSON)
    assert status == 200, got
    want = local.run("digits_handler", np.stack([digit_png(p) for p in paths])).argmax(1)
    assert json.loads(got) == {"predictions": want.tolist()}
    status, _, got = ts_server.request(
        "POST", "/v1/models/digits_image:predict",
        json.dumps({"instances": [{"b64": instances[0]["data"]}]}).encode(), JSON)
    assert status == 200, got
    x = torch.from_numpy(digit_png(paths[0])).reshape(1, 1, 8, 8)
    [answer] = json.loads(got)["predictions"]
    _assert_top5(answer, local.top5("digits_image", local.run("digits_image", x)))


def test_predictions_handler_wrong_answer_count_names_the_handler(ts_server: Server) -> None:
    result = ts_server.request("POST", "/predictions/wrong_count", b"[1, 2]", JSON)
    message = ts_error(result, 500, "InternalServerException")
    assert "handler.py of model 'wrong_count' (OneTooMany)" in message
    assert "2 answers for a batch of 1" in message


# Errors, in TorchServe's shape


@pytest.mark.parametrize("body,ctype,needle", [
    (b"\x89PNG\r\n\x1a\nnot really a png", "image/png", "cannot"),
    (b"GIF89a....", None, "not a JPEG or PNG"),
    (b"", "image/png", "no body"),
])
def test_predictions_bad_image_is_400(ts_server: Server, body: bytes, ctype: str | None,
                                      needle: str) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    result = ts_server.request("POST", "/predictions/digits_image", body, headers)
    assert needle in ts_error(result, 400, "BadRequestException")


def test_predictions_bad_json_is_400(ts_server: Server) -> None:
    result = ts_server.request("POST", "/predictions/digits", b"[1, 2,", JSON)
    assert "not valid JSON" in ts_error(result, 400, "BadRequestException")


def test_predictions_wrong_shape_is_400(ts_server: Server) -> None:
    result = ts_server.request("POST", "/predictions/digits", b"[1, 2, 3]", JSON)
    assert "shape" in ts_error(result, 400, "BadRequestException")


def test_predictions_multipart_one_bad_part_fails_the_request(ts_server: Server) -> None:
    good = (SAMPLES / "digit_1.png").read_bytes()
    body, headers = multipart(("data", good, "image/png"), ("data", b"garbage", "image/png"))
    result = ts_server.request("POST", "/predictions/digits_image", body, headers)
    ts_error(result, 400, "BadRequestException")


@pytest.mark.parametrize("mangle", ["truncated", "no_boundary", "bad_header"])
def test_predictions_malformed_multipart_is_400(ts_server: Server, mangle: str) -> None:
    body, headers = multipart(("data", (SAMPLES / "digit_1.png").read_bytes(), "image/png"))
    if mangle == "truncated":
        body = body[:-12]
    elif mangle == "no_boundary":
        headers = {"Content-Type": "multipart/form-data"}
    else:
        body = body.replace(b"\r\n\r\n", b"\r\n", 1)
    result = ts_server.request("POST", "/predictions/digits_image", body, headers)
    assert "multipart" in ts_error(result, 400, "BadRequestException")


def test_predictions_unknown_model_and_version_are_404(ts_server: Server) -> None:
    result = ts_server.request("POST", "/predictions/nope", b"[1]", JSON)
    assert "nope" in ts_error(result, 404, "ModelNotFoundException")
    result = ts_server.request("POST", "/predictions/digits/9", b"[1]", JSON)
    ts_error(result, 404, "ModelVersionNotFoundException")


def test_predictions_wrong_method_is_405_in_torchserve_shape(ts_server: Server) -> None:
    result = ts_server.request("GET", "/predictions/digits")
    ts_error(result, 405, "MethodNotAllowedException")
    assert result[1]["allow"] == "POST, PUT"
    result = ts_server.request("DELETE", "/ping")
    ts_error(result, 405, "MethodNotAllowedException")


def test_predictions_too_large_is_413_in_torchserve_shape(ts_server: Server) -> None:
    result = ts_server.request("POST", "/predictions/digits", b"[" + b"0," * MAX_REQUEST)
    assert "limit" in ts_error(result, 413, "RequestTooLargeException")


def test_predictions_handler_py_model_refuses_v2_tensors(ts_server: Server) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    status, _, got = ts_server.request("POST", "/v2/models/digits_handler/infer",
                                       json.dumps(body).encode(), JSON)
    assert status == 501, got
    assert "handler.py" in json.loads(got)["error"]
