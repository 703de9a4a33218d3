"""Per-feature standardization with statistics from the replay buffer (notes, 4.2, trick 4).

The statistics are accumulated in float64 (count, mean, sum of squared deviations) so that they can
be either recomputed from the whole buffer (:meth:`Normalizer.fit`, what ``GaussianEnsemble.fit``
does) or updated as rows arrive (:meth:`Normalizer.update`, Chan et al.'s parallel merge). The
``mean`` and ``std`` arrays handed to users and to compiled code are in the model dtype and are
updated in place, so views taken of them stay valid.
"""
import numpy as np

from fastmbrl._config import STD_ABS_FLOOR, STD_REL_FLOOR
from fastmbrl._validate import as_float_array, check_dtype, check_int


class Normalizer:
    """Standardize features: ``(x - mean) / std``, with ``std = 1`` for (near-)constant features.

    Parameters
    ----------
    dim : int
        Number of features D.
    dtype : {np.float32, np.float64}
        Dtype of ``mean``, ``std`` and of normalized outputs.

    Attributes
    ----------
    mean, std : float array (D,)
        Current statistics (identity transform until data is seen).
    count : int
        Rows the statistics were computed from.

    Notes
    -----
    A feature is treated as constant, and divided by 1 rather than by a tiny number, when its
    standard deviation is below ``max(STD_REL_FLOOR[dtype] * rms, STD_ABS_FLOOR)``
    (``fastmbrl._config``; ``rms`` is the column's root mean square, ``sqrt(mean^2 + std^2)``).
    The floor is relative to the data, so a feature at 1e-6 (or 1e6) scale is standardized like
    one at unit scale, while a column whose spread is at the rounding level of its values, or
    exactly constant, gets ``x - mean`` (0 on the data seen) instead of an amplified rounding
    error.

    Every method that changes the statistics computes them into temporaries, checks them and only
    then commits: a call that raises leaves the normalizer exactly as it was.
    """

    def __init__(self, dim, dtype=np.float32):
        self.dim = check_int("dim", dim)
        self.dtype = check_dtype("dtype", dtype)
        self.mean = np.zeros(self.dim, self.dtype)
        self.std = np.ones(self.dim, self.dtype)
        self.count = 0
        self._mean64 = np.zeros(self.dim)
        self._m2 = np.zeros(self.dim)

    def _batch_moments(self, x):
        """Check ``x`` (N, D) and return its row count, column means and sums of squared
        deviations, in float64 (zeros for N = 0); overflow is left to :meth:`_commit` to report."""
        x = as_float_array("x", x, np.float64, ndim=2, shape=(None, self.dim))
        n = x.shape[0]
        if n == 0:
            return 0, np.zeros(self.dim), np.zeros(self.dim)
        with np.errstate(over="ignore", invalid="ignore"):
            mean64 = x.mean(axis=0)
            m2 = ((x - mean64) ** 2).sum(axis=0)
        return n, mean64, m2

    def _commit(self, count, mean64, m2):
        """Check statistics computed elsewhere, derive ``mean``/``std`` and only then store them."""
        var = m2 / max(count, 1)
        std = np.sqrt(var)
        floor = np.maximum(STD_REL_FLOOR[self.dtype] * np.sqrt(mean64 ** 2 + var), STD_ABS_FLOOR)
        std[~(std >= floor)] = 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            mean_t, std_t = mean64.astype(self.dtype), std.astype(self.dtype)
        if not (np.all(np.isfinite(mean_t)) and np.all(np.isfinite(std_t))
                and np.all(np.isfinite(m2))):
            raise ValueError(f"x: its mean or standard deviation is not finite in "
                             f"{np.dtype(self.dtype).name} (values too large for the dtype); "
                             f"the statistics were left unchanged")
        self.count = int(count)
        self._mean64[:] = mean64
        self._m2[:] = m2
        self.mean[:] = mean_t
        self.std[:] = std_t

    def fit(self, x):
        """Replace the statistics by those of ``x``.

        Parameters
        ----------
        x : float array (N, D), finite

        Raises
        ------
        ValueError
            On a bad shape, non-finite values, or statistics that overflow the dtype; the
            normalizer is then left unchanged.
        """
        self._commit(*self._batch_moments(x))
        return self

    def update(self, x):
        """Merge the rows of ``x`` (float array (N, D), finite) into the running statistics.

        Checks ``x`` and raises as :meth:`fit` (the normalizer is then left unchanged); an empty
        ``x`` changes nothing.

        Notes
        -----
        Chan, Golub and LeVeque's pairwise update: with batch count n_b, mean m_b and squared
        deviations M2_b, ``delta = m_b - m``, ``m += delta n_b / n``,
        ``M2 += M2_b + delta^2 n_a n_b / n``.
        """
        n_b, mean_b, m2_b = self._batch_moments(x)
        if n_b == 0:
            return self
        with np.errstate(over="ignore", invalid="ignore"):
            n_a = self.count
            n = n_a + n_b
            delta = mean_b - self._mean64
            mean64 = self._mean64 + delta * (n_b / n)
            m2 = self._m2 + m2_b + delta ** 2 * (n_a * n_b / n)
        self._commit(n, mean64, m2)
        return self

    def normalize(self, x, out=None):
        """Return ``(x - mean) / std`` in the normalizer's dtype (x (..., D))."""
        return np.divide(np.subtract(x, self.mean, out=out, dtype=self.dtype), self.std, out=out)

    def denormalize(self, x, out=None):
        """Return ``x * std + mean`` (the inverse of :meth:`normalize`)."""
        return np.add(np.multiply(x, self.std, out=out, dtype=self.dtype), self.mean, out=out)

    def state_dict(self):
        """Arrays that restore the normalizer exactly with :meth:`load_state_dict`."""
        return {"count": np.array(self.count, np.int64), "mean64": self._mean64.copy(),
                "m2": self._m2.copy(), "mean": self.mean.copy(), "std": self.std.copy()}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (bit-exact, including ``mean`` and ``std``).

        Raises
        ------
        ValueError
            If a key is missing, an array has the wrong shape, a value is not finite, ``m2`` is
            negative, ``std`` is not positive or ``count`` is not a non-negative integer; the
            normalizer is then left unchanged.
        """
        arrays = {}
        for key in ("mean64", "m2", "mean", "std"):
            if key not in state:
                raise ValueError(f"state[{key!r}]: missing")
            arr = np.asarray(state[key])
            if arr.shape != (self.dim,) or arr.dtype.kind not in "fiu":
                raise ValueError(f"state[{key!r}]: expected a float array of shape ({self.dim},), "
                                 f"got {arr.dtype} {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"state[{key!r}]: contains non-finite values")
            arrays[key] = arr
        if np.any(arrays["m2"] < 0):
            raise ValueError("state['m2']: expected non-negative sums of squares")
        if not np.all(np.asarray(arrays["std"], self.dtype) > 0):
            raise ValueError(f"state['std']: expected positive values, got {arrays['std']}")
        count = np.asarray(state.get("count", -1))
        if count.shape != () or count.dtype.kind not in "iu" or int(count) < 0:
            raise ValueError(f"state['count']: expected a non-negative integer, got {count!r}")
        self.count = int(count)
        self._mean64[:] = arrays["mean64"]
        self._m2[:] = arrays["m2"]
        self.mean[:] = arrays["mean"]
        self.std[:] = arrays["std"]
        return self
