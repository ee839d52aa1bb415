"""The TorchServe handler runtime without a server: loading handlers from archive folders,
the request list and context a handler sees, serialization, streamed parts, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fastserve.backends import ts_handler, ts_loader, ts_messages
from fastserve.backends.ts_context import MetricsStore, RequestState, TsContext
from fastserve.core.model_config import ModelConfig
from fastserve.core.payloads import Payload
from fastserve.errors import BackendError, ConfigError
from fastserve.types import HandlerReply

JSON = "application/json"


def archive(folder: Path, handler: str, files: dict[str, str], **model: str) -> Path:
    """An extracted archive: MAR-INF/MANIFEST.json and the given files."""
    (folder / "MAR-INF").mkdir(parents=True)
    manifest = {"runtime": "python", "model": {"modelName": folder.name, "modelVersion": "1.0",
                                               "handler": handler, **model}}
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def load(folder: Path, **config: Any) -> ts_handler.TorchServeHandlerBackend:
    return ts_handler.load(folder, ModelConfig(name=folder.name, handler="torchserve",
                                               device="cpu", **config), {})


def payload(body: bytes, ctype: str = JSON, headers: dict[bytes, bytes] | None = None
            ) -> Payload:
    return Payload(bytearray(body), ctype, "body", {}, headers or {})


ECHO = '''
def handle(data, context):
    if data is None:
        return None
    out = []
    for i, row in enumerate(data):
        body = row.get("body")
        context.set_response_status(201 if context.get_request_header(i, "x-created") else 200,
                                    "", i)
        context.set_response_header(i, "X-Seen", str(i))
        out.append({"type": type(body).__name__, "id": bool(context.get_request_id(i)),
                    "n": len(data)})
    return out
'''


def test_a_batch_is_one_handle_call_with_one_dict_per_request(tmp_path) -> None:
    backend = load(archive(tmp_path / "echo", "echo.py", {"echo.py": ECHO}))
    replies = backend.run_batch([payload(b'{"a": 1}'), payload(b"text", "text/plain"),
                                 payload(b"\x00\x01", "application/octet-stream",
                                         {b"x-created": b"1"})], 0)
    assert [json.loads(r.body)["type"] for r in replies] == ["dict", "str", "bytearray"]
    assert {json.loads(r.body)["n"] for r in replies} == {3}
    assert [r.status for r in replies] == [200, 200, 201]
    assert replies[2].headers == {"X-Seen": "2"} and replies[0].content_type is None
    assert all(json.loads(r.body)["id"] for r in replies)


def test_answers_are_serialized_as_the_worker_does() -> None:
    assert ts_messages.serialize(b"\x00raw") == b"\x00raw"
    assert ts_messages.serialize("héllo") == "héllo".encode()
    value = {"a": [1, 2.5], "b": None, "c": "é", "d": float("nan")}
    assert ts_messages.serialize(value) == json.dumps(value, indent=2).encode()
    assert json.loads(ts_messages.serialize({"x": [0.1, 1e-05]})) == {"x": [0.1, 1e-05]}
    assert ts_messages.serialize({"t": torch.tensor([1.5])}) == json.dumps({"t": [1.5]},
                                                                            indent=2).encode()
    import io

    restored = torch.load(io.BytesIO(ts_messages.serialize(torch.arange(3))))
    assert torch.equal(restored, torch.arange(3))
    with pytest.raises(BackendError, match="cannot be written as JSON"):
        ts_messages.serialize({"x": object()})


def test_bodies_are_typed_as_the_worker_types_them() -> None:
    assert ts_messages.typed(b'{"a": 1}', JSON) == {"a": 1}
    assert ts_messages.typed(b"{bad", JSON) == bytearray(b"{bad")
    assert ts_messages.typed(b"hi", "text/plain") == "hi"
    assert ts_messages.typed(b"\xff", "text/plain") == bytearray(b"\xff")
    assert ts_messages.typed(b"[1]", "application/octet-stream") == bytearray(b"[1]")
    assert ts_messages.typed(b"[1]", "") == bytearray(b"[1]")


def test_streamed_parts_decode_from_torchserves_own_message() -> None:
    """What ts.protocol.otf_message_handler.create_predict_response writes, read back."""
    otf = pytest.importorskip("ts.protocol.otf_message_handler")
    context = TsContext("m", "/x", {}, 2, None, {}, MetricsStore(), None)
    context.start_batch({0: "id-0", 1: "id-1"}, [RequestState({}), RequestState({})])
    context.set_response_content_type(1, "text/plain")
    context.set_response_status(206, "Partial", 1)
    message = otf.create_predict_response([b"\x01", "two"], context.request_ids, "ok", 200,
                                          context, True)
    parts = ts_messages.parse_predict_message(bytes(message))
    assert parts == [("id-0", HandlerReply(b"\x01", 200, None, {})),
                     ("id-1", HandlerReply(b"two", 206, "text/plain", {}))]


STREAMER = '''
from ts.handler_utils.utils import send_intermediate_predict_response


def handle(data, context):
    if data is None:
        return None
    for i in range(2):
        send_intermediate_predict_response([f"p{i} "] * len(data), context.request_ids,
                                           "Intermediate", 200, context)
    return ["end"] * len(data)
'''


class Sink:
    def __init__(self) -> None:
        self.parts: list[HandlerReply] = []

    def push(self, part: HandlerReply) -> None:
        self.parts.append(part)


def test_intermediate_parts_go_to_the_stream_or_before_the_answer(tmp_path) -> None:
    pytest.importorskip("ts.handler_utils.utils")
    backend = load(archive(tmp_path / "streamer", "streamer.py", {"streamer.py": STREAMER}))
    streaming, plain = payload(b"{}"), payload(b"{}")
    streaming.stream = Sink()
    replies = backend.run_batch([streaming, plain], 0)
    assert [p.body for p in streaming.stream.parts] == [b"p0 ", b"p1 "]
    assert replies[0].body == b"end"
    assert replies[1].body == b"p0 p1 end"  # an API that cannot stream gets it all at once


def test_each_archive_imports_its_own_modules(tmp_path) -> None:
    """Two archives shipping handler.py and model.py of the same names each get theirs."""
    for name, value in (("one", 1), ("two", 2)):
        archive(tmp_path / name, "handler.py", {
            "model.py": f"VALUE = {value}\n",
            "handler.py": "import model\n\ndef handle(data, context):\n"
                          "    return None if data is None else [model.VALUE for _ in data]\n"})
    one, two = load(tmp_path / "one"), load(tmp_path / "two")
    assert one.run_batch([payload(b"{}")], 0)[0].body == b"1"
    assert two.run_batch([payload(b"{}")], 0)[0].body == b"2"


CLASSY = '''
class Doubler:
    def initialize(self, context):
        self.factor = context.model_yaml_config["handler"]["factor"]
        self.batch_size = context.system_properties["batch_size"]

    def handle(self, data, context):
        context.metrics.add_counter("Handled", len(data))
        return [{"out": row["body"] * self.factor, "bs": self.batch_size} for row in data]

    def other(self, data, context):
        return ["other" for _ in data]
'''


def test_a_handler_class_with_its_yaml_config_and_metrics(tmp_path) -> None:
    folder = archive(tmp_path / "classy", "classy.py",
                     {"classy.py": CLASSY, "model-config.yaml": "handler:\n  factor: 3\n"},
                     configFile="model-config.yaml")
    backend = load(folder, max_batch_size=4, instances=2)
    replies = backend.run_batch([payload(b"2"), payload(b"5")], 1)
    assert [json.loads(r.body) for r in replies] == [{"out": 6, "bs": 4}, {"out": 15, "bs": 4}]
    assert backend.handler_metrics() == [("Handled", "counter", "count", {}, [2.0, 0.0])]


def test_module_colon_function_names_the_entry_point(tmp_path) -> None:
    code = "def handle(d, c):\n    return None if d is None else ['handle' for _ in d]\n" \
           "def alt(d, c):\n    return None if d is None else ['alt' for _ in d]\n"
    backend = load(archive(tmp_path / "named", "named.py:alt", {"named.py": code}))
    assert backend.run_batch([payload(b"{}")], 0)[0].body == b"alt"


@pytest.mark.parametrize("handler, files, words", [
    ("two.py", {"two.py": "class A:\n    def handle(s, d, c): pass\n"
                          "class B:\n    def handle(s, d, c): pass\n"},
     "exactly one class; classes found: A, B"),
    ("nothing_here", {}, "no nothing_here.py in the archive"),
    ("broken.py", {"broken.py": "import fastserve_no_such_module\n"},
     "No module named 'fastserve_no_such_module'"),
    ("syntax.py", {"syntax.py": "def handle(:\n"}, "SyntaxError"),
    ("init.py", {"init.py": "class H:\n    def initialize(self, c):\n        raise KeyError('w')\n"
                            "    def handle(self, d, c):\n        return d\n"},
     "failed in initialize: KeyError"),
])
def test_a_handler_that_cannot_load_says_why(tmp_path, handler, files, words) -> None:
    with pytest.raises((ConfigError, BackendError), match=words.replace("(", r"\(")):
        load(archive(tmp_path / "bad", handler, files))


def test_a_request_that_makes_the_handler_raise_fails_alone(tmp_path) -> None:
    code = "def handle(d, c):\n    if d is None:\n        return None\n" \
           "    if any(r['body'] == 'boom' for r in d):\n        raise ValueError('boom')\n" \
           "    return [r['body'] for r in d]\n"
    backend = load(archive(tmp_path / "picky", "picky.py", {"picky.py": code}))
    results = backend.run_batch([payload(b"a", "text/plain"), payload(b"boom", "text/plain"),
                                 payload(b"c", "text/plain")], 0)
    assert results[0].body == b"a" and results[2].body == b"c"
    assert isinstance(results[1], BackendError) and "ValueError: boom" in str(results[1])


def test_prediction_exception_keeps_its_code(tmp_path) -> None:
    pytest.importorskip("ts.utils.util")
    code = "from ts.utils.util import PredictionException\n\ndef handle(d, c):\n" \
           "    if d is None:\n        return None\n" \
           "    raise PredictionException('too long', 413)\n"
    backend = load(archive(tmp_path / "coded", "coded.py", {"coded.py": code}))
    reply = backend.run_batch([payload(b"{}")], 0)[0]
    assert reply.status == 413 and json.loads(reply.body)["message"] == "too long"


def test_a_wrong_number_of_answers_fails_the_batch(tmp_path) -> None:
    code = "def handle(d, c):\n    return None if d is None else ['only one']\n"
    backend = load(archive(tmp_path / "short", "short.py", {"short.py": code}))
    results = backend.run_batch([payload(b"{}"), payload(b"{}")], 0)
    assert all(isinstance(r, BackendError) and "1 answers for a batch of 2" in str(r)
               for r in results)


def test_an_archive_without_a_manifest_fails(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="MANIFEST.json is missing"):
        load(tmp_path / "empty")


def test_forms_arrive_by_field_name(tmp_path) -> None:
    backend = load(archive(tmp_path / "echo", "echo.py", {"echo.py": ECHO}))
    fields = Payload([("body", "application/json", b'{"a": 1}'), ("other", "", b"x")],
                     "multipart/form-data", "", {}, {})
    form = Payload(bytearray(b"body=a+b&z=1"), "application/x-www-form-urlencoded", "body",
                   {}, {})
    replies = backend.run_batch([fields, form], 0)
    assert json.loads(replies[0].body)["type"] == "dict"
    assert json.loads(replies[1].body)["type"] == "bytearray"


def test_import_scope_restores_modules_of_the_same_name(tmp_path) -> None:
    import sys

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "json.py").write_text("SHADOW = True\n")
    before = sys.modules["json"]
    with ts_loader.import_scope(tmp_path / "a") as kept:
        import importlib

        assert importlib.import_module("json").SHADOW
    assert sys.modules["json"] is before and "json" in kept


def test_every_api_writing_an_answer_keeps_the_handlers_reply() -> None:
    """The TorchServe front-ends' answer writer (gRPC Predictions uses it too)."""
    from fastserve.frontends.torchserve import answer_response

    response = answer_response(HandlerReply(b"raw", 206, "text/csv", {"X-A": "1"}))
    assert (response.body, response.status, response.content_type) == (b"raw", 206, b"text/csv")
    assert response.headers == [(b"x-a", b"1")]


EXPLAINER = '''
def handle(data, context):
    if data is None:
        return None
    explain = context.get_request_header(0, "explain") == "True"
    return [{"explained": explain} for _ in data]
'''


def test_explanations_run_handle_with_torchserves_explain_header(tmp_path) -> None:
    """TorchServe's /explanations reaches the same handle(), its "explain" header set
    (BaseHandler then calls explain_handle)."""
    backend = load(archive(tmp_path / "explains", "explains.py", {"explains.py": EXPLAINER}))
    reply = backend.explain_payload(payload(b"{}"), "integrated_gradients")
    assert json.loads(reply.body) == {"explained": True}
    assert json.loads(backend.run_batch([payload(b"{}")], 0)[0].body) == {"explained": False}
