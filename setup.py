"""Build the Cython/C extension modules of fastmbrl (everything else lives in pyproject.toml).

Each entry of MOD_NAMES is a Cython module under fastmbrl/_ext/ compiled together with the C99
kernels in csrc/. Hot C functions carry ``__attribute__((target("avx2,fma")))`` and are selected at
run time by CPU features, so the default flags stay portable (no -march=native in what users install).
Set FASTMBRL_DEBUG_CYTHON=1 to re-enable bounds checking and wraparound while debugging.
"""
import os
import sys
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MOD_NAMES = ["fastmbrl._ext._nn"]

DEBUG_DIRECTIVES = os.environ.get("FASTMBRL_DEBUG_CYTHON", "0") == "1"


class BuildExt(build_ext):
    """Per-compiler flags: optimise, keep IEEE semantics (no -ffast-math: it sets flush-to-zero process-wide)."""

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        for ext in self.extensions:
            if ctype == "msvc":
                ext.extra_compile_args += ["/O2"]
            else:
                ext.extra_compile_args += ["-O3", "-std=c99", "-fno-math-errno", "-Wno-unused-function"]
        super().build_extensions()


def make_extensions():
    exts = []
    for name in MOD_NAMES:
        pyx = name.replace(".", "/") + ".pyx"
        if not os.path.exists(pyx):
            continue
        exts.append(
            Extension(
                name,
                sources=[pyx] + sorted(glob("csrc/fm_*.c")),
                include_dirs=[np.get_include(), "csrc"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG_DIRECTIVES,
        "wraparound": DEBUG_DIRECTIVES,
        "cdivision": True,
        "initializedcheck": DEBUG_DIRECTIVES,
    }
    return cythonize(exts, compiler_directives=directives) if exts else []


setup(ext_modules=make_extensions(), cmdclass={"build_ext": BuildExt})
