"""Model archives for the TorchServe store tests: built with the real torch-model-archiver
(the ``fastserve[torchserve]`` extra), and hostile zips written with zipfile."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import orjson
import pytest

MODEL_PY = '''import torch


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)
'''

HANDLER_PY = '''import torch
from ts.torch_handler.base_handler import BaseHandler


class TinyHandler(BaseHandler):
    """Each request's JSON list of 4 numbers -> the eager TinyNet's 3 outputs."""

    def preprocess(self, data):
        rows = [row.get("data") or row.get("body") for row in data]
        return torch.tensor(rows, dtype=torch.float32)

    def postprocess(self, output):
        return output.tolist()
'''


def tiny_weights(seed: int) -> dict:
    """The state dict archived for a seed (tests compute expected answers with it)."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Linear(4, 3)
    return {"fc.weight": net.weight.detach().clone(), "fc.bias": net.bias.detach().clone()}


def archiver() -> str:
    """The torch-model-archiver command (skips the test where the extra is missing)."""
    found = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent)) \
        or shutil.which("torch-model-archiver")
    if found is None:
        pytest.skip("torch-model-archiver is not installed (pip install fastserve[torchserve])")
    return found


def build_mar(work: Path, store: Path, name: str, version: str = "1.0", *,
              config_yaml: str | None = None, fmt: str = "default",
              handler: str = HANDLER_PY, seed: int = 0) -> Path:
    """A real archive of a TinyNet eager model (state dict + model file) with a handler."""
    import torch

    src = work / f"src-{name}-{version}"
    src.mkdir(parents=True, exist_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    (src / "model.py").write_text(MODEL_PY)
    (src / "handler.py").write_text(handler)
    torch.save(tiny_weights(seed), src / "weights.pt")
    (src / "index_to_name.json").write_text('{"0": ["n0", "zero"], "1": ["n1", "one"]}')
    args = [archiver(), "--model-name", name, "--version", version,
            "--model-file", str(src / "model.py"), "--serialized-file", str(src / "weights.pt"),
            "--handler", str(src / "handler.py"), "--extra-files",
            str(src / "index_to_name.json"), "--export-path", str(store), "-f",
            "--archive-format", fmt]
    if config_yaml is not None:
        (src / "model-config.yaml").write_text(config_yaml)
        args += ["--config-file", str(src / "model-config.yaml")]
    subprocess.run(args, check=True, capture_output=True)
    return store / {"no-archive": name, "tgz": f"{name}.tar.gz"}.get(fmt, f"{name}.mar")


def manifest(name: str, version: str = "1.0") -> bytes:
    return orjson.dumps({"runtime": "python", "model": {
        "modelName": name, "modelVersion": version, "handler": "handler.py"}})


def write_zip(path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    """A zip with the given members; names in ``links`` are stored as symbolic links."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            info = zipfile.ZipInfo(member)
            info.compress_type = zipfile.ZIP_DEFLATED
            if member in links:
                info.external_attr = (0o120777 << 16)
            zf.writestr(info, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None,
              hardlinks: dict[str, str] | None = None, fifo: str | None = None,
              declared: dict[str, int] | None = None) -> Path:
    """A .tar.gz of ``members``; ``links`` / ``hardlinks``: name -> target; ``declared``:
    a member's size as its header says (the data written is the real one)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for kind, table in ((tarfile.SYMTYPE, links or {}), (tarfile.LNKTYPE, hardlinks or {})):
            for name, target in table.items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tf.addfile(info)
        if fifo:
            info = tarfile.TarInfo(fifo)
            info.type = tarfile.FIFOTYPE
            tf.addfile(info)
        for name, size in (declared or {}).items():
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BytesIO(bytes(size)))
    return path


def hostile_archives(store: Path) -> dict[str, str]:
    """Broken archives in ``store``: served name -> words its FAILED reason holds."""
    (store / "corrupt.mar").write_bytes(b"PK\x03\x04 this is not really a zip file")
    write_zip(store / "nomanifest.mar", {"handler.py": HANDLER_PY.encode()})
    write_zip(store / "slip.mar", {"MAR-INF/MANIFEST.json": manifest("slip"),
                                   "../../escaped.py": b"print('pwned')"})
    write_zip(store / "absolute.mar", {"MAR-INF/MANIFEST.json": manifest("absolute"),
                                       "/tmp/fastserve-absolute-escape.py": b"x = 1"})
    write_zip(store / "link.mar", {"MAR-INF/MANIFEST.json": manifest("link"),
                                   "evil": b"/etc/passwd"}, links=("evil",))
    write_zip(store / "huge.mar", {"MAR-INF/MANIFEST.json": manifest("huge"),
                                   "weights.bin": bytes(3_000_000)})
    write_tar(store / "tarslip.tar.gz", {"m/MAR-INF/MANIFEST.json": manifest("tarslip"),
                                         "m/../../escaped.py": b"print('pwned')"})
    write_tar(store / "tarlink.tgz", {"MAR-INF/MANIFEST.json": manifest("tarlink")},
              links={"evil": "/etc/passwd"})
    return {"tarslip": "outside the model's folder", "tarlink": "is a link",
            "corrupt": "not a valid model archive", "nomanifest": "no MAR-INF/MANIFEST.json",
            "slip": "zip-slip", "absolute": "zip-slip", "link": "symbolic link",
            "huge": "inflates to more than"}
