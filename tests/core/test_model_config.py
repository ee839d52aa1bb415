"""config.toml (CONTRACT §2): every key, its default, and every way to get it wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastserve.core.model_config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageConfig,
    ModelConfig,
    parse_model_config,
)
from fastserve.errors import ConfigError
from fastserve.types import DataType, TensorSpec


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text, encoding="utf-8")
    return folder


def parse(tmp_path: Path, text: str) -> ModelConfig:
    return parse_model_config(write(tmp_path / "mlp", text))


# Defaults


def test_no_config_file_gives_every_default(tmp_path: Path) -> None:
    folder = tmp_path / "resnet"
    folder.mkdir()
    config = parse_model_config(folder)
    assert config == ModelConfig(name="resnet")
    assert config.max_batch_size == 0 and not config.batched
    assert config.batch_delay_ms == 1.0
    assert config.instances == 1
    assert config.device == "auto"
    assert config.handler == "tensor"
    assert config.explainer == "integrated_gradients"
    assert config.warmup is True
    assert config.max_queue_size == 1024
    assert config.timeout_ms == 0.0
    assert config.image == ImageConfig(256, 224, "RGB", IMAGENET_MEAN, IMAGENET_STD)
    assert config.inputs is None and config.outputs is None


def test_empty_config_file_is_all_defaults(tmp_path: Path) -> None:
    assert parse(tmp_path, "") == ModelConfig(name="mlp")


def test_every_key_set(tmp_path: Path) -> None:
    config = parse(tmp_path, """
name = "other"
max_batch_size = 8
batch_delay_ms = 2.5
instances = 3
device = "cuda:1"
handler = "image_classifier"
explainer = "saliency"
warmup = false
max_queue_size = 16
timeout_ms = 250

[image]
resize = 0
crop = 32
mode = "L"
mean = [0.1]
std = [2]

[[inputs]]
name = "pixels"
datatype = "uint8"
shape = [-1, 1, 32, 32]

[[outputs]]
name = "logits"
datatype = "FP16"
shape = [-1, 10]
""")
    assert config.name == "other"
    assert config.max_batch_size == 8 and config.batched
    assert config.batch_delay_ms == 2.5
    assert config.instances == 3
    assert config.device == "cuda:1"
    assert config.handler == "image_classifier"
    assert config.explainer == "saliency"
    assert config.warmup is False
    assert config.max_queue_size == 16
    assert config.timeout_ms == 250.0 and isinstance(config.timeout_ms, float)
    assert config.image == ImageConfig(0, 32, "L", (0.1,), (2.0,))
    assert config.inputs == (TensorSpec("pixels", DataType.UINT8, (-1, 1, 32, 32)),)
    assert config.outputs == (TensorSpec("logits", DataType.FP16, (-1, 10)),)


def test_integer_delay_becomes_float(tmp_path: Path) -> None:
    config = parse(tmp_path, "batch_delay_ms = 3")
    assert config.batch_delay_ms == 3.0 and isinstance(config.batch_delay_ms, float)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_devices(tmp_path: Path, device: str) -> None:
    assert parse(tmp_path, f'device = "{device}"').device == device


@pytest.mark.parametrize("handler", ["tensor", "image_classifier", "handler.py"])
def test_valid_handlers(tmp_path: Path, handler: str) -> None:
    assert parse(tmp_path, f'handler = "{handler}"').handler == handler


@pytest.mark.parametrize("explainer", ["integrated_gradients", "saliency", "input_x_gradient"])
def test_valid_explainers(tmp_path: Path, explainer: str) -> None:
    assert parse(tmp_path, f'explainer = "{explainer}"').explainer == explainer


def test_tensor_entries_default_names_datatype_and_shape(tmp_path: Path) -> None:
    config = parse(tmp_path, """
[[inputs]]
[[inputs]]
datatype = "INT64"
[[outputs]]
shape = [10]
""")
    assert config.inputs == (
        TensorSpec("input__0", DataType.FP32, (-1,)),
        TensorSpec("input__1", DataType.INT64, (-1,)),
    )
    assert config.outputs == (TensorSpec("output__0", DataType.FP32, (10,)),)


@pytest.mark.parametrize("wire", [dt.wire for dt in DataType])
def test_every_datatype_name_is_accepted(tmp_path: Path, wire: str) -> None:
    config = parse(tmp_path, f'[[inputs]]\ndatatype = "{wire}"\n')
    assert config.inputs is not None and config.inputs[0].datatype is DataType[wire]


def test_image_defaults_for_one_channel(tmp_path: Path) -> None:
    image = parse(tmp_path, '[image]\nmode = "L"').image
    assert image == ImageConfig(256, 224, "L", (0.5,), (0.5,))


def test_image_partial_section_keeps_other_defaults(tmp_path: Path) -> None:
    image = parse(tmp_path, "[image]\ncrop = 0").image
    assert image == ImageConfig(256, 0, "RGB", IMAGENET_MEAN, IMAGENET_STD)


# Batched shapes


def test_batched_shapes_start_with_minus_one(tmp_path: Path) -> None:
    config = parse(tmp_path, """
max_batch_size = 4
[[inputs]]
shape = [-1, 3, -1]
[[outputs]]
shape = [-1]
""")
    assert config.inputs is not None and config.inputs[0].shape == (-1, 3, -1)


@pytest.mark.parametrize("section", ["inputs", "outputs"])
@pytest.mark.parametrize("shape", ["[4, 3]", "[]", "[3, -1]"])
def test_batched_shape_without_leading_minus_one(tmp_path: Path, section: str,
                                                 shape: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[\[{section}\]\].*start with -1"):
        parse(tmp_path, f"max_batch_size = 2\n[[{section}]]\nname = 't'\nshape = {shape}\n")


def test_unbatched_shapes_may_be_static(tmp_path: Path) -> None:
    config = parse(tmp_path, "[[inputs]]\nshape = [4, 3]\n")
    assert config.inputs is not None and config.inputs[0].shape == (4, 3)


# Invalid values: (case, TOML, regex the message must match — it names the key)

INVALID = [
    ("name-empty", 'name = ""', r"'name'"),
    ("name-slash", 'name = "a/b"', r"'name'"),
    ("name-int", "name = 3", r"'name' must be str"),
    ("max_batch_size-negative", "max_batch_size = -1", r"'max_batch_size' must be >= 0"),
    ("max_batch_size-float", "max_batch_size = 2.0", r"'max_batch_size' must be int"),
    ("max_batch_size-bool", "max_batch_size = true", r"'max_batch_size' must be int"),
    ("max_batch_size-str", 'max_batch_size = "8"', r"'max_batch_size' must be int"),
    ("batch_delay_ms-negative", "batch_delay_ms = -0.5", r"'batch_delay_ms'"),
    ("batch_delay_ms-str", 'batch_delay_ms = "1"', r"'batch_delay_ms' must be int or float"),
    ("batch_delay_ms-bool", "batch_delay_ms = false", r"'batch_delay_ms'"),
    ("instances-zero", "instances = 0", r"'instances' must be >= 1"),
    ("instances-float", "instances = 1.5", r"'instances' must be int"),
    ("device-unknown", 'device = "tpu"', r"'device' must be auto, cpu, cuda or cuda:N"),
    ("device-cuda-colon", 'device = "cuda:"', r"'device'"),
    ("device-cuda-name", 'device = "cuda:x"', r"'device'"),
    ("device-upper", 'device = "CPU"', r"'device'"),
    ("device-int", "device = 0", r"'device' must be str"),
    ("handler-unknown", 'handler = "object_detector"', r"'handler' must be one of"),
    ("explainer-unknown", 'explainer = "shap"', r"'explainer' must be one of"),
    ("warmup-int", "warmup = 1", r"'warmup' must be bool"),
    ("warmup-str", 'warmup = "yes"', r"'warmup' must be bool"),
    ("max_queue_size-zero", "max_queue_size = 0", r"'max_queue_size' must be >= 1"),
    ("max_queue_size-float", "max_queue_size = 1e3", r"'max_queue_size' must be int"),
    ("timeout_ms-negative", "timeout_ms = -1", r"'timeout_ms'"),
    ("timeout_ms-str", 'timeout_ms = "5s"', r"'timeout_ms' must be int or float"),
    ("image-not-table", "image = 3", r"'image' must be dict"),
    ("image-resize-negative", "[image]\nresize = -1", r"resize"),
    ("image-crop-float", "[image]\ncrop = 2.5", r"'crop' must be int"),
    ("image-mode", '[image]\nmode = "RGBA"', r"\[image\] mode"),
    ("image-mean-length", "[image]\nmean = [0.5]", r"\[image\] mean needs 3 numbers"),
    ("image-std-length-L", '[image]\nmode = "L"\nstd = [1, 1, 1]', r"\[image\] std needs 1"),
    ("image-mean-str", '[image]\nmean = ["a", "b", "c"]', r"\[image\] mean"),
    ("image-mean-bool", "[image]\nmean = [true, false, true]", r"\[image\] mean"),
    ("image-std-zero", "[image]\nstd = [0.2, 0, 0.2]", r"\[image\] std"),
    ("image-std-not-list", "[image]\nstd = 0.5", r"'std' must be list"),
    ("inputs-not-array", "inputs = 3", r"\[\[inputs\]\]"),
    ("inputs-empty", "inputs = []", r"\[\[inputs\]\] must be a non-empty array"),
    ("inputs-entry-not-table", "inputs = [1]", r"\[\[inputs\]\] entry 0 must be a table"),
    ("inputs-name-int", "[[inputs]]\nname = 1", r"'name' must be str"),
    ("inputs-datatype", '[[inputs]]\nname = "x"\ndatatype = "FLOAT"',
     r"\[\[inputs\]\] 'x': unknown datatype 'FLOAT'"),
    ("inputs-datatype-int", "[[inputs]]\ndatatype = 1", r"'datatype' must be str"),
    ("inputs-shape-not-list", "[[inputs]]\nshape = 3", r"'shape' must be list"),
    ("inputs-shape-minus-two", '[[inputs]]\nname = "x"\nshape = [-2]',
     r"\[\[inputs\]\] 'x': shape must be a list of sizes"),
    ("inputs-shape-float", "[[inputs]]\nshape = [1.0]", r"shape must be a list of sizes"),
    ("inputs-shape-bool", "[[inputs]]\nshape = [true]", r"shape must be a list of sizes"),
    ("inputs-duplicate", '[[inputs]]\nname = "x"\n[[inputs]]\nname = "x"',
     r"\[\[inputs\]\] names must be unique"),
    ("inputs-unknown-key", '[[inputs]]\nname = "x"\ndtype = "FP16"',
     r"unknown key\(s\) in \[\[inputs\]\] entry 0: dtype"),
    ("outputs-datatype", '[[outputs]]\nname = "y"\ndatatype = "FP8"',
     r"\[\[outputs\]\] 'y': unknown datatype"),
    ("outputs-duplicate", '[[outputs]]\nname = "y"\n[[outputs]]\nname = "y"',
     r"\[\[outputs\]\] names must be unique"),
    ("outputs-unknown-key", "[[outputs]]\ndims = [1]", r"unknown key\(s\) in \[\[outputs\]\]"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_value(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse(tmp_path, text)
    assert info.value.message.startswith("config.toml")


# Unknown keys and bad files


@pytest.mark.parametrize("key", ["max_batch", "batch_size", "Name", "dynamic_batching"])
def test_unknown_top_level_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) {re.escape(key)}; known keys are"):
        parse(tmp_path, f"{key} = 1")


def test_unknown_keys_are_all_listed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) a, b;"):
        parse(tmp_path, "b = 1\na = 2")


def test_unknown_image_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[image\]: size"):
        parse(tmp_path, "[image]\nsize = 3")


@pytest.mark.parametrize("text", [
    "max_batch_size = ",
    "max_batch_size = 8\nmax_batch_size = 9",
    "[image\nresize = 1",
    "name = 'unterminated",
    "inputs = [[",
])
def test_bad_toml(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"config.toml is not valid TOML"):
        parse(tmp_path, text)


def test_config_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.toml").write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        parse_model_config(folder)


def test_config_unreadable_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "config.toml").mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(ConfigError, match=r"config.toml cannot be read"):
        parse_model_config(folder)
