"""TorchBackend on small real models built in tmp_path (torch.export and TorchScript).

Expected answers come from the same module run locally with torch, never constants.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fastserve.backends.torch import TorchBackend, load, resolve_device, to_numpy, to_tensor
from fastserve.core.model_config import ModelConfig, parse_model_config
from fastserve.core.tensors import array_from_buffer, bf16_to_float, bytes_array, float_to_bf16
from fastserve.errors import BackendError, ConfigError, InvalidInputError
from fastserve.types import DataType, TensorSpec

D = DataType
CUDA = torch.cuda.is_available()


# Models


class MLP(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8).to(dtype)
        self.fc2 = nn.Linear(8, 3).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class TwoInTwoOut(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a * 2 + b.to(a.dtype), b * 3


class DictOut(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"double": x * 2, "total": x.sum(dim=1)}


class StrLen(nn.Module):
    def forward(self, text: list[str]) -> tuple[torch.Tensor, list[str]]:
        return torch.tensor([len(s) for s in text], dtype=torch.int64), [s.upper() for s in text]


class Mutates(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


def local(module: nn.Module, *args: Any) -> Any:
    with torch.no_grad():
        return module.eval()(*args)


def config(tmp_path: Path, text: str) -> ModelConfig:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / "config.toml").write_text(text, encoding="utf-8")
    return parse_model_config(folder)


def backend(version: Path, tmp_path: Path, text: str = "") -> TorchBackend:
    return TorchBackend(version, config(tmp_path, text), {})


BATCHED = "max_batch_size = 8\n"
MLP_IO = """
[[inputs]]
name = "x"
shape = [-1, 4]
[[outputs]]
name = "y"
shape = [-1, 3]
"""


@pytest.fixture(scope="module")
def mlp_pt2(module_folder: Any) -> Path:
    return module_folder("mlp").export(MLP(), (torch.randn(2, 4),)).version


@pytest.fixture(scope="module")
def static_pt2(module_folder: Any) -> Path:
    return module_folder("static").export(MLP(), (torch.randn(2, 4),), batch_dim=False).version


@pytest.fixture(scope="module")
def two_io_pt2(module_folder: Any) -> Path:
    example = (torch.randn(2, 4), torch.arange(8).reshape(2, 4))
    return module_folder("two_io").export(TwoInTwoOut(), example).version


@pytest.fixture(scope="module")
def dict_pt2(module_folder: Any) -> Path:
    return module_folder("dict").export(DictOut(), (torch.randn(2, 4),)).version


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# torch.export


def test_export_with_dynamic_batch(mlp_pt2: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED)
    assert b.platform == "pytorch_export" and b.device == "cpu" and b.declared
    assert b.inputs == (TensorSpec("input__0", D.FP32, (-1, 4)),)
    assert b.outputs == (TensorSpec("output__0", D.FP32, (-1, 3)),)
    for rows in (1, 5, 64):
        x = rand(rows, 4, seed=rows)
        out = b.infer({"input__0": x}, 0)
        assert list(out) == ["output__0"]
        assert out["output__0"].shape == (rows, 3) and out["output__0"].dtype == np.float32
        np.testing.assert_allclose(out["output__0"], local(MLP(), torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_export_with_configured_names(mlp_pt2: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED + MLP_IO)
    assert b.inputs == (TensorSpec("x", D.FP32, (-1, 4)),)
    assert b.outputs == (TensorSpec("y", D.FP32, (-1, 3)),)
    x = rand(3, 4)
    out = b.infer({"x": x}, 0)
    np.testing.assert_allclose(out["y"], local(MLP(), torch.from_numpy(x)).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_static_batch_refused_when_batching(static_pt2: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.pt2 was exported with a static batch "
                                          r"dimension but max_batch_size = 8.*Dim"):
        backend(static_pt2, tmp_path, BATCHED)


def test_static_batch_fine_without_batching(static_pt2: Path, tmp_path: Path) -> None:
    b = backend(static_pt2, tmp_path, "max_batch_size = 0")
    assert b.inputs == (TensorSpec("input__0", D.FP32, (2, 4)),)
    assert b.outputs == (TensorSpec("output__0", D.FP32, (2, 3)),)
    x = rand(2, 4)
    out = b.infer({"input__0": x}, 0)
    np.testing.assert_allclose(out["output__0"], local(MLP(), torch.from_numpy(x)).numpy(),
                               rtol=1e-5, atol=1e-6)
    b.warmup()


def test_multi_input_multi_output(two_io_pt2: Path, tmp_path: Path) -> None:
    b = backend(two_io_pt2, tmp_path, BATCHED + """
[[inputs]]
name = "a"
shape = [-1, 4]
[[inputs]]
name = "b"
datatype = "INT64"
shape = [-1, 4]
[[outputs]]
name = "mixed"
shape = [-1, 4]
[[outputs]]
name = "tripled"
datatype = "INT64"
shape = [-1, 4]
""")
    assert [(s.name, s.datatype) for s in b.inputs] == [("a", D.FP32), ("b", D.INT64)]
    a = rand(3, 4)
    i = np.arange(12, dtype=np.int64).reshape(3, 4)
    out = b.infer({"b": i, "a": a}, 0)  # by name, whatever the request's order
    want = local(TwoInTwoOut(), torch.from_numpy(a), torch.from_numpy(i))
    assert list(out) == ["mixed", "tripled"]
    np.testing.assert_allclose(out["mixed"], want[0].numpy(), rtol=1e-6)
    assert out["tripled"].dtype == np.int64
    np.testing.assert_array_equal(out["tripled"], want[1].numpy())


def test_multi_io_metadata_read_off_the_program(two_io_pt2: Path, tmp_path: Path) -> None:
    b = backend(two_io_pt2, tmp_path, BATCHED)
    assert b.inputs == (TensorSpec("input__0", D.FP32, (-1, 4)),
                        TensorSpec("input__1", D.INT64, (-1, 4)))
    assert b.outputs == (TensorSpec("output__0", D.FP32, (-1, 4)),
                         TensorSpec("output__1", D.INT64, (-1, 4)))


def test_dict_output_by_position(dict_pt2: Path, tmp_path: Path) -> None:
    b = backend(dict_pt2, tmp_path, BATCHED)
    assert [s.name for s in b.outputs] == ["output__0", "output__1"]
    assert b.outputs[1].shape == (-1,)
    x = rand(5, 4)
    out = b.infer({"input__0": x}, 0)
    want = local(DictOut(), torch.from_numpy(x))
    np.testing.assert_allclose(out["output__0"], want["double"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["output__1"], want["total"].numpy(), rtol=1e-5)


def test_dict_output_by_name(dict_pt2: Path, tmp_path: Path) -> None:
    b = backend(dict_pt2, tmp_path, BATCHED + """
[[outputs]]
name = "double"
shape = [-1, 4]
[[outputs]]
name = "total"
shape = [-1]
""")
    x = rand(2, 4)
    out = b.infer({"input__0": x}, 0)
    want = local(DictOut(), torch.from_numpy(x))
    assert set(out) == {"double", "total"}
    np.testing.assert_allclose(out["double"], want["double"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["total"], want["total"].numpy(), rtol=1e-5)


def test_torchscript_dict_output(model_folder: Any, tmp_path: Path) -> None:
    version = model_folder("dict_ts").script(DictOut()).version
    x = rand(3, 4)
    want = local(DictOut(), torch.from_numpy(x))
    # no [[outputs]]: output__0, output__1 in the dict's order
    out = backend(version, tmp_path, BATCHED).infer({"input__0": x}, 0)
    assert list(out) == ["output__0", "output__1"]
    np.testing.assert_allclose(out["output__0"], want["double"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["output__1"], want["total"].numpy(), rtol=1e-5)
    # [[outputs]] naming the keys: matched by name, whatever the order
    named = backend(version, tmp_path, BATCHED + """
[[inputs]]
name = "x"
shape = [-1, 4]
[[outputs]]
name = "total"
shape = [-1]
[[outputs]]
name = "double"
shape = [-1, 4]
""").infer({"x": x}, 0)
    np.testing.assert_allclose(named["double"], want["double"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(named["total"], want["total"].numpy(), rtol=1e-5)


@pytest.mark.parametrize(("text", "message"), [
    ('[[inputs]]\nname = "x"\ndatatype = "FP64"\nshape = [-1, 4]',
     r"inputs 'x' is FP64 but the model's is FP32"),
    ('[[outputs]]\nname = "y"\ndatatype = "INT64"\nshape = [-1, 3]',
     r"outputs 'y' is INT64 but the model's is FP32"),
    ('[[inputs]]\nname = "x"\nshape = [-1, 4, 1]', r"inputs 'x' has shape \[-1, 4, 1\] but the "
                                                   r"model's is \[-1, 4\]"),
    ('[[inputs]]\nname = "x"\n[[inputs]]\nname = "z"', r"declares 2 inputs but the model has 1"),
    ('[[inputs]]\nname = "x"\ndatatype = "BYTES"\nshape = [-1, 4]', r"cannot take BYTES"),
])
def test_config_disagreeing_with_the_program(mlp_pt2: Path, tmp_path: Path, text: str,
                                             message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backend(mlp_pt2, tmp_path, BATCHED + text)


# TorchScript


@pytest.fixture(scope="module", params=["scripted", "traced"])
def mlp_pt(request: pytest.FixtureRequest, module_folder: Any) -> Path:
    folder = module_folder(f"mlp_{request.param}")
    if request.param == "scripted":
        return folder.script(MLP()).version
    return folder.trace(MLP(), (torch.randn(2, 4),)).version


def test_torchscript_with_inputs(mlp_pt: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt, tmp_path, BATCHED + MLP_IO)
    assert b.platform == "pytorch_torchscript" and b.declared
    assert b.inputs == (TensorSpec("x", D.FP32, (-1, 4)),)
    assert b.outputs == (TensorSpec("y", D.FP32, (-1, 3)),)
    x = rand(6, 4)
    out = b.infer({"x": x}, 0)
    np.testing.assert_allclose(out["y"], local(MLP(), torch.from_numpy(x)).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_torchscript_without_inputs(mlp_pt: Path, tmp_path: Path, caplog) -> None:
    b = backend(mlp_pt, tmp_path, BATCHED)
    assert not b.declared
    assert b.inputs == (TensorSpec("input__0", D.FP32, (-1,)),)
    assert b.outputs == (TensorSpec("output__0", D.FP32, (-1,)),)
    calls: list[Any] = []
    model = b._forward
    b._forward = lambda *args: calls.append(args) or model(*args)
    with caplog.at_level(logging.INFO, logger="fastserve.backends.torch"):
        b.warmup()
    assert calls == [] and "warm-up skipped" in caplog.text
    x = rand(2, 4)
    out = b.infer({"whatever_name": x}, 0)  # whatever was sent, in request order
    np.testing.assert_allclose(out["output__0"], local(MLP(), torch.from_numpy(x)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_torchscript_outputs_named_by_count_when_not_configured(
        model_folder: Any, tmp_path: Path) -> None:
    version = model_folder("two").script(TwoInTwoOut()).version
    a, i = rand(2, 4), np.ones((2, 4), np.int64)
    want = local(TwoInTwoOut(), torch.from_numpy(a), torch.from_numpy(i))
    for text in ("", '[[inputs]]\nname = "a"\n[[inputs]]\nname = "b"\ndatatype = "INT64"'):
        b = backend(version, tmp_path, text)
        out = b.infer(dict(zip(("a", "b"), (a, i), strict=True)), 0)
        assert list(out) == ["output__0", "output__1"]
        np.testing.assert_allclose(out["output__0"], want[0].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(out["output__1"], want[1].numpy())


def test_torchscript_output_count_disagreeing_with_config(model_folder: Any,
                                                          tmp_path: Path) -> None:
    version = model_folder("two").script(TwoInTwoOut()).version
    b = backend(version, tmp_path, '[[outputs]]\nname = "only"')
    with pytest.raises(BackendError, match=r"returned 2 outputs but 1 are declared \(only\)"):
        b.infer({"a": rand(1, 4), "b": np.ones((1, 4), np.int64)}, 0)


STRLEN = """max_batch_size = 4
[[inputs]]
name = "text"
datatype = "BYTES"
shape = [-1]
[[outputs]]
name = "length"
datatype = "INT64"
shape = [-1]
[[outputs]]
name = "upper"
datatype = "BYTES"
shape = [-1]
"""


def test_torchscript_list_of_str(model_folder: Any, tmp_path: Path, caplog) -> None:
    b = backend(model_folder("strlen").script(StrLen()).version, tmp_path, STRLEN)
    words = ["ab", "héllo", "", "日本"]
    out = b.infer({"text": bytes_array([w.encode() for w in words], (4,))}, 0)
    lengths, upper = local(torch.jit.script(StrLen()), words)
    np.testing.assert_array_equal(out["length"], lengths.numpy())
    assert out["upper"].dtype == object
    assert out["upper"].tolist() == [u.encode() for u in upper]
    with caplog.at_level(logging.INFO, logger="fastserve.backends.torch"):
        b.warmup()
    assert "BYTES inputs: warm-up skipped" in caplog.text


def test_torchscript_bytes_not_utf8(model_folder: Any, tmp_path: Path) -> None:
    b = backend(model_folder("strlen").script(StrLen()).version, tmp_path, STRLEN)
    with pytest.raises(InvalidInputError, match=r"input 'text': BYTES element is not UTF-8"):
        b.infer({"text": bytes_array([b"ok", b"\xff\xfe"], (2,))}, 0)


# Half precision


@pytest.mark.parametrize("kind", ["export", "script"])
def test_bf16_model(model_folder: Any, tmp_path: Path, kind: str) -> None:
    module = MLP(torch.bfloat16)
    folder = model_folder("bf16")
    if kind == "export":
        folder.export(module, (torch.randn(2, 4, dtype=torch.bfloat16),))
    else:
        folder.script(module)
    b = backend(folder.version, tmp_path, BATCHED + """
[[inputs]]
name = "x"
datatype = "BF16"
shape = [-1, 4]
[[outputs]]
name = "y"
datatype = "BF16"
shape = [-1, 3]
""")
    x = rand(3, 4)
    bits = float_to_bf16(x)  # BF16 travels as uint16 bit patterns
    out = b.infer({"x": bits}, 0)
    assert out["y"].dtype == np.uint16 and out["y"].shape == (3, 3)
    want = local(module, torch.from_numpy(bits).view(torch.bfloat16))
    np.testing.assert_array_equal(out["y"], want.view(torch.uint16).numpy())
    np.testing.assert_allclose(bf16_to_float(out["y"]), want.float().numpy(), rtol=1e-2)
    b.warmup()


@pytest.mark.parametrize("kind", ["export", "script"])
def test_fp16_model(model_folder: Any, tmp_path: Path, kind: str) -> None:
    module = MLP(torch.float16)
    folder = model_folder("fp16")
    if kind == "export":
        folder.export(module, (torch.randn(2, 4, dtype=torch.float16),))
    else:
        folder.script(module)
    b = backend(folder.version, tmp_path, BATCHED + """
[[inputs]]
name = "x"
datatype = "FP16"
shape = [-1, 4]
""")
    x = rand(5, 4).astype(np.float16)
    out = b.infer({"x": x}, 0)
    assert out["output__0"].dtype == np.float16
    np.testing.assert_allclose(out["output__0"], local(module, torch.from_numpy(x)).numpy(),
                               rtol=1e-3)
    if kind == "export":
        assert b.outputs[0].datatype is D.FP16
    b.warmup()


# Loading errors


def test_missing_model_file(model_folder: Any, tmp_path: Path) -> None:
    version = model_folder("empty").version
    with pytest.raises(ConfigError, match=r"no model file in .*expected model.pt2"):
        backend(version, tmp_path)


@pytest.mark.parametrize(("filename", "message"), [
    ("model.pt2", r"cannot load model.pt2 with torch.export.load"),
    ("model.pt", r"cannot load model.pt with torch.jit.load"),
])
def test_corrupt_model_file(model_folder: Any, tmp_path: Path, filename: str,
                            message: str) -> None:
    version = model_folder("junk").version
    (version / filename).write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(ConfigError, match=message):
        backend(version, tmp_path)


def test_pt2_preferred_over_pt(model_folder: Any, tmp_path: Path) -> None:
    folder = model_folder("both").export(MLP(), (torch.randn(2, 4),)).script(DictOut())
    assert backend(folder.version, tmp_path, BATCHED).platform == "pytorch_export"


@pytest.mark.skipif(CUDA, reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda(mlp_pt2: Path, tmp_path: Path, device: str) -> None:
    with pytest.raises(ConfigError, match=r"CUDA is not available"):
        backend(mlp_pt2, tmp_path, f'device = "{device}"')


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")


def test_loader_entry_point(mlp_pt2: Path, tmp_path: Path) -> None:
    b = load(mlp_pt2, config(tmp_path, BATCHED), {"0": "a"})
    assert isinstance(b, TorchBackend) and b.labels == {"0": "a"}
    b.close()
    assert b.model is None


# Running


def test_warmup_runs_one_row_per_instance(mlp_pt2: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED + "instances = 2\n" + MLP_IO)
    shapes: list[list[tuple[int, ...]]] = []
    model = b._forward
    b._forward = lambda *args: shapes.append([tuple(a.shape) for a in args]) or model(*args)
    b.warmup()
    assert shapes == [[(1, 4)], [(1, 4)]]


def test_warmup_builds_every_datatype(model_folder: Any, tmp_path: Path) -> None:
    folder = model_folder("two").export(TwoInTwoOut(), (torch.randn(2, 4), torch.ones(2, 4,
                                                        dtype=torch.int64)))
    b = backend(folder.version, tmp_path, BATCHED)
    seen: list[Any] = []
    model = b._forward
    b._forward = lambda *args: seen.append([a.dtype for a in args]) or model(*args)
    b.warmup()
    assert seen == [[torch.float32, torch.int64]]


def test_infer_runs_under_inference_mode(mlp_pt2: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED)
    modes: list[bool] = []
    model = b._forward
    b._forward = lambda *a: modes.append(torch.is_inference_mode_enabled()) or model(*a)
    b.infer({"input__0": rand(1, 4)}, 0)
    assert modes == [True] and not torch.is_inference_mode_enabled()


def test_an_instance_thread_holds_inference_mode_once(mlp_pt2: Path, tmp_path: Path) -> None:
    """Inside instance_scope (an instance thread's life) infer enters no guard of its own,
    still runs under inference mode, answers as the model does; outside, it is as before."""
    b = backend(mlp_pt2, tmp_path, BATCHED)
    x = rand(3, 4)
    modes: list[bool] = []
    got: list[Any] = []
    model = b._forward
    b._forward = lambda *a: modes.append(torch.is_inference_mode_enabled()) or model(*a)

    def instance_thread() -> None:
        with b.instance_scope():
            got.extend(b.infer({"input__0": x}, 0).values())
            got.extend(b.infer({"input__0": x}, 0).values())

    t = threading.Thread(target=instance_thread)
    t.start()
    t.join()
    got.extend(b.infer({"input__0": x}, 0).values())  # this thread: the guard per run
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for y in got:
        np.testing.assert_allclose(y, want, rtol=1e-6)
    assert len(got) == 3 and modes == [True, True, True]
    assert not torch.is_inference_mode_enabled()


def test_cpu_inputs_are_not_copied(mlp_pt2: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED)
    body = bytearray(rand(2, 4).tobytes())
    x = array_from_buffer("input__0", memoryview(body), D.FP32, (2, 4))
    pointers: list[int] = []
    model = b._forward
    b._forward = lambda t: pointers.append(t.data_ptr()) or model(t)
    b.infer({"input__0": x}, 0)
    assert pointers == [x.ctypes.data]
    assert np.shares_memory(to_tensor(x).numpy(), x)


def test_read_only_request_body(mlp_pt2: Path, tmp_path: Path) -> None:
    # bytes bodies give read-only arrays; serving them must not warn (warnings are errors here)
    data = rand(2, 4)
    x = array_from_buffer("input__0", memoryview(data.tobytes()), D.FP32, (2, 4))
    assert not x.flags.writeable
    out = backend(mlp_pt2, tmp_path, BATCHED).infer({"input__0": x}, 0)
    np.testing.assert_allclose(out["output__0"], local(MLP(), torch.from_numpy(data)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_instances_run_concurrently(mlp_pt2: Path, tmp_path: Path) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED + "instances = 2")
    xs = [rand(4, 4, seed=s) for s in range(8)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = b.infer({"input__0": xs[i]}, i % 2)["output__0"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], local(MLP(), torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_to_numpy() -> None:
    t = torch.tensor([1.0, -2.0], dtype=torch.bfloat16)
    assert to_numpy(t).dtype == np.uint16
    np.testing.assert_array_equal(bf16_to_float(to_numpy(t)), [1.0, -2.0])
    grad = torch.ones(2, requires_grad=True) * 2
    np.testing.assert_array_equal(to_numpy(grad), [2.0, 2.0])


# CUDA (tier 4)


@pytest.fixture(scope="module")
def cuda_pair(mlp_pt2: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[TorchBackend, TorchBackend]:
    tmp = tmp_path_factory.mktemp("cuda_cfg")
    gpu_backend = backend(mlp_pt2, tmp, BATCHED + 'instances = 2\ndevice = "cuda"')
    cpu_backend = backend(mlp_pt2, tmp, BATCHED + 'device = "cpu"')
    return gpu_backend, cpu_backend


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_results_equal_cpu_results(cuda_pair: Any) -> None:
    gpu_backend, cpu_backend = cuda_pair
    assert gpu_backend.cuda and gpu_backend.device == "cuda"
    for rows in (1, 7, 64):
        x = rand(rows, 4, seed=rows)
        got = gpu_backend.infer({"input__0": x}, 0)["output__0"]
        want = cpu_backend.infer({"input__0": x}, 0)["output__0"]
        assert isinstance(got, np.ndarray) and got.shape == (rows, 3)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_pinned_staging_reused_across_batches(cuda_pair: Any) -> None:
    gpu_backend, cpu_backend = cuda_pair
    staging = gpu_backend._staging[0]
    first = gpu_backend.infer({"input__0": rand(8, 4, seed=1)}, 0)["output__0"]
    buffers = {k: (v.data_ptr(), v.numel()) for k, v in staging.items()}
    assert buffers and all(v.is_pinned() for v in staging.values())
    x = rand(5, 4, seed=2)  # smaller: the same buffers
    second = gpu_backend.infer({"input__0": x}, 0)["output__0"]
    assert {k: (v.data_ptr(), v.numel()) for k, v in staging.items()} == buffers
    # outputs are copied out of the staging buffers: the next batch cannot overwrite them
    np.testing.assert_allclose(first, cpu_backend.infer({"input__0": rand(8, 4, seed=1)},
                                                        0)["output__0"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(second, cpu_backend.infer({"input__0": x}, 0)["output__0"],
                               rtol=1e-3, atol=1e-4)
    gpu_backend.infer({"input__0": rand(100, 4)}, 0)  # larger: grown once, then reused
    grown = {k: v.data_ptr() for k, v in staging.items()}
    gpu_backend.infer({"input__0": rand(90, 4)}, 0)
    assert {k: v.data_ptr() for k, v in staging.items()} == grown
    assert staging["in0"].numel() >= 400


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_per_instance_streams(cuda_pair: Any) -> None:
    gpu_backend, _ = cuda_pair
    streams = gpu_backend._streams
    assert len(streams) == 2 and streams[0] != streams[1]
    assert all(s != torch.cuda.default_stream() for s in streams)
    seen: list[Any] = []
    model = gpu_backend._forward
    gpu_backend._forward = lambda *a: seen.append(torch.cuda.current_stream()) or model(*a)
    try:
        gpu_backend.infer({"input__0": rand(2, 4)}, 0)
        gpu_backend.infer({"input__0": rand(2, 4)}, 1)
    finally:
        gpu_backend._forward = model
    assert seen == [streams[0], streams[1]]
    assert gpu_backend._staging[0] is not gpu_backend._staging[1]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_two_inputs_two_outputs(two_io_pt2: Path, tmp_path: Path) -> None:
    gpu_backend = backend(two_io_pt2, tmp_path, BATCHED + 'device = "cuda"')
    a, i = rand(3, 4), np.arange(12, dtype=np.int64).reshape(3, 4)
    out = gpu_backend.infer({"input__0": a, "input__1": i}, 0)
    want = local(TwoInTwoOut(), torch.from_numpy(a), torch.from_numpy(i))
    np.testing.assert_allclose(out["output__0"], want[0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(out["output__1"], want[1].numpy())


class ReturnsParameter(nn.Module):
    """Answers with a parameter (requires_grad even under inference mode) plus nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.arange(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w if bool(x.sum() > 0) else x.sum(dim=1)


def test_short_path_hands_back_what_the_general_path_would(model_folder: Any,
                                                            tmp_path: Path) -> None:
    folder = model_folder("p").script(ReturnsParameter())
    b = backend(folder.version, tmp_path, MLP_IO.replace('name = "y"\nshape = [-1, 3]',
                                                         'name = "y"\nshape = [-1]'))
    assert b._plain_inputs == ("x",) and b._single_output == "y"
    out = b.infer({"x": np.ones((1, 4), np.float32)}, 0)["y"]  # a grad-requiring answer
    np.testing.assert_array_equal(out, [0.0, 1.0, 2.0, 3.0])
    out = b.infer({"x": -np.ones((2, 4), np.float32)}, 0)["y"]
    np.testing.assert_array_equal(out, [-4.0, -4.0])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_pageable_switch_gives_the_same_answers(mlp_pt2: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import fastserve.backends.torch as torch_backend

    monkeypatch.setattr(torch_backend, "PINNED", False)
    gpu_backend = backend(mlp_pt2, tmp_path, BATCHED + 'device = "cuda"')
    cpu_backend = backend(mlp_pt2, tmp_path, BATCHED + 'device = "cpu"')
    x = rand(6, 4, seed=3)
    np.testing.assert_allclose(gpu_backend.infer({"input__0": x}, 0)["output__0"],
                               cpu_backend.infer({"input__0": x}, 0)["output__0"],
                               rtol=1e-3, atol=1e-4)
    assert gpu_backend._staging[0] == {}  # nothing staged, nothing pinned


def test_out_of_memory_at_warmup_names_the_fix(mlp_pt2: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend(mlp_pt2, tmp_path, BATCHED)

    def oom(*_: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 TiB\nmore")

    monkeypatch.setattr(b, "infer", oom)
    with pytest.raises(ConfigError, match=r"warm-up batch does not fit in cpu's memory \(CUDA "
                       r"out of memory\. Tried to allocate 2\.00 TiB\); .*smaller max_batch_size"):
        b.warmup()
