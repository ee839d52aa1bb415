"""/explanations and KServe v1 :explain through real HTTP, against Captum run here."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
import torch
from _ts_support import SAMPLES, Local, digit_png, rgb_tensor
from captum.attr import InputXGradient, IntegratedGradients, Saliency

Server = Any
JSON = {"Content-Type": "application/json"}


def local_attr(local: Local, name: str, method: Any, x: torch.Tensor,
               target: int | None = None) -> np.ndarray:
    """Captum in the test process on the same file: [1, ...] in, [1, ...] out."""
    model = local.model(name)
    x = x.detach().clone().requires_grad_()
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1)[0])
    if method is IntegratedGradients:
        attr = method(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                       n_steps=50)
    else:
        attr = method(model).attribute(x, target=target)
    return attr.detach().numpy()


def test_explanations_tensor_integrated_gradients(ts_server: Server, local: Local) -> None:
    x = np.load(SAMPLES / "digit_7.npy")
    status, _, body = ts_server.request("POST", "/explanations/digits",
                                        json.dumps(x.tolist()).encode(), JSON)
    assert status == 200, body
    got = np.asarray(json.loads(body))
    want = local_attr(local, "digits", IntegratedGradients, torch.from_numpy(x)[None])[0]
    assert got.shape == (64,)
    assert np.allclose(got, want, atol=1e-4)
    # Completeness: the attributions add up to f(x) - f(0) for the predicted class.
    with torch.no_grad():
        out = local.model("digits")(torch.from_numpy(np.stack([x, np.zeros_like(x)])))
    k = int(out[0].argmax())
    assert abs(got.sum() - float(out[0, k] - out[1, k])) < 0.05 * abs(float(out[0, k]))


def test_explanations_saliency_and_target_query(ts_server: Server, local: Local) -> None:
    x = np.load(SAMPLES / "digit_7.npy")
    status, _, body = ts_server.request("POST", "/explanations/digits_sal?target=2",
                                        json.dumps(x.tolist()).encode(), JSON)
    assert status == 200, body
    want = local_attr(local, "digits_sal", Saliency, torch.from_numpy(x)[None], target=2)[0]
    assert np.allclose(json.loads(body), want, atol=1e-5)


def test_explanations_target_in_json_body(ts_server: Server, local: Local) -> None:
    x = np.load(SAMPLES / "digit_7.npy")
    body = json.dumps({"data": x.tolist(), "target": 4}).encode()
    status, _, got = ts_server.request("POST", "/explanations/digits_sal", body, JSON)
    assert status == 200, got
    want = local_attr(local, "digits_sal", Saliency, torch.from_numpy(x)[None], target=4)[0]
    assert np.allclose(json.loads(got), want, atol=1e-5)


def test_explanations_bad_target_is_400(ts_server: Server) -> None:
    x = np.load(SAMPLES / "digit_7.npy")
    status, _, body = ts_server.request("POST", "/explanations/digits?target=10",
                                        json.dumps(x.tolist()).encode(), JSON)
    assert status == 400
    assert json.loads(body)["type"] == "BadRequestException"


def test_explanations_image_shape_is_preprocessed_chw(ts_server: Server, local: Local) -> None:
    path = SAMPLES / "digit_3.png"
    status, _, body = ts_server.request("PUT", "/explanations/digits_image", path.read_bytes())
    assert status == 200, body
    got = np.asarray(json.loads(body))
    assert got.shape == (1, 8, 8)
    x = torch.from_numpy(digit_png(path)).reshape(1, 1, 8, 8)
    assert np.allclose(got, local_attr(local, "digits_image", IntegratedGradients, x)[0],
                       atol=1e-4)


def test_explanations_rgb_input_x_gradient(ts_server: Server, local: Local,
                                           files: dict[str, Any]) -> None:
    jpeg = files["photo"].read_bytes()
    status, _, body = ts_server.request("POST", "/explanations/rgb", jpeg,
                                        {"Content-Type": "image/jpeg"})
    assert status == 200, body
    got = np.asarray(json.loads(body))
    assert got.shape == (3, 12, 12)
    want = local_attr(local, "rgb", InputXGradient, rgb_tensor(jpeg)[None])[0]
    assert np.allclose(got, want, atol=1e-5)


def test_kserve_v1_explain(ts_server: Server, local: Local) -> None:
    paths = [SAMPLES / "digit_5.png", SAMPLES / "digit_6.png"]
    instances = [{"data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    status, _, body = ts_server.request("POST", "/v1/models/digits_image:explain",
                                        json.dumps({"instances": instances}).encode(), JSON)
    assert status == 200, body
    explanations = json.loads(body)["explanations"]
    assert len(explanations) == 2
    for got, path in zip(explanations, paths, strict=True):
        x = torch.from_numpy(digit_png(path)).reshape(1, 1, 8, 8)
        want = local_attr(local, "digits_image", IntegratedGradients, x)[0]
        assert np.allclose(got, want, atol=1e-4)


def test_kserve_v1_explain_tensor_instances_and_version(ts_server: Server,
                                                        local: Local) -> None:
    x = np.load(SAMPLES / "digit_7.npy")
    body = json.dumps({"instances": [x.tolist(), {"data": x.tolist(), "target": 1}]}).encode()
    status, _, got = ts_server.request("POST", "/v1/models/digits_sal/versions/1:explain",
                                       body, JSON)
    assert status == 200, got
    first, second = json.loads(got)["explanations"]
    xt = torch.from_numpy(x)[None]
    assert np.allclose(first, local_attr(local, "digits_sal", Saliency, xt)[0], atol=1e-5)
    assert np.allclose(second, local_attr(local, "digits_sal", Saliency, xt, 1)[0], atol=1e-5)


def test_kserve_v1_explain_errors_are_kserve_shaped(ts_server: Server) -> None:
    status, _, body = ts_server.request("POST", "/v1/models/digits:explain", b"{}", JSON)
    assert status == 400
    assert set(json.loads(body)) == {"error"}
    status, _, body = ts_server.request("POST", "/v1/models/nope:explain",
                                        b'{"instances": [[1]]}', JSON)
    assert status == 404
    assert set(json.loads(body)) == {"error"}


def test_explanations_handler_py_explain_handle(ts_server: Server, local: Local) -> None:
    path = SAMPLES / "digit_9.png"
    status, _, body = ts_server.request("POST", "/explanations/digits_handler",
                                        path.read_bytes())
    assert status == 200, body
    x = torch.from_numpy(digit_png(path))[None]
    assert np.allclose(json.loads(body), local_attr(local, "digits_handler", Saliency, x)[0],
                       atol=1e-5)


@pytest.mark.parametrize("path", ["/explanations/nope", "/explanations/digits/7"])
def test_explanations_unknown_is_404_torchserve_shape(ts_server: Server, path: str) -> None:
    status, _, body = ts_server.request("POST", path, b"[1]", JSON)
    assert status == 404
    assert set(json.loads(body)) == {"code", "type", "message"}
