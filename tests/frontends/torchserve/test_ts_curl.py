"""The exact curl invocations of TorchServe's docs (docs/inference_api.md), run with curl.

``curl URL -T file`` (PUT; a body over 1 MB with ``Expect: 100-continue``),
``curl URL -F "data=@file"`` and two ``-F`` parts: the wire forms users really send.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ts_support import SAMPLES, Local, digit_png, rgb_tensor

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")

Server = Any


def curl(*args: str) -> tuple[int, bytes, str]:
    """(HTTP status, body, curl's -v trace) of one curl run."""
    run = subprocess.run(["curl", "-sS", "-v", "-w", "\n%{http_code}", *args],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    body, _, status = run.stdout.rpartition(b"\n")
    return int(status), body, run.stderr.decode(errors="replace")


def _top5_of(local: Local, model: str, x: Any) -> list[tuple[str, float]]:
    return local.top5(model, local.run(model, x))


def _assert_top5(answer: dict[str, float], want: list[tuple[str, float]]) -> None:
    assert list(answer) == [k for k, _ in want]
    assert np.allclose(list(answer.values()), [v for _, v in want], atol=1e-6)


def test_curl_upload_file_T(ts_server: Server, local: Local) -> None:
    path = SAMPLES / "digit_7.png"
    status, body, trace = curl(f"{ts_server.base_url}/predictions/digits_image", "-T", str(path))
    assert status == 200, body
    assert "> PUT /predictions/digits_image" in trace
    _assert_top5(json.loads(body), _top5_of(local, "digits_image",
                                            digit_png(path).reshape(1, 1, 8, 8)))


def test_curl_upload_large_file_uses_100_continue(ts_server: Server, local: Local,
                                                  files: dict[str, Path]) -> None:
    big = files["big"]
    assert big.stat().st_size > 1024 * 1024  # curl asks for 100-continue past 1 MB
    status, body, trace = curl(f"{ts_server.base_url}/predictions/rgb", "-T", str(big))
    assert status == 200, body
    assert "> Expect: 100-continue" in trace
    assert "< HTTP/1.1 100 Continue" in trace
    _assert_top5(json.loads(body), _top5_of(local, "rgb", rgb_tensor(big.read_bytes())[None]))


def test_curl_post_upload_with_X_POST(ts_server: Server, local: Local,
                                     files: dict[str, Path]) -> None:
    jpg = files["photo"]
    status, body, trace = curl("-X", "POST", f"{ts_server.base_url}/predictions/rgb/1",
                               "-T", str(jpg))
    assert status == 200, body
    assert "> POST /predictions/rgb/1" in trace
    _assert_top5(json.loads(body), _top5_of(local, "rgb", rgb_tensor(jpg.read_bytes())[None]))


def test_curl_form_data_part(ts_server: Server, local: Local) -> None:
    path = SAMPLES / "digit_4.png"
    status, body, trace = curl(f"{ts_server.base_url}/predictions/digits_image",
                               "-F", f"data=@{path}")
    assert status == 200, body
    assert "multipart/form-data; boundary=" in trace
    _assert_top5(json.loads(body), _top5_of(local, "digits_image",
                                            digit_png(path).reshape(1, 1, 8, 8)))


def test_curl_two_form_data_parts_answer_a_list(ts_server: Server, local: Local) -> None:
    paths = [SAMPLES / "digit_2.png", SAMPLES / "digit_9.png"]
    status, body, _ = curl(f"{ts_server.base_url}/predictions/digits_image",
                           "-F", f"data=@{paths[0]}", "-F", f"data=@{paths[1]}")
    assert status == 200, body
    answers = json.loads(body)
    assert len(answers) == 2
    for answer, path in zip(answers, paths, strict=True):
        _assert_top5(answer, _top5_of(local, "digits_image",
                                      digit_png(path).reshape(1, 1, 8, 8)))


def test_curl_two_parts_on_a_handler_py_model(ts_server: Server, local: Local) -> None:
    paths = [SAMPLES / "digit_3.png", SAMPLES / "digit_8.png"]
    status, body, _ = curl(f"{ts_server.base_url}/predictions/digits_handler",
                           "-F", f"data=@{paths[0]}", "-F", f"data=@{paths[1]}")
    assert status == 200, body
    want = local.run("digits_handler", np.stack([digit_png(p) for p in paths])).argmax(1)
    assert json.loads(body) == want.tolist()


def test_curl_data_json(ts_server: Server, local: Local) -> None:
    x = np.load(SAMPLES / "digit_7.npy")
    status, body, _ = curl(f"{ts_server.base_url}/predictions/digits", "-d",
                           json.dumps({"data": x.tolist()}))
    assert status == 200, body
    assert np.allclose(json.loads(body), local.run("digits", x[None])[0].numpy(), atol=1e-5)


def test_curl_explanations_T(ts_server: Server) -> None:
    path = SAMPLES / "digit_0.png"
    status, body, _ = curl(f"{ts_server.base_url}/explanations/digits_image", "-T", str(path))
    assert status == 200, body
    assert np.asarray(json.loads(body)).shape == (1, 8, 8)


def test_curl_options_api_description(ts_server: Server) -> None:
    status, body, _ = curl("-X", "OPTIONS", ts_server.base_url)
    assert status == 200
    assert json.loads(body)["openapi"] == "3.0.1"


def test_curl_bad_image_part_is_400(ts_server: Server, files: dict[str, Path]) -> None:
    status, body, _ = curl(f"{ts_server.base_url}/predictions/digits_image",
                           "-F", f"data=@{SAMPLES / 'digit_1.png'}",
                           "-F", f"data=@{files['broken']}")
    assert status == 400
    assert json.loads(body)["type"] == "BadRequestException"
