"""The C codec really loaded (yarl test_quoting_c_loaded): a broken build must
not hide behind the pure-Python fallback. FASTSERVE_NO_EXTENSIONS=1 asks for it."""

from __future__ import annotations

import pytest

from fastserve import _codec_py, codec

API = ["split_binary_inputs", "decode_bytes_tensor", "encode_bytes_tensor", "bytes_tensor_size",
       "numbers_from_json", "split_json_tensors", "JsonNumbers"]


@pytest.mark.skipif(codec.NO_EXTENSIONS, reason="FASTSERVE_NO_EXTENSIONS is set")
@pytest.mark.parametrize("name", API)
def test_c_codec_loaded(name):
    from fastserve import _codec

    assert codec.IMPLEMENTATION == "c"
    assert getattr(codec, name) is getattr(_codec, name)
    assert _codec.__file__.endswith((".so", ".pyd"))


@pytest.mark.skipif(not codec.NO_EXTENSIONS, reason="FASTSERVE_NO_EXTENSIONS is not set")
@pytest.mark.parametrize("name", API)
def test_py_codec_loaded(name):
    assert codec.IMPLEMENTATION == "py"
    assert getattr(codec, name) is getattr(_codec_py, name)


def test_same_api():
    assert sorted(API) == sorted(n for n in codec.__all__ if n != n.upper())
    assert set(API) <= set(_codec_py.__all__)
