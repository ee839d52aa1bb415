"""fastserve: a fast PyTorch model server (KServe v2, TorchServe, TF Serving APIs)."""

from ._version import __version__

__all__ = ["__version__"]
