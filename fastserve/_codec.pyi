"""Binary tensor codec of the KServe v2 binary data extension (stub of _codec.pyx).

Body layout (little-endian, row-major, no padding between elements):

    | JSON header (Inference-Header-Content-Length bytes) |
    | input[0] raw (binary_data_size[0]) | input[1] raw | ... |

BYTES tensor (binary_data_size counts the prefixes, as Triton does):

    | uint32 LE length[0] | length[0] bytes | uint32 LE length[1] | ... |

fastserve/_codec_py.py has the same API, behaviour and error messages.
"""

from collections.abc import Iterable
from typing import Any

import numpy as np

Buffer = bytes | bytearray | memoryview
Element = bytes | bytearray | memoryview | str

def split_binary_inputs(tail: Buffer, sizes: Iterable[tuple[str, int]]) -> list[memoryview]:
    """Split the body tail into one view per input that carries binary_data_size.

    Args:
        tail: the body after the JSON header; any C-contiguous buffer.
        sizes: ``(input_name, binary_data_size)`` in request order.

    Returns:
        Consecutive slices of ``memoryview(tail)``: zero-copy views of the
        caller's buffer, writable when it is (a bytearray).

    Raises:
        CodecError: a size that is not an int, is negative or runs past the end
            of the tail, or sizes that leave trailing bytes.
        TypeError: tail is not a C-contiguous buffer.
    """

def decode_bytes_tensor(buf: Buffer, name: str, count: int = -1) -> list[bytes]:
    """Decode a BYTES tensor, ``| uint32 LE length | length bytes |`` repeated to the end.

    Args:
        buf: the tensor's binary data; any C-contiguous buffer.
        name: the input name, for error messages.
        count: the element count the shape implies; negative skips the check.

    Returns:
        The elements as bytes, in order.

    Raises:
        CodecError: a truncated length prefix, an element running past the end,
            or (count >= 0) a number of elements other than count; checked
            before any element is allocated.
    """

def encode_bytes_tensor(items: Iterable[Element]) -> bytes:
    """Encode elements as ``| uint32 LE length | bytes |``; str is encoded as UTF-8.

    Raises:
        TypeError: an element that is neither str nor a buffer.
        ValueError: an element longer than 4294967295 bytes.
    """

def bytes_tensor_size(items: Iterable[Element]) -> int:
    """Sum of 4 + len(element) (str in UTF-8): binary_data_size of a BYTES tensor.

    Raises:
        TypeError: an element that is neither str nor a buffer.
        ValueError: an element longer than 4294967295 bytes.
    """

def numbers_from_json(data: object, dtype: np.dtype[Any], count: object) -> np.ndarray | None:
    """``data`` (JSON numbers: a list, nested lists) as a flat array of ``dtype``.

    Only the plain case: float32, float64, int32 or int64; a regular (not ragged) list
    of lists at most 32 deep; exactly ``count`` leaves, each exactly float or int (not
    bool) and held by ``dtype`` as numpy would hold it. Anything else, a ``count`` that
    is not a positive int below sys.maxsize included, gives None (never an error): the
    caller's general path then decides, with its own messages. The pure-Python twin
    always gives None.
    """

class JsonNumbers:
    """The plain numbers of one v2 ``inputs[i].data`` array, parsed from the request body.

    ``count`` leaves in ``shape`` (the nesting of the JSON lists), held as int64 (every
    token an integer) or float64 values in one buffer: no Python float, no list.
    """

    count: int
    shape: tuple[int, ...]

    def text(self) -> memoryview:
        """The array's bytes as they are in the body (``orjson.loads`` gives the list)."""

    def to_array(self, dtype: np.dtype[Any], count: object) -> np.ndarray | None:
        """A flat array of ``dtype`` (float32/64, int32/64) holding the numbers, exactly as
        numbers_from_json on the loaded list would give it; None where that gives None
        (another dtype or count, floats for an integer dtype, integers beyond 2**53 for a
        float dtype). Converted once: the values buffer is then reused or handed over."""

def split_json_tensors(body: Buffer) -> tuple[bytes, list[tuple[int, JsonNumbers]]] | None:
    """Cut the plain number arrays of a v2 request body's ``inputs[i].data`` out, parsed.

    Returns:
        None when the body has no such array or is anything the walk does not follow
        (not an object, escaped or repeated ``inputs``/``data`` keys, trailing bytes);
        else ``(skeleton, found)``: the body with each found array replaced by ``null``,
        for orjson, and ``(input index, JsonNumbers)`` per array. An array that is not a
        regular nest of plain JSON numbers (strings, null, NaN, ragged or empty lists,
        more than 19 significant digits, out of double range) stays in the skeleton.
        The pure-Python twin always returns None: orjson on the whole body then gives
        the very same document.
    """
