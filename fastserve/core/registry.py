"""What the model repository holds: every model of DIR by name, and the lookups the event
loop makes. Reading a source into an entry is ``scan``; the entry itself is ``entries``.
Nothing here loads a model or starts a thread (that is ``lifecycle``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, ModelNotReadyError, VersionNotFoundError
from .archive import find_archives
from .entries import ModelEntry, ModelVersion, State
from .files import model_folders, model_name
from .model_config import ModelConfig
from .scan import merge_archive_versions, scan_model
from .ts_store import StoreSettings, store_names

log = logging.getLogger("fastserve.repository")


class Registry:
    """Every model of DIR and its versions by name; lookups for the event loop."""

    def __init__(self, root: Path, store: StoreSettings | None = None) -> None:
        self.root = root
        self.store = store or StoreSettings()  # TorchServe archives: selection, defaults
        self.models: dict[str, ModelEntry] = {}

    def scan(self) -> None:
        """The initial scan: every model source of DIR (a duplicate name is skipped)."""
        sources = sorted(model_folders(self.root) + find_archives(self.root))
        for folder in (s for s in sources if self.store.selects(s)):
            entry = scan_model(folder, self.store)
            if merge_archive_versions(self.models.get(entry.name), entry):
                continue
            if entry.name in self.models:
                log.warning("model folder %s: name %r is already used by %s; ignored",
                            folder, entry.name, self.models[entry.name].folder)
                continue
            self.models[entry.name] = entry

    def available(self) -> dict[str, Path]:
        """Model name -> folder, for every model folder of DIR (blocking: reads config.toml)."""
        found = {model_name(folder): folder for folder in model_folders(self.root)}
        return {**store_names(self.root, self.store), **found}

    def find_folder(self, name: str) -> Path:
        """The folder of DIR that serves model ``name`` (blocking). Raises ModelNotFoundError."""
        entry = self.models.get(name)
        if entry is not None:
            return entry.folder
        folder = self.available().get(name)
        if folder is None:
            raise ModelNotFoundError(f"no model '{name}' in the model repository {self.root}")
        return folder

    # Lookup (event loop)

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            raise ModelNotFoundError(f"model '{name}' not found")
        return entry

    def version(self, name: str, version: str | None) -> ModelVersion:
        """The named version (default: the default version), in whatever state it is."""
        entry = self.entry(name)
        if version is None:
            found = entry.default
            if found is None:
                raise ModelNotReadyError(f"model '{name}' failed to load: {entry.error}")
            return found
        found = entry.versions.get(version)
        if found is None:
            raise VersionNotFoundError(f"model '{name}' has no version '{version}'")
        return found

    def ready_version(self, name: str, version: str | None) -> ModelVersion:
        """The version to run a request on; 503 unless it is READY."""
        found = self.version(name, version)
        if found.state is not State.READY:
            if found.state is State.FAILED:
                raise ModelNotReadyError(
                    f"model '{name}' version {found.version} failed to load: {found.error}")
            raise ModelNotReadyError(
                f"model '{name}' version {found.version} is {found.state.value.lower()}")
        return found

    def all_versions(self) -> list[ModelVersion]:
        return [v for e in self.models.values() for v in e.versions.values()]

    def config_of(self, name: str) -> ModelConfig:
        entry = self.entry(name)
        if entry.config is None:
            raise ModelNotReadyError(f"model '{name}' failed to load: {entry.error}")
        return entry.config

    def accepts(self, version: ModelVersion) -> bool:
        """True while ``version`` is registered and not being unloaded."""
        entry = self.models.get(version.name)
        return (entry is not None and entry.versions.get(version.version) is version
                and version.state is not State.UNLOADING)

    def __contains__(self, name: Any) -> bool:
        return name in self.models
