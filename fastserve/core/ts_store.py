"""A TorchServe model store as repository entries: which archives load, with what settings.

Each archive (``core/archive.py``) is one model version named by its manifest (or
``name=`` on the command line / ``model_name`` in the register call). Settings, the
first found winning: the register call's query parameters (applied by the repository
as overrides), the config.properties ``models`` / ``model_snapshot`` map for that name
and version, the archive's ``model-config.yaml``, then config.properties defaults
(``default_workers_per_model``, ``default_response_timeout``, ``job_queue_size``)
and TorchServe's own (batchSize 1, maxBatchDelay 100 ms, responseTimeout 120 s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .archive import (
    DEFAULT_MAX_SIZE,
    ArchiveError,
    TsArchive,
    archive_stem,
    is_archive,
    read_archive,
)
from .model_config import ModelConfig

log = logging.getLogger("fastserve.ts_store")

HANDLER = "torchserve"  # ModelConfig.handler of an archive's model
# model-config.yaml / models-map key -> (ModelConfig field, type, scale)
_KEYS = {"minWorkers": ("instances", int, 1), "batchSize": ("max_batch_size", int, 1),
         "maxBatchDelay": ("batch_delay_ms", float, 1), "responseTimeout": ("timeout_ms", float,
                                                                              1000),
         "jobQueueSize": ("max_queue_size", int, 1)}
# Read elsewhere (the handler backend, or nothing to do here): not reported as ignored.
_KNOWN = {"maxWorkers", "handler", "deviceType", "deviceIds", "marName", "defaultVersion",
          "startupTimeout", "pt2"}


@dataclass
class StoreSettings:
    """What the start line and config.properties say about a model store."""

    # None: load every model and archive of DIR (fastserve --models DIR). Otherwise the
    # TorchServe selection: "all", or file names of the store ("a.mar", "folder").
    selection: tuple[str, ...] | None = None
    names: dict[str, str] = field(default_factory=dict)  # file name -> served name (name=a.mar)
    max_archive_size: int = DEFAULT_MAX_SIZE
    workers: int = 1  # default_workers_per_model
    response_timeout: float = 120.0  # default_response_timeout, seconds
    job_queue_size: int = 100
    # config.properties models / model_snapshot: {name: {version: {minWorkers: ...}}}
    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # For the handler backend: service_envelope (json | kserve | kservev2), the largest
    # answer (max_response_size, bytes; 0: no cap), install_py_dep_per_model.
    envelope: str | None = None
    max_response_size: int = 0
    install_py_dep_per_model: bool = False

    def selects(self, path: Path) -> bool:
        if self.selection is None or "all" in self.selection:
            return True
        return path.name in self.selection

    def per_model(self, name: str, version: str) -> dict[str, Any]:
        versions = self.models.get(name, {})
        found = versions.get(version)
        if found is None and len(versions) == 1:  # one entry: whatever version it names
            found = next(iter(versions.values()))
        return found or {}

    def default_version(self, name: str) -> str | None:
        for version, settings in self.models.get(name, {}).items():
            if settings.get("defaultVersion") in (True, "true"):
                return version
        return None


def _number(value: Any, key: str, kind: type, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    try:
        number = kind(float(value)) if kind is int else float(value)
    except ValueError:
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{where}: {key} must be >= 0, got {value!r}")
    return number


def archive_config(archive: TsArchive, settings: StoreSettings) -> ModelConfig:
    """The ModelConfig that serves ``archive``. Raises ArchiveError (naming the version)."""
    try:
        return _archive_config(archive, settings)
    except ConfigError as exc:
        raise ArchiveError(exc.message, archive.name, archive.version) from None


def _archive_config(archive: TsArchive, settings: StoreSettings) -> ModelConfig:
    values: dict[str, Any] = {"instances": settings.workers, "max_batch_size": 1,
                              "batch_delay_ms": 100.0,
                              "timeout_ms": settings.response_timeout * 1000,
                              "max_queue_size": settings.job_queue_size}
    ignored = []
    layers = ((archive.model_yaml, f"{archive.source.name}: model-config.yaml"),
              (settings.per_model(archive.name, archive.version), "config.properties models"))
    for table, where in layers:
        for key, value in table.items():
            if key in _KEYS:
                name, kind, scale = _KEYS[key]
                values[name] = _number(value, key, kind, where) * scale
            elif key not in _KNOWN:
                ignored.append(key)
    if ignored:
        log.info("model %s: %s not used by fastserve (ignored)", archive.name,
                 ", ".join(sorted(set(ignored))))
    values["instances"] = max(1, int(values["instances"]))  # minWorkers 0: one instance
    values["max_batch_size"] = max(1, int(values["max_batch_size"]))
    values["max_queue_size"] = max(1, int(values["max_queue_size"]))
    return ModelConfig(name=archive.name, handler=HANDLER, warmup=False,
                       device=_device(archive.model_yaml), **values)


def _device(model_yaml: dict[str, Any]) -> str:
    if model_yaml.get("deviceType") == "cpu":
        return "cpu"
    ids = model_yaml.get("deviceIds")
    if isinstance(ids, list) and ids and isinstance(ids[0], int):
        return f"cuda:{ids[0]}"
    return "auto"


def read_store_archive(source: Path, settings: StoreSettings) -> TsArchive:
    """The archive at ``source`` under the name the settings give it. Raises ArchiveError."""
    return read_archive(source, settings.names.get(source.name), settings.max_archive_size)


def failed_name(source: Path, settings: StoreSettings) -> str:
    """The name a broken archive is listed under (its manifest could not say)."""
    return settings.names.get(source.name) or archive_stem(source.name)


def store_names(root: Path, settings: StoreSettings) -> dict[str, Path]:
    """Served name -> archive, for every archive of ``root`` (blocking: reads manifests)."""
    found: dict[str, Path] = {}
    try:
        candidates = sorted(root.iterdir())
    except OSError:
        return found
    for path in candidates:
        if not is_archive(path):
            continue
        try:
            found.setdefault(read_store_archive(path, settings).name, path)
        except ArchiveError:
            found.setdefault(failed_name(path, settings), path)
    return found
