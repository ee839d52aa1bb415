"""TorchServe's ``service_envelope`` around an archive's handler (json, kserve, kservev2).

As ts/model_loader.py does it: the envelope class of
``ts.torch_handler.request_envelope.<name>`` (the ``torchserve`` package, the optional
extra ``fastserve[torchserve]``) wraps the entry point, so ``handle(data, context)`` gets
the envelope's parsed input (KServe v1 ``instances``, v2 ``inputs``) and its answer is
formatted back (``{"predictions": [...]}``, a v2 response).

The envelope is process-wide in TorchServe (config.properties ``service_envelope``, or
``TS_SERVICE_ENVELOPE``), and so are ``max_response_size`` and
``install_py_dep_per_model``: the app hands them to ``configure`` at start (the core's
``StoreSettings`` holds them; a backend cannot import the core).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

Handle = Callable[[Any, Any], Any]


@dataclass
class ProcessSettings:
    envelope: str | None = None  # json | kserve | kservev2
    max_response_size: int = 0  # bytes; 0: no cap
    install_py_dep_per_model: bool = False


settings = ProcessSettings()


def configure(envelope: str | None, max_response_size: int = 0,
              install_py_dep_per_model: bool = False) -> None:
    global settings
    settings = ProcessSettings(envelope or None, max_response_size, install_py_dep_per_model)


def wrap(handle: Handle, envelope: str | None = None) -> Handle:
    """``handle`` inside the configured envelope (unchanged without one)."""
    name = envelope if envelope is not None else settings.envelope
    if not name:
        return handle
    try:
        module = importlib.import_module(f"ts.torch_handler.request_envelope.{name}")
    except ImportError as exc:
        raise ConfigError(f"service_envelope={name} needs TorchServe's Python package: pip "
                          f"install 'fastserve[torchserve]' ({exc})") from None
    classes = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
               if cls.__module__ == module.__name__]
    if not classes:
        raise ConfigError(f"service_envelope={name}: no envelope class in {module.__name__}")
    return classes[0](handle).handle
