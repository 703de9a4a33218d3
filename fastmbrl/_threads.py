"""Thread plumbing shared by every layer: the BLAS pools held to a few threads, and what an
``n_threads="auto"`` setting means.

BLAS: the compiled kernels call scipy's OpenBLAS (Numba's ``np.dot`` through
``scipy.linalg.cython_blas``) and thread the work themselves; an OpenBLAS team spinning beside them
collapses on a busy 2-core machine (docs/performance.md, "Threads"), so the kernels run with the
BLAS pools at one thread. :func:`limit_blas` is that limit, through one threadpoolctl controller
made once per process (making one costs about 1.5 ms; applying a limit about 20 us).
"""
import os
import threading
from contextlib import nullcontext

_CONTROLLER = None
_CONTROLLER_LOCK = threading.Lock()


def blas_controller():
    """threadpoolctl's controller of the process's BLAS pools, made on first use and kept.

    scipy's OpenBLAS is loaded before the controller is made: it is loaded only when a kernel first
    runs, and a controller made before that would see numpy's copy alone and leave scipy's thread
    team running inside the kernels.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        with _CONTROLLER_LOCK:
            if _CONTROLLER is None:
                import scipy.linalg.cython_blas  # noqa: F401
                from threadpoolctl import ThreadpoolController
                _CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _CONTROLLER


def limit_blas(threads=1):
    """Context holding the BLAS pools to ``threads`` threads, restored on exit.

    Parameters
    ----------
    threads : int or None
        Threads per BLAS pool while the context is open; None leaves BLAS alone (a no-op context).
    """
    if threads is None:
        return nullcontext()
    return blas_controller().limit(limits=threads)


def resolve_threads(n_threads, worthwhile=True):
    """The thread count an ``n_threads`` setting means.

    Parameters
    ----------
    n_threads : int or "auto"
        An integer is returned as given; "auto" means 2 when two threads pay (``worthwhile``) and
        the machine has 2 or more cores, else 1.
    worthwhile : bool or callable
        Whether a second thread pays for this work (e.g. the problem is large enough, the build
        has OpenMP); a callable is asked (without arguments) only for "auto".

    Returns
    -------
    int (or ``n_threads`` unchanged when it is not "auto")
    """
    if not (isinstance(n_threads, str) and n_threads == "auto"):
        return n_threads
    if callable(worthwhile):
        worthwhile = worthwhile()
    return 2 if (worthwhile and (os.cpu_count() or 1) >= 2) else 1
