"""Issue 12, items 9 and 8: every public argument of fastmbrl.nn, .models, .buffer and .envs gets a
named, typed error (nothing silently coerced); ReplayBuffer.load on a truncated or tampered file
raises the documented ValueError naming the path."""
import numpy as np
import pytest

from fastmbrl import envs
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.models import GaussianEnsemble, Normalizer
from fastmbrl.nn import Adam, EnsembleMLP, GaussianTrainStep


def ge(**kw):
    args = dict(obs_dim=3, act_dim=1, hidden=(8,), ensemble_size=2, num_elites=1)
    args.update(kw)
    return GaussianEnsemble(**args)


def fit(**kw):
    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    kw.setdefault("progress", False)
    return ge().fit(obs, act, obs + 0.1, **kw)


def mlp(**kw):
    args = dict(in_dim=3, out_dim=4, hidden=(8,), ensemble_size=2)
    args.update(kw)
    return EnsembleMLP(**args)


def step(**kw):
    return GaussianTrainStep(mlp(), **kw)


def adam(**kw):
    return Adam([np.zeros(3)], **kw)


def buf(**kw):
    args = dict(capacity=10, obs_dim=3, act_dim=1)
    args.update(kw)
    return ReplayBuffer(**args)


def buf_add(**kw):
    args = dict(obs=np.zeros(3), act=np.zeros(1), reward=0.0, next_obs=np.zeros(3),
                terminated=False, truncated=False)
    args.update(kw)
    return buf().add(**args)


# (call, expected exception type, regex the message must match: the argument's name first)
BAD = [
    # fastmbrl.models.GaussianEnsemble
    (lambda: ge(hidden=None), TypeError, "hidden: expected a sequence of integers, got None"),
    (lambda: ge(hidden=(8, 0)), ValueError, r"hidden: expected integers >= 1"),
    (lambda: ge(hidden=(8.0,)), ValueError, r"hidden: expected integers"),
    (lambda: ge(hidden=8), TypeError, r"hidden: expected a sequence"),
    (lambda: ge(seed=None), TypeError, "seed: expected an integer >= 0, got None"),
    (lambda: ge(seed=1.7), ValueError, "seed: expected an integer >= 0, got 1.7"),
    (lambda: ge(seed=-1), ValueError, "seed: expected an integer >= 0"),
    (lambda: ge(seed="0"), TypeError, "seed: expected an integer"),
    (lambda: ge(angle_dims=(0.5,)), ValueError, r"angle_dims: expected integers in \[0, 3\)"),
    (lambda: ge(angle_dims=(True,)), ValueError, r"angle_dims: expected integers"),
    (lambda: ge(angle_dims=(3,)), ValueError, r"angle_dims: expected integers in \[0, 3\)"),
    (lambda: ge(angle_dims=(1, 1)), ValueError, "angle_dims: expected distinct"),
    (lambda: ge(angle_dims=None), TypeError, "angle_dims: expected a sequence"),
    (lambda: ge(obs_dim=2.0), ValueError, "obs_dim: expected an integer"),
    (lambda: ge(ensemble_size=None), TypeError, "ensemble_size: expected an integer"),
    (lambda: ge(num_elites=3), ValueError, "num_elites: expected at most ensemble_size"),
    (lambda: ge(lr=float("nan")), ValueError, "lr: expected a finite number"),
    (lambda: ge(lr="0.1"), TypeError, "lr: expected a real number"),
    (lambda: ge(lr=0.0), ValueError, "lr: expected a number > 0"),
    (lambda: ge(logvar_penalty=None), TypeError, "logvar_penalty: expected a real number"),
    (lambda: ge(weight_decay=-1.0), ValueError, "weight_decay: expected a number >= 0"),
    (lambda: ge(weight_decay="x"), ValueError, "weight_decay: expected 'pets'"),
    (lambda: ge(learn_reward=1), TypeError, "learn_reward: expected True or False"),
    (lambda: ge(predict_delta=[1, 0, 1]), ValueError, "predict_delta: expected a bool"),
    (lambda: ge(activation="gelu"), ValueError, "activation: expected one of"),
    (lambda: ge(dtype=np.float16), TypeError, "dtype: expected float32 or float64"),
    (lambda: ge(n_threads=0), ValueError, "n_threads: expected an integer >= 1"),
    (lambda: ge().uncertainty(np.zeros((2, 3)), np.zeros((2, 1)), members=[0.5]), ValueError,
     "members: expected integers, got an array of dtype float64"),
    (lambda: ge().uncertainty(np.zeros((2, 3)), np.zeros((2, 1)), members=[]), ValueError,
     "members: expected indices"),
    # GaussianEnsemble.fit
    (lambda: fit(max_epochs=2.5), ValueError, "max_epochs: expected an integer"),
    (lambda: fit(holdout_frac=1.0), ValueError, r"holdout_frac: expected a number >= 0.0 and < 1"),
    (lambda: fit(holdout_frac=None), TypeError, "holdout_frac: expected a real number"),
    (lambda: fit(min_rel_improvement=float("nan")), ValueError, "min_rel_improvement: expected a fi"),
    (lambda: fit(bootstrap="yes"), TypeError, "bootstrap: expected True or False"),
    (lambda: fit(progress=None), TypeError, "progress: expected True or False"),
    (lambda: fit(callback=3), TypeError, "callback: expected a callable or None"),
    (lambda: fit(holdout_metric="mae"), ValueError, "holdout_metric: expected"),
    (lambda: ge().fit(np.zeros((5, 2)), np.zeros((5, 1)), np.zeros((5, 3)), progress=False),
     ValueError, r"obs: expected shape \(\*, 3\)"),
    # Normalizer
    (lambda: Normalizer(None), TypeError, "dim: expected an integer"),
    (lambda: Normalizer(2.0), ValueError, "dim: expected an integer"),
    (lambda: Normalizer(2, dtype=np.int32), TypeError, "dtype: expected float32 or float64"),
    (lambda: Normalizer(2).fit(np.zeros((3, 3))), ValueError, r"x: expected shape \(\*, 2\)"),
    # fastmbrl.nn
    (lambda: mlp(hidden=None), TypeError, "hidden: expected a sequence of integers, got None"),
    (lambda: mlp(seed=1.7), ValueError, "seed: expected an integer >= 0, got 1.7"),
    (lambda: mlp(seed=None), TypeError, "seed: expected an integer >= 0, got None"),
    (lambda: mlp(in_dim=0), ValueError, "in_dim: expected an integer >= 1"),
    (lambda: mlp(activation=None), ValueError, "activation: expected one of"),
    (lambda: step(lr=float("nan")), ValueError, "lr: expected a finite number"),
    (lambda: step(lr=None), TypeError, "lr: expected a real number"),
    (lambda: step(bound_penalty=float("inf")), ValueError, "bound_penalty: expected a finite"),
    (lambda: step(eps=0.0), ValueError, "eps: expected a number > 0"),
    (lambda: step(betas=(0.9,)), ValueError, "betas: expected two values"),
    (lambda: step(betas=(0.9, 1.0)), ValueError, "betas: expected a number >= 0.0 and < 1.0"),
    (lambda: step(weight_decay="0.1"), TypeError, "weight_decay: expected a real number"),
    (lambda: step(n_threads=1.0), ValueError, "n_threads: expected an integer"),
    (lambda: GaussianTrainStep(None), TypeError, "net: expected an EnsembleMLP"),
    (lambda: adam(lr=float("nan")), ValueError, "lr: expected a finite number"),
    (lambda: adam(lr=-1.0), ValueError, "lr: expected a number > 0"),
    (lambda: adam(eps=None), TypeError, "eps: expected a real number"),
    (lambda: adam(betas=(0.9, 1.5)), ValueError, "betas: expected a number"),
    (lambda: adam(weight_decay=float("nan")), ValueError, "weight_decay: expected a finite"),
    (lambda: Adam([np.zeros(3, np.int64)]), TypeError, r"params\[0\]: expected a float32"),
    # fastmbrl.buffer.ReplayBuffer
    (lambda: buf(capacity=None), TypeError, "capacity: expected an integer"),
    (lambda: buf(capacity=10.0), ValueError, "capacity: expected an integer"),
    (lambda: buf(obs_dim=0), ValueError, "obs_dim: expected an integer >= 1"),
    (lambda: buf(dtype="float16"), TypeError, "dtype: expected float32 or float64"),
    (lambda: buf(overflow="drop"), ValueError, "overflow: expected 'wrap' or 'grow'"),
    (lambda: buf_add(obs=np.zeros(4)), ValueError, r"obs: expected shape \(3\)"),
    (lambda: buf_add(act=np.zeros((1, 1))), ValueError, r"act: expected shape \(1\)"),
    (lambda: buf_add(reward=np.zeros(2)), ValueError, r"reward: expected shape \(1\)"),
    (lambda: buf_add(reward="1"), TypeError, "reward: expected a numeric array"),
    (lambda: buf_add(next_obs=np.full(3, np.nan)), ValueError, "next_obs: contains 3 non-finite"),
    (lambda: buf_add(terminated=2), ValueError, r"terminated: expected booleans \(or 0/1\)"),
    (lambda: buf_add(truncated=0.5), TypeError, "truncated: expected booleans"),
    (lambda: buf().sample(0, np.random.default_rng()), ValueError, "batch_size: expected"),
    (lambda: buf().bootstrap_indices(None, np.random.default_rng()), TypeError, "ensemble_size"),
    # fastmbrl.envs
    (lambda: envs.make(None), TypeError, "env_id: expected a string"),
    (lambda: envs.make("NoSuchEnv-v0"), envs.UnknownEnvError, "env_id: unknown environment"),
    (lambda: envs.get_spec(3), TypeError, "env_id: expected a string"),
]


@pytest.mark.parametrize("call,exc,pattern", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_argument_gives_a_named_typed_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_good_arguments_still_work():
    model = ge(hidden=[8, 8], seed=np.int64(3), angle_dims=np.array([1]), lr=1, weight_decay=0)
    assert model.hidden == (8, 8) and model.angle_dims == (1,) and model.seed == 3
    b = buf()
    b.add(np.zeros(3), np.zeros(1), np.array([1.0]), np.zeros(3), np.bool_(True), 0)
    assert b.terminated[0] and not b.truncated[0] and b.reward[0] == 1.0


# ---------------------------------------------------------------- 8. ReplayBuffer files
@pytest.fixture
def saved_buffer(tmp_path):
    b = ReplayBuffer(50, 3, 1)
    rng = np.random.default_rng(0)
    for _ in range(30):
        b.add(rng.normal(size=3), rng.normal(size=1), 1.0, rng.normal(size=3), False, False)
    path = tmp_path / "buffer.npz"
    b.save(path)
    return path


@pytest.mark.parametrize("keep", [0, 1, 21, 0.3, 0.6, 0.95, -1])
def test_truncated_buffer_file_is_a_valueerror_naming_the_path(saved_buffer, keep):
    raw = saved_buffer.read_bytes()
    cut = keep if isinstance(keep, int) and keep >= 0 else (
        len(raw) - 1 if keep == -1 else int(keep * len(raw)))
    saved_buffer.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match="not a readable ReplayBuffer file") as info:
        ReplayBuffer.load(saved_buffer)
    assert str(saved_buffer) in str(info.value)


def test_corrupted_bytes_are_a_valueerror_naming_the_path(saved_buffer):
    raw = bytearray(saved_buffer.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 64] = bytes(64)
    saved_buffer.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="path") as info:
        ReplayBuffer.load(saved_buffer)
    assert str(saved_buffer) in str(info.value)


@pytest.mark.parametrize("key,value,pattern", [
    ("obs", np.full((30, 3), np.nan, np.float32), "obs: contains"),
    ("act", np.zeros((30, 2), np.float32), r"array 'act': expected float \(30, 1\)"),
    ("terminated", np.zeros(30, np.int64), "array 'terminated': expected bool"),
    ("meta", np.array([1, 50, 3, 1, 5], np.int64), "30 rows for capacity 50 and 5 rows added"),
    ("meta", np.array([1, 0, 3, 1, 30], np.int64), "capacity: expected an integer >= 1"),
    ("dtype", np.array("int8"), "dtype: expected float32 or float64"),
])
def test_tampered_buffer_file_is_a_valueerror_naming_the_path(saved_buffer, key, value, pattern):
    with np.load(saved_buffer, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data[key] = value
    np.savez(saved_buffer, **data)
    with pytest.raises(ValueError, match=pattern) as info:
        ReplayBuffer.load(saved_buffer)
    assert str(saved_buffer) in str(info.value)
