"""HttpProtocol: the compiled one (fastserve/http/_protocol.pyx) when built, else the twin.

The compiled ``HttpCore`` carries the per-request path in C and sits in front of the
pure-Python protocol (_protocol_py.py, with dispatch.py), which supplies the rest.
``FASTSERVE_NO_EXTENSIONS=1`` forces the twin; ``IMPLEMENTATION`` says which one loaded.
"""

from __future__ import annotations

import os

from ._protocol_py import HttpProtocol as PyHttpProtocol

__all__ = ["IMPLEMENTATION", "HttpProtocol", "PyHttpProtocol"]

NO_EXTENSIONS = bool(os.environ.get("FASTSERVE_NO_EXTENSIONS"))

HttpProtocol: type[PyHttpProtocol]
try:
    if NO_EXTENSIONS:
        raise ImportError("FASTSERVE_NO_EXTENSIONS is set")
    from ._protocol import HttpCore  # type: ignore[import-not-found]
except ImportError:
    HttpProtocol = PyHttpProtocol
    IMPLEMENTATION = "py"
else:

    class CHttpProtocol(HttpCore, PyHttpProtocol):  # type: ignore[misc]
        """The twin's protocol with HttpCore's compiled per-request methods first."""

    HttpProtocol = CHttpProtocol
    IMPLEMENTATION = "c"
