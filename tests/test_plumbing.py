"""The plumbing written once: the compiled-or-twin switch (fastmbrl.backend.kernels), the BLAS
thread limit and the meaning of n_threads="auto" (fastmbrl._threads)."""
import pytest

from fastmbrl import _threads, backend


def test_kernels_returns_the_module_or_its_twin(monkeypatch):
    from fastmbrl.planning import _kernels, _reference

    monkeypatch.setattr(backend, "PURE_PYTHON", False)
    assert backend.kernels("fastmbrl.planning._kernels") is _kernels
    monkeypatch.setattr(backend, "PURE_PYTHON", True)
    assert backend.kernels("fastmbrl.planning._kernels") is _reference
    with monkeypatch.context() as m:                 # decided at every call
        m.setattr(backend, "use_compiled", lambda: True)
        assert backend.kernels("fastmbrl.planning._kernels") is _kernels


def test_kernels_refuses_a_name_that_is_not_a_kernel_module():
    with pytest.raises(ValueError, match="_kernels"):
        backend.kernels("fastmbrl.planning.rollout")


def test_resolve_threads(monkeypatch):
    assert _threads.resolve_threads(1) == 1
    assert _threads.resolve_threads(3) == 3
    asked = []

    def worthwhile():
        asked.append(True)
        return True

    assert _threads.resolve_threads(2, worthwhile=worthwhile) == 2 and not asked  # only for auto
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    assert _threads.resolve_threads("auto") == 2
    assert _threads.resolve_threads("auto", worthwhile=worthwhile) == 2 and asked
    assert _threads.resolve_threads("auto", worthwhile=False) == 1
    assert _threads.resolve_threads("auto", worthwhile=lambda: False) == 1
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 1)
    assert _threads.resolve_threads("auto") == 1
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: None)
    assert _threads.resolve_threads("auto") == 1


def test_limit_blas_limits_and_restores():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    import scipy.linalg.cython_blas  # noqa: F401  (the library the kernels call)
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas()
        with _threads.limit_blas(1):
            assert blas() and all(n == 1 for n in blas())
        assert blas() == before
        with _threads.limit_blas(None):               # None: BLAS left alone
            assert blas() == before
