"""The binary tensor codec: the C version when built, else the pure-Python twin.

``FASTSERVE_NO_EXTENSIONS=1`` forces the twin (yarl ``_quoting.py``);
``IMPLEMENTATION`` says which one loaded ("c" or "py").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = [
    "IMPLEMENTATION",
    "JsonNumbers",
    "NO_EXTENSIONS",
    "bytes_tensor_size",
    "decode_bytes_tensor",
    "encode_bytes_tensor",
    "numbers_from_json",
    "split_binary_inputs",
    "split_json_tensors",
]

NO_EXTENSIONS = bool(os.environ.get("FASTSERVE_NO_EXTENSIONS"))

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._codec_py import (
        JsonNumbers,
        bytes_tensor_size,
        decode_bytes_tensor,
        encode_bytes_tensor,
        numbers_from_json,
        split_binary_inputs,
        split_json_tensors,
    )

    IMPLEMENTATION = "py"
else:
    try:
        from ._codec import (
            JsonNumbers,
            bytes_tensor_size,
            decode_bytes_tensor,
            encode_bytes_tensor,
            numbers_from_json,
            split_binary_inputs,
            split_json_tensors,
        )

        IMPLEMENTATION = "c"
    except ImportError:  # pragma: no cover
        from ._codec_py import (
            JsonNumbers,
            bytes_tensor_size,
            decode_bytes_tensor,
            encode_bytes_tensor,
            numbers_from_json,
            split_binary_inputs,
            split_json_tensors,
        )

        IMPLEMENTATION = "py"
