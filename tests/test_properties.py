"""Property-based checks (hypothesis) of invariants that hold for any input, not just hand-picked ones."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fastmbrl as fm
from fastmbrl.models.normalizer import Normalizer

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(data=arrays(np.float64, st.tuples(st.integers(2, 40), st.integers(1, 4)), elements=finite),
       cut=st.integers(1, 39))
def test_normalizer_streaming_update_equals_refit(data, cut):
    cut = min(cut, data.shape[0] - 1)
    streamed = Normalizer(data.shape[1], np.float64).update(data[:cut]).update(data[cut:])
    refit = Normalizer(data.shape[1], np.float64).fit(data)
    np.testing.assert_allclose(streamed.mean, refit.mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(streamed.std, refit.std, rtol=1e-7, atol=1e-9)
    assert np.all(refit.std > 0)        # constant columns are divided by 1, never by 0


@settings(max_examples=60, deadline=None)
@given(raw=arrays(np.float64, (2, 3, 2), elements=st.floats(-50, 50, width=64)),
       upper=st.floats(-1.0, 2.0), gap=st.floats(0.5, 12.0))
def test_soft_bounds_stay_inside_and_are_monotone(raw, upper, gap):
    max_lv = np.full(2, upper)
    min_lv = np.full(2, upper - gap)
    lv, _ = fm.nn.soft_bound_logvar(raw, max_lv, min_lv)
    # The bounds are soft: lv >= min always (equal once softplus underflows), and lv < max + softplus(min - max) (as the second
    # softplus can lift the first one's output slightly above max when the bounds are close).
    assert np.all(lv >= min_lv)
    assert np.all(lv <= max_lv + np.log1p(np.exp(-gap)) + 1e-12)
    shifted, _ = fm.nn.soft_bound_logvar(raw + 0.5, max_lv, min_lv)
    assert np.all(shifted >= lv - 1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 6))
def test_gaussian_nll_is_minimised_at_the_target_with_matching_variance(seed, rows):
    rng = np.random.default_rng(seed)
    target = rng.standard_normal((2, rows, 3))
    logvar = rng.uniform(-3, 1, (2, rows, 3))
    loss_at_target, dmean, _ = fm.nn.gaussian_nll(target.copy(), logvar, target)
    loss_off, _, _ = fm.nn.gaussian_nll(target + 0.1, logvar, target)
    assert loss_at_target < loss_off
    np.testing.assert_allclose(dmean, 0.0, atol=1e-12)
