"""Build the Cython/C extension modules of fastmbrl (everything else lives in pyproject.toml).

Each entry of MOD_NAMES is a Cython module under fastmbrl/_ext/ compiled together with the C99
kernels in csrc/. Hot C functions carry ``__attribute__((target("avx2,fma")))`` and are selected at
run time by CPU features, so the default flags stay portable (no -march=native in what users install).
Set FASTMBRL_DEBUG_CYTHON=1 to re-enable bounds checking and wraparound while debugging, and
FASTMBRL_NO_OPENMP=1 to build without OpenMP (the training step then runs on one thread).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MOD_NAMES = ["fastmbrl._ext._nn"]

DEBUG_DIRECTIVES = os.environ.get("FASTMBRL_DEBUG_CYTHON", "0") == "1"


OPENMP_TEST = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def _openmp_flags(compiler):
    """(compile, link) flags that enable OpenMP with this compiler, or None when it has none."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if os.environ.get("FASTMBRL_NO_OPENMP", "0") == "1":
        return None
    flags = ["-fopenmp"]
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        compiler.link_executable(objs, "omp_test", output_dir=tmp, extra_postargs=flags)
        subprocess.run([os.path.join(tmp, "omp_test")], check=True, capture_output=True)
        return flags, flags
    except Exception:  # noqa: BLE001 - any failure means "no usable OpenMP"
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """Per-compiler flags: optimise, keep IEEE semantics (no -ffast-math: it sets flush-to-zero process-wide).

    OpenMP (used only when a caller asks for ``n_threads > 1``) is optional: without it the
    extension still builds and runs single-threaded, with a warning here.
    """

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        omp = _openmp_flags(self.compiler)
        if omp is None:
            warnings.warn("fastmbrl: the C compiler has no usable OpenMP; the training kernels will "
                          "run on one thread (n_threads > 1 is ignored)", stacklevel=1)
        for ext in self.extensions:
            if ctype == "msvc":
                ext.extra_compile_args += ["/O2"]
            else:
                # gnu99 rather than c99: the AVX2 variants use __builtin_fma and GCC target pragmas.
                # -fno-trapping-math lets branch-free selects vectorize; it changes no result (no
                # FP traps are ever enabled), unlike -ffast-math.
                ext.extra_compile_args += ["-O3", "-std=gnu99", "-fno-math-errno", "-fno-trapping-math",
                                         "-Wno-unused-function"]
            if omp is not None:
                ext.extra_compile_args += omp[0]
                ext.extra_link_args += omp[1]
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
                depends=sorted(glob("csrc/fm_*.h")),
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
