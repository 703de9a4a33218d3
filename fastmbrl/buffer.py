"""Preallocated NumPy replay buffer: the data set that the dynamics model is fitted on.

Rows are transitions ``(obs, act, reward, next_obs, terminated, truncated)`` stored in arrays
that are allocated once (``overflow="wrap"``: a ring that overwrites the oldest rows when full) or
doubled when full (``overflow="grow"``). The public attributes (``buf.obs`` ...) give the stored rows in
insertion order: a read-only view while the ring has not wrapped, a copy after.
"""
import io
import os
from typing import NamedTuple

import numpy as np

from fastmbrl._io import atomic_savez
from fastmbrl._validate import as_float_array, check_dtype, check_int

BUFFER_FORMAT_VERSION = 1
_FIELDS = ("obs", "act", "reward", "next_obs", "terminated", "truncated")


class Transition(NamedTuple):
    """A batch of transitions, each field with leading axis B.

    Attributes
    ----------
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    reward : float array (B,)
    next_obs : float array (B, D_obs)
    terminated : bool array (B,)
    truncated : bool array (B,)
    """

    obs: np.ndarray
    act: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


def _as_bool_array(name, x, n):
    """``x`` as a bool array of shape (n,); integers only if all 0 or 1 (nothing coerced)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name}: expected booleans, got dtype {arr.dtype}")
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    want = (n,)
    if arr.shape != want:
        raise ValueError(f"{name}: expected shape {want}, got {np.shape(x)}")
    if arr.dtype.kind != "b" and np.any((arr != 0) & (arr != 1)):
        raise ValueError(f"{name}: expected booleans (or 0/1), got {arr!r}")
    return arr.astype(bool)


def _stored(store, doc):
    """A read-only property: the rows of the ring array ``store``, oldest first (see _ordered)."""
    return property(lambda self: self._ordered(getattr(self, store)), doc=doc)


class ReplayBuffer:
    """Fixed-capacity (ring) or growing store of transitions.

    Parameters
    ----------
    capacity : int
        Rows allocated up front. With ``overflow="wrap"`` it is the maximum number of rows kept;
        with ``"grow"`` the arrays double when full.
    obs_dim, act_dim : int
        Widths D_obs and D_act.
    dtype : {np.float32, np.float64}
        Storage dtype of obs, act, reward and next_obs.
    overflow : {"wrap", "grow"}
        What happens when the buffer is full.

    Examples
    --------
    >>> buf = ReplayBuffer(1000, obs_dim=3, act_dim=1)
    >>> buf.add(np.zeros(3), np.zeros(1), 0.0, np.ones(3), False, False)
    >>> len(buf)
    1
    """

    def __init__(self, capacity, obs_dim, act_dim, dtype=np.float32, overflow="wrap"):
        self.capacity = check_int("capacity", capacity)
        self.obs_dim = check_int("obs_dim", obs_dim)
        self.act_dim = check_int("act_dim", act_dim)
        self.dtype = check_dtype("dtype", dtype)
        if overflow not in ("wrap", "grow"):
            raise ValueError(f"overflow: expected 'wrap' or 'grow', got {overflow!r}")
        self.overflow = overflow
        self._allocate(self.capacity)
        self._size = 0
        self._ptr = 0          # next row to write
        self.n_added = 0       # total rows ever added (counts overwritten ones)

    def _allocate(self, capacity):
        self._obs = np.zeros((capacity, self.obs_dim), self.dtype)
        self._act = np.zeros((capacity, self.act_dim), self.dtype)
        self._reward = np.zeros(capacity, self.dtype)
        self._next_obs = np.zeros((capacity, self.obs_dim), self.dtype)
        self._terminated = np.zeros(capacity, bool)
        self._truncated = np.zeros(capacity, bool)

    def _grow(self, needed):
        new_cap = self.capacity
        while new_cap < needed:
            new_cap *= 2
        old = [getattr(self, "_" + f)[: self._size] for f in _FIELDS]
        self._allocate(new_cap)
        for f, rows in zip(_FIELDS, old):
            getattr(self, "_" + f)[: self._size] = rows
        self.capacity = new_cap

    def __len__(self):
        return self._size

    def __repr__(self):
        return (f"ReplayBuffer(len={self._size}, capacity={self.capacity}, obs_dim={self.obs_dim}, "
                f"act_dim={self.act_dim}, dtype={np.dtype(self.dtype).name}, "
                f"overflow={self.overflow!r})")

    # ------------------------------------------------------------------ adding
    def add(self, obs, act, reward, next_obs, terminated, truncated):
        """Store one transition.

        Parameters
        ----------
        obs, next_obs : float array (D_obs,)
        act : float array (D_act,)
        reward : float
        terminated, truncated : bool
        """
        obs = as_float_array("obs", obs, self.dtype, shape=(self.obs_dim,))
        act = as_float_array("act", act, self.dtype, shape=(self.act_dim,))
        # a scalar, or one value in an array of shape (1,) (what some wrappers return)
        reward = as_float_array("reward", np.reshape(reward, -1), self.dtype, shape=(1,))
        next_obs = as_float_array("next_obs", next_obs, self.dtype, shape=(self.obs_dim,))
        terminated = _as_bool_array("terminated", np.reshape(terminated, -1), 1)
        truncated = _as_bool_array("truncated", np.reshape(truncated, -1), 1)
        self.add_batch(obs[None], act[None], reward, next_obs[None], terminated, truncated)

    def add_batch(self, obs, act, reward, next_obs, terminated, truncated):
        """Store B transitions (leading axis B on every argument).

        Parameters
        ----------
        obs, next_obs : float array (B, D_obs)
        act : float array (B, D_act)
        reward : float array (B,)
        terminated, truncated : bool array (B,)

        Raises
        ------
        ValueError
            On a shape mismatch or a non-finite value; nothing is stored then.
        """
        obs = as_float_array("obs", obs, self.dtype, ndim=2, shape=(None, self.obs_dim))
        n = obs.shape[0]
        act = as_float_array("act", act, self.dtype, shape=(n, self.act_dim))
        reward = as_float_array("reward", reward, self.dtype, shape=(n,))
        next_obs = as_float_array("next_obs", next_obs, self.dtype, shape=(n, self.obs_dim))
        terminated = _as_bool_array("terminated", terminated, n)
        truncated = _as_bool_array("truncated", truncated, n)
        if n == 0:
            return
        if self.overflow == "grow" and self._size + n > self.capacity:
            self._grow(self._size + n)
        if n >= self.capacity:
            # Only the newest `capacity` rows survive; write them in order from row 0.
            sl = slice(n - self.capacity, n)
            for f, v in zip(_FIELDS, (obs, act, reward, next_obs, terminated, truncated)):
                getattr(self, "_" + f)[:] = v[sl]
            self._ptr = 0
            self._size = self.capacity
            self.n_added += n
            return
        first = min(n, self.capacity - self._ptr)
        for f, v in zip(_FIELDS, (obs, act, reward, next_obs, terminated, truncated)):
            store = getattr(self, "_" + f)
            store[self._ptr:self._ptr + first] = v[:first]
            if first < n:
                store[: n - first] = v[first:]
        self._ptr = (self._ptr + n) % self.capacity
        self._size = min(self._size + n, self.capacity)
        self.n_added += n

    # ------------------------------------------------------------------ reading
    def _ordered(self, store):
        if self._size < self.capacity or self._ptr == 0:
            view = store[: self._size]
            view.flags.writeable = False
            return view
        return np.concatenate([store[self._ptr:], store[: self._ptr]])

    obs = _stored("_obs", "float array (N, D_obs): stored observations, oldest first.")
    act = _stored("_act", "float array (N, D_act): stored actions, oldest first.")
    reward = _stored("_reward", "float array (N,): stored rewards, oldest first.")
    next_obs = _stored("_next_obs",
                       "float array (N, D_obs): stored next observations, oldest first.")
    terminated = _stored("_terminated", "bool array (N,): stored termination flags, oldest first.")
    truncated = _stored("_truncated", "bool array (N,): stored truncation flags, oldest first.")

    def all(self):
        """Every stored row as one :class:`Transition`, oldest first."""
        return Transition(self.obs, self.act, self.reward, self.next_obs, self.terminated,
                          self.truncated)

    def arrays(self):
        """The filled rows of the storage arrays, for kernels that draw rows themselves.

        Returns
        -------
        Transition
            obs (N, D_obs), act (N, D_act), reward (N,), next_obs (N, D_obs), terminated (N,),
            truncated (N,) with N = ``len(self)``: live views of the storage, no copy.

        Notes
        -----
        Rows are in storage order, not insertion order: once a ring (``overflow="wrap"``) has
        wrapped, row 0 is not the oldest (fine for uniform sampling; :meth:`all` and ``buf.obs``
        ... give the rows oldest first). The views are live: a later ``add`` shows through them,
        and a ``"grow"`` buffer's reallocation leaves them stale. They are writeable, so that
        compiled kernels take them as they are; do not write to them.
        """
        n = self._size
        return Transition(*(getattr(self, "_" + f)[:n] for f in _FIELDS))

    def _storage_rows(self, idx):
        """Map insertion-order indices to storage rows."""
        if self._size < self.capacity:
            return idx
        return (idx + self._ptr) % self.capacity

    def sample(self, batch_size, rng):
        """Draw ``batch_size`` transitions uniformly with replacement.

        Parameters
        ----------
        batch_size : int
        rng : numpy.random.Generator

        Returns
        -------
        Transition
            Fresh arrays with leading axis ``batch_size``.
        """
        batch_size = check_int("batch_size", batch_size)
        if self._size == 0:
            raise ValueError("sample: the buffer is empty")
        rows = rng.integers(0, self._size, size=batch_size)
        return Transition(*(np.take(getattr(self, "_" + f), rows, axis=0) for f in _FIELDS))

    def bootstrap_indices(self, ensemble_size, rng, size=None):
        """Bootstrap resamples of the stored rows, one per ensemble member.

        Parameters
        ----------
        ensemble_size : int
            E, the number of resamples.
        rng : numpy.random.Generator
        size : int, optional
            Rows per resample; default ``len(self)``.

        Returns
        -------
        int64 array (E, size)
            Indices into the insertion-ordered rows (``buf.obs[idx]``), drawn with replacement.
        """
        ensemble_size = check_int("ensemble_size", ensemble_size)
        if self._size == 0:
            raise ValueError("bootstrap_indices: the buffer is empty")
        size = self._size if size is None else check_int("size", size)
        return rng.integers(0, self._size, size=(ensemble_size, size), dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the buffer to one ``.npz`` file atomically (a temporary file, then ``os.replace``).

        Parameters
        ----------
        path : str or os.PathLike
            Destination; written exactly there (no suffix is added).
        """
        path = os.fspath(path)
        arrays = {f: np.ascontiguousarray(getattr(self, f)) for f in _FIELDS}
        meta = np.array([BUFFER_FORMAT_VERSION, self.capacity, self.obs_dim, self.act_dim,
                         self.n_added], dtype=np.int64)
        atomic_savez(path, meta=meta, overflow=np.array(self.overflow),
                     dtype=np.array(np.dtype(self.dtype).name), **arrays)

    @classmethod
    def load(cls, path):
        """Read a buffer written by :meth:`save`.

        Raises
        ------
        ValueError
            Naming ``path``, if the file is unreadable, truncated or corrupt, not a fastmbrl
            buffer, of another format version, or inconsistent (array shapes or dtypes that do
            not match its header, non-finite values, more rows than its capacity).
        """
        path = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except OSError as exc:
            raise ValueError(f"path: {path!r} is not a readable ReplayBuffer file ({exc})") from exc
        except Exception as exc:     # truncated or corrupt: EOFError, zipfile.BadZipFile, zlib ...
            raise ValueError(f"path: {path!r} is not a readable ReplayBuffer file: truncated or "
                             f"corrupt ({type(exc).__name__}: {exc})") from exc
        missing = [k for k in ("meta", "overflow", "dtype") + _FIELDS if k not in data]
        if missing:
            raise ValueError(f"path: {path!r} is not a ReplayBuffer file (missing {missing})")
        meta = data["meta"]
        if meta.shape != (5,) or meta.dtype.kind not in "iu" or int(meta[0]) != BUFFER_FORMAT_VERSION:
            raise ValueError(f"path: {path!r} has buffer format version {meta.reshape(-1)[:1]}, "
                             f"expected {BUFFER_FORMAT_VERSION}")
        _, capacity, obs_dim, act_dim, n_added = (int(v) for v in meta)
        try:
            buf = cls(capacity, obs_dim, act_dim, dtype=np.dtype(str(data["dtype"])),
                      overflow=str(data["overflow"]))
            fields = [data[f] for f in _FIELDS]
            n = fields[0].shape[0] if fields[0].ndim else -1
            widths = (obs_dim, act_dim, None, obs_dim, None, None)
            for f, v, w in zip(_FIELDS, fields, widths):
                want = (n,) if w is None else (n, w)
                kind = "b" if f in ("terminated", "truncated") else "f"
                if v.shape != want or v.dtype.kind != kind:
                    raise ValueError(f"array {f!r}: expected {'bool' if kind == 'b' else 'float'}"
                                     f" {want}, got {v.dtype} {v.shape}")
            if n > capacity or n_added < n:
                raise ValueError(f"{n} rows for capacity {capacity} and {n_added} rows added")
            buf.add_batch(*fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path: {path!r} holds an inconsistent buffer ({exc})") from exc
        buf.n_added = n_added
        return buf
