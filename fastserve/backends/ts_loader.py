"""Finding and importing a TorchServe archive's handler, as ts/model_loader.py does.

The manifest's ``handler`` is a module in the archive (``handler.py``,
``handler.py:fn``, ``my_handler``) or a built-in name (``image_classifier`` ...) from the
``torchserve`` package (the optional extra ``fastserve[torchserve]``; its JVM never
starts). The entry point is the module's ``handle`` function (or the named one), else its
one class, whose ``initialize`` and ``handle`` are used.

TorchServe runs each worker in its own process; here every archive shares one. So each
import happens in a *scope*: the archive folder first on ``sys.path``, the archive's own
modules (handler.py, model.py, utils.py ...) imported fresh and then taken out of
``sys.modules``, so two archives that both ship a ``handler.py`` or ``model.py`` never see
each other's.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BUILTIN_HANDLERS = ("base_handler", "image_classifier", "image_segmenter", "object_detector",
                    "text_classifier", "text_handler", "vision_handler", "densenet_handler")
EXTRA = "pip install 'fastserve[torchserve]'"

_IMPORT_LOCK = threading.RLock()  # sys.path and sys.modules are process-wide


def _local_names(folder: Path) -> set[str]:
    names = {p.stem for p in folder.glob("*.py")}
    names |= {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return names


def _within(module: Any, folder: str) -> bool:
    path = getattr(module, "__file__", None) or ""
    return path.startswith(folder)


@contextlib.contextmanager
def import_scope(folder: Path) -> Iterator[dict[str, Any]]:
    """Import and initialise an archive's code with its folder first on ``sys.path``.

    Yields the dict that receives the archive's own modules once the scope ends (kept
    so they stay alive). Modules of the same name that another archive loaded are put
    aside for the scope and restored after it.
    """
    root = str(folder.resolve())
    prefix = root.rstrip("/") + "/"
    kept: dict[str, Any] = {}
    with _IMPORT_LOCK:
        shadowed = {}
        local = _local_names(folder)
        for name in list(sys.modules):
            if name.partition(".")[0] in local and not _within(sys.modules[name], prefix):
                shadowed[name] = sys.modules.pop(name)
        sys.path.insert(0, root)
        importlib.invalidate_caches()
        try:
            yield kept
        finally:
            sys.path.remove(root)
            # NOTE: handlers may import lazily inside handle(); leave the folder findable.
            if root not in sys.path:
                sys.path.append(root)
            for name, module in list(sys.modules.items()):
                if _within(module, prefix):
                    kept[name] = sys.modules.pop(name)
            sys.modules.update(shadowed)


def _import_builtin(name: str) -> Any:
    try:
        return importlib.import_module(f"ts.torch_handler.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in ("ts", "ts.torch_handler"):
            raise ConfigError(f"the archive's handler is TorchServe's built-in '{name}', "
                              f"which comes from the torchserve package: {EXTRA}") from None
        raise ConfigError(f"handler '{name}' failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc


def import_handler(folder: Path, handler: str) -> tuple[Any, str | None]:
    """The handler's module and the function named after ``:`` (if any). Call inside an
    ``import_scope``.

    Raises:
        ConfigError: no such module nor built-in handler, or the module fails to import
            (a missing package is named).
    """
    if not handler:
        raise ConfigError("the archive's MANIFEST.json names no handler")
    module_name, _, function = handler.partition(":")
    module_name = module_name.rsplit("/", 1)[-1]
    if module_name.endswith(".py"):
        module_name = module_name[:-3]
    local = (folder / f"{module_name}.py").exists() or (folder / module_name).is_dir()
    if not local:
        if module_name in BUILTIN_HANDLERS or module_name.startswith("ts."):
            return _import_builtin(module_name.removeprefix("ts.torch_handler.")), (
                function or None)
        raise ConfigError(f"handler '{handler}': no {module_name}.py in the archive and no "
                          f"TorchServe built-in of that name ({', '.join(BUILTIN_HANDLERS)})")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f" ({EXTRA})" if (exc.name or "").split(".")[0] == "ts" else ""
        raise ConfigError(f"handler '{handler}' failed to import: {exc}{hint}") from exc
    except Exception as exc:
        raise ConfigError(f"handler '{handler}' failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc
    return module, function or None


def entry_point(module: Any, function: str | None
                ) -> tuple[Callable[[Any, Any], Any], Callable[[Any], Any], Any]:
    """(handle(data, context), initialize(context), the handler object or None).

    As TorchServe: a function named ``function`` (default ``handle``) if the module has
    one, initialised by calling it with ``(None, context)``; else the one class the module
    defines, instantiated, with its ``initialize`` and ``handle``.
    """
    name = function or "handle"
    if hasattr(module, name):
        fn = getattr(module, name)
        return fn, (lambda ctx: fn(None, ctx)), None
    if function:
        raise ConfigError(f"handler module '{module.__name__}' has no function '{function}'")
    classes = [c for _, c in inspect.getmembers(
        module, lambda m: inspect.isclass(m) and m.__module__ == module.__name__)]
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise ConfigError(f"handler module '{module.__name__}' must define a handle(data, "
                          f"context) function or exactly one class; classes found: {found}")
    handler = classes[0]()
    if not hasattr(handler, "handle"):
        raise ConfigError(f"handler class {classes[0].__name__} has no handle method")
    initialize = getattr(handler, "initialize", None) or (lambda ctx: None)
    return handler.handle, initialize, handler
