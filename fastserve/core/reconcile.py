"""One rule for how a registered model follows its folder: the management API's load
(and reload) and the poller (``--poll-interval``) both call ``reconcile``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from .entries import ModelEntry, ModelVersion, State
from .files import Fingerprint
from .model_config import ModelConfig

if TYPE_CHECKING:
    from .repository import ModelRepository

log = logging.getLogger("fastserve.repository")


async def reconcile(repo: ModelRepository, entry: ModelEntry,
                    versions: Mapping[str, Fingerprint], *,
                    present: Collection[str] | None = None, fresh: ModelEntry | None = None,
                    reload: bool = False) -> None:
    """Bring a registered model in line with its folder (the model's lock held).

    Args:
        entry: the registered model.
        versions: the version folders to act on, with their files' fingerprints.
        present: every version folder there (default: ``versions``); the poller lists
            here one still being written, which is neither unloaded nor loaded yet.
        fresh: the model read again (config.toml, labels); it replaces the entry's. A
            config that no longer parses FAILs every version with its error.
        reload: load READY and FAILED versions again (the management API's reload); a
            READY one is swapped in once loaded and warmed up, the old one drains.
    Raises:
        InvalidInputError: ``fresh`` has a broken config while a version still serves
            (nothing changes; 400).

    A version no longer present is unloaded after draining; a new one is added and
    loaded, unless it was unloaded through the API; a FAILED one is loaded again when
    its files changed; one still LOADING is left to the load under way.
    """
    failed_error = ""
    if fresh is not None:
        if fresh.config is None:
            if entry.servable:
                raise InvalidInputError(f"model '{entry.name}' was not reloaded (its loaded "
                                        f"versions keep serving): {fresh.error}")
            failed_error = fresh.error
        entry.config, entry.labels, entry.error = fresh.config, fresh.labels, fresh.error
        entry.files = fresh.files
    config = entry.config
    if config is not None and config.version_policy is not None:
        # Triton's version_policy: a new version may retire an older one (latest N)
        # (chosen among settled and loaded versions: one still being written waits)
        served = set(config.version_policy.select(set(versions) | set(entry.versions)))
        versions = {k: f for k, f in versions.items() if k in served}
        present = [k for k in (present if present is not None else versions) if k in served]
    keep = versions if present is None else present
    gone = [v for key, v in entry.versions.items() if key not in keep]
    if gone:
        await repo.lifecycle.unload(entry, gone, remove_model=False)
    jobs: list[ModelVersion] = []
    for key, files in versions.items():
        version = entry.versions.get(key)
        if version is None:
            if (entry.name, key) in repo.unloaded_versions:
                continue
            # An archive's version is the archive itself (a replaced .mar may say 2.0).
            where = entry.folder if entry.archive else entry.folder / key
            version = entry.versions[key] = ModelVersion(entry.name, key, where)
            if not failed_error:
                entry.error = ""
            log.info("model %s: new version %s", entry.name, key)
        elif version.state is State.LOADING:
            continue  # its load is under way (the initial one): it reads the files now
        elif reload or (version.state is State.FAILED and files != version.files):
            log.info("model %s: loading version %s again", entry.name, key)
        else:
            continue
        version.files = files
        if failed_error:
            version.state, version.error = State.FAILED, failed_error
        elif version.state is State.FAILED:
            version.state, version.error = State.LOADING, ""
        repo.lifecycle.changed(version)
        if version.state is not State.FAILED:
            jobs.append(version)
    await asyncio.gather(*(repo.lifecycle.load_one(entry, v) for v in jobs))


def apply_overrides(config: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """config.toml's values with the management API's (TorchServe's batch_size, ...) on top.

    Raises:
        InvalidInputError: a value the model cannot take (400).
    """
    changes = dict(overrides)
    batch = changes.get("max_batch_size")
    if batch is not None:
        if batch < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch}")
        if not config.batched:
            if batch > 1:
                raise InvalidInputError(
                    f"model '{config.name}' takes no batch dimension (max_batch_size = 0 in its "
                    f"config.toml), so batch_size {batch} cannot apply; set max_batch_size in "
                    "config.toml and give every input and output shape a leading -1")
            del changes["max_batch_size"]  # batch_size 1: one request at a time, as it is
    if changes.get("batch_delay_ms", 0.0) < 0:
        raise InvalidInputError(f"max_batch_delay must be >= 0, got {changes['batch_delay_ms']}")
    if changes.get("instances", 1) < 1:
        raise InvalidInputError(f"initial_workers must be >= 1, got {changes['instances']}")
    return dataclasses.replace(config, **changes)
