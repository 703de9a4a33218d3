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
time budget; :meth:`ChunkThreads.run_until`): chunks are cut as they are taken, each sized by the
measured costs (``fastmbrl.planning._deadline.ChunkCosts``) to the time and candidates left, and a
chunk starts only if its estimated cost ends it before the deadline (on a loaded machine, before
the deadline less the reserve of ``fastmbrl.planning._deadline.Stalls``). Every chunk of a call
reads the call's stop flag before each model step; the alarm raises it just after the deadline, so
a chunk that runs over (a wrong estimate, a descheduled thread) stops within one model step of
running again. Until a problem size has a measured cost, its chunks hold one candidate and run on
the calling thread only. With two threads the calling thread does not wait past the deadline for
the worker's chunk: it raises the flag and returns without it (the worker stops at its next step,
its candidates are not counted; the worker thread serves the next call once it has). Chunks are
taken in order (by both workers) and only the finished chunks before the first unfinished one
count, so the scored candidates are always a prefix. The chunks draw their random numbers from a
stream of their own (seeded from ``seed``): results under a deadline depend on the timing, results
without one do not and are unaffected by calls with one.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue

import numpy as np

from fastmbrl.planning._deadline import ABORT_GRACE

# Particle rows per chunk: big enough that each member's block (rows / M) keeps BLAS efficient
# (>= ~300 rows of a 200-wide layer), small enough for load balancing between two threads.
CHUNK_ROWS = 1500
MAX_CHUNKS = 8


def chunk_bounds(n_cand, n_particles):
    """Candidate boundaries (n_chunks + 1,) of the rollout's chunks; depends on the sizes only."""
    n_rows = n_cand * n_particles
    if n_rows < 2 * CHUNK_ROWS or n_cand < 2:
        n_chunks = 1
    else:
        n_chunks = min(MAX_CHUNKS, 2 * (n_rows // (2 * CHUNK_ROWS)), n_cand)
    return (np.arange(n_chunks + 1) * n_cand) // n_chunks


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

    def run_until(self, n_cand, deadline, clock, costs, stalls, run, n_threads, disturbances,
                  stop):
        """Run chunks in order while their estimated costs end them before ``deadline`` (module
        notes).

        Parameters
        ----------
        n_cand : int
            Candidates to score.
        deadline : float
            In ``clock``'s units.
        clock : callable
        costs : ChunkCosts
            Sizes the chunks (``pick``) and learns from them (``record``).
        stalls : Stalls
            Learns the stalls of this thread's chunks; its ``reserve()`` is kept free before the
            deadline.
        run : callable
            ``run(lo, hi, worker) -> steps``: scores candidates ``[lo, hi)`` (``worker`` 0: this
            thread, 1: the worker) and returns the model steps done (``costs.horizon`` when the
            chunk finished, fewer when ``stop`` stopped it).
        n_threads : {1, 2}
        disturbances : callable
            A count of the events that make a chunk's time unrepresentative (kernel compilations
            or cache loads, buffer allocations): a chunk during which it grew is not measured.
        stop : uint8 array (1,)
            The call's stop flag, read by the kernels; raised here when the worker's chunk is left
            behind at the deadline.

        Returns
        -------
        n_scored : int
            Candidates of the finished chunks before the first unfinished one (a prefix).
        n_aborted : int
            Candidates started but not counted (stopped, left behind, or after those).
        """
        call = _DeadlineCall(n_cand, deadline, clock, costs, stalls, n_threads)

        def work(worker):
            while True:
                chunk = call.take(worker)
                if chunk is None:
                    return
                n_disturbed = disturbances()
                timed = stalls.measures and worker == 0    # the worker's are not waited for
                c0 = time.thread_time() if timed else 0.0
                t0 = time.perf_counter()
                steps = 0
                try:
                    steps = run(chunk[0], chunk[1], worker)
                except BaseException as exc:
                    call.error = call.error or exc       # the worker's is raised by the caller
                    raise
                finally:
                    call.finish(chunk, steps)
                wall = time.perf_counter() - t0
                if timed:
                    stalls.record(wall, time.thread_time() - c0)
                if disturbances() == n_disturbed:  # no compilation, cache load, allocation
                    costs.record(chunk[1] - chunk[0], wall, steps)
                if steps != costs.horizon:
                    return

        if n_threads == 1:
            work(0)
        else:
            # not waited for: a worker scheduled late finds the call closed and returns at once
            self._worker().submit(work, 1)
            try:
                work(0)
            finally:
                call.wait_for_worker(stop)
            if call.error is not None:
                raise call.error
        if not call.chunks:
            costs.relax()
            stalls.idle()
        return call.prefix()

    def close(self):
        """Stop the worker thread (waiting for it)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class _DeadlineCall:
    """The state one :meth:`ChunkThreads.run_until` call shares between its threads: the chunks
    taken (``[lo, hi, finished]``, finished None while running), the next candidate, whether the
    call is closed to new chunks, and the first exception raised in a chunk."""

    def __init__(self, n_cand, deadline, clock, costs, stalls, n_threads):
        self.n_cand = n_cand
        self.deadline = deadline
        self.clock = clock
        self.costs = costs
        self.stalls = stalls
        self.n_threads = n_threads
        self.chunks = []
        self.next = 0
        self.closed = False
        self.error = None
        self.cond = threading.Condition()

    def take(self, worker):
        """The next chunk ``[lo, hi, None]`` for ``worker``, or None: nothing left, nothing
        fits (the call closes), or the worker is not needed (no measured cost yet: calibration
        chunks run one at a time, on the calling thread)."""
        with self.cond:
            lo = self.next
            if self.closed or lo >= self.n_cand or (worker == 1 and not self.costs.measured):
                return None
            seconds_left = self.deadline - self.clock() - self.stalls.reserve()
            n = self.costs.pick(self.n_cand - lo, seconds_left, self.n_threads)
            if n == 0:
                self.closed = True                 # the other thread stops too
                return None
            chunk = [lo, lo + n, None]
            self.chunks.append(chunk)
            self.next = lo + n
            return chunk

    def finish(self, chunk, steps):
        """Mark ``chunk`` finished (all ``costs.horizon`` steps done) or not (the call closes)."""
        with self.cond:
            chunk[2] = steps == self.costs.horizon
            if not chunk[2]:
                self.closed = True
            self.cond.notify_all()

    def wait_for_worker(self, stop):
        """Close the call and wait for the worker's running chunk until the deadline plus
        ``ABORT_GRACE``; past it, raise ``stop`` and leave the chunk behind (its exception, if
        any, is then not seen).

        A ``clock`` other than ``time.perf_counter`` (a test's) is read once: past the deadline
        the chunk is left behind at once, else it is waited for.
        """
        real_time = self.clock is time.perf_counter
        with self.cond:
            self.closed = True                     # the worker takes no further chunk
            left = self.deadline + ABORT_GRACE - self.clock()
            while any(c[2] is None for c in self.chunks):
                if left <= 0:
                    stop[0] = 1
                    return
                self.cond.wait(min(left, 1e-3) if real_time else None)
                if real_time:
                    left = self.deadline + ABORT_GRACE - self.clock()

    def prefix(self):
        """``(n_scored, n_aborted)``: candidates of the finished chunks before the first
        unfinished one, and the other candidates started."""
        n_scored = 0
        for lo, hi, finished in sorted(self.chunks):
            if lo != n_scored or not finished:
                break
            n_scored = hi
        n_started = sum(hi - lo for lo, hi, _ in self.chunks)
        return n_scored, n_started - n_scored
