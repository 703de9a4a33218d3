"""The floor the benchmarks are set against: this machine's float32 matrix-product rate, and the
FLOP counts of the networks' work.

A kernel made of matrix products cannot beat the rate of the BLAS ``sgemm`` it calls, so each
benchmark reports the fraction of that rate it reaches: its FLOPs per call divided by its median
time, over :func:`sgemm_rate` measured in the same session at the same thread count. 100% would be
every product running at ``sgemm`` speed with nothing else around it.

Counting rules (shared by every benchmark and ``run_dhmbpo_cost.py``):

- a matrix product of (m x k) by (k x n) is ``2 m n k`` FLOPs;
- a dense layer's backward pass is two products, the weight gradient and the input gradient; the
  first layer's input gradient is counted only when the computation needs it (a VJP to the inputs,
  not a training step, whose kernels skip it);
- element-wise work (biases, activations, losses, layer normalization, dropout, Adam) is not
  counted: :func:`adam_flops` gives its size for comparison;
- the count is that of the computation, not of one implementation: work a kernel repeats or pads
  (a second forward pass, padding rows) is not counted, so it shows as a lower fraction.

``record`` and ``not_counted`` attach the figures to pytest-benchmark's ``extra_info`` (so
``--benchmark-json`` carries them) and keep them for the table ``conftest.py`` prints at the end of
the session.
"""
import ctypes
import math
import statistics
import threading
import time

import numpy as np

SGEMM_SIZE = 256                 # the (n x n) @ (n x n) product the rate is measured on
ADAM_FLOPS_PER_PARAM = 15        # the fused kernels' Adam with coupled weight decay, per element

RATES = {}                       # threads -> sgemm FLOP/s measured in this process
ROWS = {}                        # benchmark node id -> figures of the table (insertion order)
UNTIMED = []                     # node ids recorded while pytest-benchmark's timings were off


# ---------------------------------------------------------------------------- FLOP counts
def mlp_macs(dims):
    """Multiply-adds of one row through a dense MLP of widths ``dims`` (D_in, hidden..., D_out)."""
    dims = [int(d) for d in dims]
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def forward_flops(dims, rows, members=1):
    """FLOPs of the forward pass of ``members`` MLPs of widths ``dims``, each on ``rows`` rows.

    Returns
    -------
    int
        ``2 * members * rows * sum_l D_l D_{l+1}`` (matrix products only).
    """
    return 2 * int(members) * int(rows) * mlp_macs(dims)


def backward_flops(dims, rows, members=1, weight_grads=True, input_grad=False):
    """FLOPs of the backward pass of ``members`` MLPs of widths ``dims`` on ``rows`` rows each.

    Parameters
    ----------
    dims : sequence of int
        Layer widths (D_in, hidden..., D_out).
    rows, members : int
    weight_grads : bool
        Count every layer's weight gradient (one product per layer).
    input_grad : bool
        Count the first layer's input gradient (the gradient with respect to the MLP's inputs).
        The input gradients of the other layers are counted whenever a gradient below them is
        wanted.

    Returns
    -------
    int
        FLOPs of the products (``2 * members * rows * D_l D_{l+1}`` each).
    """
    dims = [int(d) for d in dims]
    layer = [a * b for a, b in zip(dims[:-1], dims[1:])]
    macs = sum(layer) if weight_grads else 0
    if weight_grads or input_grad:
        macs += sum(layer[1:]) + (layer[0] if input_grad else 0)
    return 2 * int(members) * int(rows) * macs


def train_step_flops(dims, rows, members=1):
    """FLOPs of one training step's products: forward, then backward with every weight gradient
    and the input gradients above the first layer (``fastmbrl``'s fused step and critic kernels
    skip the first layer's)."""
    return forward_flops(dims, rows, members) + backward_flops(dims, rows, members)


def vjp_flops(dims, rows, members=1):
    """FLOPs of a forward pass and the gradient with respect to the inputs (no weight
    gradients): twice the forward pass."""
    return forward_flops(dims, rows, members) + backward_flops(
        dims, rows, members, weight_grads=False, input_grad=True)


def param_count(dims, members=1):
    """Weights and biases of ``members`` MLPs of widths ``dims``."""
    dims = [int(d) for d in dims]
    return int(members) * sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def adam_flops(n_params):
    """Element-wise FLOPs of one Adam update of ``n_params`` parameters (with coupled weight
    decay, as the fused kernels run it: 15 per parameter, a square root counted as one). Not part
    of any benchmark's count; it shows how little the update weighs beside the products."""
    return ADAM_FLOPS_PER_PARAM * int(n_params)


def fit_flops(dims, members, n_train, n_holdout, batch_size, epochs, max_steps=None):
    """FLOPs of one ``GaussianEnsemble.fit`` (``EnsembleTrainer.fit``) that ran ``epochs`` epochs.

    Parameters
    ----------
    dims : sequence of int
        The network's widths (D_in, hidden..., 2 D_out).
    members : int
        Ensemble size E.
    n_train, n_holdout : int
        Training and holdout rows (``FitHistory.n_train``, ``FitHistory.n_holdout``).
    batch_size : int
        Rows per member per minibatch step (capped at ``n_train``, as the trainer does).
    epochs : int
        Epochs run (``FitHistory.epochs_run``).
    max_steps : int, optional
        The fit's step budget.

    Returns
    -------
    int
        ``ceil(n_train / batch)`` training steps per epoch (at most ``max_steps`` in all) of
        ``batch`` rows per member, plus one forward pass of every member over the holdout rows
        before the first epoch, after each epoch and for the final calibration (none without a
        holdout set).
    """
    batch = min(int(batch_size), int(n_train))
    steps = int(epochs) * math.ceil(int(n_train) / batch)
    if max_steps is not None:
        steps = min(steps, int(max_steps))
    scores = int(epochs) + 2 if n_holdout else 0
    return (steps * train_step_flops(dims, batch, members)
            + scores * forward_flops(dims, n_holdout, members))


def history_fit_flops(model, history, batch_size, max_steps=None):
    """:func:`fit_flops` of the fit of ``model`` (a ``GaussianEnsemble``) that returned
    ``history`` (its ``FitHistory``), with the ``batch_size`` and ``max_steps`` it was given."""
    net = model.net
    return fit_flops(net.layer_dims, net.ensemble_size, history.n_train, history.n_holdout,
                     batch_size, history.epochs_run, max_steps)


# ---------------------------------------------------------------------------- the sgemm rate
def _sgemm():
    """scipy's BLAS ``sgemm`` (the one the compiled kernels call) as a ctypes function: a call
    releases the GIL, so several Python threads run it side by side."""
    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS)
    from numba.extending import get_cython_function_address

    i, f = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_float)
    proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, i, i, i, f, f, i, f, i, f,
                             f, i)
    return proto(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))


def _product(sgemm, n, seed):
    """A callable making one (n x n) @ (n x n) float32 product on arrays of its own."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.zeros((n, n), np.float32)
    ptr = ctypes.POINTER(ctypes.c_float)
    pa, pb, pc = (x.ctypes.data_as(ptr) for x in (a, b, c))
    size, one, zero = ctypes.c_int(n), ctypes.c_float(1.0), ctypes.c_float(0.0)
    args = (b"N", b"N", ctypes.byref(size), ctypes.byref(size), ctypes.byref(size),
            ctypes.byref(one), pa, ctypes.byref(size), pb, ctypes.byref(size), ctypes.byref(zero),
            pc, ctypes.byref(size))

    def product():
        sgemm(*args)
    product.keep = (a, b, c)            # the arrays live as long as the callable
    return product


def _round_walls(threads, n, rounds, calls):
    """Wall seconds of each round: ``threads`` threads start together and each makes ``calls``
    products; a round lasts from the first start to the last end."""
    sgemm = _sgemm()
    products = [_product(sgemm, n, seed) for seed in range(threads)]
    barrier = threading.Barrier(threads)
    spans = [[None] * rounds for _ in range(threads)]

    def work(t):
        for r in range(rounds):
            barrier.wait()
            t0 = time.perf_counter()
            for _ in range(calls):
                products[t]()
            spans[t][r] = (t0, time.perf_counter())

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return [max(s[r][1] for s in spans) - min(s[r][0] for s in spans) for r in range(rounds)]


def measure_sgemm_rate(threads=1, n=SGEMM_SIZE, rounds=30, calls=10, warmup_rounds=3):
    """float32 matrix-product rate of this machine, in FLOP/s (one measurement, 0.1-0.2 s).

    ``threads`` Python threads each make ``calls`` (n x n) @ (n x n) products through scipy's
    OpenBLAS (the BLAS the kernels call) held to one thread, side by side, as fastmbrl's kernels
    use their threads (each on a one-thread BLAS); a round's rate is ``threads * calls * 2 n^3``
    over its wall time, and the result is the median over ``rounds`` rounds after
    ``warmup_rounds`` discarded ones.

    Returns
    -------
    float
        FLOP/s of all ``threads`` together.
    """
    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS before limiting it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        walls = _round_walls(int(threads), int(n), warmup_rounds + rounds, int(calls))
    return int(threads) * int(calls) * 2.0 * n ** 3 / statistics.median(walls[warmup_rounds:])


def sgemm_rate(threads=1):
    """:func:`measure_sgemm_rate` at ``threads`` threads, measured once per process: the first
    call for a thread count measures, later calls return that figure (FLOP/s)."""
    threads = int(threads)
    if threads not in RATES:
        RATES[threads] = measure_sgemm_rate(threads)
    return RATES[threads]


def blas_kernel():
    """The kernel families the process's OpenBLAS libraries chose (e.g. 'SkylakeX'; numpy's and
    scipy's copies, usually the same), or 'unknown'."""
    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS)
    from threadpoolctl import threadpool_info

    found = {p.get("architecture") or "unknown" for p in threadpool_info()
             if p.get("internal_api") == "openblas"}
    return ", ".join(sorted(found)) or "unknown"


# ---------------------------------------------------------------------------- recording
def _timed(benchmark):
    """Whether pytest-benchmark timed this benchmark (not with --benchmark-disable)."""
    if getattr(benchmark, "disabled", False):
        return False
    return getattr(benchmark, "stats", None) is not None


def record_parts(benchmark, parts, seconds=None):
    """Attach the floor figures of one benchmark made of ``parts`` to its ``extra_info``.

    Parameters
    ----------
    benchmark : pytest-benchmark fixture, after its timed run
    parts : sequence of (flops, threads)
        FLOPs of one call done on each thread count (e.g. a model fit on 2 threads, planning on
        1); the floor time is the sum of ``flops / sgemm_rate(threads)``.
    seconds : float, optional
        Seconds per call, when the benchmark's median is not one call (default: that median).

    Returns
    -------
    dict or None
        The figures added to ``extra_info`` (None when timings are disabled).
    """
    if not _timed(benchmark):
        UNTIMED.append(benchmark.fullname)
        return None
    seconds = benchmark.stats.stats.median if seconds is None else float(seconds)
    flops = sum(int(f) for f, _ in parts)
    floor = sum(int(f) / sgemm_rate(int(t)) for f, t in parts)
    threads = [int(t) for _, t in parts]
    figures = {
        "flops_per_call": flops, "seconds_per_call": seconds,
        "sgemm_threads": threads[0] if len(threads) == 1 else threads,
        "sgemm_gflops": flops / floor / 1e9 if floor else float("nan"),
        "fraction_of_sgemm": floor / seconds,
    }
    benchmark.extra_info.update(figures)
    benchmark.extra_info.setdefault("gflops", flops / seconds / 1e9)
    ROWS[benchmark.fullname] = dict(figures, gflops=flops / seconds / 1e9)
    return figures


def record(benchmark, flops, threads, seconds=None):
    """:func:`record_parts` for a benchmark whose ``flops`` per call all run on ``threads``."""
    return record_parts(benchmark, [(flops, threads)], seconds)


def not_counted(benchmark, why, seconds=None):
    """Mark a benchmark whose time is not made of matrix products ("n/a" in the table).

    Parameters
    ----------
    benchmark : pytest-benchmark fixture, after its timed run
    why : str
        What the time is made of instead (kept in ``extra_info["flops_note"]``).
    seconds : float, optional
        Seconds per call, when the benchmark's median is not one call.
    """
    if not _timed(benchmark):
        UNTIMED.append(benchmark.fullname)
        return
    seconds = benchmark.stats.stats.median if seconds is None else float(seconds)
    benchmark.extra_info.update(flops_per_call="n/a", flops_note=why)
    ROWS[benchmark.fullname] = {"flops_per_call": None, "seconds_per_call": seconds,
                                "sgemm_threads": None}


# ---------------------------------------------------------------------------- the table
def _threads_label(threads):
    if threads is None:
        return "-"
    return "+".join(map(str, threads)) if isinstance(threads, list) else str(threads)


def _duration(seconds):
    """``seconds`` with a unit that keeps three significant digits readable (e.g. '12.5 us')."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            break
    return f"{seconds / scale:.3g} {unit}"


def _si(count):
    """A FLOP count with an SI prefix (e.g. '1.32 G')."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)):
        if count >= scale:
            break
    return f"{count / scale:.3g} {prefix}".rstrip()


def table_lines(rows=None):
    """The end-of-session table, one line per recorded benchmark.

    Parameters
    ----------
    rows : dict, optional
        Node id -> figures, as :data:`ROWS` (the default).

    Returns
    -------
    list of str
        A header, then per benchmark: name, thread count(s), median time per call, FLOPs per
        call, GFLOP/s, the sgemm rate at those threads (GFLOP/s) and the fraction of it reached
        ("n/a" for benchmarks that are not matrix products).
    """
    rows = ROWS if rows is None else rows
    names = {node: node.split("/")[-1] for node in rows}
    width = max([len("benchmark")] + [len(n) for n in names.values()])
    lines = [f"{'benchmark':<{width}} {'threads':>7} {'median':>9} {'FLOP/call':>9} "
             f"{'GFLOP/s':>8} {'sgemm':>8} {'of sgemm':>8}"]
    for node, row in rows.items():
        if row["flops_per_call"] is None:
            rest = f"{'n/a':>9} {'n/a':>8} {'n/a':>8} {'n/a':>8}"
        else:
            rest = (f"{_si(row['flops_per_call']):>9} {row['gflops']:8.1f} "
                    f"{row['sgemm_gflops']:8.1f} {row['fraction_of_sgemm']:8.1%}")
        lines.append(f"{names[node]:<{width}} {_threads_label(row['sgemm_threads']):>7} "
                     f"{_duration(row['seconds_per_call']):>9} {rest}")
    return lines


def rate_line():
    """The sgemm rates measured in this process, as one line."""
    rates = "; ".join(f"{t} thread{'s' if t > 1 else ''} {r / 1e9:.1f} GFLOP/s"
                      for t, r in sorted(RATES.items()))
    return (f"sgemm ({SGEMM_SIZE} x {SGEMM_SIZE}) @ ({SGEMM_SIZE} x {SGEMM_SIZE}), float32, "
            f"scipy's OpenBLAS ({blas_kernel()}), one-thread calls side by side: {rates}")
