"""Binary tensor codec of the KServe v2 binary data extension (pure-Python twin).

The reference semantics and the fallback when fastserve._codec is not built
(yarl ``_quoting_py``); the C version must match it message for message.
Body layout (little-endian, row-major, no padding):

    | JSON header (Inference-Header-Content-Length bytes) |
    | input[0] raw (binary_data_size[0]) | input[1] raw | ... |

BYTES tensor (binary_data_size counts the prefixes, as Triton does):

    | uint32 LE length[0] | length[0] bytes | uint32 LE length[1] | ... |
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable

from .errors import CodecError

__all__ = ["split_binary_inputs", "decode_bytes_tensor", "encode_bytes_tensor", "bytes_tensor_size",
           "numbers_from_json", "split_json_tensors", "JsonNumbers"]

Buffer = bytes | bytearray | memoryview
Element = bytes | bytearray | memoryview | str
_U32 = struct.Struct("<I")
_MAX_ELEMENT = 0xFFFFFFFF  # the largest length a uint32 prefix holds


def _byte_view(obj: Buffer) -> memoryview:
    view = memoryview(obj)
    if not view.c_contiguous:
        raise TypeError("binary data must be a C-contiguous buffer")
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _element(item: Element, index: int) -> tuple[bytes | memoryview, int]:
    """A BYTES element as bytes (str in UTF-8) or a memoryview, and its length, checked."""
    if isinstance(item, str):
        data: bytes | memoryview = item.encode("utf-8")
    elif isinstance(item, bytes):
        data = item
    else:
        try:
            data = memoryview(item)
        except TypeError:
            raise TypeError(
                f"BYTES element {index}: expected bytes, bytearray, memoryview or str, "
                f"got {type(item).__name__}"
            ) from None
    n = data.nbytes if isinstance(data, memoryview) else len(data)
    if n > _MAX_ELEMENT:
        raise ValueError(
            f"BYTES element {index} is {n} bytes; a uint32 length prefix holds at most "
            f"{_MAX_ELEMENT}"
        )
    return data, n


def _add_size(total: int, n: int) -> int:
    total += 4 + n
    if total > sys.maxsize:  # as the C version, whose sum is a checked Py_ssize_t
        raise OverflowError("BYTES tensor larger than sys.maxsize")
    return total


def split_binary_inputs(tail: Buffer, sizes: Iterable[tuple[str, int]]) -> list[memoryview]:
    """Split the body tail into one zero-copy view per binary input (see _codec.pyi)."""
    view = _byte_view(tail)
    total, pos, last, out = len(view), 0, None, []
    for name, size in sizes:
        # NOTE: sizes come from client JSON; bool is an int but never a size.
        if not isinstance(size, int) or isinstance(size, bool):
            raise CodecError(f"input {name!r}: binary_data_size must be an integer, got {size!r}")
        if size < 0:
            raise CodecError(f"input {name!r}: binary_data_size {size} is negative")
        if size > total - pos:
            raise CodecError(
                f"input {name!r}: binary_data_size {size} but only {total - pos} bytes "
                "remain in the body"
            )
        out.append(view[pos : pos + size])
        pos += size
        last = name
    if pos != total:
        if last is None:
            raise CodecError(
                f"{total - pos} unexpected trailing bytes in a body with no binary inputs"
            )
        raise CodecError(
            f"{total - pos} unexpected trailing bytes after the last binary input {last!r}"
        )
    return out


def decode_bytes_tensor(buf: Buffer, name: str, count: int = -1) -> list[bytes]:
    """Decode | uint32 LE length | bytes | ... into a list of bytes (see _codec.pyi)."""
    view = _byte_view(buf)
    size, pos, out = len(view), 0, []
    while pos < size:
        if size - pos < 4:
            raise CodecError(
                f"input {name!r}: BYTES element {len(out)} at offset {pos} has a truncated "
                f"length prefix ({size - pos} of 4 bytes)"
            )
        (n,) = _U32.unpack_from(view, pos)
        if n > size - pos - 4:
            raise CodecError(
                f"input {name!r}: BYTES element {len(out)} at offset {pos} has length {n} "
                f"but only {size - pos - 4} bytes remain"
            )
        out.append(view[pos + 4 : pos + 4 + n].tobytes())
        pos += 4 + n
    if count >= 0 and len(out) != count:
        raise CodecError(f"input {name!r}: expected {count} BYTES elements but found {len(out)}")
    return out


def encode_bytes_tensor(items: Iterable[Element]) -> bytes:
    """Encode items as | uint32 LE length | bytes | ... (see _codec.pyi)."""
    parts: list[bytes] = []
    total = 0
    for index, item in enumerate(items):
        data, n = _element(item, index)
        total = _add_size(total, n)
        parts += (_U32.pack(n), data if isinstance(data, bytes) else data.tobytes())
    return b"".join(parts)


def bytes_tensor_size(items: Iterable[Element]) -> int:
    """Sum of 4 + len(element) over items, str counted in UTF-8 (see _codec.pyi)."""
    total = 0
    for index, item in enumerate(items):
        total = _add_size(total, _element(item, index)[1])
    return total


def numbers_from_json(data: object, dtype: object, count: int) -> None:
    """The C version's fast path for plain JSON number lists; here there is none, and the
    general path (tensors.array_from_json) gives the very same arrays."""
    return None


class JsonNumbers:
    """The C version's plain number array cut from a v2 body; the twin never makes one."""

    count: int
    shape: tuple[int, ...]

    def text(self) -> memoryview:
        raise NotImplementedError

    def to_array(self, dtype: object, count: int) -> None:
        return None


def split_json_tensors(body: object) -> None:
    """The C version's fast path for plain inputs[i].data arrays; here there is none, and
    orjson on the whole body (the general path) gives the very same document."""
    return None
