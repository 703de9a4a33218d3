"""A refit on a grown buffer moves the normalizers; the warm-started network must not move with them."""
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.models._fitting import carry_over_normalization


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
    carry_over_normalization(model, *previous)
    model._arrays = None
    mean_after, var_after = model.predict(probe_obs, probe_act)

    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(mean_after, mean_before, rtol=tol, atol=tol)
    np.testing.assert_allclose(var_after, var_before, rtol=10 * tol)


def test_warm_refit_keeps_training_instead_of_keeping_stale_weights():
    # After a warm start the fresh holdout rows were mostly trained on, so the starting weights score
    # optimistically; they must not win, or a refit stops after `patience` epochs and never learns
    # the newest data.
    rng = np.random.default_rng(2)
    model = fm.models.GaussianEnsemble(3, 1, hidden=(16, 16), ensemble_size=3, num_elites=2, seed=0)
    obs, act, nxt = _data(rng, 500, 1.0)
    model.fit(obs, act, nxt, max_epochs=400, batch_size=64, patience=20, progress=False)  # converged
    before = model.net.flat.copy()
    new_obs, new_act, new_nxt = _data(rng, 20, 1.0)
    hist = model.fit(np.concatenate([obs, new_obs]), np.concatenate([act, new_act]),
                     np.concatenate([nxt, new_nxt]), max_epochs=40, patience=3, progress=False)
    assert hist.epochs_run >= 3
    assert np.all(hist.best_epoch >= 1)
    assert not np.array_equal(model.net.flat, before)
