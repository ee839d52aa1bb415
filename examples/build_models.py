"""Build the example model repository: small real models trained on scikit-learn's digits.

Writes (overwriting; a rerun gives the same files, so a clean checkout stays clean):

    <out>/digits/      MLP 64 -> 64 -> 10 as a torch.export program (model.pt2), batched
    <out>/digits_ts/   the same network as TorchScript (model.pt), unbatched
    <out>/digits_image/ the same network taking an 8x8 grey PNG: handler = "image_classifier"
    <samples>/         ready request bodies, raw inputs and PNGs from the held-out set

Needs no network: the 8x8 digits data set ships inside scikit-learn (`pip install
fastserve[examples]`). Runs in a few seconds on a CPU.

    python examples/build_models.py [--out DIR] [--samples DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MAX_BATCH = 1024  # upper bound of the exported program's dynamic batch dimension

IO_CONFIG = """\
[[inputs]]
name = "input__0"
datatype = "FP32"
shape = [-1, 64]

[[outputs]]
name = "output__0"
datatype = "FP32"
shape = [-1, 10]
"""

# digits_image: the PNG pixel is 15 * (pixel value 0..16), so 0..240. The [image] pipeline
# computes (p / 255 - mean) / std = (15 v / 255) / (16 / 17) = v / 16: the training scale.
PNG_SCALE = 15
IMAGE_CONFIG = f"""\
handler = "image_classifier"

[image]
mode = "L"
resize = 0
crop = 0
mean = [0.0]
std = [{16 / 17!r}]

[[inputs]]
name = "input__0"
datatype = "FP32"
shape = [-1, 1, 8, 8]

[[outputs]]
name = "output__0"
datatype = "FP32"
shape = [-1, 10]
"""

HEADER = """\
# {title}
# Input: [N, 64] float32, the 8x8 image row by row, pixel values 0..16 divided by 16 (so 0..1).
# Output: [N, 10] float32 logits; argmax is the digit (labels.json names it).
# Built by examples/build_models.py from scikit-learn's bundled digits data set.
"""


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DigitsImage(nn.Module):
    """The digits MLP taking images: [N, 1, 8, 8] -> [N, 10] logits."""

    def __init__(self, mlp: DigitsMLP) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(1))


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scaled [N, 64] float32 images and int64 labels, split 80/20 (stratified, fixed seed)."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def train(x: np.ndarray, y: np.ndarray, epochs: int = 40) -> DigitsMLP:
    torch.manual_seed(SEED)
    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(SEED)  # own generator: shuffling order is reproducible
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def predict(model, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Argmax predictions, calling the model `batch` rows at a time (all at once if None)."""
    xt = torch.from_numpy(x)
    chunks = xt.split(batch) if batch else [xt]
    with torch.no_grad():
        return torch.cat([model(c) for c in chunks]).argmax(1).numpy()


def write_model_folder(folder: Path, title: str, max_batch_size: int, batch_lines: str,
                       header: str = HEADER, io_config: str = IO_CONFIG) -> Path:
    """<folder>/ with config.toml and labels.json; returns its version folder 1/."""
    (folder / "1").mkdir(parents=True, exist_ok=True)
    config = header.format(title=title) + f"max_batch_size = {max_batch_size}\n" + batch_lines
    (folder / "config.toml").write_text(config + "\n" + io_config)
    labels = {str(i): name for i, name in enumerate(NAMES)}
    (folder / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    return folder / "1"


def export_pt2(model: DigitsMLP, out: Path) -> Path:
    version = write_model_folder(
        out / "digits",
        "digits: MLP 64 -> 64 -> 10 (ReLU) on scikit-learn's 8x8 digits, torch.export program.",
        max_batch_size=32,
        batch_lines="batch_delay_ms = 1.0\n",
    )
    example = torch.zeros(8, 64)  # batch > 1 so export does not specialize the batch to 1
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    ep = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, version / "model.pt2")
    return version / "model.pt2"


IMAGE_HEADER = """\
# {title}
# Input: an 8x8 grey PNG (JPEG works too), pixel = 15 x the digits value 0..16; the server
# decodes it ([image] below) into [N, 1, 8, 8] float32 at the training scale (0..1).
# Answer on /predictions: the top 5 {{label: probability}}; raw logits [N, 10] on v2.
# Built by examples/build_models.py from scikit-learn's bundled digits data set.
"""


def export_image_pt2(model: DigitsMLP, out: Path) -> Path:
    version = write_model_folder(
        out / "digits_image",
        "digits_image: the digits MLP behind TorchServe's image_classifier handler.",
        max_batch_size=32,
        batch_lines="batch_delay_ms = 1.0\n",
        header=IMAGE_HEADER,
        io_config=IMAGE_CONFIG,
    )
    example = torch.zeros(8, 1, 8, 8)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    ep = torch.export.export(DigitsImage(model).eval(), (example,),
                             dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, version / "model.pt2")
    return version / "model.pt2"


def png_bytes(row: np.ndarray) -> bytes:
    """One [64] image at the training scale as an 8x8 grey PNG (pixel = 15 x value)."""
    from PIL import Image

    pixels = (np.rint(row * 16).astype(np.uint8) * PNG_SCALE).reshape(8, 8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def save_torchscript(model: DigitsMLP, out: Path) -> Path:
    version = write_model_folder(
        out / "digits_ts",
        "digits_ts: the digits MLP as TorchScript, unbatched (the client sends [N, 64]).",
        max_batch_size=0,
        batch_lines="",
    )
    # trace, not script: scripting's output varies with Python's hash seed; tracing's does not
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; it still works
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, torch.zeros(8, 64))
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    path = version / "model.pt"
    if not same_torchscript(path, buf.getvalue()):
        path.write_bytes(buf.getvalue())
    return path


def same_torchscript(path: Path, new: bytes) -> bool:
    """Whether `path` holds `new` but for the random id torch.jit.save stamps on every file.

    Keeping the old file then makes a rerun leave the repository unchanged.
    """
    if not path.exists():
        return False
    with zipfile.ZipFile(path) as old_zip, zipfile.ZipFile(io.BytesIO(new)) as new_zip:
        names = [n for n in new_zip.namelist() if not n.endswith("/serialization_id")]
        return sorted(old_zip.namelist()) == sorted(new_zip.namelist()) and all(
            old_zip.read(n) == new_zip.read(n) for n in names
        )


def load_torchscript(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path)


def v2_body(x: np.ndarray) -> dict:
    return {
        "inputs": [
            {
                "name": "input__0",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": [round(float(v), 4) for v in x.ravel()],  # k/16 is exact at 4 decimals
            }
        ]
    }


def write_samples(model: DigitsMLP, x: np.ndarray, y: np.ndarray, samples: Path) -> str:
    """Request bodies for held-out images; returns the README text describing them."""
    samples.mkdir(parents=True, exist_ok=True)
    one, four = x[:1], x[1:5]
    pred_one, pred_four = predict(model, one), predict(model, four)
    label = int(y[0])
    (samples / "digits_v2.json").write_text(json.dumps(v2_body(one)) + "\n")
    (samples / "digits_batch_v2.json").write_text(json.dumps(v2_body(four)) + "\n")
    for old in samples.glob("digit_*.npy"):  # the held-out image (so its label) may change
        old.unlink()
    np.save(samples / f"digit_{label}.npy", one[0])
    # The first held-out image of each digit as a PNG (digit_{label}.png is one[0] too).
    for old in samples.glob("digit_*.png"):
        old.unlink()
    firsts = [int(np.flatnonzero(y == d)[0]) for d in range(10)]
    for d, i in enumerate(firsts):
        (samples / f"digit_{d}.png").write_bytes(png_bytes(x[i]))
    pred_png = predict(model, x[firsts])

    def names(labels) -> str:
        return ", ".join(f"{int(v)} ({NAMES[int(v)]})" for v in labels)

    text = f"""\
# Request samples

Generated by `examples/build_models.py` from the held-out 20% of scikit-learn's digits
(never seen in training). Inputs are 8x8 images, row by row, pixel values divided by 16.

| file | what | true digit | `digits` predicts |
|------|------|------------|-------------------|
| `digits_v2.json` | KServe v2 infer body, one image `[1, 64]` | {names([label])} | \
{names(pred_one)} |
| `digits_batch_v2.json` | KServe v2 infer body, four images `[4, 64]` | {names(y[1:5])} | \
{names(pred_four)} |
| `digit_{label}.npy` | the `digits_v2.json` image as a float32 `[64]` array | \
{names([label])} | {names(pred_one)} |
| `digit_0.png` … `digit_9.png` | the first held-out image of each digit, 8x8 grey PNG \
(pixel = 15 × value), for `digits_image` | 0 … 9 | {names(pred_png)} |

```sh
fastserve --models examples/models &
curl -s localhost:8080/v2/models/digits/infer -d @examples/samples/digits_v2.json
curl -s localhost:8080/predictions/digits --data-binary @examples/samples/digit_{label}.npy \\
  -H 'Content-Type: application/x-npy'
# TorchServe's API on the image model: top 5 {{label: probability}}
curl -s localhost:8080/predictions/digits_image -T examples/samples/digit_{label}.png
curl -s localhost:8080/predictions/digits_image -F data=@examples/samples/digit_3.png \\
  -F data=@examples/samples/digit_8.png                  # two parts: a list of two answers
curl -s localhost:8080/explanations/digits_image -T examples/samples/digit_{label}.png
```
"""
    (samples / "README.md").write_text(text)
    return text


def verify(model: DigitsMLP, pt2: Path, ts: Path, x: np.ndarray) -> None:
    """The saved files predict exactly what the trained model does, at several batch sizes."""
    want = predict(model, x)
    loaded = {"model.pt2": torch.export.load(pt2).module(), "model.pt": load_torchscript(ts)}
    for name, m in loaded.items():
        for batch in (1, 7, None):
            got = predict(m, x, batch)
            assert (got == want).all(), f"{name} batch={batch}: {int((got != want).sum())} differ"


def verify_image(model: DigitsMLP, image_pt2: Path, x: np.ndarray) -> None:
    """Every held-out image, sent as a PNG through fastserve's [image] pipeline, gives the
    training-scale input back and the same prediction from digits_image."""
    from fastserve.core.image import preprocess_image
    from fastserve.core.model_config import parse_model_config

    config = parse_model_config(image_pt2.parent.parent).image
    images = np.stack([preprocess_image(png_bytes(row), config) for row in x])
    assert images.shape == (len(x), 1, 8, 8), images.shape
    assert np.allclose(images.reshape(len(x), 64), x, atol=1e-6), "PNG scale is off"
    got = predict(torch.export.load(image_pt2).module(), images, 7)
    want = predict(model, x)
    assert (got == want).all(), f"digits_image: {int((got != want).sum())} differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "models", help="model repository")
    parser.add_argument("--samples", type=Path, default=HERE / "samples", help="request samples")
    args = parser.parse_args()

    torch.set_num_threads(1)  # same float reductions, so the same weights, on every machine
    x_train, x_test, y_train, y_test = load_data()
    model = train(x_train, y_train)
    accuracy = float((predict(model, x_test) == y_test).mean())
    print(f"held-out accuracy: {accuracy:.4f} ({len(y_test)} images)")
    if accuracy < 0.9:
        raise SystemExit("accuracy below 0.9: training is broken")

    pt2 = export_pt2(model, args.out)
    ts = save_torchscript(model, args.out)
    image = export_image_pt2(model, args.out)
    verify(model, pt2, ts, x_test)
    verify_image(model, image, x_test)
    print(write_samples(model, x_test, y_test, args.samples))
    for path in (pt2, ts, image):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
