"""Build the optional C codec and HTTP protocol core; metadata lives in pyproject.toml.

``FASTSERVE_NO_EXTENSIONS=1`` gives a pure-Python build (aiohttp "Pure" vs
"Accelerated"); fastserve.codec then loads the twin in fastserve/_codec_py.py.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("FASTSERVE_NO_EXTENSIONS"))


class fastserve_build_ext(build_ext):
    """build_ext of asyncpg, httptools and uvloop: cythonize in finalize_options."""

    user_options = build_ext.user_options + [
        ("cython-always", None, "run cythonize() even if .c files are up to date"),
        ("cython-annotate", None, "produce a colorized HTML version of the Cython source"),
        ("cython-directives=", None, "Cython compiler directives, e.g. linetrace=True"),
    ]

    boolean_options = build_ext.boolean_options + ["cython-always", "cython-annotate"]

    def initialize_options(self):
        # NOTE: setuptools re-initializes this command for editable installs (to set
        # editable_mode, which puts the built module next to the sources): no guard here.
        super().initialize_options()
        self.cython_always = False
        self.cython_annotate = None
        self.cython_directives = None

    def finalize_options(self):
        # Cythonize once: after that the extensions' sources are the generated .c files.
        if any(src.endswith(".pyx") for ext in self.distribution.ext_modules or ()
               for src in ext.sources):
            self._cythonize()
        super().finalize_options()

    def _cythonize(self):
        try:
            from Cython.Build import cythonize
        except ImportError:
            # An sdist built elsewhere may carry the generated .c: compile that.
            for ext in self.distribution.ext_modules:
                ext.sources = [_c_or_fail(src) for src in ext.sources]
            return

        directives = {"language_level": 3}
        for item in filter(None, (self.cython_directives or "").split(",")):
            key, _, value = item.partition("=")
            directives[key.strip()] = {"true": True, "false": False}.get(
                value.strip().lower(), value.strip()
            )
        # NOTE: with Cython installed, setuptools' build_ext is Cython's, which
        # reads cython_directives as a dict (asyncpg does the same).
        self.cython_directives = directives
        # NOTE: unlike httptools we do not prefer an existing .c over the .pyx:
        # the .c is not committed, so a stale one would silently build old code.
        # cythonize() itself skips files whose .c is newer than the .pyx.
        self.distribution.ext_modules[:] = cythonize(
            self.distribution.ext_modules,
            compiler_directives=directives,
            annotate=bool(self.cython_annotate),
            force=bool(self.cython_always),
        )


def _c_or_fail(source):
    if not source.endswith(".pyx"):
        return source
    cfile = source[: -len(".pyx")] + ".c"
    if not os.path.exists(cfile):
        raise RuntimeError(
            f"Cython>=3 is needed to build {source} (or set FASTSERVE_NO_EXTENSIONS=1)"
        )
    return cfile


if NO_EXTENSIONS:
    ext_modules = []
else:
    ext_modules = [
        Extension("fastserve._codec", ["fastserve/_codec.pyx"],
                  depends=[f"fastserve/_codec_json{part}.pxi" for part in (
                      "", "_number", "_values")]),
        Extension("fastserve.http._protocol", ["fastserve/http/_protocol.pyx"],
                  depends=[f"fastserve/http/{name}.pxi" for name in (
                      "_probe_head", "_request_cycle", "_response_head")]),
    ]

setup(ext_modules=ext_modules, cmdclass={"build_ext": fastserve_build_ext})
