"""How the planners' rollout cuts its candidates into chunks and runs them on one or two threads,
with or without a deadline.

Notes
-----
Chunks and threads: the candidates are split into contiguous chunks by problem size alone (one
chunk below ``2 * CHUNK_ROWS`` particle rows, else an even number of chunks of at least
``CHUNK_ROWS`` rows, at most ``MAX_CHUNKS``). Each chunk is one GIL-free kernel call with its own
RNG stream and buffers, so the values depend on the seed only, not on ``n_threads`` nor on which
thread ran which chunk. With ``n_threads=2`` the calling thread and one worker take chunks from a
shared queue: on a shared machine a descheduled thread then delays only the chunk it holds instead
of half the work (fixed halves made 2 threads slower than 1 under load). The agent limits
BLAS to one thread meanwhile (``fastmbrl._threads.limit_blas``): spinning OpenBLAS teams collapse on
2 busy cores (docs/performance.md, "Threads").

Deadlines (``objective.evaluate_until(actions, deadline, clock)``, what the planners call under a
time budget): the candidates are cut into chunks sized so that one costs about
``BUDGET_CHUNK_SECONDS`` (from the measured seconds per particle row of this model size and
horizon, or a conservative estimate from the layer widths before the first measurement; rounded
down to a power of two candidates so that few buffer sizes exist), and a chunk starts only if
``clock()`` plus its estimated cost stays within the deadline. A compiled call cannot be
interrupted, so the overrun is bounded by the estimate's error on one chunk (a fraction
of a millisecond) and not by the population. Chunks are taken in order (by both workers), so the
scored candidates are always a prefix. The chunks draw their random numbers from a stream of
their own (seeded from ``seed``): results under a deadline depend on the timing, results without
one do not and are unaffected by calls with one.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue

import numpy as np

# Particle rows per chunk: big enough that each member's block (rows / M) keeps BLAS efficient
# (>= ~300 rows of a 200-wide layer), small enough for load balancing between two threads.
CHUNK_ROWS = 1500
MAX_CHUNKS = 8

# Under a deadline: the target cost of one chunk, and the throughput assumed for the first chunk
# of a model size before any measurement (low on purpose: a too-small first chunk costs little).
BUDGET_CHUNK_SECONDS = 3e-4
BUDGET_ASSUMED_FLOPS = 2e10


def chunk_bounds(n_cand, n_particles):
    """Candidate boundaries (n_chunks + 1,) of the rollout's chunks; depends on the sizes only."""
    n_rows = n_cand * n_particles
    if n_rows < 2 * CHUNK_ROWS or n_cand < 2:
        n_chunks = 1
    else:
        n_chunks = min(MAX_CHUNKS, 2 * (n_rows // (2 * CHUNK_ROWS)), n_cand)
    return (np.arange(n_chunks + 1) * n_cand) // n_chunks


def initial_sec_per_row(layer_dims, horizon):
    """Seconds per particle row assumed before any measurement (``BUDGET_ASSUMED_FLOPS``)."""
    dims = layer_dims.tolist()
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 2.0 * macs * horizon / BUDGET_ASSUMED_FLOPS


def deadline_bounds(n_cand, n_particles, sec_per_row):
    """Candidate boundaries (a list) of the chunks under a deadline: each about
    ``BUDGET_CHUNK_SECONDS`` at ``sec_per_row``, a power of two candidates (the last one
    shorter)."""
    per_chunk = max(1, min(n_cand, int(BUDGET_CHUNK_SECONDS / (sec_per_row * n_particles))))
    # a power of two: each chunk size has its own buffers, so sizes must come from a small set
    # (reallocating them at every call cost more than the chunks themselves on small problems)
    per_chunk = 1 << (per_chunk.bit_length() - 1)
    return list(range(0, n_cand, per_chunk)) + [n_cand]


class ChunkThreads:
    """The calling thread plus, with ``n_threads=2``, one worker thread (started on first use,
    kept until :meth:`close`) running a rollout's chunks."""

    def __init__(self):
        self._executor = None

    def _worker(self):
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="fastmbrl-rollout")
        return self._executor

    def run_all(self, n_chunks, run, n_threads):
        """Call ``run(c)`` for every chunk ``c``: in order on this thread (one thread or one
        chunk), else taken from a shared queue by this thread and the worker."""
        if n_threads == 1 or n_chunks == 1:
            # without the work queue (what drain() below would do alone; its queue and closure
            # would be a visible cost on small problems)
            for c in range(n_chunks):
                run(c)
            return
        queue = SimpleQueue()
        for c in range(n_chunks):
            queue.put(c)

        def drain():
            while True:
                try:
                    c = queue.get_nowait()
                except Empty:
                    return
                run(c)

        future = self._worker().submit(drain)
        try:
            drain()
        finally:
            future.result()

    def run_until(self, edges, n_particles, deadline, clock, sec_per_row, run, n_threads,
                  compilations):
        """Run chunks in order while ``clock()`` plus a chunk's estimated cost stays within
        ``deadline`` (module notes).

        Parameters
        ----------
        edges : list of int
            Candidate boundaries of the chunks (:func:`deadline_bounds`).
        n_particles : int
        deadline : float
            In ``clock``'s units.
        clock : callable
        sec_per_row : float
            The current estimate; updated during the call with each measured chunk.
        run : callable
            ``run(c, worker)`` scores chunk ``c`` (``worker`` 0: this thread, 1: the worker).
        n_threads : {1, 2}
        compilations : callable
            The number of kernel compilations so far: a chunk during which it grew (a compilation
            or a cache load) is not measured.

        Returns
        -------
        n_done : int
            Chunks scored (always the first ``n_done``).
        estimate : float or None
            The seconds per row to keep for the next call: the median of this call's measured
            chunks (one descheduled chunk does not shrink later ones); when nothing was scored,
            a tenth of ``sec_per_row`` (an estimate spoilt by a slow chunk must not block every
            later call, so it decays until a chunk fits again); None to keep the current one.
        """
        n_chunks = len(edges) - 1
        lock = threading.Lock()
        progress = {"next": 0, "sec_per_row": sec_per_row, "done": 0, "measured": []}

        def work(worker):
            while True:
                with lock:
                    c = progress["next"]
                    if c >= n_chunks:
                        return
                    lo, hi = edges[c], edges[c + 1]
                    if clock() + progress["sec_per_row"] * (hi - lo) * n_particles > deadline:
                        progress["next"] = n_chunks       # the other worker stops too
                        return
                    progress["next"] = c + 1
                n_compiled = compilations()
                t0 = time.perf_counter()
                run(c, worker)
                measured = (time.perf_counter() - t0) / ((hi - lo) * n_particles)
                with lock:
                    progress["done"] += 1
                    if compilations() == n_compiled:   # not a compilation or cache load
                        progress["measured"].append(measured)
                        progress["sec_per_row"] = 0.5 * (progress["sec_per_row"] + measured)

        if n_threads == 1 or n_chunks == 1:
            work(0)
        else:
            future = self._worker().submit(work, 1)
            try:
                work(0)
            finally:
                future.result()
        if progress["measured"]:
            estimate = float(np.median(progress["measured"]))
        elif progress["done"] == 0:
            estimate = 0.1 * sec_per_row
        else:
            estimate = None
        return progress["done"], estimate

    def close(self):
        """Stop the worker thread (waiting for it)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
