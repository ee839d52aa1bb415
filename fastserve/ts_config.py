"""TorchServe's start line and config.properties (CONTRACT.md section 7).

``torchserve --start ARGS`` becomes ``fastserve ARGS``. What decides a setting, first
found winning: a command-line flag given explicitly, a ``TS_<KEY>`` environment variable
(only with ``enable_envvars_config=true``, as TorchServe), the config file
(``--ts-config`` or ``TS_CONFIG_FILE``), then fastserve's default. Unknown keys are
logged once and ignored; a malformed file exits non-zero naming the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from .core.archive import is_archive
from .core.ts_store import StoreSettings

ENV_FILE = "TS_CONFIG_FILE"
ENVELOPES = ("json", "kserve", "kservev2")
# Keys fastserve reads; every other key is reported once as ignored.
KNOWN = {"inference_address", "management_address", "metrics_address", "grpc_inference_port",
         "grpc_management_port", "grpc_inference_address", "grpc_management_address",
         "model_store", "load_models", "models", "model_snapshot", "default_workers_per_model",
         "job_queue_size", "max_request_size", "max_response_size", "default_response_timeout",
         "service_envelope", "enable_envvars_config", "disable_token_authorization",
         "enable_model_api", "install_py_dep_per_model"}
# ServerConfig fields a key sets (applied unless the flag was given on the command line)
FLAG_OF = {"host": "host", "port": "port", "management_host": "management_host",
           "management_port": "management_port", "max_request_size": "max_request_size",
           "grpc_port": "grpc_port", "grpc_management_port": "grpc_management_port"}


class TsConfigError(Exception):
    """A config.properties (or start line) fastserve cannot run with: exit non-zero."""


@dataclass
class Entry:
    value: str
    where: str  # "config.properties line 12" or "TS_MODEL_STORE"


@dataclass
class TsStart:
    """What TorchServe's start line and config.properties make of fastserve's settings."""

    store: Path | None = None  # the model store; None: fastserve --models DIR as usual
    server: dict[str, Any] = field(default_factory=dict)  # ServerConfig fields to set
    settings: StoreSettings = field(default_factory=StoreSettings)
    notes: list[str] = field(default_factory=list)  # logged once at start


def read_properties(path: Path) -> dict[str, Entry]:
    """A Java .properties file: ``key=value`` or ``key: value``, ``#`` and ``!`` comments,
    ``\\`` continuation lines. Raises TsConfigError naming the line (stricter than Java,
    which takes any line as a key: a line without ``=`` is a typo here)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TsConfigError(f"--ts-config {path}: cannot be read: {exc}") from None
    entries: dict[str, Entry] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].strip()
        i += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line):
            if i >= len(lines):
                raise TsConfigError(f"{path} line {number}: the line ends with '\\' but no "
                                    "line follows")
            line = line[:-1] + lines[i].strip()
            i += 1
        m = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)\Z", line)
        if not m:
            raise TsConfigError(f"{path} line {number}: expected key=value, got {line!r}")
        key, value = m.group(1), m.group(2).strip()
        entries[key] = Entry(_unescape(value, path, number), f"{path} line {number}")
    return entries


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _unescape(value: str, path: Path, number: int) -> str:
    if "\\" not in value:
        return value
    try:
        return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _escape, value)
    except ValueError:
        raise TsConfigError(f"{path} line {number}: bad escape in {value!r}") from None


def _escape(m: re.Match[str]) -> str:
    code = m.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(code, code)


def _env_entries(environ: Mapping[str, str]) -> dict[str, Entry]:
    """TS_INFERENCE_ADDRESS=... -> inference_address (TorchServe's ConfigManager rule)."""
    return {name[3:].lower(): Entry(value, name) for name, value in environ.items()
            if name.startswith("TS_") and name != ENV_FILE and len(name) > 3}


def _address(entry: Entry) -> tuple[str, int]:
    url = urlparse(entry.value)
    if url.scheme != "http" or not url.hostname:
        why = ("fastserve serves plain HTTP: terminate TLS in front of it (an ingress or a "
               "sidecar)" if url.scheme == "https" else "expected http://HOST:PORT")
        raise TsConfigError(f"{entry.where}: {entry.value!r}: {why}")
    try:
        port = url.port
    except ValueError:
        port = None
    if port is None:
        raise TsConfigError(f"{entry.where}: {entry.value!r} needs a port (http://HOST:PORT)")
    return url.hostname, port


def _int(entry: Entry, low: int = 0) -> int:
    try:
        value = int(entry.value)
    except ValueError:
        raise TsConfigError(f"{entry.where}: expected an integer, got {entry.value!r}") from None
    if value < low:
        raise TsConfigError(f"{entry.where}: must be >= {low}, got {value}")
    return value


def _bool(entry: Entry) -> bool:
    if entry.value.lower() in ("true", "false"):
        return entry.value.lower() == "true"
    raise TsConfigError(f"{entry.where}: expected true or false, got {entry.value!r}")


def _models_map(entry: Entry, snapshot: bool) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        doc = orjson.loads(entry.value)
    except orjson.JSONDecodeError as exc:
        raise TsConfigError(f"{entry.where}: not valid JSON: {exc}") from None
    if snapshot and isinstance(doc, dict):
        doc = doc.get("models", {})
    if not isinstance(doc, dict) or not all(
            isinstance(v, dict) and all(isinstance(s, dict) for s in v.values())
            for v in doc.values()):
        raise TsConfigError(f"{entry.where}: expected {{\"model\": {{\"version\": "
                            "{\"marName\": ..., \"minWorkers\": ...}}}")
    return doc


def split_models(values: list[str]) -> list[str]:
    """--models a.mar b.mar / a.mar,b.mar / name=a.mar: one item each."""
    return [item.strip() for value in values for item in re.split(r"[,\s]+", value)
            if item.strip()]


def resolve(model_store: str | None, models: list[str] | None, ts_config: str | None,
            explicit: set[str], environ: Mapping[str, str] | None = None) -> TsStart:
    """TorchServe's start line and config as fastserve settings. Raises TsConfigError."""
    environ = os.environ if environ is None else environ
    start = TsStart()
    config_path = ts_config or environ.get(ENV_FILE)
    keys: dict[str, Entry] = {}
    if config_path:
        keys = read_properties(Path(config_path))
    if "enable_envvars_config" in keys and _bool(keys["enable_envvars_config"]):
        keys.update(_env_entries(environ))
    unknown = sorted(set(keys) - KNOWN)
    if unknown:
        start.notes.append(f"config.properties: ignored (not used by fastserve): "
                           f"{', '.join(unknown)}")
    store = model_store or (keys["model_store"].value if "model_store" in keys else None)
    if store is not None:
        start.store = Path(store)
        if not start.store.is_dir():
            where = "--model-store" if model_store else keys["model_store"].where
            raise TsConfigError(f"{where} {store}: not a directory")
    _server_keys(keys, explicit, start)
    settings = start.settings
    if "default_workers_per_model" in keys:
        settings.workers = max(1, _int(keys["default_workers_per_model"]))
    if "job_queue_size" in keys:
        settings.job_queue_size = _int(keys["job_queue_size"], 1)
    if "default_response_timeout" in keys:
        settings.response_timeout = float(_int(keys["default_response_timeout"], 1))
    if "max_response_size" in keys:
        settings.max_response_size = _int(keys["max_response_size"], 1)
    if "install_py_dep_per_model" in keys:
        settings.install_py_dep_per_model = _bool(keys["install_py_dep_per_model"])
    if keys.get("service_envelope", Entry("", "")).value:  # empty: none (an unset label)
        envelope = keys["service_envelope"].value
        if envelope not in ENVELOPES:
            raise TsConfigError(f"{keys['service_envelope'].where}: service_envelope must be "
                                f"one of {', '.join(ENVELOPES)}, got {envelope!r}")
        settings.envelope = envelope
    for key in ("model_snapshot", "models"):  # models wins over a snapshot's list
        if key in keys:
            settings.models.update(_models_map(keys[key], key == "model_snapshot"))
    for key in ("disable_token_authorization", "enable_model_api"):
        if key in keys:
            _bool(keys[key])
    if start.store is not None:
        _selection(start, models, keys)
    return start


def _server_keys(keys: dict[str, Entry], explicit: set[str], start: TsStart) -> None:
    def put(name: str, value: Any) -> None:
        if FLAG_OF[name] not in explicit:
            start.server[name] = value

    inference = _address(keys["inference_address"]) if "inference_address" in keys else None
    if inference is not None:
        put("host", inference[0])
        put("port", inference[1])
    if "management_address" in keys:
        # The inference address too: both APIs answer on that one port, as in TorchServe.
        host, port = _address(keys["management_address"])
        put("management_host", host)
        put("management_port", port)
    if "metrics_address" in keys:
        metrics = _address(keys["metrics_address"])
        if metrics == inference:  # TorchServe fails to bind; /metrics answers there anyway
            start.notes.append("metrics_address is the inference address: /metrics answers "
                               "on the inference port")
        else:
            start.server["metrics_host"], start.server["metrics_port"] = metrics
    if "max_request_size" in keys:
        put("max_request_size", _int(keys["max_request_size"], 1))
    if "grpc_inference_port" in keys:
        put("grpc_port", _int(keys["grpc_inference_port"]))
    if "grpc_management_port" in keys:
        put("grpc_management_port", _int(keys["grpc_management_port"]))
    for key, name in (("grpc_inference_address", "grpc_host"),
                      ("grpc_management_address", "grpc_management_host")):
        if key in keys:
            value = keys[key].value
            start.server[name] = urlparse(value).hostname if "://" in value else value


def _selection(start: TsStart, models: list[str] | None, keys: dict[str, Entry]) -> None:
    """Which archives of the store load at start: --models, else load_models, else the
    models map's marName entries, else none (TorchServe's rule)."""
    assert start.store is not None
    settings = start.settings
    if models and len(models) == 1 and Path(models[0]).resolve() == start.store.resolve():
        models = None  # --models naming the store itself (fastserve's start line) selects none
    if models:
        items, where = split_models(models), "--models"
    elif "load_models" in keys:
        items, where = split_models([keys["load_models"].value]), keys["load_models"].where
    else:
        items, where = [], ""
        for name, versions in settings.models.items():
            for version in versions.values():
                mar = version.get("marName")
                if isinstance(mar, str) and mar:
                    items.append(f"{name}={mar}")
    chosen = []
    for item in items:
        name, _, file = item.rpartition("=")
        if file == "all":
            chosen.append("all")
            continue
        if "://" in file:
            raise TsConfigError(f"{where}: {file!r}: fastserve loads models from the model "
                                "store only (no downloads): copy the archive into "
                                f"{start.store}")
        path = start.store / file
        if Path(file).name != file or not (is_archive(path) or path.is_dir()):
            raise TsConfigError(f"{where}: {file!r} is not an archive or model folder in the "
                                f"model store {start.store}")
        chosen.append(file)
        if name:
            settings.names[file] = name
    settings.selection = tuple(chosen)
