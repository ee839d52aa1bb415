# cython: language_level=3
"""Binary tensor codec of the KServe v2 binary data extension (C version).

Same API, behaviour and error messages as fastserve/_codec_py.py, which is the
reference; tests run both. Body layout (little-endian, row-major, no padding):

    | JSON header (Inference-Header-Content-Length bytes) |
    | input[0] raw (binary_data_size[0]) | input[1] raw | ... |

BYTES tensor (binary_data_size counts the prefixes, as Triton does):

    | uint32 LE length[0] | length[0] bytes | uint32 LE length[1] | ... |
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from fastserve.errors import CodecError

cdef unsigned long long MAX_ELEMENT = 0xFFFFFFFF  # the largest length a uint32 prefix holds


# ### Checked read cursor (py-pgproto FRBuffer / frb_read) ###

cdef struct Cursor:
    const unsigned char* buf  # next unread byte
    Py_ssize_t len            # bytes left from buf on
    Py_ssize_t size           # whole buffer, to turn len into an offset for messages
    Py_ssize_t elem           # index of the BYTES element being read, for messages
    Py_ssize_t elem_start     # offset of its length prefix
    PyObject* name            # borrowed: the caller holds the input name


@cython.boundscheck(False)  # data[0] is taken only when data is non-empty
@cython.wraparound(False)
cdef inline void cur_init(Cursor* c, const unsigned char[::1] data, object name) noexcept:
    c.len = c.size = data.shape[0]
    c.buf = &data[0] if c.len > 0 else NULL  # an empty buffer is never read
    c.elem = c.elem_start = 0
    c.name = <PyObject*>name


cdef inline const unsigned char* cur_read(Cursor* c, size_t n) except NULL:
    """Consume n bytes and return where they start; CodecError if fewer remain."""
    cdef const unsigned char* p = c.buf
    if n > <size_t>c.len:
        raise_truncated(c, n)
    c.buf += n
    c.len -= <Py_ssize_t>n
    return p


cdef int raise_truncated(Cursor* c, size_t n) except -1:
    name = <object>c.name
    cdef Py_ssize_t at = c.size - c.len
    # The cursor reads each element as prefix then payload: a failed read that
    # starts at the element's first byte is the prefix, any other the payload.
    if at == c.elem_start:
        raise CodecError(
            f"input {name!r}: BYTES element {c.elem} at offset {at} has a truncated "
            f"length prefix ({c.len} of 4 bytes)"
        )
    raise CodecError(
        f"input {name!r}: BYTES element {c.elem} at offset {c.elem_start} has length {n} "
        f"but only {c.len} bytes remain"
    )


cdef inline uint32_t load_le32(const unsigned char* p) noexcept:
    # NOTE: memcpy, not *(uint32_t*)p: p is unaligned and the cast is undefined
    # behaviour (pgproto hton.h). Assembling the bytes of the local converts from
    # little-endian on any host and compiles to a plain load on little-endian ones.
    cdef uint32_t raw
    memcpy(&raw, p, 4)
    cdef const unsigned char* b = <const unsigned char*>&raw
    return b[0] | (<uint32_t>b[1] << 8) | (<uint32_t>b[2] << 16) | (<uint32_t>b[3] << 24)


cdef inline void store_le32(unsigned char* p, uint32_t v) noexcept:
    cdef unsigned char b[4]
    b[0] = v & 0xFF
    b[1] = (v >> 8) & 0xFF
    b[2] = (v >> 16) & 0xFF
    b[3] = v >> 24
    memcpy(p, b, 4)


cdef inline const unsigned char* next_element(Cursor* c, Py_ssize_t* n) except NULL:
    """Read one | uint32 LE length | payload |; return the payload, its length in *n."""
    c.elem_start = c.size - c.len
    cdef uint32_t length = load_le32(cur_read(c, 4))
    cdef const unsigned char* p = cur_read(c, length)
    n[0] = <Py_ssize_t>length  # fits: cur_read proved length <= c.len
    c.elem += 1
    return p


# ### Buffer and element helpers ###

cdef object byte_view(object obj):
    """obj as a flat unsigned-byte buffer; bytes and bytearray as they are."""
    if type(obj) is bytes or type(obj) is bytearray:
        return obj
    view = memoryview(obj)
    if not view.c_contiguous:
        raise TypeError("binary data must be a C-contiguous buffer")
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


cdef object element_data(object item, Py_ssize_t index, Py_ssize_t* n):
    """item as str, bytes or a flat memoryview, its encoded length in *n, checked to fit."""
    if isinstance(item, str):
        PyUnicode_AsUTF8AndSize(item, n)  # UTF-8 is cached in the str: no copy
        data = item
    elif isinstance(item, bytes):
        n[0] = PyBytes_GET_SIZE(item)
        data = item
    else:
        try:
            data = memoryview(item)
        except TypeError:
            raise TypeError(
                f"BYTES element {index}: expected bytes, bytearray, memoryview or str, "
                f"got {type(item).__name__}"
            ) from None
        n[0] = data.nbytes
    if <unsigned long long>n[0] > MAX_ELEMENT:
        raise ValueError(
            f"BYTES element {index} is {n[0]} bytes; a uint32 length prefix holds at most "
            f"{MAX_ELEMENT}"
        )
    return data


cdef inline const char* element_ptr(object data, Py_ssize_t* n) except NULL:
    """Pointer and length of a str (UTF-8) or bytes element; runs no Python code."""
    if isinstance(data, str):
        return PyUnicode_AsUTF8AndSize(data, n)
    n[0] = PyBytes_GET_SIZE(data)
    return PyBytes_AS_STRING(data)


cdef inline Py_ssize_t add_size(Py_ssize_t total, Py_ssize_t n) except -1:
    # Checked: real objects cannot reach it, but many views may alias one buffer.
    if n > PY_SSIZE_T_MAX - 4 - total:
        raise OverflowError("BYTES tensor larger than sys.maxsize")
    return total + 4 + n


# ### Public API ###

def split_binary_inputs(tail, sizes):
    """Split the body tail into one zero-copy view per binary input (see _codec.pyi)."""
    view = byte_view(tail)
    if type(view) is not memoryview:
        view = memoryview(view)
    cdef Py_ssize_t total = len(view), pos = 0, n
    cdef list out = []
    last = None
    for name, size in sizes:
        # NOTE: sizes come from client JSON: check type and range in Python ints
        # before they become a C integer, so huge or odd values give CodecError.
        if not isinstance(size, int) or isinstance(size, bool):
            raise CodecError(f"input {name!r}: binary_data_size must be an integer, got {size!r}")
        if size < 0:
            raise CodecError(f"input {name!r}: binary_data_size {size} is negative")
        if size > total - pos:
            raise CodecError(
                f"input {name!r}: binary_data_size {size} but only {total - pos} bytes "
                "remain in the body"
            )
        n = size
        out.append(view[pos:pos + n])
        pos += n
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


@cython.boundscheck(False)  # out[i]: i < found == len(out)
@cython.wraparound(False)
def decode_bytes_tensor(buf, name, count=-1):
    """Decode | uint32 LE length | bytes | ... into a list of bytes (see _codec.pyi)."""
    cdef const unsigned char[::1] data = byte_view(buf)
    cdef Cursor c
    cdef Py_ssize_t found, i, n
    cdef const unsigned char* p
    # Pass 1 checks every length and counts, so a count mismatch is reported
    # before a single bytes object is allocated.
    cur_init(&c, data, name)
    while c.len > 0:
        next_element(&c, &n)
    found = c.elem
    if count >= 0 and found != count:
        raise CodecError(f"input {name!r}: expected {count} BYTES elements but found {found}")
    cdef list out = [None] * found
    # NOTE: pass 2 reads through the checked cursor again: allocating may run a
    # finalizer that rewrites a bytearray body, and then it must fail, not overrun.
    cur_init(&c, data, name)
    for i in range(found):
        p = next_element(&c, &n)
        out[i] = PyBytes_FromStringAndSize(<const char*>p, n)
    return out


def encode_bytes_tensor(items):
    """Encode items as | uint32 LE length | bytes | ... (see _codec.pyi)."""
    cdef list parts = []
    cdef Py_ssize_t total = 0, index = 0, n
    cdef const char* src
    for item in items:
        data = element_data(item, index, &n)
        if type(data) is memoryview:
            # NOTE: copied, so no buffer can change size between the two passes.
            data = data.tobytes()
        total = add_size(total, n)
        parts.append(data)
        index += 1
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
    # Pass 2 runs no Python code and str and bytes are immutable: the lengths
    # summed in pass 1 still hold, so every write stays inside out.
    for data in parts:
        src = element_ptr(data, &n)
        store_le32(dst, <uint32_t>n)
        memcpy(dst + 4, src, n)
        dst += 4 + n
    return out


def bytes_tensor_size(items):
    """Sum of 4 + len(element) over items, str counted in UTF-8 (see _codec.pyi)."""
    cdef Py_ssize_t total = 0, index = 0, n
    for item in items:
        element_data(item, index, &n)
        total = add_size(total, n)
        index += 1
    return total


# ### JSON numbers straight into a typed buffer (DESIGN.md) ###
#
# Only the plain case: a regular (not ragged) list of lists, at most 32 deep, of exactly
# float or int (not bool) leaves that the target holds exactly as numpy would store them.
# Anything else answers None and tensors.array_from_json takes its general path, which
# owns every refusal and its message; so the answer here is always the one it would give.

from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow

cdef extern from "Python.h":
    bint PyFloat_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    bint PyList_CheckExact(object o)

import numpy as _np

cdef enum:
    MAX_NDIM = 32  # numpy's limit before 2.0; deeper data takes the general path
cdef long long EXACT_INT = 1LL << 53  # beyond it an int -> double -> float32 may round twice

cdef enum Kind:
    F4, F8, I4, I8

_KINDS = {_np.dtype(_np.float32): F4, _np.dtype(_np.float64): F8, _np.dtype(_np.int32): I4,
          _np.dtype(_np.int64): I8}


cdef inline bint leaf(object v, Kind kind, char* out, Py_ssize_t i) noexcept:
    """Store v at out[i]; False when it is not a plain number for this kind."""
    cdef long long n
    cdef int overflow = 0
    cdef double d
    if PyFloat_CheckExact(v):
        if kind == I4 or kind == I8:
            return False  # integers only: the general path refuses floats
        d = PyFloat_AS_DOUBLE(v)
    elif PyLong_CheckExact(v):
        n = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow:
            return False
        if kind == I8:
            (<long long*>out)[i] = n
            return True
        if kind == I4:
            if n < -2147483648LL or n > 2147483647LL:
                return False
            (<int*>out)[i] = <int>n
            return True
        if n > EXACT_INT or n < -EXACT_INT:
            return False
        d = <double>n
    else:
        return False
    if kind == F8:
        (<double*>out)[i] = d
    else:  # IEEE rounding, overflow to +-inf: what numpy's cast does (C Annex F)
        (<float*>out)[i] = <float>d
    return True


cdef Py_ssize_t fill(list node, int level, int ndim, Py_ssize_t* dims, Kind kind,
                     char* out, Py_ssize_t pos) noexcept:
    """Write node's leaves from out[pos] on; the next position, or -1 when not plain."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(node)
    cdef object item
    if n != dims[level]:
        return -1  # ragged
    if level == ndim - 1:
        for i in range(n):
            if not leaf(<object>PyList_GET_ITEM(node, i), kind, out, pos + i):
                return -1
        return pos + n
    for i in range(n):
        item = <object>PyList_GET_ITEM(node, i)
        if not PyList_CheckExact(item):
            return -1
        pos = fill(<list>item, level + 1, ndim, dims, kind, out, pos)
        if pos < 0:
            return -1
    return pos


def numbers_from_json(data, dtype, count):
    """A flat array of ``dtype`` (numpy float32/float64/int32/int64) holding ``data``'s
    ``count`` numbers in order, or None when ``data`` is not that plain (see above)."""
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef int ndim = 0
    cdef Py_ssize_t total = 1, n
    kind = _KINDS.get(dtype)
    # count comes from a client's shape: any int (checked before it becomes a C integer).
    if kind is None or not PyList_CheckExact(data) or type(count) is not int or not (
            0 < count <= PY_SSIZE_T_MAX):
        return None
    n = count
    node = data
    while PyList_CheckExact(node):
        if ndim == MAX_NDIM:
            return None
        dims[ndim] = PyList_GET_SIZE(<list>node)
        if dims[ndim] == 0 or dims[ndim] > n // total:
            # Empty, or more leaves than count: stop before the product can overflow, as
            # fill() writes the leaf rows it finds (dims, checked node by node) into n slots.
            return None
        total *= dims[ndim]
        ndim += 1
        node = <object>PyList_GET_ITEM(<list>node, 0)
    if total != n:
        return None
    # n leaves really exist (lists of these lengths are in memory): n * 8 bytes cannot overflow
    buf = PyByteArray_FromStringAndSize(NULL, n * (4 if kind == F4 or kind == I4 else 8))
    if fill(<list>data, 0, ndim, dims, <Kind>kind, PyByteArray_AS_STRING(buf), 0) != n:
        return None
    return _np.frombuffer(buf, dtype)  # writable: numpy views the bytearray


include "_codec_json_number.pxi"
include "_codec_json_values.pxi"
include "_codec_json.pxi"
