"""benchmarks/avx2_env.py: the exports that run the AVX2 path on an AVX-512 machine."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "avx2_env.py"
_spec = importlib.util.spec_from_file_location("avx2_env", SCRIPT)
avx2_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(avx2_env)


def test_features_keep_avx2_and_drop_every_avx512_extension():
    feats = avx2_env.avx2_features()
    if feats is None:
        pytest.skip("this CPU has no AVX2")
    items = feats.split(",")
    assert "+avx2" in items and "+fma" in items
    on = [f[1:] for f in items if f.startswith("+")]
    assert not [f for f in on if f.startswith(("avx512", "amx", "avx10"))], on


def test_exports_make_numba_emit_no_512_bit_code(tmp_path):
    """Under the printed exports Numba compiles for AVX2: a vectorizable loop uses ymm registers
    and no zmm (with NUMBA_CPU_NAME alone, LLVM keeps the host's AVX-512 and emits zmm)."""
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    if out.returncode == 1:
        pytest.skip("this CPU has no AVX2")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import numpy as np, numba\n"
        "@numba.njit(fastmath=True)\n"
        "def dot(a, b):\n"
        "    s = 0.0\n"
        "    for i in range(a.size):\n"
        "        s += a[i] * b[i]\n"
        "    return s\n"
        "a = np.ones(1000, np.float32)\n"
        "dot(a, a)\n"
        "asm = list(dot.inspect_asm().values())[0]\n"
        "print(numba.config.CPU_NAME, 'zmm' in asm, 'ymm' in asm)\n")
    run = subprocess.run(["bash", "-c", f"{out.stdout.strip()} && {sys.executable} {probe}"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["haswell", "False", "True"], run.stdout
