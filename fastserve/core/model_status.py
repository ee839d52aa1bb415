"""What every API reports about the server and its models: health, metadata, versions.

The read-only half of the data plane's door (``DataPlane`` inherits it): plain values,
read off the repository, never a backend or a batcher.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..errors import ModelNotReadyError
from ..types import TensorSpec
from .info import VersionInfo
from .model_config import ModelConfig
from .repository import ModelRepository, ModelVersion, State

SERVER_NAME = "fastserve"


class ModelStatus:
    def __init__(self, repository: ModelRepository, extensions: list[str] | None = None
                 ) -> None:
        self.repository = repository
        self.extensions = extensions or []
        self.draining = False
        self.strict_readiness = False  # --strict-readiness: see ready()
        # config.properties service_envelope: KServe v1/v2 requests for a TorchServe archive
        # go to its handler whole, which the envelope unwraps (as TorchServe routes them).
        self.service_envelope: str | None = None

    # Health

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """CONTRACT section 3's table: ready once the initial load finished and a model
        serves (or DIR holds none); never while every model FAILED. With
        ``strict_readiness`` (Triton's rule), only while every model's versions are READY."""
        if self.repository.loading or self.draining:
            return False
        entries = self.repository.models.values()
        if self.strict_readiness:
            return all(entry.versions and all(v.ready for v in entry.versions.values()
                                              if v.state is not State.UNLOADING)
                       for entry in entries)
        # DIR holds no model when no folder has a version folder (each is logged at start)
        versions = [v for e in entries for v in e.versions.values()]
        return not versions or any(v.ready for v in versions)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Raises ModelNotFoundError / VersionNotFoundError for unknown names."""
        found = self._version_or_default(name, version)
        return found is not None and found.ready and not self.draining

    # Metadata

    def models(self) -> list[str]:
        """Every registered model's name, sorted (whatever its state)."""
        return sorted(self.repository.models)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": self.extensions}

    def specs(self, name: str, version: str | None = None
              ) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Inputs and outputs of a version: read off the loaded model, else its config."""
        found = self._version_or_default(name, version)
        if found is not None and found.backend is not None:
            return found.backend.inputs, found.backend.outputs
        config = self.repository.entry(name).config
        if config is None:
            return (), ()
        return config.inputs or (), config.outputs or ()

    def platform(self, name: str, version: str | None = None) -> str:
        found = self._version_or_default(name, version)
        if found is not None and found.backend is not None:
            return found.backend.platform
        if found is not None and (found.folder / "model.pt").exists():
            return "pytorch_torchscript"
        return "pytorch_export"

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        entry = self.repository.entry(name)
        if version is not None:
            self.repository.version(name, version)
        inputs, outputs = self.specs(name, version)
        doc = {
            "name": entry.name,
            "versions": [v.version for v in entry.sorted_versions()],
            "platform": self.platform(name, version),
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
        }
        error = self.load_error(name, version)
        if error:
            doc["error"] = error
        return doc

    def load_error(self, name: str, version: str | None = None) -> str:
        """Why a model (or version) FAILED to load; empty when it did not."""
        entry = self.repository.entry(name)
        found = entry.default if version is None else self.repository.version(name, version)
        if found is not None and found.state is State.FAILED:
            return found.error
        return entry.error if found is None else ""

    def config(self, name: str) -> ModelConfig:
        return self.repository.config_of(name)

    def labels(self, name: str) -> dict[str, str]:
        return self.repository.entry(name).labels

    def version(self, name: str, version: str | None = None) -> VersionInfo:
        """One version's state (404 unknown; 503 for a model without any version)."""
        found = self.repository.version(name, version)
        return _version_info(found, self.repository.entry(name).default is found)

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of a model, ascending, in every state (404 if unknown)."""
        entry = self.repository.entry(name)
        default = entry.default
        return [_version_info(v, v is default) for v in entry.sorted_versions()]

    def _ready(self, name: str, version: str | None) -> ModelVersion:
        """The READY version a request runs on (404 unknown, 503 not ready or draining)."""
        if self.draining:
            raise ModelNotReadyError("the server is shutting down; retry on another replica")
        return self.repository.ready_version(name, version)

    def _version_or_default(self, name: str, version: str | None) -> ModelVersion | None:
        entry = self.repository.entry(name)
        if version is None:
            return entry.default
        return self.repository.version(name, version)


def _version_info(version: ModelVersion, default: bool) -> VersionInfo:
    return VersionInfo(version.name, version.version, version.state.value, version.error,
                       default, version.loaded_at)
