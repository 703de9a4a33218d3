"""Normalizer: hand-computed statistics, constant dimensions, streaming updates, exact restore."""
import numpy as np
import pytest

from fastmbrl._config import STD_REL_FLOOR
from fastmbrl.models import Normalizer


def test_fit_hand_computed_with_constant_dim():
    x = np.array([[1.0, 5.0, 0.0],
                  [3.0, 5.0, 4.0]])
    norm = Normalizer(3, dtype=np.float64).fit(x)
    # column 0: mean 2, population std 1; column 1 constant -> std replaced by 1;
    # column 2: mean 2, std 2
    np.testing.assert_array_equal(norm.mean, [2.0, 5.0, 2.0])
    np.testing.assert_array_equal(norm.std, [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(norm.normalize(x), [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(norm.denormalize(norm.normalize(x)), x)
    assert norm.count == 2


def test_tiny_spread_counts_as_constant():
    # the floor is relative to the column's magnitude: a spread at the rounding level of the
    # values (std ~ 4e-13 on values ~5, below 1e-10 * 5) is a constant column
    x = np.full((4, 1), 5.0)
    x[0, 0] += 5.0 * STD_REL_FLOOR[np.float64] / 10
    norm = Normalizer(1, dtype=np.float64).fit(x)
    assert norm.std[0] == 1.0
    assert np.all(np.abs(norm.normalize(x)) < 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_in_chunks_equals_fit_on_all(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, [0.5, 20.0], size=(1000, 2))
    streamed = Normalizer(2, dtype=dtype)
    for chunk in np.array_split(x, 7):
        streamed.update(chunk)
    whole = Normalizer(2, dtype=dtype).fit(x)
    np.testing.assert_allclose(streamed.mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(streamed.std, x.std(0), rtol=1e-6)
    np.testing.assert_allclose(whole.std, x.std(0), rtol=1e-6)
    assert streamed.mean.dtype == dtype and streamed.count == 1000


def test_statistics_update_in_place_and_restore_exactly():
    norm = Normalizer(2)
    mean_view = norm.mean
    norm.fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
    assert mean_view is norm.mean and mean_view[0] == 1.0       # views taken earlier stay valid
    other = Normalizer(2).load_state_dict(norm.state_dict())
    np.testing.assert_array_equal(other.mean, norm.mean)
    np.testing.assert_array_equal(other.std, norm.std)
    with pytest.raises(ValueError, match="x: expected shape"):
        norm.fit(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        norm.update(np.array([[np.nan, 0.0]]))
