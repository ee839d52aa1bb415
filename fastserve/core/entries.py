"""What the repository holds per model: its entry, its versions and their state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .files import Fingerprint, version_key
from .model_config import ModelConfig
from .stats import ModelStats

if TYPE_CHECKING:
    from ..backends._base import Backend
    from .scheduler import DynamicBatcher


class State(str, enum.Enum):
    """A version's state; equal to its value, the plain string the doors hand out."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


@dataclass
class ModelVersion:
    name: str
    version: str
    folder: Path
    state: State = State.LOADING
    error: str = ""
    backend: Backend | None = None
    batcher: DynamicBatcher | None = None
    stats: ModelStats = field(default_factory=ModelStats)
    # Runtime changes: the files it was loaded from, and when it became READY.
    files: Fingerprint = ()
    loaded_at: float = 0.0
    # Its own settings (a TorchServe archive's model-config.yaml); None: the model's.
    config: ModelConfig | None = None

    @property
    def ready(self) -> bool:
        return self.state is State.READY


@dataclass
class ModelEntry:
    name: str
    folder: Path
    config: ModelConfig | None
    labels: dict[str, str]
    error: str = ""
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    pinned: str | None = None
    files: Fingerprint = ()  # config.toml, labels and handler.py when last read
    archive: bool = False  # a TorchServe archive (folder: the .mar or its folder)

    def sorted_versions(self) -> list[ModelVersion]:
        return [self.versions[v] for v in sorted(self.versions, key=version_key)]

    @property
    def default(self) -> ModelVersion | None:
        """The pinned version, else the highest READY one, else the highest."""
        if self.pinned in self.versions:
            return self.versions[self.pinned]
        if len(self.versions) == 1:  # the common case, on every request: no sorting
            return next(iter(self.versions.values()))
        versions = self.sorted_versions()
        ready = [v for v in versions if v.ready]
        if ready:
            return ready[-1]
        return versions[-1] if versions else None

    @property
    def servable(self) -> bool:
        """Some version is loaded or on its way (not every one FAILED)."""
        return any(v.state is not State.FAILED for v in self.versions.values())
