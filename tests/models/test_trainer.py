"""Trainer: holdout split, bootstrap, batching, per-member early stopping, elites, failures."""
import sys

import numpy as np
import pytest

from fastmbrl.models import FitHistory, GaussianEnsemble


def toy_data(n, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-2, 2, size=(n, 2))
    act = rng.uniform(-1, 1, size=(n, 1))
    nxt = obs + 0.1 * np.sin(obs) + 0.2 * act + 0.02 * rng.standard_normal((n, 2))
    return obs, act, nxt


def model_1d(E=3, elites=2, **kw):
    return GaussianEnsemble(1, 1, hidden=(8,), ensemble_size=E, num_elites=elites, **kw)


def record_rows(trainer):
    """Replace the step by one that records which row ids (input column 0) each member saw."""
    seen = []

    def step(xb, yb):
        seen.append(xb[:, :, 0].copy())
        return 0.0

    trainer._train_step = step
    return seen


def id_data(n):
    X = np.zeros((n, 2), np.float32)
    X[:, 0] = np.arange(n)
    return X, np.zeros((n, 1), np.float32)


# ---------------------------------------------------------------- splits, resamples, batches
def test_bootstrap_resamples_are_per_member_and_exclude_holdout():
    model = model_1d(E=4)
    trainer = model._trainer
    seen = record_rows(trainer)
    X, Y = id_data(100)
    hist = trainer.fit(X, Y, np.random.default_rng(0), max_epochs=2, batch_size=16,
                       holdout_frac=0.2, patience=5, num_elites=2, progress=False)
    assert (hist.n_train, hist.n_holdout) == (80, 20)
    assert len(seen) == 2 * 5                              # 80 rows / 16 per step, two epochs
    epoch1 = np.concatenate(seen[:5], axis=1).astype(int)  # (E, 80)
    epoch2 = np.concatenate(seen[5:], axis=1).astype(int)
    all_seen = np.unique(np.concatenate([epoch1.ravel(), epoch2.ravel()]))
    assert all_seen.size <= 80                             # never a holdout row
    for e in range(4):
        counts = np.bincount(epoch1[e], minlength=100)
        assert counts.max() > 1 and 35 < np.count_nonzero(counts) < 80   # with replacement
        # the same resample in every epoch, reshuffled
        np.testing.assert_array_equal(np.sort(epoch1[e]), np.sort(epoch2[e]))
        assert not np.array_equal(epoch1[e], epoch2[e])
    assert not np.array_equal(np.sort(epoch1[0]), np.sort(epoch1[1]))    # members differ


def test_without_bootstrap_every_member_sees_each_training_row_once_per_epoch():
    model = model_1d(E=3)
    seen = record_rows(model._trainer)
    X, Y = id_data(105)
    hist = model._trainer.fit(X, Y, np.random.default_rng(1), max_epochs=1, batch_size=16,
                              holdout_frac=0.2, bootstrap=False, num_elites=2, progress=False)
    # 84 training rows -> 6 steps of 16 = 96 rows: the last step is topped up with 12 repeats
    assert hist.n_train == 84 and len(seen) == 6
    rows = np.concatenate(seen, axis=1).astype(int)
    train_ids = np.unique(rows[0])
    assert train_ids.size == 84
    for e in range(3):
        counts = np.bincount(rows[e], minlength=105)[train_ids]
        assert counts.min() == 1 and counts.sum() == 96 and np.count_nonzero(counts == 2) == 12
        np.testing.assert_array_equal(np.unique(rows[e]), train_ids)
    assert not np.array_equal(rows[0], rows[1])            # independent shuffles


def test_max_steps_ends_the_fit_mid_epoch_with_a_holdout_score():
    model = model_1d(E=3)
    seen = record_rows(model._trainer)
    X, Y = id_data(105)
    # 84 training rows, 6 steps per epoch: 14 steps are two whole epochs and 2 steps of a third
    hist = model._trainer.fit(X, Y, np.random.default_rng(1), max_epochs=50, batch_size=16,
                              holdout_frac=0.2, patience=100, num_elites=2, progress=False,
                              max_steps=14)
    assert len(seen) == 14 and hist.epochs_run == 3
    assert len(hist.holdout_loss) == 3 and not hist.stopped_early


def test_max_steps_through_the_model_is_checked_and_deterministic():
    obs, act, nxt = toy_data(300)
    runs = []
    for _ in range(2):
        model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=3, num_elites=2, seed=0)
        hist = model.fit(obs, act, nxt, max_epochs=50, batch_size=32, patience=100,
                         max_steps=20, progress=False)
        runs.append(model.net.flat.copy())
        assert hist.epochs_run == 3        # 270 training rows: 9 steps per epoch
    np.testing.assert_array_equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="max_steps"):
        model.fit(obs, act, nxt, max_steps=0, progress=False)


# ---------------------------------------------------------------- early stopping and elites
def test_per_member_patience_best_weights_and_elites():
    model = model_1d(E=3)
    trainer = model._trainer
    w0 = model.net.flat.copy()

    steps = [0]

    def step(xb, yb):                 # one step per epoch: weights = w0 + epoch
        steps[0] += 1
        model.net.flat[:] = w0 + np.float32(steps[0])
        return 0.0

    # holdout scores: initial, then epochs 1..6 (columns: members)
    script = iter(np.array([[10.0, 10.0, 10.0],
                            [5.0, 9.5, 1.0],     # m0, m2 improve a lot; m1 by 5% only
                            [4.0, 9.2, 2.0],     # m0 improves 20%; m1 8% vs ref 10
                            [4.8, 9.1, 3.0],
                            [4.7, 9.05, 4.0],    # every member is out of patience here
                            [1.0, 1.0, 1.0],
                            [1.0, 1.0, 1.0]]))

    def evaluate(X, Y, batch_size=256):
        s = next(script)
        return s, s

    trainer._train_step = step
    trainer.evaluate = evaluate
    X = np.zeros((50, 2), np.float32)
    hist = trainer.fit(X, X[:, :1], np.random.default_rng(0), max_epochs=6, batch_size=64,
                       holdout_frac=0.2, patience=2, min_rel_improvement=0.1, num_elites=2,
                       progress=False)
    assert isinstance(hist, FitHistory)
    assert hist.epochs_run == 4 and hist.stopped_early
    np.testing.assert_array_equal(hist.best_epoch, [2, 4, 1])   # m1 kept creeping down
    np.testing.assert_array_equal(hist.best_holdout, [4.0, 9.05, 1.0])
    np.testing.assert_array_equal(hist.elites, [0, 2])
    assert hist.holdout_loss.shape == (4, 3)
    start = [w0[a:b] for a, b in zip(model.net.offsets[:-1], model.net.offsets[1:])]
    for p, s in zip(model.net.params, start):
        s = s.reshape(p.shape)
        for e, ep in enumerate(hist.best_epoch):
            # each member holds its best epoch's weights
            np.testing.assert_array_equal(p[e], s[e] + np.float32(ep))


def test_elites_are_the_members_with_lowest_holdout_loss():
    obs, act, nxt = toy_data(600)
    model = GaussianEnsemble(2, 1, hidden=(16, 16), ensemble_size=5, num_elites=3, seed=1)
    hist = model.fit(obs, act, nxt, max_epochs=5, batch_size=64, progress=False)
    np.testing.assert_array_equal(model.elites, np.sort(np.argsort(hist.best_holdout)[:3]))
    np.testing.assert_array_equal(model.elites, hist.elites)
    assert hist.holdout_loss.shape == (hist.epochs_run, 5)
    mean, _ = model.predict(obs[:4], act[:4])
    assert mean.shape == (5, 4, 2)
    assert all(not np.allclose(mean[0], mean[e]) for e in range(1, 5))   # distinct members


def test_no_holdout_runs_all_epochs():
    obs, act, nxt = toy_data(200)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=3, num_elites=2)
    hist = model.fit(obs, act, nxt, max_epochs=4, holdout_frac=0.0, progress=False)
    assert hist.epochs_run == 4 and hist.n_holdout == 0 and not hist.stopped_early
    np.testing.assert_array_equal(hist.elites, [0, 1])


def test_callback_sees_each_epoch_and_can_stop():
    obs, act, nxt = toy_data(200)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=3, num_elites=2)
    calls = []

    def cb(epoch, train_loss, holdout):
        calls.append((epoch, train_loss, holdout.shape))
        return epoch == 3

    hist = model.fit(obs, act, nxt, max_epochs=50, callback=cb, progress=False)
    assert [c[0] for c in calls] == [1, 2, 3] and hist.epochs_run == 3
    assert calls[0][2] == (3,) and np.isfinite(calls[0][1])


# ---------------------------------------------------------------- warm start
def test_refit_warm_starts_from_current_weights():
    obs, act, nxt = toy_data(800)
    model = GaussianEnsemble(2, 1, hidden=(32, 32), ensemble_size=3, num_elites=2)
    first = model.fit(obs[:600], act[:600], nxt[:600], max_epochs=30, progress=False)
    steps = model._step.t
    second = model.fit(obs, act, nxt, max_epochs=2, progress=False)
    # the second fit starts near where the first ended, far below a fresh network
    assert np.all(second.initial_holdout < 0.5 * first.initial_holdout)
    assert model._step.t > steps
    assert model.n_fits == 2


# ---------------------------------------------------------------- bad data and failures
def test_non_finite_data_is_refused_before_touching_the_model():
    obs, act, nxt = toy_data(100)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=3, num_elites=2)
    model.fit(obs, act, nxt, max_epochs=1, progress=False)
    flat, in_mean = model.net.flat.copy(), model.input_normalizer.mean.copy()
    rng_state = model._rng.bit_generator.state
    bad = nxt.copy()
    bad[7, 1] = np.inf
    with pytest.raises(ValueError, match="next_obs.*non-finite"):
        model.fit(obs, act, bad, progress=False)
    bad = act.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="act.*non-finite"):
        model.fit(obs, bad, nxt, progress=False)
    with pytest.raises(ValueError, match="next_obs: expected shape"):
        model.fit(obs, act, nxt[:-1], progress=False)
    np.testing.assert_array_equal(model.net.flat, flat)
    np.testing.assert_array_equal(model.input_normalizer.mean, in_mean)
    assert model._rng.bit_generator.state == rng_state and model.n_fits == 1


def test_non_finite_loss_stops_with_error_and_keeps_the_model_as_it_was():
    obs, act, nxt = toy_data(300)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=3, num_elites=2)
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    before = model.net.flat.copy(), model.max_logvar.copy(), model._step.state_dict()["m"]

    def poison(epoch, train_loss, holdout):
        if epoch == 2:                       # a weight blows up between epochs 2 and 3
            model.net.params[2][1, 0, 0] = np.nan

    with pytest.raises(FloatingPointError, match="epoch 3"):
        model.fit(obs, act, nxt, max_epochs=10, callback=poison, progress=False)
    # a failed fit leaves the model exactly as it was before the call
    np.testing.assert_array_equal(model.net.flat, before[0])
    np.testing.assert_array_equal(model.max_logvar, before[1])
    np.testing.assert_array_equal(model._step.state_dict()["m"], before[2])
    mean, var = model.predict(obs[:5], act[:5])
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(var))
    model.fit(obs, act, nxt, max_epochs=1, progress=False)     # and it can train again


def test_update_that_breaks_the_weights_is_caught_at_the_holdout():
    obs, act, nxt = toy_data(300)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=3, num_elites=2)
    real_step = model._trainer._train_step
    calls = [0]

    def step(xb, yb):           # the third update leaves an infinite weight behind
        loss = real_step(xb, yb)
        calls[0] += 1
        if calls[0] == 3:
            model.net.params[0][2, 0, 0] = np.inf
        return loss

    model._trainer._train_step = step
    # inf * 0 inside the forward pass is the point here (the NumPy twins would warn about it)
    with pytest.raises(FloatingPointError, match="holdout loss became non-finite at epoch 3"), \
            np.errstate(invalid="ignore"):
        model.fit(obs, act, nxt, max_epochs=10, batch_size=512, progress=False)
    assert np.all(np.isfinite(model.net.flat))
    assert np.all(np.isfinite(model.predict(obs[:5], act[:5])[0]))


def test_progress_goes_to_stderr_only_when_enabled(capsys, monkeypatch):
    obs, act, nxt = toy_data(100)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=2, num_elites=1)
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    model.fit(obs, act, nxt, max_epochs=2, progress=True)   # stderr is no terminal here: quiet
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    model.fit(obs, act, nxt, max_epochs=2, progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "epoch 2/2" in out.err


def test_two_thread_step_trains_like_one_thread():
    obs, act, nxt = toy_data(600)
    losses = []
    for n_threads in (1, 2):
        model = GaussianEnsemble(2, 1, hidden=(32, 32), ensemble_size=3, num_elites=2,
                                 n_threads=n_threads)
        losses.append(model.fit(obs, act, nxt, max_epochs=2, progress=False).train_loss)
    # rows are split between threads, so sums are rounded differently, nothing else
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_holdout_scores_match_the_network_forward(dtype):
    # evaluate and coverage take their predictions from the step's evaluation pass: the same
    # numbers as the network's own forward pass, a padded last chunk included
    from fastmbrl.nn import soft_bound_logvar

    obs, act, nxt = toy_data(300)
    model = GaussianEnsemble(2, 1, hidden=(16, 16), ensemble_size=3, num_elites=2, dtype=dtype)
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    trainer, E, d = model._trainer, 3, 2
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, trainer.net.in_dim)).astype(dtype)
    Y = rng.standard_normal((300, d)).astype(dtype)
    mse, nll = trainer.evaluate(X, Y, batch_size=128)       # chunks of 128, 128 and 44 rows
    cover = trainer.coverage(X, Y, batch_size=128)
    out, _ = trainer.net.forward(np.ascontiguousarray(np.broadcast_to(X, (E,) + X.shape)))
    mean = out[..., :d]
    lv, _ = soft_bound_logvar(np.ascontiguousarray(out[..., d:]), trainer.max_logvar,
                              trainer.min_logvar)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(mse, np.mean((mean - Y) ** 2, axis=(1, 2)), rtol=rtol)
    np.testing.assert_allclose(nll, np.mean(np.sum((Y - mean) ** 2 * np.exp(-lv) + lv, axis=2),
                                            axis=1), rtol=rtol)
    z = np.abs(mean - Y) * np.exp(-0.5 * lv)
    expected = np.stack([np.mean(z <= k, axis=(1, 2)) for k in (1.0, 2.0)], axis=1)
    np.testing.assert_allclose(cover, expected, atol=1.5 / (300 * d))
