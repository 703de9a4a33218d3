"""Issue 12, model side: a failed fit changes nothing (3), data at any scale (4), checked files (8),
a calibrated model by default (10)."""
import numpy as np
import pytest

from fastmbrl.models import GaussianEnsemble, Normalizer


def toy(n, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1.0, 1.0, size=(n, 2))
    act = rng.uniform(-1.0, 1.0, size=(n, 1))
    nxt = np.column_stack([np.sin(2.0 * obs[:, 0]) + 0.5 * act[:, 0], obs[:, 0] * obs[:, 1]])
    nxt += 0.01 * rng.standard_normal(nxt.shape)
    return obs * scale, act, nxt * scale


def small_model(**kw):
    args = dict(hidden=(16,), ensemble_size=3, num_elites=2, seed=0)
    args.update(kw)
    return GaussianEnsemble(2, 1, **args)


def snapshot(model):
    """Every piece of state a fit could change, as copies."""
    return {"flat": model.net.flat.copy(), "max_lv": model.max_logvar.copy(),
            "min_lv": model.min_logvar.copy(), "elites": model.elites.copy(),
            "in": model.input_normalizer.state_dict(), "out": model.output_normalizer.state_dict(),
            "opt": model._step.state_dict(), "rng": model._rng.bit_generator.state,
            "n_fits": model.n_fits, "history": model.history}


def assert_same_state(model, snap):
    after = snapshot(model)
    for key in ("flat", "max_lv", "min_lv", "elites"):
        np.testing.assert_array_equal(after[key], snap[key], err_msg=key)
    for key in ("in", "out", "opt"):
        for k, v in snap[key].items():
            np.testing.assert_array_equal(after[key][k], v, err_msg=f"{key}.{k}")
    assert after["rng"] == snap["rng"]
    assert after["n_fits"] == snap["n_fits"] and after["history"] is snap["history"]


# ---------------------------------------------------------------- 3. a failed fit changes nothing
def huge_data():
    """Finite in float64, but not once normalized in float32 (its std is beyond float32 max)."""
    obs, act, nxt = toy(200, seed=1)
    nxt = nxt.copy()
    nxt[::2, 0] = 1.0e39
    nxt[1::2, 0] = -1.0e39
    return obs, act, nxt


@pytest.mark.parametrize("failure", ["overflow_after_normalization", "non_finite_loss",
                                     "callback_raises"])
def test_failed_fit_leaves_the_model_bit_identical_and_usable(failure):
    obs, act, nxt = toy(300)
    model = small_model()
    model.fit(obs, act, nxt, max_epochs=3, progress=False)
    snap = snapshot(model)
    mean0, var0 = model.predict(obs[:7], act[:7])
    if failure == "overflow_after_normalization":
        with pytest.raises(ValueError, match="targets"):
            model.fit(*huge_data(), progress=False)
    elif failure == "non_finite_loss":
        def poison(epoch, train_loss, holdout):
            model.net.params[0][0, 0, 0] = np.nan
        with pytest.raises(FloatingPointError, match="left as it was"), \
                np.errstate(invalid="ignore"):
            model.fit(obs, act, nxt, max_epochs=5, callback=poison, progress=False)
    else:
        def boom(epoch, train_loss, holdout):
            raise KeyError("user callback")
        with pytest.raises(KeyError, match="user callback"):
            model.fit(obs * 3.0, act, nxt * 3.0, max_epochs=5, callback=boom, progress=False)
    assert_same_state(model, snap)
    mean1, var1 = model.predict(obs[:7], act[:7])
    np.testing.assert_array_equal(mean1, mean0)
    np.testing.assert_array_equal(var1, var0)
    model.fit(obs, act, nxt, max_epochs=2, progress=False)      # and it trains again
    assert np.all(np.isfinite(model.predict(obs[:7], act[:7])[0]))


def test_normalizer_that_fails_keeps_its_statistics():
    norm = Normalizer(1).fit(np.array([[1.0], [3.0]]))
    state = norm.state_dict()
    for call in (norm.fit, norm.update):
        with pytest.raises(ValueError, match="not finite in float32"):
            call(np.array([[1.0e39], [-1.0e39]]))
        for k, v in state.items():
            np.testing.assert_array_equal(norm.state_dict()[k], v)
    bad = dict(state, std=np.array([0.0], np.float32))
    with pytest.raises(ValueError, match="std"):
        norm.load_state_dict(bad)
    for k, v in state.items():
        np.testing.assert_array_equal(norm.state_dict()[k], v)


# ---------------------------------------------------------------- 4. data at any scale
def r2(model, obs, act, nxt):
    mean, _ = model.predict(obs, act)
    pred = mean[model.elites].mean(axis=0)
    return 1.0 - np.sum((pred - nxt) ** 2) / np.sum((nxt - nxt.mean(axis=0)) ** 2)


@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e6])
def test_model_fits_data_at_any_scale(scale):
    obs, act, nxt = toy(3000, scale=scale)
    model = GaussianEnsemble(2, 1, hidden=(32, 32), ensemble_size=2, num_elites=2,
                             predict_delta=False, seed=0)
    model.fit(obs, act, nxt, max_epochs=60, patience=60, progress=False)
    test_obs, test_act, test_nxt = toy(500, seed=7, scale=scale)
    assert r2(model, test_obs, test_act, test_nxt) > 0.9
    np.testing.assert_allclose(model.input_normalizer.std[:2], obs.std(axis=0), rtol=1e-3)


def test_data_whose_variance_overflows_float32_is_refused_and_float64_fits_it():
    obs, act, nxt = toy(400, scale=1e30)
    model = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=2, num_elites=2, seed=0)
    before = model.net.flat.copy()
    with pytest.raises(ValueError, match=r"targets: their spread \(std up to .*e\+29\) makes the "
                                         r"predicted variance overflow float32"):
        model.fit(obs, act, nxt, max_epochs=2, progress=False)
    np.testing.assert_array_equal(model.net.flat, before)
    wide = GaussianEnsemble(2, 1, hidden=(8,), ensemble_size=2, num_elites=2, seed=0,
                            dtype=np.float64)
    wide.fit(obs, act, nxt, max_epochs=2, progress=False)
    _, var = wide.predict(obs[:5], act[:5])
    assert np.all(np.isfinite(var)) and np.all(var > 0)


@pytest.mark.parametrize("value", [0.0, 3.7, 1e-12, -2e8])
def test_constant_columns_stay_finite(value):
    obs, act, nxt = toy(400)
    obs = np.column_stack([obs, np.full(len(obs), value)])
    nxt = np.column_stack([nxt, np.full(len(nxt), value)])
    model = GaussianEnsemble(3, 1, hidden=(16,), ensemble_size=2, num_elites=2,
                             predict_delta=False, seed=0)
    model.fit(obs, act, nxt, max_epochs=3, progress=False)
    assert model.input_normalizer.std[2] == 1.0 and model.output_normalizer.std[2] == 1.0
    mean, var = model.predict(obs[:9], act[:9])
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(var))


# ---------------------------------------------------------------- 8. files are checked on load
@pytest.fixture
def saved_model(tmp_path):
    obs, act, nxt = toy(200)
    model = small_model()
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data.update(changes)
    np.savez(path, **data)


@pytest.mark.parametrize("key,value,message", [
    ("flat", "nan", "flat.*non-finite"),
    ("in_std", "zero", "in_std.*positive"),
    ("out_std", "negative", "out_std.*positive"),
    ("out_mean", "inf", "out_mean.*non-finite"),
    ("opt_max_logvar", "nan", "max_logvar.*non-finite"),
    ("opt_min_logvar", "above_max", "min_logvar.*max_logvar"),
    ("opt_v", "negative", "opt_v.*non-negative"),
])
def test_load_refuses_tampered_arrays(saved_model, key, value, message):
    with np.load(saved_model, allow_pickle=False) as f:
        arr = f[key].copy()
    if key == "opt_min_logvar":
        with np.load(saved_model, allow_pickle=False) as f:
            arr = f["opt_max_logvar"] + 1.0
    elif value == "nan":
        arr.reshape(-1)[0] = np.nan
    elif value == "inf":
        arr.reshape(-1)[0] = np.inf
    elif value == "zero":
        arr.reshape(-1)[0] = 0.0
    else:
        arr.reshape(-1)[0] = -abs(arr.reshape(-1)[0]) - 1.0
    rewrite(saved_model, **{key: arr})
    with pytest.raises(ValueError, match=message) as info:
        GaussianEnsemble.load(saved_model)
    assert str(saved_model) in str(info.value)


@pytest.mark.parametrize("keep", [0, 10, 0.5, 0.9])
def test_load_of_a_truncated_file_names_the_path(saved_model, keep):
    raw = saved_model.read_bytes()
    saved_model.write_bytes(raw[:int(keep * len(raw)) if keep < 1 else keep])
    with pytest.raises(ValueError, match="path") as info:
        GaussianEnsemble.load(saved_model)
    assert str(saved_model) in str(info.value)


# ---------------------------------------------------------------- 10. calibrated by default
def twentyfold_sigma(x):
    """Noise growing twentyfold across the input range: 0.05 at x = -1, 1.0 at x = 1."""
    return 0.05 * 20.0 ** ((x + 1.0) / 2.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_fit_gives_calibrated_sigma(seed):
    rng = np.random.default_rng(seed)
    n = 4000
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    y = np.sin(3.0 * x) + twentyfold_sigma(x) * rng.standard_normal((n, 1))
    model = GaussianEnsemble(1, 1, hidden=(64, 64), ensemble_size=3, num_elites=3,
                             predict_delta=False, seed=seed)
    hist = model.fit(x, np.zeros((n, 1)), y, progress=False)         # the defaults
    grid = np.linspace(-1.0, 1.0, 41)[:, None]
    aleatoric, _ = model.uncertainty(grid, np.zeros_like(grid))
    rel_err = np.abs(np.sqrt(aleatoric[:, 0]) / twentyfold_sigma(grid[:, 0]) - 1.0)
    assert np.median(rel_err) < 0.10, rel_err
    assert hist.calibration.shape == (3, 2)
    for e in range(3):                  # the MSE of the kept epoch, also under the NLL metric
        assert hist.best_holdout_mse[e] == hist.holdout_mse[hist.best_epoch[e] - 1, e]
    one, two = hist.calibration.mean(axis=0)
    assert abs(one - 0.683) < 0.05 and abs(two - 0.954) < 0.025, hist.calibration


def test_calibration_figure_detects_a_miscalibrated_model():
    # the early-stopped MSE fit keeps the initial, too wide variance: the figure must show it
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    y = np.sin(3.0 * x) + twentyfold_sigma(x) * rng.standard_normal((n, 1))
    model = GaussianEnsemble(1, 1, hidden=(64, 64), ensemble_size=3, num_elites=3,
                             predict_delta=False, seed=0)
    hist = model.fit(x, np.zeros((n, 1)), y, holdout_metric="mse", progress=False)
    # brute-force the same fraction from predict() on the holdout-free data
    mean, var = model.predict(x, np.zeros((n, 1)))
    inside = (np.abs(y[None] - mean) <= np.sqrt(var)).mean(axis=(1, 2))
    np.testing.assert_allclose(hist.calibration[:, 0], inside, atol=0.05)
    assert hist.calibration[:, 0].mean() > 0.72


def test_no_holdout_gives_nan_calibration():
    obs, act, nxt = toy(100)
    hist = small_model().fit(obs, act, nxt, max_epochs=2, holdout_frac=0.0, progress=False)
    assert hist.calibration.shape == (3, 2) and np.all(np.isnan(hist.calibration))
