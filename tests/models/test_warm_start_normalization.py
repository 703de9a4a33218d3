"""A refit on a grown buffer moves the normalizers; the warm-started network must not move with them."""
import numpy as np
import pytest

import fastmbrl as fm


def _data(rng, n, scale, loc=0.0):
    obs = rng.normal(loc, scale, (n, 3))
    act = rng.uniform(-2, 2, (n, 1))
    next_obs = obs + 0.1 * np.tanh(obs) * act + 0.01 * rng.standard_normal((n, 3))
    return obs, act, next_obs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_carry_over_keeps_the_function_in_raw_units(dtype):
    rng = np.random.default_rng(0)
    model = fm.models.GaussianEnsemble(3, 1, hidden=(16, 16), ensemble_size=3, num_elites=2,
                                       angle_dims=(2,), dtype=dtype, seed=0)
    model.fit(*_data(rng, 300, 1.0), max_epochs=3, progress=False)
    probe_obs, probe_act, _ = _data(rng, 50, 1.0)
    mean_before, var_before = model.predict(probe_obs, probe_act)

    # New data with a different spread: the statistics change a lot (factor ~3 in std).
    obs, act, next_obs = _data(rng, 600, 3.0)
    previous = [a.astype(np.float64) for a in (model.input_normalizer.mean, model.input_normalizer.std,
                model.output_normalizer.mean, model.output_normalizer.std)]
    model.input_normalizer.fit(model.model_inputs(obs, act))
    model.output_normalizer.fit(model.model_targets(obs, next_obs))
    assert not np.allclose(model.input_normalizer.std, previous[1])
    model._carry_over_normalization(*previous)
    model._arrays = None
    mean_after, var_after = model.predict(probe_obs, probe_act)

    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(mean_after, mean_before, rtol=tol, atol=tol)
    np.testing.assert_allclose(var_after, var_before, rtol=10 * tol)
