"""Finding the handler in a model's handler.py: importing the file (its folder importable,
as TorchServe makes it) and picking the class or ``handle`` function it defines."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

HANDLER_FILE = "handler.py"
_STAGES = ("preprocess", "inference", "postprocess")


def import_handler(path: Path, model: str) -> Any:
    name = "fastserve_handler_" + "".join(c if c.isalnum() else "_" for c in model)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    # Like TorchServe, the model folder is importable, so handler.py can import its
    # neighbours (model.py, utils.py ...).
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"{HANDLER_FILE} failed to import: {type(exc).__name__}: {exc}"
                          ) from exc
    return module


def find_entry(module: Any) -> Any:
    """The handler class defined in handler.py (the most derived one), else ``handle``."""
    classes = [c for c in vars(module).values()
               if inspect.isclass(c) and c.__module__ == module.__name__
               and (hasattr(c, "handle") or all(hasattr(c, m) for m in _STAGES))]
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    if len(leaves) == 1:
        return leaves[0]
    if len(leaves) > 1:
        raise ConfigError(f"{HANDLER_FILE} defines several handler classes "
                          f"({', '.join(c.__name__ for c in leaves)}); keep one")
    if callable(getattr(module, "handle", None)):
        return module.handle
    raise ConfigError(f"{HANDLER_FILE} defines no handler: write a class with initialize, "
                      "preprocess, inference and postprocess (or handle), or a function "
                      "handle(data, context)")
