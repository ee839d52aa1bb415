"""Table-driven tests of the binary tensor codec, run on both implementations."""

from __future__ import annotations

import gc
import itertools
import mmap
import re
import struct
import sys

import numpy as np
import pytest

from fastserve.errors import CodecError, InvalidInputError

import codec_fixtures
from codec_fixtures import CODEC_C, CODEC_PY

codec_impl = codec_fixtures.codec_impl


def enc(*items: bytes) -> bytes:
    """The BYTES layout built independently of the codec: | uint32 LE length | bytes |."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def as_bytearray(b: bytes) -> bytearray:
    return bytearray(b)


def as_memoryview(b: bytes) -> memoryview:
    return memoryview(b)


def as_unaligned_slice(b: bytes) -> memoryview:
    # The server hands the codec memoryview(body)[header_len:]: odd offsets, unaligned.
    return memoryview(b"{json}" + b)[6:]


BUFFER_TYPES = [bytes, as_bytearray, as_memoryview, as_unaligned_slice]
BUFFER_IDS = ["bytes", "bytearray", "memoryview", "unaligned-slice"]


def check_error(exc_type, pattern, fn, *args):
    """Assert fn raises exc_type with a message matching pattern, fully: both
    implementations are held to the same regex, so their messages cannot drift."""
    with pytest.raises(exc_type) as info:
        fn(*args)
    assert re.fullmatch(pattern, str(info.value)), str(info.value)
    assert type(info.value) is exc_type


# ### split_binary_inputs ###

SPLIT_VALID = [
    # (case, tail, sizes, expected parts)
    ("empty body, no inputs", b"", [], []),
    ("empty body, zero-size inputs", b"", [("a", 0), ("b", 0)], [b"", b""]),
    ("zero-size input in the middle", b"abcd", [("a", 1), ("b", 0), ("c", 3)], [b"a", b"", b"bcd"]),
    # PROTOCOLS.md 3b example: input0 UINT32 [2,2] (16 bytes), input1 BOOL [3].
    (
        "spec example",
        struct.pack("<4I", 1, 2, 3, 4) + b"\x01\x00\x01",
        [("input0", 16), ("input1", 3)],
        [struct.pack("<4I", 1, 2, 3, 4), b"\x01\x00\x01"],
    ),
    ("one input takes all", bytes(range(256)), [("x", 256)], [bytes(range(256))]),
]


@pytest.mark.parametrize("make", BUFFER_TYPES, ids=BUFFER_IDS)
@pytest.mark.parametrize("case,tail,sizes,expected", SPLIT_VALID, ids=[c[0] for c in SPLIT_VALID])
def test_split_valid(codec_impl, make, case, tail, sizes, expected):
    views = codec_impl.split_binary_inputs(make(tail), sizes)
    assert all(type(v) is memoryview for v in views)
    assert [v.tobytes() for v in views] == expected


SPLIT_INVALID = [
    # (case, expected-message regex, tail, sizes)
    (
        "size past the end",
        r"input 'x': binary_data_size 16 but only 12 bytes remain in the body",
        b"\0" * 12,
        [("x", 16)],
    ),
    (
        "second size past the end",
        r"input 'b': binary_data_size 9 but only 8 bytes remain in the body",
        b"\0" * 12,
        [("a", 4), ("b", 9)],
    ),
    (
        "size past an empty body",
        r"input 'x': binary_data_size 1 but only 0 bytes remain in the body",
        b"",
        [("x", 1)],
    ),
    (
        "int64 overflow",
        r"input 'x': binary_data_size 9223372036854775808 but only 4 bytes remain in the body",
        b"\0" * 4,
        [("x", 2**63)],
    ),
    (
        "size past uint64",
        r"input 'x': binary_data_size 36893488147419103232 but only 4 bytes remain in the body",
        b"\0" * 4,
        [("x", 2**65)],
    ),
    ("negative size", r"input 'x': binary_data_size -1 is negative", b"\0" * 4, [("x", -1)]),
    (
        "huge negative size",
        r"input 'y': binary_data_size -18446744073709551616 is negative",
        b"\0" * 4,
        [("x", 4), ("y", -(2**64))],
    ),
    (
        "trailing bytes",
        r"5 unexpected trailing bytes after the last binary input 'b'",
        b"\0" * 12,
        [("a", 4), ("b", 3)],
    ),
    (
        "trailing bytes, zero sizes",
        r"1 unexpected trailing bytes after the last binary input 'a'",
        b"\0",
        [("a", 0)],
    ),
    (
        "bytes but no binary inputs",
        r"3 unexpected trailing bytes in a body with no binary inputs",
        b"abc",
        [],
    ),
    (
        "string size",
        r"input 'x': binary_data_size must be an integer, got '4'",
        b"\0" * 4,
        [("x", "4")],
    ),
    (
        "float size",
        r"input 'x': binary_data_size must be an integer, got 4\.0",
        b"\0" * 4,
        [("x", 4.0)],
    ),
    (
        "bool size",
        r"input 'x': binary_data_size must be an integer, got True",
        b"\0",
        [("x", True)],
    ),
    (
        "null size",
        r"input 'x': binary_data_size must be an integer, got None",
        b"\0",
        [("x", None)],
    ),
]


@pytest.mark.parametrize("make", BUFFER_TYPES, ids=BUFFER_IDS)
@pytest.mark.parametrize(
    "case,pattern,tail,sizes", SPLIT_INVALID, ids=[c[0] for c in SPLIT_INVALID]
)
def test_split_invalid(codec_impl, make, case, pattern, tail, sizes):
    check_error(CodecError, pattern, codec_impl.split_binary_inputs, make(tail), sizes)


def test_codec_error_is_a_client_error():
    # A 400 from the front-ends, and still a ValueError to plain Python callers.
    assert issubclass(CodecError, InvalidInputError)
    assert issubclass(CodecError, ValueError)


@pytest.mark.parametrize("n", range(9))
def test_split_every_partition(codec_impl, n):
    """Each way to cut a small tail into consecutive inputs, zero-size ones included."""
    tail = bytes(range(1, n + 1))
    for cuts in itertools.combinations_with_replacement(range(n + 1), 3):
        bounds = (0, *cuts, n)
        sizes = [(f"in{i}", bounds[i + 1] - bounds[i]) for i in range(len(bounds) - 1)]
        views = codec_impl.split_binary_inputs(tail, sizes)
        assert [v.tobytes() for v in views] == [tail[a:b] for a, b in itertools.pairwise(bounds)]
        if n:
            # Every size one too small or too large is rejected.
            with pytest.raises(CodecError):
                codec_impl.split_binary_inputs(tail, [*sizes[:-1], ("last", sizes[-1][1] - 1)])
        with pytest.raises(CodecError):
            codec_impl.split_binary_inputs(tail, [*sizes[:-1], ("last", sizes[-1][1] + 1)])


def test_split_is_zero_copy_of_a_bytearray(codec_impl):
    body = bytearray(b"aaaabbbccc")
    a, b, c = codec_impl.split_binary_inputs(body, [("a", 4), ("b", 3), ("c", 3)])
    assert a.obj is body and not a.readonly
    body[4:7] = b"XYZ"  # the views see later changes to the source ...
    assert b.tobytes() == b"XYZ"
    c[0] = ord("!")  # ... and write through to it.
    assert body == bytearray(b"aaaaXYZ!cc")
    np.frombuffer(a, dtype=np.uint8)[:] = 0  # a tensor built on a view aliases the body
    assert body[:4] == b"\0\0\0\0"


def test_split_views_a_memoryview_tail_in_place(codec_impl):
    body = bytearray(b"{json}0123456789")
    (x, y) = codec_impl.split_binary_inputs(memoryview(body)[6:], [("x", 4), ("y", 6)])
    body[6] = ord("#")
    assert x.tobytes() == b"#123" and not y.readonly
    y[-1:] = b"!"
    assert body.endswith(b"!")


def test_split_bytes_views_are_readonly_and_alias(codec_impl):
    body = b"0123456789"
    (x,) = codec_impl.split_binary_inputs(body, [("x", 10)])
    assert x.obj is body and x.readonly
    assert np.frombuffer(x, dtype=np.uint8).ctypes.data == np.frombuffer(body, np.uint8).ctypes.data


def test_split_reads_other_buffers_as_raw_bytes(codec_impl):
    arr = np.arange(4, dtype="<u4")
    first, rest = codec_impl.split_binary_inputs(arr, [("a", 4), ("b", 12)])
    assert first.tobytes() == struct.pack("<I", 0) and len(rest) == 12
    assert first.format == "B"


@pytest.mark.parametrize(
    "func,args",
    [
        ("split_binary_inputs", ([("x", 1)],)),
        ("decode_bytes_tensor", ("x",)),
    ],
)
def test_non_contiguous_buffers_are_refused(codec_impl, func, args):
    strided = memoryview(bytes(8))[::2]
    with pytest.raises(TypeError, match=r"^binary data must be a C-contiguous buffer$"):
        getattr(codec_impl, func)(strided, *args)
    with pytest.raises(TypeError, match="bytes-like object is required"):
        getattr(codec_impl, func)("not a buffer", *args)


# ### decode_bytes_tensor ###

DECODE_VALID = [
    # (case, items)
    ("empty tensor", []),
    ("one empty element", [b""]),
    ("only empty elements", [b""] * 5),
    ("empty between", [b"a", b"", b"b"]),
    ("binary and NUL bytes", [b"\0", b"\xff\xfe", b"\0\0\0\0"]),
    ("UTF-8", ["é".encode(), "日本語".encode(), "🙂".encode()]),
    ("length needs two bytes", [b"x" * 300, b"y"]),
    ("length needs three bytes", [b"z" * 70_000]),
]


@pytest.mark.parametrize("make", BUFFER_TYPES, ids=BUFFER_IDS)
@pytest.mark.parametrize("case,items", DECODE_VALID, ids=[c[0] for c in DECODE_VALID])
def test_decode_valid(codec_impl, make, case, items):
    body = enc(*items)
    for count in (-1, len(items)):
        out = codec_impl.decode_bytes_tensor(make(body), "x", count)
        assert out == items and all(type(e) is bytes for e in out)


@pytest.mark.parametrize("case,items", DECODE_VALID[1:], ids=[c[0] for c in DECODE_VALID[1:]])
def test_tritonclient_agrees(codec_impl, case, items):
    """tritonclient's own serializer is the oracle for the ecosystem's clients."""
    utils = pytest.importorskip("tritonclient.utils")
    body = utils.serialize_byte_tensor(np.array(items, dtype=np.object_)).item()
    assert codec_impl.decode_bytes_tensor(body, "x", len(items)) == items
    assert codec_impl.encode_bytes_tensor(items) == body
    assert list(utils.deserialize_bytes_tensor(codec_impl.encode_bytes_tensor(items))) == items


DECODE_INVALID = [
    # (case, expected-message regex, body, count)
    (
        "truncated length prefix",
        r"input 'x': BYTES element 0 at offset 0 has a truncated length prefix \(2 of 4 bytes\)",
        b"\x01\x00",
        -1,
    ),
    (
        "truncated prefix after an element (trailing bytes)",
        r"input 'x': BYTES element 1 at offset 6 has a truncated length prefix \(3 of 4 bytes\)",
        enc(b"ab") + b"\0\0\0",
        -1,
    ),
    (
        "one trailing byte after empty elements",
        r"input 'x': BYTES element 2 at offset 8 has a truncated length prefix \(1 of 4 bytes\)",
        enc(b"", b"") + b"\0",
        2,
    ),
    (
        "length past the end",
        r"input 'x': BYTES element 0 at offset 0 has length 5 but only 3 bytes remain",
        b"\x05\0\0\0abc",
        -1,
    ),
    (
        "second length past the end",
        r"input 'x': BYTES element 1 at offset 5 has length 2 but only 1 bytes remain",
        enc(b"a") + b"\x02\0\0\0b",
        -1,
    ),
    (
        "length prefix with nothing after it",
        r"input 'x': BYTES element 0 at offset 0 has length 1 but only 0 bytes remain",
        b"\x01\0\0\0",
        -1,
    ),
    (
        "maximum uint32 length",
        r"input 'x': BYTES element 0 at offset 0 has length 4294967295 but only 2 bytes remain",
        b"\xff\xff\xff\xffab",
        -1,
    ),
    (
        # Read big-endian this prefix would be 1 and the body valid.
        "prefix is little-endian",
        r"input 'x': BYTES element 0 at offset 0 has length 16777216 but only 1 bytes remain",
        b"\0\0\0\x01a",
        -1,
    ),
    (
        "more elements than the shape",
        r"input 'x': expected 2 BYTES elements but found 3",
        enc(b"a", b"b", b"c"),
        2,
    ),
    (
        "fewer elements than the shape",
        r"input 'x': expected 4 BYTES elements but found 3",
        enc(b"a", b"", b"c"),
        4,
    ),
    ("empty body for one element", r"input 'x': expected 1 BYTES elements but found 0", b"", 1),
    (
        "element count past int64",
        r"input 'x': expected 18446744073709551616 BYTES elements but found 1",
        enc(b"a"),
        2**64,
    ),
    (
        "a bad length wins over a count mismatch",
        r"input 'x': BYTES element 1 at offset 5 has length 9 but only 0 bytes remain",
        enc(b"a") + b"\x09\0\0\0",
        5,
    ),
]


@pytest.mark.parametrize("make", BUFFER_TYPES, ids=BUFFER_IDS)
@pytest.mark.parametrize(
    "case,pattern,body,count", DECODE_INVALID, ids=[c[0] for c in DECODE_INVALID]
)
def test_decode_invalid(codec_impl, make, case, pattern, body, count):
    decode = codec_impl.decode_bytes_tensor
    check_error(CodecError, pattern, decode, make(body), "x", count)


def test_decode_names_the_input(codec_impl):
    with pytest.raises(CodecError, match=r"^input 'my input\\n': "):
        codec_impl.decode_bytes_tensor(b"\x01", "my input\n")


@pytest.mark.parametrize("case,items", DECODE_VALID[1:5], ids=[c[0] for c in DECODE_VALID[1:5]])
def test_decode_every_truncation(codec_impl, case, items):
    """Cut the body at every byte: a cut on an element boundary decodes to a
    prefix of the list, any other cut is a CodecError, never another error."""
    body = enc(*items)
    boundaries = {len(enc(*items[:k])): items[:k] for k in range(len(items) + 1)}
    for cut in range(len(body) + 1):
        if cut in boundaries:
            assert codec_impl.decode_bytes_tensor(body[:cut], "x") == boundaries[cut]
        else:
            with pytest.raises(CodecError):
                codec_impl.decode_bytes_tensor(bytearray(body[:cut]), "x")


def test_decode_copies_elements(codec_impl):
    body = bytearray(enc(b"abc"))
    (elem,) = codec_impl.decode_bytes_tensor(body, "x")
    body[4:] = b"XYZ"
    assert elem == b"abc"  # elements are bytes, not views: later writes do not show


def test_decode_releases_the_buffer(codec_impl):
    body = bytearray(enc(b"abc"))
    codec_impl.decode_bytes_tensor(body, "x")
    body += b"more"  # a bytearray with a live export could not be resized


# ### encode_bytes_tensor and bytes_tensor_size ###

ENCODE_VALID = [
    # (case, items, expected body)
    ("empty", [], b""),
    ("one empty element", [b""], enc(b"")),
    ("bytes", [b"a", b"", b"\0\xff"], enc(b"a", b"", b"\0\xff")),
    ("str is UTF-8", ["a", "é", "🙂", ""], enc(b"a", "é".encode(), "🙂".encode(), b"")),
    ("bytearray", [bytearray(b"xy")], enc(b"xy")),
    ("memoryview", [memoryview(b"abcdef")[2:4]], enc(b"cd")),
    ("strided memoryview", [memoryview(b"abcdef")[::2]], enc(b"ace")),
    ("typed buffer as raw bytes", [np.array([1, 2], dtype="<u2")], enc(b"\x01\0\x02\0")),
    ("bytes and str subclasses", [np.bytes_(b"np"), np.str_("s")], enc(b"np", b"s")),
    ("long element", [b"q" * 70_000], enc(b"q" * 70_000)),
]


@pytest.mark.parametrize("case,items,expected", ENCODE_VALID, ids=[c[0] for c in ENCODE_VALID])
def test_encode_and_size(codec_impl, case, items, expected):
    assert codec_impl.encode_bytes_tensor(items) == expected
    assert codec_impl.encode_bytes_tensor(iter(items)) == expected  # any iterable, one pass
    assert codec_impl.bytes_tensor_size(items) == len(expected)
    assert codec_impl.bytes_tensor_size(x for x in items) == len(expected)
    assert type(codec_impl.encode_bytes_tensor(items)) is bytes


ENCODE_INVALID = [
    # (case, exception, expected-message regex, items)
    (
        "int",
        TypeError,
        r"BYTES element 0: expected bytes, bytearray, memoryview or str, got int",
        [1],
    ),
    (
        "None after good elements",
        TypeError,
        r"BYTES element 2: expected bytes, bytearray, memoryview or str, got NoneType",
        [b"a", "b", None],
    ),
    (
        "lone surrogate",
        UnicodeEncodeError,
        r"'utf-8' codec can't encode character '\\ud800' in position 1: surrogates not allowed",
        ["a\ud800"],
    ),
]


@pytest.mark.parametrize("func", ["encode_bytes_tensor", "bytes_tensor_size"])
@pytest.mark.parametrize(
    "case,exc,pattern,items", ENCODE_INVALID, ids=[c[0] for c in ENCODE_INVALID]
)
def test_encode_invalid(codec_impl, func, case, exc, pattern, items):
    check_error(exc, pattern, getattr(codec_impl, func), items)


@pytest.fixture(scope="module")
def four_gib():
    """An untouched anonymous mapping: 4 GiB of address space, no memory used."""
    if sys.maxsize < 2**32:
        pytest.skip("needs a 64-bit build")
    try:
        m = mmap.mmap(-1, 2**32)
    except (OSError, OverflowError, MemoryError) as exc:
        pytest.skip(f"cannot map 4 GiB: {exc}")
    yield m
    gc.collect()  # views held by the error tracebacks' reference cycles
    try:
        m.close()
    except BufferError:  # still exported somewhere: the mapping goes with the process
        pass


def test_element_over_uint32_is_refused(codec_impl, four_gib):
    with memoryview(four_gib) as too_long, memoryview(four_gib)[:-1] as longest:
        assert codec_impl.bytes_tensor_size([b"a", longest]) == 5 + 4 + 0xFFFFFFFF
        for func in (codec_impl.bytes_tensor_size, codec_impl.encode_bytes_tensor):
            check_error(
                ValueError,
                r"BYTES element 1 is 4294967296 bytes; "
                r"a uint32 length prefix holds at most 4294967295",
                func,
                [b"a", too_long],
            )


# ### The two implementations agree ###


@pytest.mark.skipif(CODEC_C is None, reason="fastserve._codec is not built")
@pytest.mark.parametrize(
    "func,args",
    [("split_binary_inputs", (c[2], c[3])) for c in SPLIT_INVALID]
    + [("decode_bytes_tensor", (c[2], "x", c[3])) for c in DECODE_INVALID]
    + [("encode_bytes_tensor", (c[3],)) for c in ENCODE_INVALID],
)
def test_same_message_from_both(func, args):
    errors = []
    for impl in (CODEC_PY, CODEC_C):
        with pytest.raises(Exception) as info:  # noqa: B017 - any type, compared below
            getattr(impl, func)(*args)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
