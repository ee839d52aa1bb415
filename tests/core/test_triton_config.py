"""Triton's config.pbtxt (CONTRACT section 2, Triton model repositories): each field it
maps, what it refuses, and what it logs once as ignored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastserve.core.model_config import ModelConfig, VersionPolicy, parse_model_config
from fastserve.core.scan import scan_model
from fastserve.errors import ConfigError
from fastserve.types import DataType, TensorSpec

D = DataType

FULL = """
name: "linear"
platform: "pytorch_libtorch"
max_batch_size: 8
default_model_filename: "traced.pt"
input [
  { name: "INPUT__1" data_type: TYPE_INT64 dims: [ 2 ] },
  { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4, -1 ] }
]
output [ { name: "OUTPUT__0" data_type: TYPE_STRING dims: [ 1 ] } ]
dynamic_batching {
  max_queue_delay_microseconds: 2500
  default_queue_policy { max_queue_size: 64 default_timeout_microseconds: 30000 }
}
instance_group [ { count: 2 kind: KIND_CPU }, { count: 1 kind: KIND_CPU } ]
version_policy: { latest { num_versions: 2 } }
"""


def write(folder: Path, text: str, versions: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    for v in versions:
        (folder / v).mkdir()
    return folder


def test_every_mapped_field(tmp_path: Path) -> None:
    config = parse_model_config(write(tmp_path / "linear", FULL))
    assert config == ModelConfig(
        name="linear", max_batch_size=8, batch_delay_ms=2.5, instances=3, device="cpu",
        max_queue_size=64, timeout_ms=30.0,
        # bound to forward by the __N index, whatever order the file lists them in
        inputs=(TensorSpec("INPUT__0", D.FP32, (-1, 4, -1)),
                TensorSpec("INPUT__1", D.INT64, (-1, 2))),
        outputs=(TensorSpec("OUTPUT__0", D.BYTES, (-1, 1)),),
        model_filename="traced.pt", version_policy=VersionPolicy("latest", (2,)),
        source="config.pbtxt")


def test_tritons_defaults(tmp_path: Path) -> None:
    """backend: "pytorch", no batching, no instance group: model.pt, latest version only."""
    text = 'backend: "pytorch"\ninput [{ name: "x" data_type: TYPE_FP16 dims: [3] }]\n'
    config = parse_model_config(write(tmp_path / "m", text))
    assert (config.max_batch_size, config.batch_delay_ms, config.instances, config.device,
            config.max_queue_size, config.timeout_ms) == (0, 0.0, 1, "auto", 1024, 0.0)
    assert config.inputs == (TensorSpec("x", D.FP16, (3,)),) and config.outputs is None
    assert config.model_filename == "model.pt"
    assert config.version_policy == VersionPolicy("latest", (1,))
    assert not config.merge_requests  # Triton's default scheduler: each request alone


def test_names_without_an_index_keep_their_order(tmp_path: Path) -> None:
    text = ('platform: "pytorch_libtorch"\ninput [{ name: "b" data_type: TYPE_FP32 dims: [1] },'
            '{ name: "a__0" data_type: TYPE_FP32 dims: [1] }]\n')
    config = parse_model_config(write(tmp_path / "m", text))
    assert [s.name for s in config.inputs] == ["b", "a__0"]


@pytest.mark.parametrize(("text", "words"), [
    ('platform: "onnxruntime_onnx"', "platform 'onnxruntime_onnx'"),
    ('platform: "tensorrt_plan"', "runs PyTorch models only"),
    ('backend: "python"', "backend 'python'"),
    ("max_batch_size: 4", "names no platform"),
    ('platform: "pytorch_libtorch" sequence_batching { }', "sequence_batching"),
    ('platform: "pytorch_libtorch" ensemble_scheduling { }', "ensemble"),
    ('platform: "pytorch_libtorch" model_transaction_policy { decoupled: true }', "decoupled"),
    ('platform: "pytorch_libtorch" input [{ name: "x" data_type: TYPE_FP32 dims: [4] '
     'reshape { shape: [2, 2] } }]', "reshape"),
    ('platform: "pytorch_libtorch" name: "other"', "must match the model folder"),
    ('platform: "pytorch_libtorch" default_model_filename: "../x.pt"', "a file name"),
    ('platform: "pytorch_libtorch" version_policy { specific { } }', "lists no versions"),
    ('platform: "pytorch_libtorch" instance_group [{ kind: KIND_CPU }, { kind: KIND_GPU }]',
     "different kinds"),
    ('platform: "pytorch_libtorch" max_batch_size: 4 bogus_field: 1', "bogus_field"),
    ('platform: "pytorch_libtorch"\ninput [{ name: "x" data_type: TYPE_FP32 dims: [4 }]',
     "config.pbtxt is not a valid Triton model configuration: 2:"),
])
def test_what_fails_the_model(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_config(write(tmp_path / "m", text))
    assert words in info.value.message


def test_config_toml_wins_over_config_pbtxt(tmp_path: Path) -> None:
    folder = write(tmp_path / "m", 'platform: "onnxruntime_onnx"')
    (folder / "config.toml").write_text("max_batch_size = 2\n", encoding="utf-8")
    assert parse_model_config(folder).max_batch_size == 2


def test_other_fields_are_logged_once(tmp_path: Path, caplog) -> None:
    text = ('platform: "pytorch_libtorch"\noptimization { priority: PRIORITY_MAX }\n'
            'parameters { key: "k" value { string_value: "v" } }\n'
            'dynamic_batching { preferred_batch_size: [4] }\n'
            'input [{ name: "x" data_type: TYPE_FP32 dims: [1] optional: true }]\n')
    folder = write(tmp_path / "m", text)
    with caplog.at_level(logging.INFO, logger="fastserve.repository"):
        for _ in range(3):
            parse_model_config(folder)
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(lines) == 1, lines
    for field in ("optimization", "parameters", "dynamic_batching.preferred_batch_size",
                  "input[x].optional"):
        assert field in lines[0]


@pytest.mark.parametrize(("policy", "served"), [
    ("", ["10"]),  # Triton's default: the latest version only
    ("version_policy { latest { num_versions: 2 } }", ["3", "10"]),
    ("version_policy { all { } }", ["1", "3", "10"]),
    ("version_policy { specific { versions: [1, 3, 7] } }", ["1", "3"]),
])
def test_version_policy_chooses_the_versions_served(tmp_path: Path, policy: str,
                                                    served: list[str]) -> None:
    folder = write(tmp_path / "m", f'platform: "pytorch_libtorch"\n{policy}\n',
                   versions=("1", "3", "10"))
    entry = scan_model(folder)
    assert entry.error == "" and sorted(entry.versions, key=int) == served


@pytest.mark.parametrize(("policy", "served"), [
    ("", ["3"]),  # latest only: version 3 takes over, version 1 is unloaded
    ("version_policy { specific { versions: [1] } }", ["1"]),  # 3 is not in the list
    ("version_policy { all { } }", ["1", "3"]),
])
def test_the_poller_follows_the_version_policy(tmp_path: Path, make_model, fake_loader,
                                                run_async, wait_until, policy: str,
                                                served: list[str]) -> None:
    from fastserve.core.repository import ModelRepository
    from fastserve.core.watcher import RepositoryWatcher

    make_model(tmp_path, "t", files={"config.pbtxt": f'platform: "pytorch_libtorch"\n{policy}'})
    repo = ModelRepository(tmp_path, fake_loader())
    watcher = RepositoryWatcher(repo, 60.0)

    async def main() -> None:
        import asyncio

        repo.scan()
        repo.start_loading(asyncio.get_running_loop())
        await wait_until(lambda: not repo.loading)
        await watcher.poll()  # records what is there
        (tmp_path / "t" / "3").mkdir()
        (tmp_path / "t" / "3" / "model.pt").write_bytes(b"")
        await watcher.poll()  # sees it appear
        await watcher.poll()  # settled: acts
        entry = repo.entry("t")
        await wait_until(lambda: all(v.ready for v in entry.versions.values()))
        assert sorted(entry.versions, key=int) == served
        for v in entry.versions.values():
            if v.batcher is not None:
                v.batcher.close()

    run_async(main)
