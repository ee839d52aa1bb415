"""backends/custom.py: TorchServe-style handler.py models, loaded and run in-process."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fastserve.backends.custom import CustomBackend
from fastserve.core.handlers import CustomRunner
from fastserve.core.model_config import parse_model_config
from fastserve.core.payloads import Payload
from fastserve.errors import (
    BackendError,
    ConfigError,
    InvalidInputError,
    UnsupportedError,
)

STAGES = '''
import torch

class Doubler:
    def initialize(self, context):
        self.context = context
        self.seen = []

    def preprocess(self, data):
        self.seen.append(data)
        return torch.tensor([row.get("body", row.get("data")) for row in data], dtype=torch.float32)

    def inference(self, x):
        return x * 2

    def postprocess(self, y):
        return [row for row in y]  # tensors: the backend turns them into lists
'''


class Twice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1


def write(root: Path, code: str, config: str = "max_batch_size = 4\n", name: str = "h",
          files: dict[str, str] | None = None) -> Path:
    folder = root / name
    (folder / "1").mkdir(parents=True)
    (folder / "handler.py").write_text(textwrap.dedent(code))
    (folder / "config.toml").write_text('handler = "handler.py"\n' + config)
    (folder / "labels.json").write_text('{"0": "zero", "1": ["n1", "one"]}')
    for filename, text in (files or {}).items():
        (folder / filename).write_text(textwrap.dedent(text))
    return folder


def backend(folder: Path) -> CustomBackend:
    from fastserve.core.repository import read_labels

    return CustomBackend(folder / "1", parse_model_config(folder), read_labels(folder))


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., CustomBackend]:
    return lambda code, **kw: backend(write(tmp_path, code, **kw))


def test_custom_stages_one_answer_per_request(make: Any) -> None:
    b = make(STAGES)
    answers = b.run_batch([Payload([1.0, 2.0]), Payload([3.0, 4.0], name="data")], 0)
    assert answers == [[2.0, 4.0], [6.0, 8.0]]
    handler, _ = b._workers[0]
    assert handler.seen == [[{"body": [1.0, 2.0]}, {"data": [3.0, 4.0]}]]


def test_custom_context_carries_folder_config_device_labels(make: Any, tmp_path: Path) -> None:
    b = make(STAGES, config="max_batch_size = 4\ninstances = 2\n")
    (h0, c0), (h1, c1) = b._workers
    assert h0 is not h1 and c0 is not c1  # one handler object per instance
    ctx = h0.context
    assert ctx.model_name == "h" and ctx.model_version == "1"
    assert Path(ctx.model_dir) == tmp_path / "h" / "1"
    assert ctx.model_folder == tmp_path / "h"
    assert ctx.config.max_batch_size == 4 and ctx.device == "cpu"
    assert ctx.labels == {"0": "zero", "1": "one"}
    assert ctx.system_properties["model_dir"] == ctx.model_dir
    assert ctx.system_properties["batch_size"] == 4 and ctx.system_properties["gpu_id"] is None
    assert ctx.manifest["model"]["modelName"] == "h"


def test_custom_query_params_and_headers_reach_the_handler(make: Any) -> None:
    b = make('''
        class Echo:
            def initialize(self, context):
                self.context = context
            def handle(self, data, context):
                return [dict(row, agent=context.get_request_header(i, "User-Agent"))
                        for i, row in enumerate(data)]
    ''')
    payload = Payload(b"raw", None, "body", {"target": "3"}, {b"user-agent": b"curl/8"})
    [answer] = b.run_batch([payload], 0)
    assert answer == {"target": "3", "body": bytearray(b"raw"), "agent": "curl/8"}


def test_custom_function_handler_is_initialised_with_none(make: Any) -> None:
    b = make('''
        calls = []

        def handle(data, context):
            calls.append(data)
            if data is None:
                return None
            return [len(row["body"]) for row in data]
    ''')
    assert b.run_batch([Payload(b"abc"), Payload(b"de")], 0) == [3, 2]
    assert b.module.calls[0] is None


def test_custom_wrong_answer_count_fails_every_request_naming_the_handler(make: Any) -> None:
    b = make('''
        class Greedy:
            def preprocess(self, data): return data
            def inference(self, x): return x
            def postprocess(self, y): return ["one answer"]
    ''')
    results = b.run_batch([Payload(1), Payload(2), Payload(3)], 0)
    assert len(results) == 3 and all(r is results[0] for r in results)
    assert isinstance(results[0], BackendError)
    assert "handler.py of model 'h' (Greedy) returned 1 answers for a batch of 3" in str(
        results[0])
    not_a_list = make('''
        def handle(data, context):
            return None if data is None else {"a": 1}
    ''', name="h2")
    [error] = not_a_list.run_batch([Payload(1)], 0)
    assert "a dict, not a list" in str(error)


def test_custom_exceptions_name_the_stage_and_map_error_code(make: Any) -> None:
    b = make('''
        class PredictionException(Exception):
            def __init__(self, message, error_code=500):
                super().__init__(message)
                self.error_code = error_code

        class Picky:
            def preprocess(self, data):
                if data[0]["body"] == "bad":
                    raise PredictionException("bad input", 400)
                if data[0]["body"] == "oops":
                    raise ValueError("oops")
                return data
            def inference(self, x): return x
            def postprocess(self, y): return [1] * len(y)
    ''')
    with pytest.raises(InvalidInputError, match="raised PredictionException in preprocess"):
        b.run_batch([Payload("bad")], 0)
    with pytest.raises(BackendError, match=r"\(Picky\) raised ValueError in preprocess: oops"):
        b.run_batch([Payload("oops")], 0)


def test_custom_picks_the_most_derived_class_and_sibling_modules(make: Any) -> None:
    b = make('''
        from helper import SCALE

        class Base:
            def preprocess(self, data): return [row["body"] for row in data]
            def inference(self, x): return x
            def postprocess(self, y): return [v * SCALE for v in y]

        class Derived(Base):
            def inference(self, x): return [v + 1 for v in x]
    ''', files={"helper.py": "SCALE = 10\n"})
    assert b.entry.__name__ == "Derived"
    assert b.run_batch([Payload(1), Payload(2)], 0) == [20, 30]


@pytest.mark.parametrize("code,needle", [
    ("class A:\n    def handle(self, d, c): ...\nclass B:\n    def handle(self, d, c): ...\n",
     "several handler classes"),
    ("x = 1\n", "defines no handler"),
    ("import not_a_module_anywhere\n", "failed to import"),
])
def test_custom_bad_handler_files_fail_the_model(make: Any, code: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make(code)


def test_custom_missing_handler_file_and_failing_initialize(tmp_path: Path) -> None:
    folder = write(tmp_path, STAGES)
    (folder / "handler.py").unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        backend(folder)
    folder = write(tmp_path, '''
        class Fails:
            def initialize(self, context): raise RuntimeError("no weights")
            def handle(self, data, context): return data
    ''', name="g")
    with pytest.raises(BackendError, match="failed to initialize: RuntimeError: no weights"):
        backend(folder)


def test_custom_base_handler_loads_the_version_model(tmp_path: Path,
                                                     model_folder: Any) -> None:
    for kind in ("export", "script"):
        folder = write(tmp_path, '''
            from fastserve.backends.custom import BaseHandler

            class Plain(BaseHandler):
                pass
        ''', name=f"base_{kind}")
        saved = model_folder(f"m_{kind}")
        if kind == "export":
            saved.export(Twice(), (torch.zeros(2, 3),))
        else:
            saved.script(Twice())
        for file in saved.version.iterdir():
            (folder / "1" / file.name).write_bytes(file.read_bytes())
        b = backend(folder)
        answers = b.run_batch([Payload([1, 2, 3], name="data"),
                               Payload([0, 0, 1])], 0)
        assert np.allclose(answers, [[3, 5, 7], [1, 1, 3]])


def test_custom_explain_handle_and_its_absence(make: Any) -> None:
    b = make('''
        class Explained:
            def preprocess(self, data): return [row["body"] for row in data]
            def inference(self, x): return x
            def postprocess(self, y): return y
            def explain_handle(self, x, raw):
                return [[v * 0.5 for v in x[0]] + [raw[0].get("target")]]
    ''')
    assert b.explain_payload(Payload([2, 4]), "saliency", 7) == [1.0, 2.0, 7]
    plain = make(STAGES, name="plain")
    with pytest.raises(UnsupportedError, match="explain_handle"):
        plain.explain_payload(Payload([1.0]), "saliency")


def test_custom_v2_tensors_are_refused(make: Any) -> None:
    with pytest.raises(UnsupportedError, match="/predictions/h"):
        make(STAGES).infer({"x": np.zeros(1)}, 0)


def test_custom_runner_types_bodies_like_torchserve(make: Any) -> None:
    b = make('''
        def handle(data, context):
            if data is None:
                return None
            return [type(row["body"]).__name__ for row in data]
    ''')
    runner = CustomRunner(b)
    payloads = [Payload(b'{"a": 1}', "application/json"), Payload(b"\x89PNG", "image/png"),
                Payload(b"hello", "text/plain"), Payload(b"[1, ", "application/json"),
                Payload({"already": "decoded"})]
    results = runner.run_batch(payloads, 0)
    assert results[:3] == ["dict", "bytearray", "str"] and results[4] == "dict"
    assert isinstance(results[3], InvalidInputError)  # only the bad body fails
