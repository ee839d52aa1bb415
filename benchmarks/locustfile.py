"""Locust users for fastserve's inference APIs: one FastHttpUser class per API.

Locust is for latency distributions and scenario mixes, not for throughput ratios (one
locust process tops out far below fastserve here; use wrk for those, STYLE.md §9). The
options below, added through `events.init_command_line_parser`, pick the user classes
(`--api`) and the payload; every user makes its payload once, from numpy's seeded random
generator, and checks every answer: status 200 and the expected output shape, anything
else is reported to locust as a failure with the status and the start of the body.

    locust -f benchmarks/locustfile.py --headless -u 16 -r 16 -t 30s \\
        --host http://127.0.0.1:8080 --api v2_binary --model digits --shape 1,64

APIs (`--api`, a comma-separated list runs a mix, `all` every one):
  v2_json     POST /v2/models/{m}/infer, KServe v2 JSON (flat data)
  v2_binary   the same with the binary data extension: JSON header, then the raw
              little-endian tensor; binary outputs requested
  torchserve  POST /predictions/{m}, a JSON nested list (one instance: without the batch
              dimension for a batched model, the whole tensor for an unbatched one)
  tfserving   POST /v1/models/{m}:predict, {"instances": [one row per batch entry]}

`--shape` is always the tensor as v2 sends it, batch dimension included. With
`--image-size H,W[,C]` the input is instead `--shape` random PNG images (BYTES; not on
v2_json, whose JSON cannot carry them): raw on /predictions, {"b64": ...} on :predict.
The expected output shape comes from `--output-shape`, else from the model's v2 metadata
(its first -1 becomes the batch size, other -1s match anything). This file's requests ask
for `Accept-Encoding: identity` unless `--accept-encoding` says otherwise (locust's client
would ask for gzip, which inference clients do not).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from locust import FastHttpUser, constant, events, task

try:  # the server's own dependency; a cheaper parser keeps locust's CPU down
    import orjson

    _dumps, _loads = orjson.dumps, orjson.loads
except ImportError:  # pragma: no cover
    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

log = logging.getLogger("fastserve.locustfile")

APIS = ("v2_json", "v2_binary", "torchserve", "tfserving")

_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
          "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
_ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in _NUMPY.items()}, "BF16": 2}


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    g = parser.add_argument_group("fastserve", "what to send (benchmarks/locustfile.py)")
    g.add_argument("--api", default="v2_json",
                   help=f"user classes to run, comma-separated: {', '.join(APIS)}, or all")
    g.add_argument("--model", default="digits", help="model name")
    g.add_argument("--input-name", default="",
                   help="v2 input name (default: the model's first input, else input__0)")
    g.add_argument("--shape", default="1,64",
                   help="input shape as v2 sends it, batch dimension included (or the "
                        "number of images with --image-size)")
    g.add_argument("--datatype", default="FP32",
                   help=f"v2 datatype: {', '.join([*_NUMPY, 'BF16'])}")
    g.add_argument("--image-size", default="",
                   help="H,W or H,W,C: send random PNG images instead of a tensor")
    g.add_argument("--output-name", default="",
                   help="output to check (default: the model's first output)")
    g.add_argument("--output-shape", default="",
                   help="expected output shape, e.g. 1,10 (default: from v2 metadata)")
    g.add_argument("--batched", choices=("auto", "yes", "no"), default="auto",
                   help="model takes a batch dimension (auto: max_batch_size from "
                        "/v2/models/{m}/config); decides the /predictions body")
    g.add_argument("--seed", type=int, default=0, help="seed of the payload generator")
    g.add_argument("--accept-encoding", default="identity",
                   help="Accept-Encoding of every request")


# Plan: what every user sends and expects, worked out once per process in `init`.

@dataclass
class Plan:
    model: str
    input_name: str
    shape: tuple[int, ...]
    datatype: str
    image: tuple[int, ...] | None  # (H, W, C) when sending PNGs
    output_name: str
    output_shape: tuple[int | None, ...]  # None: any size
    classes: int | None  # the output's last dimension (image answers: top-min(5, classes))
    batched: bool
    seed: int
    accept_encoding: str


PLAN: Plan | None = None
_USER_NUMBER = itertools.count()


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").strip("[]()").split(",") if x)
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None


def _get_json(host: str, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(host.rstrip("/") + path, timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def make_plan(opts, host: str | None) -> Plan:
    model, datatype = opts.model, opts.datatype.upper()
    shape = _ints(opts.shape, "--shape")
    image = _ints(opts.image_size, "--image-size") if opts.image_size else None
    if image is not None:
        if len(image) not in (2, 3) or (len(image) == 3 and image[2] not in (1, 3, 4)):
            raise ValueError(f"--image-size is H,W or H,W,C with C 1, 3 or 4, got {image}")
        image = image if len(image) == 3 else (*image, 1)
        datatype = "BYTES"
    elif datatype not in _ITEMSIZE:
        raise ValueError(f"--datatype {datatype} is not one of {', '.join(_ITEMSIZE)}")
    if not shape or min(shape) < 1:
        raise ValueError(f"--shape needs positive sizes, got {opts.shape!r}")
    meta = _get_json(host, f"/v2/models/{model}") if host else None
    if meta is None and not (opts.output_shape and opts.output_name and opts.input_name):
        log.warning(f"no v2 metadata for {model!r} at {host}; the defaults input__0, "
              "output__0 and the expected output shape need it")
    outputs = {o["name"]: o for o in (meta or {}).get("outputs", [])}
    output_name = opts.output_name or next(iter(outputs), "output__0")
    if opts.output_shape:
        out_shape: tuple[int | None, ...] = _ints(opts.output_shape, "--output-shape")
    elif output_name in outputs:
        dims = outputs[output_name]["shape"]
        out_shape = tuple(shape[0] if i == 0 and d == -1 else (None if d == -1 else d)
                          for i, d in enumerate(dims))
    else:
        raise ValueError(f"no --output-shape and no v2 metadata output {output_name!r} for "
                         f"model {model!r} at {host}")
    if opts.batched == "auto":
        config = _get_json(host, f"/v2/models/{model}/config") if host else None
        batched = bool(config.get("max_batch_size", 1)) if config else True
    else:
        batched = opts.batched == "yes"
    inputs = (meta or {}).get("inputs", [])
    return Plan(model=model,
                input_name=opts.input_name or (inputs[0]["name"] if inputs else "input__0"),
                shape=shape, datatype=datatype, image=image, output_name=output_name,
                output_shape=out_shape, classes=out_shape[-1] if out_shape else None,
                batched=batched, seed=opts.seed, accept_encoding=opts.accept_encoding)


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    """Keep only the `--api` user classes, and work out the plan (errors end the run)."""
    global PLAN
    opts = environment.parsed_options
    if opts is None:  # used as a library; set PLAN yourself
        return
    apis = APIS if opts.api == "all" else tuple(a.strip() for a in opts.api.split(","))
    unknown = [a for a in apis if a not in APIS]
    if unknown or not apis:
        raise ValueError(f"--api {opts.api!r}: expected some of {', '.join(APIS)} or all")
    PLAN = make_plan(opts, environment.host)
    if PLAN.image is not None and "v2_json" in apis:
        raise ValueError("--image-size: PNG bytes cannot travel in v2 JSON; use v2_binary")
    if PLAN.image is None and PLAN.batched and "torchserve" in apis and PLAN.shape[0] != 1:
        raise ValueError(f"torchserve sends one instance per request: a batched model needs "
                         f"--shape 1,..., got {PLAN.shape}")
    if PLAN.image is not None and "torchserve" in apis and PLAN.shape != (1,):
        raise ValueError("torchserve sends one image per request: --shape 1")
    by_name = {cls.api: cls for cls in _USERS}
    environment.user_classes[:] = [by_name[a] for a in apis]
    log.info(f"{', '.join(apis)} on {PLAN.model}: {PLAN.datatype} {list(PLAN.shape)}"
          + (f" as {PLAN.image} PNGs" if PLAN.image else "")
          + f", expect {PLAN.output_name} {list(PLAN.output_shape)}"
          + f" ({'batched' if PLAN.batched else 'unbatched'} model)")


# Payloads

def random_tensor(rng: np.random.Generator, shape: tuple[int, ...], datatype: str
                  ) -> np.ndarray:
    """Random values of `datatype`: floats in [0, 1), integers in [0, 16), booleans.
    BF16 comes back as its uint16 bit patterns (numpy has no bfloat16)."""
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if datatype == "BF16":
        return (rng.random(shape, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    dtype = np.dtype(_NUMPY[datatype])
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, 16, size=shape, dtype=dtype)  # fits every integer type


def json_values(arr: np.ndarray, datatype: str) -> list:
    if datatype == "BF16":  # JSON takes the values; widen the bit patterns to float32
        return (arr.astype(np.uint32) << 16).view(np.float32).tolist()
    return arr.tolist()


def raw_bytes(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def random_png(rng: np.random.Generator, size: tuple[int, ...]) -> bytes:
    """A random 8-bit PNG of size (H, W, C): grey, RGB or RGBA, unfiltered rows."""
    h, w, c = size
    pixels = rng.integers(0, 256, size=(h, w * c), dtype=np.uint8)
    rows = np.concatenate([np.zeros((h, 1), np.uint8), pixels], axis=1)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    colour = {1: 0, 3: 2, 4: 6}[c]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes())) + chunk(b"IEND", b""))


# Answer checks: None when right, else what is wrong.

def _shape_problem(got, expected: tuple[int | None, ...], what: str) -> str | None:
    got = tuple(got)
    if len(got) != len(expected) or any(e is not None and g != e
                                        for g, e in zip(got, expected, strict=True)):
        return f"{what} shape {list(got)}, expected {list(expected)} (None: any)"
    return None


def _count(data) -> int:
    return np.asarray(data).size if data and isinstance(data[0], list) else len(data)


def _find_output(header: dict, name: str) -> dict:
    for out in header.get("outputs", []):
        if out.get("name") == name:
            return out
    raise KeyError(f"no output {name!r} among {[o.get('name') for o in header['outputs']]}")


def check_v2_json(plan: Plan, content: bytes, headers) -> str | None:
    out = _find_output(_loads(content), plan.output_name)
    shape = out["shape"]
    problem = _shape_problem(shape, plan.output_shape, "output")
    if problem is None and _count(out["data"]) != int(np.prod(shape)):
        problem = f"output has {_count(out['data'])} values for shape {shape}"
    return problem


def check_v2_binary(plan: Plan, content: bytes, headers) -> str | None:
    n = headers.get("Inference-Header-Content-Length")
    if n is None:
        return "no Inference-Header-Content-Length in the answer (binary outputs asked for)"
    header = _loads(content[:int(n)])
    offset = int(n)
    for out in header["outputs"]:  # binary outputs follow the header in its order
        size = (out.get("parameters") or {}).get("binary_data_size")
        if out["name"] == plan.output_name:
            if size is None:
                return f"output {plan.output_name} came as JSON, not binary"
            problem = _shape_problem(out["shape"], plan.output_shape, "output")
            if problem:
                return problem
            itemsize = _ITEMSIZE.get(out["datatype"])
            if itemsize and size != itemsize * int(np.prod(out["shape"])):
                return f"binary_data_size {size} for {out['datatype']} {out['shape']}"
        offset += size or 0
    if offset != len(content):
        return f"binary outputs end at byte {offset} of a {len(content)}-byte body"
    return None


def _top_k_problem(answer, k: int | None) -> str | None:
    if not isinstance(answer, dict) or (k is not None and len(answer) != min(5, k)):
        return f"expected a top-{min(5, k or 5)} {{label: probability}} map, got {answer!r}"
    return None


def check_torchserve(plan: Plan, content: bytes, headers) -> str | None:
    answer = _loads(content)
    if plan.image is not None:
        return _top_k_problem(answer, plan.classes)
    expected = plan.output_shape[1:] if plan.batched else plan.output_shape
    return _shape_problem(np.shape(answer), expected, "answer")


def check_tfserving(plan: Plan, content: bytes, headers) -> str | None:
    predictions = _loads(content)["predictions"]
    if plan.image is not None:
        if len(predictions) != plan.shape[0]:
            return f"{len(predictions)} predictions for {plan.shape[0]} instances"
        return next(filter(None, (_top_k_problem(a, plan.classes) for a in predictions)), None)
    return _shape_problem(np.shape(predictions), plan.output_shape, "predictions")


def build_request(api: str, plan: Plan, rng: np.random.Generator
                  ) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of the one request a user repeats."""
    headers = {"Accept-Encoding": plan.accept_encoding, "Content-Type": "application/json"}
    m = plan.model
    if plan.image is not None:
        images = [random_png(rng, plan.image) for _ in range(int(np.prod(plan.shape)))]
        if api == "v2_binary":
            raw = b"".join(struct.pack("<I", len(p)) + p for p in images)
        elif api == "torchserve":
            headers["Content-Type"] = "image/png"
            return f"/predictions/{m}", images[0], headers
        else:
            instances = [{"b64": base64.b64encode(p).decode()} for p in images]
            return f"/v1/models/{m}:predict", _dumps({"instances": instances}), headers
    else:
        arr = random_tensor(rng, plan.shape, plan.datatype)
        if api == "v2_json":
            body = {"inputs": [{"name": plan.input_name, "shape": list(plan.shape),
                                "datatype": plan.datatype,
                                "data": json_values(arr.ravel(), plan.datatype)}]}
            return f"/v2/models/{m}/infer", _dumps(body), headers
        if api == "torchserve":
            instance = arr[0] if plan.batched else arr
            return f"/predictions/{m}", _dumps(json_values(instance, plan.datatype)), headers
        if api == "tfserving":
            body = {"instances": json_values(arr, plan.datatype)}
            return f"/v1/models/{m}:predict", _dumps(body), headers
        raw = raw_bytes(arr)
    header = _dumps({"inputs": [{"name": plan.input_name, "shape": list(plan.shape),
                                 "datatype": plan.datatype,
                                 "parameters": {"binary_data_size": len(raw)}}],
                     "outputs": [{"name": plan.output_name,
                                  "parameters": {"binary_data": True}}]})
    headers.update({"Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(len(header))})
    return f"/v2/models/{m}/infer", header + raw, headers


# Users

def _snippet(content: bytes | None, n: int = 300) -> str:
    text = (content or b"")[:n].decode("utf-8", "replace")
    return text + ("..." if content and len(content) > n else "")


class _InferUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: each user sends its next request at once
    api = ""
    check: Callable[[Plan, bytes, object], str | None]

    def on_start(self) -> None:
        assert PLAN is not None, "PLAN is set by the init event"
        rng = np.random.default_rng([PLAN.seed, next(_USER_NUMBER)])
        self.path, self.body, self.headers = build_request(self.api, PLAN, rng)
        self.label = f"{self.api} {PLAN.model}"

    @task
    def infer(self) -> None:
        with self.client.post(self.path, data=self.body, headers=self.headers,
                              name=self.label, catch_response=True) as resp:
            status = resp.status_code
            if status != 200:
                error = getattr(resp, "error", None)
                resp.failure(f"HTTP {status}: {_snippet(resp.content)}" if status
                             else f"no answer: {error!r}")
                return
            try:
                problem = self.check(PLAN, resp.content, resp.headers)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                problem = f"unreadable answer ({exc}): {_snippet(resp.content)}"
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class V2JsonUser(_InferUser):
    api = "v2_json"
    check = staticmethod(check_v2_json)


class V2BinaryUser(_InferUser):
    api = "v2_binary"
    check = staticmethod(check_v2_binary)


class TorchServeUser(_InferUser):
    api = "torchserve"
    check = staticmethod(check_torchserve)


class TFServingUser(_InferUser):
    api = "tfserving"
    check = staticmethod(check_tfserving)


_USERS = (V2JsonUser, V2BinaryUser, TorchServeUser, TFServingUser)
