"""Test-only: lets torchvision's pure-Python transforms import beside a CPU-only torch.

PyPI's torchvision wheel is linked against CUDA torch; with the CPU torch this project
pins, its C ops (_C.so) cannot load and ``import torchvision`` stops at registering a fake
kernel for ``torchvision::nms``. TorchServe's built-in vision handlers only need the
transforms, so, on first ``import torchvision`` and only when _C.so does not load, the
two op schemas it registers fakes for are defined. Both servers of the comparison get
this folder on PYTHONPATH.
"""

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_LIBS = []


def _define_missing_ops() -> None:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    found = sorted(Path(spec.origin).parent.glob("_C*.so"))
    try:
        if found:
            torch.ops.load_library(str(found[0]))
            return
    except OSError:
        pass
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBS.append(lib)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name == "torchvision":
            sys.meta_path.remove(self)
            _define_missing_ops()
        return None


sys.meta_path.insert(0, _BeforeTorchvision())
