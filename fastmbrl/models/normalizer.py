"""Per-feature standardization with statistics from the replay buffer (notes, 4.2, trick 4).

The statistics are accumulated in float64 (count, mean, sum of squared deviations) so that they can
be either recomputed from the whole buffer (:meth:`Normalizer.fit`, what ``GaussianEnsemble.fit``
does) or updated as rows arrive (:meth:`Normalizer.update`, Chan et al.'s parallel merge). The
``mean`` and ``std`` arrays handed to users and to compiled code are in the model dtype and are
updated in place, so views taken of them stay valid.
"""
import numpy as np

from fastmbrl._config import STD_FLOOR
from fastmbrl._validate import as_float_array, check_dtype


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
    A feature whose standard deviation is below ``fastmbrl._config.STD_FLOOR`` is treated as
    constant and divided by 1 rather than by a tiny number, so its normalized value is
    ``x - mean`` (0 on the data seen) instead of an amplified rounding error.
    """

    def __init__(self, dim, dtype=np.float32):
        self.dim = int(dim)
        self.dtype = check_dtype("dtype", dtype)
        self.mean = np.zeros(self.dim, self.dtype)
        self.std = np.ones(self.dim, self.dtype)
        self.count = 0
        self._mean64 = np.zeros(self.dim)
        self._m2 = np.zeros(self.dim)

    def _refresh(self):
        var = self._m2 / max(self.count, 1)
        std = np.sqrt(var)
        std[~(std >= STD_FLOOR)] = 1.0
        self.mean[:] = self._mean64
        self.std[:] = std

    def fit(self, x):
        """Replace the statistics by those of ``x``.

        Parameters
        ----------
        x : float array (N, D), finite
        """
        x = as_float_array("x", x, np.float64, ndim=2, shape=(None, self.dim))
        self.count = x.shape[0]
        if self.count == 0:
            self._mean64[:] = 0.0
            self._m2[:] = 0.0
        else:
            self._mean64[:] = x.mean(axis=0)
            self._m2[:] = ((x - self._mean64) ** 2).sum(axis=0)
        self._refresh()
        return self

    def update(self, x):
        """Merge the rows of ``x`` into the running statistics.

        Parameters
        ----------
        x : float array (N, D), finite

        Notes
        -----
        Chan, Golub and LeVeque's pairwise update: with batch count n_b, mean m_b and squared
        deviations M2_b, ``delta = m_b - m``, ``m += delta n_b / n``,
        ``M2 += M2_b + delta^2 n_a n_b / n``.
        """
        x = as_float_array("x", x, np.float64, ndim=2, shape=(None, self.dim))
        n_b = x.shape[0]
        if n_b == 0:
            return self
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self._mean64
        self._mean64 += delta * (n_b / n)
        self._m2 += m2_b + delta ** 2 * (n_a * n_b / n)
        self.count = n
        self._refresh()
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
        """Restore what :meth:`state_dict` returned (bit-exact, including ``mean`` and ``std``)."""
        for key in ("mean64", "m2", "mean", "std"):
            if np.shape(state[key]) != (self.dim,):
                raise ValueError(f"state[{key!r}]: expected shape ({self.dim},), "
                                 f"got {np.shape(state[key])}")
        self.count = int(state["count"])
        self._mean64[:] = state["mean64"]
        self._m2[:] = state["m2"]
        self.mean[:] = state["mean"]
        self.std[:] = state["std"]
        return self
