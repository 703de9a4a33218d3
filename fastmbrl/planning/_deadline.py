"""What the rollout knows and uses under a deadline: the measured cost of its chunks
(:class:`ChunkCosts`, which also picks the next chunk's size), the stalls of a loaded machine
(:class:`Stalls`) and the alarm that stops a running rollout at the deadline (:class:`Alarm`).

Notes
-----
Costs: a chunk is a power of two of candidates (so that few buffer sizes exist). For each size
run, :class:`ChunkCosts` keeps its last ``RECENT`` wall times and the best one ever; a size's
estimate is the median of the recent ones times ``1 + COST_MARGIN``. A size not run yet is bounded
by the sizes that were: a chunk of ``n`` costs at most what a larger one costs, and at most
``n / m`` times a smaller one of ``m`` (a bigger chunk is never less efficient), the smallest of
these bounds. Before any measurement a problem size has only a prior (its network FLOPs at an
optimistic ``PRIOR_FLOPS``) and its first chunk is one candidate, the smallest unit: the first
budgeted call calibrates the table, and the alarm bounds the overrun if the prior was wrong.

Wall times include the time the thread was descheduled, so on a loaded machine the estimates grow
and fewer candidates are started. A budget the estimate says cannot fit one candidate starts
nothing; each such refusal moves the recent times halfway back towards the best time ever
measured (never below it), so a load that has passed cannot keep refusing work its best
measurement says fits.

Size of a chunk: the largest power of two that fits in the time left and in the candidates left
(about half of them with two threads, so that both work), and whose model steps are estimated at
``STEP_SECONDS`` or less each (one step is the granularity of the alarm: the most a stopped chunk
can run past it).

Load: on a busy machine the operating system deschedules a thread for whole time slices (4 ms
at a 250 Hz tick), and one such stall near the deadline delays the return by all of it, whatever
the estimates. :class:`Stalls` records, per chunk of the calling thread (whose stalls delay the
return; a worker's chunk is not waited for past the deadline), the wall time not spent on the
thread's CPU (``time.thread_time``, where it has a fine resolution); there is one record per
process, ``STALLS``, since the load is the machine's. While ``STALL_COUNT`` or more of the last
``STALL_WINDOW`` chunks stalled for ``STALL_MIN`` or more, the chunks must end ``reserve()``
before the deadline (the longest of those stalls less ``LOAD_ALLOWANCE``), so that a stall at the
end still returns within the allowance; a quiet machine, or one with a rare hiccup, has no
reserve. A call that runs no chunk counts as a chunk without a stall, so that a reserve that
refuses every call expires after ``STALL_WINDOW`` calls; a stall within ``STALL_WINDOW`` chunks
of that (the load went on) brings it back at once.

Alarm: a compiled call cannot be interrupted, but the rollout kernel reads a flag (a uint8 array)
before every model step and stops when it is raised. One daemon thread per process raises each
armed flag at its time (``time.perf_counter``); the rollout arms it at the deadline plus
``ABORT_GRACE`` for calls timed by ``time.perf_counter`` (a chunk that runs a little over its
estimate still counts; a descheduled one is stopped as soon as it runs again).
"""
import heapq
import itertools
import os
import threading
import time
from collections import deque

import numpy as np

# Target cost of one model step of a chunk under a deadline (seconds): the alarm's granularity.
STEP_SECONDS = 5e-4
# A chunk still running this long after the deadline is stopped (seconds).
ABORT_GRACE = 2e-4
# Estimates are the median of the recent wall times of a size times (1 + COST_MARGIN).
COST_MARGIN = 0.1
# Wall times kept per chunk size.
RECENT = 5
# Throughput assumed before any measurement (FLOP/s): optimistic, so the first chunk is tried.
PRIOR_FLOPS = 1e11
# A chunk's wall time beyond its thread's CPU time of this much or more is a stall (seconds).
STALL_MIN = 5e-4
# Recent chunks (or calls that ran none) whose stalls count, and how many stalls among them keep
# a reserve (an isolated one is unlikely to hit the end of a call).
STALL_WINDOW = 256
STALL_COUNT = 3
# Lateness accepted when a stall hits the end of a call on a loaded machine (seconds).
LOAD_ALLOWANCE = 1e-3
# Whether time.thread_time resolves a chunk (on some systems it ticks at 15.6 ms).
THREAD_TIME_FINE = "clock_gettime" in time.get_clock_info("thread_time").implementation


def prior_seconds_per_candidate(layer_dims, horizon, n_particles):
    """Seconds of one candidate's rollout (``n_particles`` rows, ``horizon`` steps) at
    ``PRIOR_FLOPS`` for the network of ``layer_dims`` (int array (L + 1,))."""
    dims = [int(d) for d in layer_dims]
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 2.0 * macs * horizon * n_particles / PRIOR_FLOPS


def _pow2_floor(n):
    """The largest power of two <= ``n`` (``n`` >= 1)."""
    return 1 << (int(n).bit_length() - 1)


def _pow2_ceil(n):
    """The smallest power of two >= ``n`` (``n`` >= 1)."""
    return 1 << (int(n) - 1).bit_length()


class ChunkCosts:
    """Measured wall seconds of a rollout's chunks under a deadline, for one problem size (model,
    horizon, particles); see the module notes. Thread-safe.

    Parameters
    ----------
    horizon : int
        H, model steps per candidate.
    prior_per_candidate : float
        Seconds of one candidate assumed before any measurement.
    """

    def __init__(self, horizon, prior_per_candidate):
        self.horizon = int(horizon)
        self.prior_per_candidate = float(prior_per_candidate)
        self._recent = {}          # chunk size -> deque of wall seconds
        self._best = {}            # chunk size -> best wall seconds ever
        self._cost = {}            # chunk size -> its estimate (kept up to date)
        self._lock = threading.Lock()

    @property
    def measured(self):
        """Whether any chunk of this problem size has been measured."""
        return bool(self._recent)

    def estimate(self, n):
        """Estimated wall seconds of a chunk of ``n`` candidates (module notes)."""
        with self._lock:
            return self._estimate(n)

    def _estimate(self, n):
        if not self._recent:
            return n * self.prior_per_candidate
        best = np.inf
        for m, cost in self._cost.items():
            bound = cost if m >= n else cost * n / m
            if bound < best:
                best = bound
        return best

    def _update(self, n):
        times = sorted(self._recent[n])
        k = len(times)
        median = times[k // 2] if k % 2 else 0.5 * (times[k // 2 - 1] + times[k // 2])
        self._cost[n] = median * (1.0 + COST_MARGIN)

    def unit(self):
        """``(candidate, step)``: estimated seconds of one candidate's rollout and of one of its
        model steps (the smallest work a budget can be spent on)."""
        cand = self.estimate(1)
        return cand, cand / self.horizon

    def record(self, n, seconds, steps=None):
        """Record a chunk of ``n`` candidates that took ``seconds`` of wall time for ``steps`` of
        its ``horizon`` model steps (None: all of them; a stopped chunk's time is scaled up to the
        whole horizon; one stopped before its first step tells nothing)."""
        steps = self.horizon if steps is None else int(steps)
        if steps <= 0:
            return
        seconds = float(seconds) * self.horizon / steps
        with self._lock:
            self._recent.setdefault(n, deque(maxlen=RECENT)).append(seconds)
            self._best[n] = min(self._best.get(n, np.inf), seconds)
            self._update(n)

    def relax(self):
        """Move every recent time halfway towards its size's best time (a refused budget)."""
        with self._lock:
            for n, times in self._recent.items():
                best = self._best[n]
                self._recent[n] = deque((best + 0.5 * (t - best) for t in times), maxlen=RECENT)
                self._update(n)

    def pick(self, n_left, seconds_left, n_threads=1):
        """Candidates of the next chunk: a power of two, or 0 when none fits (module notes).

        Parameters
        ----------
        n_left : int
            Candidates not yet started.
        seconds_left : float
            Wall time until the deadline.
        n_threads : {1, 2}
            Threads taking chunks (2: at most about half of ``n_left``, so that both work).
        """
        if n_left <= 0 or seconds_left <= 0:
            return 0
        with self._lock:
            if not self._recent:        # calibrate on the smallest unit first
                return 1 if self._estimate(1) <= seconds_left else 0
            cap = n_left if n_threads == 1 else min(n_left, _pow2_ceil((n_left + 1) // 2))
            n = _pow2_floor(cap)
            step_limit = STEP_SECONDS * self.horizon
            while n > 1 and self._estimate(n) > step_limit:
                n //= 2
            while n >= 1 and self._estimate(n) > seconds_left:
                n //= 2
            return n


class Stalls:
    """Recent stalls of the calling threads' chunks (module notes). Thread-safe.

    ``measures`` is False where ``time.thread_time`` is too coarse: then nothing is recorded and
    there is no reserve.
    """

    def __init__(self, measures=THREAD_TIME_FINE):
        self.measures = bool(measures)
        self._recent = deque(maxlen=STALL_WINDOW)   # per chunk or idle call: its stall, or 0
        self._count = 0                             # stalls in _recent
        self._since_expiry = None                   # records since the reserve last expired
        self._hot = False                           # stalls came back soon after it expired
        self._reserve = 0.0
        self._lock = threading.Lock()

    def record(self, wall, cpu):
        """A chunk's ``wall`` and thread ``cpu`` seconds."""
        if self.measures:
            stall = wall - cpu
            self._add(stall if stall >= STALL_MIN else 0.0)

    def idle(self):
        """A call that ran no chunk counts as a chunk without a stall."""
        if self.measures:
            self._add(0.0)

    def _add(self, stall):
        with self._lock:
            recent = self._recent
            dropped = recent[0] if len(recent) == recent.maxlen else 0.0
            recent.append(stall)
            self._count += (stall > 0.0) - (dropped > 0.0)
            if self._since_expiry is not None:
                self._since_expiry += 1
            if stall > 0.0 and self._since_expiry is not None \
                    and self._since_expiry <= STALL_WINDOW:
                self._hot = True                    # the load went on: no new hiccup count
            if self._count == 0:
                self._hot = False
            if stall > 0.0 or dropped > 0.0:
                self._update_reserve()

    def _update_reserve(self):
        active = self._count >= STALL_COUNT or (self._hot and self._count > 0)
        if self._reserve > 0.0 and not active:
            self._since_expiry = 0
        self._reserve = max(0.0, max(self._recent) - LOAD_ALLOWANCE) if active else 0.0

    def reserve(self):
        """Seconds by which chunks must end before the deadline: the longest recent stall less
        ``LOAD_ALLOWANCE`` while ``STALL_COUNT`` or more were recent, else 0."""
        return self._reserve


class Alarm:
    """One daemon thread raising flags (uint8 arrays (1,)) at times of ``time.perf_counter``."""

    def __init__(self):
        self._reset()

    def _reset(self):
        """A fresh state (also in a forked child, where the thread does not exist)."""
        self._cond = threading.Condition()
        self._heap = []                    # (time, sequence number, flag)
        self._seq = itertools.count()
        self._thread = None

    def arm(self, when, flag):
        """Set ``flag[0] = 1`` at ``time.perf_counter() >= when`` (seconds); there is no
        disarming: arm a fresh flag per call and stop reading it when the call ends."""
        with self._cond:
            if self._thread is None:      # started on first use
                self._thread = threading.Thread(target=self._run, name="fastmbrl-alarm",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (when, next(self._seq), flag))
            if self._heap[0][2] is flag:    # earlier than what the thread waits for
                self._cond.notify()

    def _run(self):
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                left = self._heap[0][0] - time.perf_counter()
                if left > 0:
                    self._cond.wait(min(left, 1.0))     # (a timeout must stay finite)
                    continue
                heapq.heappop(self._heap)[2][0] = 1


ALARM = Alarm()
# the machine's load is the same for every rollout of the process: one record of the stalls
STALLS = Stalls()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=ALARM._reset)
