"""v2 BYTES input to an image model: PNG/JPEG elements decoded by the server."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _server import ServerProcess

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow  # every test here uses a server process of its own

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLES = EXAMPLES / "samples"
STD = 0.9411764705882353  # digits_image's [image] std: PNG pixel 15 v -> v / 16


@pytest.fixture(scope="module")
def client():
    with ServerProcess(EXAMPLES / "models") as server:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        yield c
        c.close()


def _expected(pngs: list[bytes]) -> np.ndarray:
    pixels = [np.asarray(Image.open(io.BytesIO(p)).convert("L"), np.float32) / 255.0 / STD
              for p in pngs]
    x = torch.from_numpy(np.stack(pixels)[:, None])  # [N, 1, 8, 8]
    program = torch.export.load(str(EXAMPLES / "models" / "digits_image" / "1" / "model.pt2"))
    with torch.inference_mode():
        return program.module()(x).numpy()


def _bytes_input(items: list[bytes]):
    inp = httpclient.InferInput("input__0", [len(items)], "BYTES")
    inp.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=True)
    return inp


def test_v2_png_bytes_decoded_by_the_server(client) -> None:
    pngs = [(SAMPLES / f"digit_{d}.png").read_bytes() for d in (3, 7, 8)]
    result = client.infer("digits_image", [_bytes_input(pngs)])
    logits = result.as_numpy("output__0")
    np.testing.assert_allclose(logits, _expected(pngs), rtol=1e-4, atol=1e-4)
    assert logits.argmax(axis=1).tolist() == [3, 7, 8]


def test_v2_jpeg_bytes_and_classification(client) -> None:
    buf = io.BytesIO()
    Image.open(SAMPLES / "digit_7.png").save(buf, format="JPEG", quality=100)
    out = httpclient.InferRequestedOutput("output__0", binary_data=True, class_count=1)
    result = client.infer("digits_image", [_bytes_input([buf.getvalue()])], outputs=[out])
    top = result.as_numpy("output__0")[0][0].decode()
    score, index, label = top.split(":")
    assert int(index) == int(_expected([buf.getvalue()]).argmax())
    assert label == "seven"


def test_v2_not_an_image_is_400(client) -> None:
    with pytest.raises(InferenceServerException, match="image 1") as info:
        client.infer("digits_image", [_bytes_input([(SAMPLES / "digit_7.png").read_bytes(),
                                                    b"not an image at all"])])
    assert info.value.status() == "400"

