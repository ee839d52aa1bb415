"""What a handler.py handler sees (TorchServe's Context): the model, its folder and
settings, and the headers of the batch's requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._version import __version__
from .handler_file import HANDLER_FILE


class Context:
    """What ``initialize(context)`` and ``handle(data, context)`` get (TorchServe's Context).

    Attributes:
        model_name, model_version: the model and the version folder being served.
        model_dir: the version folder (str), where model.pt2 / model.pt live.
        model_folder: the model folder (Path): config.toml, labels.json, handler.py.
        config: the model's parsed config.toml (fastserve.core.model_config.ModelConfig).
        device: "cpu", "cuda:0", ... as resolved from config ``device``.
        labels: {"0": "tench", ...} from labels.json or index_to_name.json.
        manifest, system_properties: TorchServe's keys (modelName, serializedFile;
            model_dir, gpu_id, batch_size, server_name, server_version).
    """

    def __init__(self, folder: Path, config: Any, device: str, labels: dict[str, str]) -> None:
        self.model_name = config.name
        self.model_version = folder.name
        self.model_dir = str(folder)
        self.model_folder = folder.parent
        self.config = config
        self.device = device
        self.labels = labels
        serialized = next((f for f in ("model.pt2", "model.pt") if (folder / f).exists()), "")
        self.manifest = {"model": {"modelName": config.name, "modelVersion": folder.name,
                                   "handler": HANDLER_FILE, "serializedFile": serialized}}
        gpu = None
        if device.startswith("cuda"):
            gpu = int(device.partition(":")[2] or 0)
        self.system_properties = {
            "model_dir": str(folder), "gpu_id": gpu, "batch_size": max(config.max_batch_size, 1),
            "server_name": "fastserve", "server_version": __version__,
            "limit_max_image_pixels": True,
        }
        self.metrics = None
        self._headers: list[dict[bytes, bytes]] = []

    def get_request_header(self, idx: int, key: str) -> str | None:
        """A header of request ``idx`` of the current batch (case-insensitive), or None."""
        if idx >= len(self._headers):
            return None
        value = self._headers[idx].get(key.lower().encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        if idx >= len(self._headers):
            return {}
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self._headers[idx].items()}
