"""The README flow: the example models answer the example samples with the right digits.

The expected digits are read off examples/samples/README.md and checked twice: the model
file run locally with torch must agree with the README, and the server must agree with
the local run (allclose on the logits, equal argmax). The session server serves
byte-identical copies of examples/models.
"""

from __future__ import annotations

import filecmp
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
import torch

from models_factory import load_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLES = EXAMPLES / "samples"
MODELS = EXAMPLES / "models"
V2_SAMPLES = ["digits_v2.json", "digits_batch_v2.json"]
PNG_SAMPLES = sorted(SAMPLES.glob("digit_*.png"))


def documented_predictions() -> dict[str, list[tuple[int, str]]]:
    """samples/README.md's table: file -> [(digit, label)] in the `digits predicts` column.

    A row naming a range (`digit_0.png` … `digit_9.png`) gives one prediction per file.
    """
    table: dict[str, list[tuple[int, str]]] = {}
    for line in (SAMPLES / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        predicted = [(int(d), name) for d, name in re.findall(r"(\d) \((\w+)\)", cells[3])]
        if len(names) == 2 and "…" in cells[0]:
            first, last = (re.search(r"\d+", n) for n in names)
            assert first is not None and last is not None, cells[0]
            prefix, suffix = names[0][:first.start()], names[0][first.end():]
            files = [f"{prefix}{i}{suffix}" for i in range(int(first[0]), int(last[0]) + 1)]
            assert len(files) == len(predicted), line
            table.update({f: [p] for f, p in zip(files, predicted, strict=True)})
        else:
            table[names[0]] = predicted
    return table


DOCUMENTED = documented_predictions()


def sample_input(filename: str) -> np.ndarray:
    """A sample as the [N, 64] batch it holds (the npy sample is one image: N = 1)."""
    if filename.endswith(".npy"):
        return np.load(SAMPLES / filename)[None, :]
    doc = json.loads((SAMPLES / filename).read_text())
    [inp] = doc["inputs"]
    return np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])


def labels(model: str) -> dict[str, str]:
    return json.loads((MODELS / model / "labels.json").read_text())


@functools.cache
def example_model(model: str) -> Any:
    return load_model(next((MODELS / model / "1").glob("model.pt*")))


def local_logits(model: str, x: np.ndarray) -> np.ndarray:
    module = example_model(model)
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def check_answer(model: str, filename: str, logits: np.ndarray) -> None:
    x = sample_input(filename)
    expected = local_logits(model, x)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    names = labels(model)
    got = [(int(d), names[str(int(d))]) for d in logits.argmax(axis=1)]
    assert got == DOCUMENTED[filename]


def curl(*args: str) -> tuple[int, Any]:
    result = subprocess.run(["curl", "-s", "-S", "-w", "\n%{http_code}", *args],
                            capture_output=True, timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    if status == "404" and "no endpoint" in body:
        pytest.skip(f"not served yet: {args[0]}")
    return int(status), json.loads(body)


def test_readme_table_parsed():
    assert set(DOCUMENTED) >= {*V2_SAMPLES, "digit_7.npy"}
    assert {f for f in DOCUMENTED if f.endswith(".png")} == {p.name for p in PNG_SAMPLES}
    assert DOCUMENTED["digits_v2.json"] and len(DOCUMENTED["digits_batch_v2.json"]) == 4


@pytest.mark.parametrize("model", ["digits", "digits_ts"])
@pytest.mark.parametrize("filename", V2_SAMPLES)
def test_local_model_agrees_with_readme(model, filename):
    logits = local_logits(model, sample_input(filename))
    names = labels(model)
    assert [(int(d), names[str(int(d))]) for d in logits.argmax(axis=1)] == DOCUMENTED[filename]


def test_npy_sample_is_the_v2_sample():
    np.testing.assert_array_equal(np.load(SAMPLES / "digit_7.npy"),
                                  sample_input("digits_v2.json")[0])


@pytest.mark.parametrize("model", ["digits", "digits_ts", "digits_image"])
def test_server_serves_the_example_files(server, model):
    """The session server's copies are the examples, byte for byte."""
    served, original = server.models / model, MODELS / model
    for path in original.rglob("*"):
        if path.is_file():
            assert filecmp.cmp(path, served / path.relative_to(original), shallow=False), path


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("model", ["digits", "digits_ts"])
@pytest.mark.parametrize("filename", V2_SAMPLES)
def test_curl(server, model, filename):
    """As the README: curl -s localhost:8080/v2/models/digits/infer -d @<sample>."""
    status, doc = curl(f"{server.base_url}/v2/models/{model}/infer", "-d", f"@{SAMPLES / filename}")
    assert status == 200, doc
    [out] = doc["outputs"]
    assert out["name"] == "output__0" and out["datatype"] == "FP32"
    check_answer(model, filename, np.array(out["data"], dtype=np.float32).reshape(out["shape"]))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_predictions_npy(server):
    """The README's TorchServe call: the npy sample to /predictions/digits."""
    status, answer = curl(f"{server.base_url}/predictions/digits", "--data-binary",
                          f"@{SAMPLES / 'digit_7.npy'}", "-H", "Content-Type: application/x-npy")
    assert status == 200, answer
    check_answer("digits", "digit_7.npy", np.array(answer, dtype=np.float32).reshape(1, 10))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["digits", "digits_ts"])
@pytest.mark.parametrize("filename", V2_SAMPLES)
def test_tritonclient(server, model, filename, binary):
    httpclient = pytest.importorskip("tritonclient.http")
    x = sample_input(filename)
    client: Any = httpclient.InferenceServerClient(server.url)
    try:
        inp = httpclient.InferInput("input__0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("output__0", binary_data=binary)
        result = client.infer(model, [inp], outputs=[out])
        logits = result.as_numpy("output__0")
    finally:
        client.close()
    check_answer(model, filename, logits)


# The image model: PNG samples through the server's own decoding and preprocessing


def png_batch(path: Path) -> np.ndarray:
    """A PNG sample as digits_image's [1, 1, 8, 8] input, preprocessed as its config says."""
    from PIL import Image

    config = tomllib.loads((MODELS / "digits_image" / "config.toml").read_text())["image"]
    assert config["mode"] == "L" and config["resize"] == 0 and config["crop"] == 0
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    x = (pixels - config["mean"][0]) / config["std"][0]
    return x.astype(np.float32)[None, None]


def image_logits(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return example_model("digits_image")(torch.from_numpy(x)).numpy()


def top5(logits: np.ndarray) -> list[tuple[str, float]]:
    probs = torch.softmax(torch.from_numpy(logits[0]), dim=0).numpy()
    names = labels("digits_image")
    order = np.argsort(-probs, kind="stable")[:5]
    return [(names[str(int(i))], float(probs[i])) for i in order]


def check_top5(answer: dict[str, float], path: Path) -> None:
    want = top5(image_logits(png_batch(path)))
    assert list(answer) == [name for name, _ in want], (answer, want)
    np.testing.assert_allclose(list(answer.values()), [p for _, p in want], rtol=1e-4,
                               atol=1e-6)
    [(digit, name)] = DOCUMENTED[path.name]
    assert labels("digits_image")[str(digit)] == name == next(iter(answer))


def test_local_image_model_agrees_with_readme():
    for path in PNG_SAMPLES:
        [(digit, _)] = DOCUMENTED[path.name]
        assert int(image_logits(png_batch(path)).argmax()) == digit, path.name


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("path", PNG_SAMPLES, ids=lambda p: p.name)
def test_curl_predictions_png(server, path):
    """curl -s localhost:8080/predictions/digits_image -T examples/samples/digit_7.png"""
    status, answer = curl(f"{server.base_url}/predictions/digits_image", "-T", str(path))
    assert status == 200, answer
    check_top5(answer, path)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_predictions_multipart(server):
    """Two -F parts: a list of two answers, in order."""
    first, second = SAMPLES / "digit_3.png", SAMPLES / "digit_8.png"
    status, answer = curl(f"{server.base_url}/predictions/digits_image",
                          "-F", f"data=@{first}", "-F", f"data=@{second}")
    assert status == 200, answer
    assert isinstance(answer, list) and len(answer) == 2
    check_top5(answer[0], first)
    check_top5(answer[1], second)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_explanations_png(server):
    """Integrated gradients (baseline zeros, 50 steps, target = the predicted class)."""
    from captum.attr import IntegratedGradients

    path = SAMPLES / "digit_7.png"
    status, answer = curl(f"{server.base_url}/explanations/digits_image", "-T", str(path))
    assert status == 200, answer
    got = np.asarray(answer, dtype=np.float32)
    assert got.shape == (1, 8, 8)  # C x H x W, the preprocessed tensor without the batch
    x = torch.from_numpy(png_batch(path))
    # a fresh module: one that ran under inference_mode cannot be differentiated
    module = load_model(MODELS / "digits_image" / "1" / "model.pt2")
    target = int(module(x).argmax())
    want = IntegratedGradients(module).attribute(x, baselines=torch.zeros_like(x),
                                                 target=target, n_steps=50)
    np.testing.assert_allclose(got, want.detach().numpy()[0], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("path", [SAMPLES / "digit_7.png", SAMPLES / "digit_0.png"],
                         ids=lambda p: p.name)
def test_tritonclient_png_as_bytes(server, path):
    """KServe v2: an image model takes its input as BYTES and answers its output tensor."""
    httpclient = pytest.importorskip("tritonclient.http")
    client: Any = httpclient.InferenceServerClient(server.url)
    try:
        inp = httpclient.InferInput("input__0", [1], "BYTES")
        inp.set_data_from_numpy(np.array([path.read_bytes()], dtype=object))
        result = client.infer("digits_image", [inp])
        logits = result.as_numpy("output__0")
    finally:
        client.close()
    expected = image_logits(png_batch(path))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    [(digit, _)] = DOCUMENTED[path.name]
    assert int(logits.argmax()) == digit
