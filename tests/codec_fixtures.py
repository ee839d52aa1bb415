"""The codec_impl fixture: every codec test runs on the Py twin and on the C module.

Import it into a test module (``from codec_fixtures import codec_impl``) or a conftest.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from fastserve import _codec_py
from fastserve.codec import NO_EXTENSIONS


def _load_c() -> ModuleType | None:
    if NO_EXTENSIONS:
        return None
    try:
        return importlib.import_module("fastserve._codec")
    except ImportError:
        return None


CODEC_C = _load_c()
CODEC_PY = _codec_py


@pytest.fixture(params=["py", "c"], ids=["py-codec", "c-codec"])
def codec_impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "py":
        return CODEC_PY
    if CODEC_C is None:
        pytest.skip("fastserve._codec is not built (or FASTSERVE_NO_EXTENSIONS is set)")
    return CODEC_C
