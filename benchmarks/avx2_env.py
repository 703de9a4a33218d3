"""Shell exports that make this machine run fastmbrl's AVX2 code paths (for an AVX-512 machine
standing in for the AVX2-only CPUs most users have).

    eval "$(python benchmarks/avx2_env.py)" && python -m pytest benchmarks/bench_sac.py -s

- Numba: ``NUMBA_CPU_NAME=haswell`` and ``NUMBA_CPU_FEATURES`` = this host's features with every
  AVX-512 extension switched off. The CPU name alone is not enough: Numba then keeps the host's
  features, and LLVM, no longer tuned for a CPU that prefers 256-bit vectors, emits 512-bit (zmm)
  code, which is neither the native path nor the AVX2 one. Numba's cache keys on both variables,
  so the two paths keep separate caches.
- OpenBLAS: ``OPENBLAS_CORETYPE=Haswell`` (its AVX2 kernels; check with threadpoolctl's
  ``architecture``).
- The C kernels (csrc/) have an AVX2+FMA variant and a portable one and no AVX-512 variant: an
  AVX-512 machine already runs the AVX2 one, so nothing is to be forced.
- The PyTorch peers of the benchmarks: ``ATEN_CPU_CAPABILITY=avx2`` (ATen's vectorized
  kernels), ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (its BLAS) and ``DNNL_MAX_CPU_ISA=AVX2`` (oneDNN), so
  a same-run ratio compares the two libraries' AVX2 code.

Prints nothing and exits with status 1 on a CPU without AVX2 (there is no AVX2 path to run).
"""
import sys


def avx2_features():
    """This host's LLVM feature string with the AVX-512 extensions off, or None without AVX2."""
    import llvmlite.binding as ll

    feats = ll.get_host_cpu_features()
    if not feats.get("avx2") or not feats.get("fma"):
        return None
    out = []
    for name, on in sorted(feats.items()):
        if name.startswith("avx512") or name.startswith("amx") or name.startswith("avx10"):
            on = False
        out.append(("+" if on else "-") + name)
    return ",".join(out)


def avx2_exports(feats):
    """The variables (name -> value) that select the AVX2 code of fastmbrl and its peers."""
    return {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": feats,
            "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}


def main():
    feats = avx2_features()
    if feats is None:
        return 1
    print("export " + " ".join(f"{k}='{v}'" for k, v in avx2_exports(feats).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
