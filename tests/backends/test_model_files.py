"""Reading model files: concurrent torch.export loads, and torch.save pickles explained."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fastserve.backends.torch import TorchBackend
from fastserve.core.model_config import parse_model_config
from fastserve.errors import ConfigError


class Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture(scope="module")
def affine_pt2(module_folder: Any) -> Path:
    return module_folder("affine", "max_batch_size = 4\n").export(
        Affine(), (torch.randn(2, 4),)).folder


def test_pt2_versions_load_concurrently(affine_pt2: Path) -> None:
    """Several threads loading .pt2 programs at once: each gets its model, none fails."""
    config = parse_model_config(affine_pt2)
    start = threading.Barrier(6)
    results: list[Any] = []

    def load() -> None:
        start.wait()
        for _ in range(3):
            try:
                results.append(TorchBackend(affine_pt2 / "1", config, {}))
            except Exception as exc:  # collected: the test asserts there are none
                results.append(exc)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == [], errors[:2]
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    with torch.no_grad():
        expected = Affine()(torch.from_numpy(x)).numpy()
    for backend in results:
        np.testing.assert_allclose(backend.infer({"input__0": x}, 0)["output__0"], expected,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("what", ["state_dict", "module", "legacy"])
@pytest.mark.parametrize("filename", ["model.pt", "model.pt2"])
def test_torch_save_pickle_says_how_to_export(model_folder: Any, what: str,
                                              filename: str) -> None:
    folder = model_folder("pickled")
    module = Affine()
    obj = module if what == "module" else module.state_dict()
    torch.save(obj, str(folder.version / filename),
               _use_new_zipfile_serialization=what != "legacy")
    with pytest.raises(ConfigError) as info:
        TorchBackend(folder.version, parse_model_config(folder.folder), {})
    message = info.value.message
    assert f"{filename} is a torch.save pickle" in message
    assert "torch.export.export" in message and "torch.jit.script" in message
    assert "corrupted" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_kind_gpu_without_cuda_names_the_instance_group(model_folder: Any) -> None:
    folder = model_folder("gpu_only")
    folder.script(Affine())
    (folder.folder / "config.toml").unlink()
    (folder.folder / "config.pbtxt").write_text(
        'platform: "pytorch_libtorch"\ninstance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]\n')
    with pytest.raises(ConfigError) as info:
        TorchBackend(folder.version, parse_model_config(folder.folder), {})
    assert info.value.message == (
        "config.pbtxt: instance_group kind KIND_GPU (cuda:0) but CUDA is not available on "
        "this machine; use KIND_CPU or KIND_AUTO")
