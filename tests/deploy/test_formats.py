"""Each export format computes what fastmbrl computes, on random float32 inputs: the policy
(SAC.act(obs, deterministic=True)) and every member of a model (GaussianEnsemble.predict), with
angle features, partial delta targets, a learned reward head and each hidden activation."""
import numpy as np
import pytest

from fastmbrl.agents import SAC
from fastmbrl.deploy import _params, export_c, export_onnx, numpy_model, numpy_policy
from fastmbrl.models import GaussianEnsemble
from tests.deploy.helpers import MODEL_DRIVER, POLICY_DRIVER, build, close, random_obs, run_rows

N = 200          # random rows per comparison


def make_policy(activation="relu", hidden=(16, 8)):
    """A SAC agent with random weights and asymmetric bounds (3 obs dims, 2 action dims)."""
    return SAC(3, 2, (np.array([-1.0, 0.0]), np.array([3.0, 0.5])), hidden=hidden,
               activation=activation, seed=1)


def make_model(activation="silu", learn_reward=True, angle_dims=(1,)):
    """A briefly fitted 3-member model (4 obs dims, dim 1 an angle, dim 2 predicted directly)."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(-2, 2, (300, 4))
    act = rng.uniform(-1, 1, (300, 2))
    nxt = obs + 0.1 * np.tanh(obs[:, [1, 0, 3, 2]] + act[:, [0, 1, 0, 1]])
    nxt[:, 2] = 3.0 + np.sin(obs[:, 2]) * act[:, 0]
    reward = -np.sum(obs ** 2, axis=1) - 0.1 * np.sum(act ** 2, axis=1)
    model = GaussianEnsemble(4, 2, hidden=(16, 12), ensemble_size=3, num_elites=2,
                             activation=activation, predict_delta=[True, True, False, True],
                             angle_dims=angle_dims, learn_reward=learn_reward, seed=3)
    model.fit(obs, act, nxt, reward if learn_reward else None, max_epochs=3, progress=False)
    return model


def model_inputs(n=N, seed=5):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-3, 3, (n, 4)).astype(np.float32),
            rng.uniform(-1, 1, (n, 2)).astype(np.float32))


def model_reference(model, obs, act):
    """{"mean", "logvar", ["reward_mean", "reward_logvar"]} from GaussianEnsemble.predict."""
    if model.learn_reward:
        mean, var, rmean, rvar = model.predict(obs, act, return_reward=True)
        return {"mean": mean, "logvar": np.log(var), "reward_mean": rmean,
                "reward_logvar": np.log(rvar)}
    mean, var = model.predict(obs, act)
    return {"mean": mean, "logvar": np.log(var)}


# ------------------------------------------------------------------------------------- numpy
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_policy_matches_act(activation, tmp_path):
    agent = make_policy(activation)
    path = tmp_path / "policy.npz"
    np.savez(path, **_params.policy_arrays(_params.policy_params(agent)))
    policy = numpy_policy.load(path)
    obs = random_obs(N)
    want = agent.act(obs, deterministic=True)
    got = policy.act(obs)
    assert got.dtype == np.float32 and got.shape == (N, 2)
    close(got, want, 1e-6)
    close(policy.act(obs[0]), want[0], 1e-6)
    assert np.all(got >= policy.low) and np.all(got <= policy.high)
    with pytest.raises(ValueError, match="obs: expected shape"):
        policy.act(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        policy.act(np.array([0.0, np.nan, 0.0]))


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "identity"])
def test_numpy_model_matches_predict(activation, tmp_path):
    model = make_model(activation)
    path = tmp_path / "model.npz"
    np.savez(path, **_params.model_arrays(_params.model_params(model)))
    runtime = numpy_model.load(path)
    obs, act = model_inputs()
    want = model_reference(model, obs, act)
    got = runtime.predict(obs, act)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == np.float32
        close(got[k], want[k], 1e-5)
    one = runtime.predict(obs[3], act[3])
    assert one["mean"].shape == (3, 4) and one["reward_mean"].shape == (3,)
    close(one["mean"], want["mean"][:, 3], 1e-5)
    np.testing.assert_array_equal(runtime.elites, model.elites)
    with pytest.raises(ValueError, match="act: expected shape"):
        runtime.predict(obs, act[:5])


def test_numpy_runtime_refuses_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastmbrl policy file"):
        numpy_policy.load(bad)
    with pytest.raises(ValueError, match="not a fastmbrl model file"):
        numpy_model.load(bad)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable policy file"):
        numpy_policy.load(tmp_path / "junk.npz")


# ------------------------------------------------------------------------------------- onnx
def _session(blob):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(blob, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_onnx_policy_matches_act(activation):
    pytest.importorskip("onnx")
    agent = make_policy(activation)
    sess = _session(export_onnx.policy_onnx(_params.policy_params(agent), {"note": "test"}))
    assert [i.name for i in sess.get_inputs()] == ["obs"]
    assert [o.name for o in sess.get_outputs()] == ["action"]
    obs = random_obs(N)
    got = sess.run(None, {"obs": obs})[0]
    assert got.dtype == np.float32 and got.shape == (N, 2)
    close(got, agent.act(obs, deterministic=True), 1e-5)
    close(sess.run(None, {"obs": obs[:1]})[0], agent.act(obs[:1], deterministic=True), 1e-5)


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "identity"])
@pytest.mark.parametrize("learn_reward", [True, False])
def test_onnx_model_matches_predict(activation, learn_reward):
    pytest.importorskip("onnx")
    model = make_model(activation, learn_reward=learn_reward)
    sess = _session(export_onnx.model_onnx(_params.model_params(model)))
    want = model_reference(model, *model_inputs())
    names = [o.name for o in sess.get_outputs()]
    assert names == list(want)
    obs, act = model_inputs()
    got = dict(zip(names, sess.run(None, {"obs": obs, "act": act})))
    for k in want:
        assert got[k].dtype == np.float32
        close(got[k], want[k], 1e-5)
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["fastmbrl.kind"] == "model"
    assert meta["fastmbrl.elites"] == ",".join(str(e) for e in model.elites)


def test_onnx_model_without_angles():
    pytest.importorskip("onnx")
    model = make_model("silu", learn_reward=False, angle_dims=())
    sess = _session(export_onnx.model_onnx(_params.model_params(model)))
    obs, act = model_inputs(50)
    got = sess.run(None, {"obs": obs, "act": act})
    want = model_reference(model, obs, act)
    close(got[0], want["mean"], 1e-5)
    close(got[1], want["logvar"], 1e-5)


# ---------------------------------------------------------------------------------------- C
def _write_sources(folder, name, sources):
    c, h = sources
    (folder / f"{name}.c").write_text(c)
    (folder / f"{name}.h").write_text(h)
    return [folder / f"{name}.c"]


@pytest.mark.parametrize("activation, hidden", [("relu", (16, 8)), ("tanh", (16, 8)),
                                                ("relu", (5,))])
def test_c_policy_matches_act(activation, hidden, tmp_path):
    agent = make_policy(activation, hidden)
    src = _write_sources(tmp_path, "fastmbrl_policy",
                         export_c.policy_sources(_params.policy_params(agent), {"run": "x*/y"}))
    exe = build(tmp_path, POLICY_DRIVER, src)
    obs = random_obs(N)
    rc, got = run_rows(exe, obs)
    assert np.all(rc == 0)
    close(got, agent.act(obs, deterministic=True), 1e-5)
    bad = np.array([[np.nan, 0, 0], [0, np.inf, 0], [0, 0, -np.inf]], np.float32)
    rc, got = run_rows(exe, bad)
    assert np.all(rc == 1)
    assert np.all(got == -12345.0)           # nothing written


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "identity"])
@pytest.mark.parametrize("learn_reward", [True, False])
def test_c_model_matches_predict(activation, learn_reward, tmp_path):
    model = make_model(activation, learn_reward=learn_reward)
    src = _write_sources(tmp_path, "fastmbrl_model",
                         export_c.model_sources(_params.model_params(model)))
    header = (tmp_path / "fastmbrl_model.h").read_text()
    assert f"#define FASTMBRL_MODEL_HAS_REWARD {int(learn_reward)}" in header
    exe = build(tmp_path, MODEL_DRIVER, src)
    obs, act = model_inputs()
    rc, got = run_rows(exe, np.concatenate([obs, act], axis=1))
    assert np.all(rc == 0)
    want = model_reference(model, obs, act)
    e, d = 3, 4
    mean = got[:, :e * d].reshape(N, e, d).transpose(1, 0, 2)
    logvar = got[:, e * d:2 * e * d].reshape(N, e, d).transpose(1, 0, 2)
    close(mean, want["mean"], 1e-5)
    close(logvar, want["logvar"], 1e-5)
    if learn_reward:
        close(got[:, 2 * e * d:2 * e * d + e].T, want["reward_mean"], 1e-5)
        close(got[:, 2 * e * d + e:].T, want["reward_logvar"], 1e-5)
    else:
        assert got.shape[1] == 2 * e * d
    bad = np.concatenate([obs[:2], act[:2]], axis=1)
    bad[0, 1], bad[1, 5] = np.nan, np.inf
    rc, got = run_rows(exe, bad)
    assert np.all(rc == 1) and np.all(got == -12345.0)


def test_c_model_without_angles(tmp_path):
    model = make_model("relu", learn_reward=False, angle_dims=())
    src = _write_sources(tmp_path, "fastmbrl_model",
                         export_c.model_sources(_params.model_params(model)))
    exe = build(tmp_path, MODEL_DRIVER, src)
    obs, act = model_inputs(50)
    rc, got = run_rows(exe, np.concatenate([obs, act], axis=1))
    assert np.all(rc == 0)
    close(got[:, :12].reshape(50, 3, 4).transpose(1, 0, 2), model_reference(model, obs, act)["mean"],
          1e-5)


def test_c_policy_and_model_link_together(tmp_path):
    """Both files in one program: no clashing symbols, and the documented signatures."""
    agent, model = make_policy(), make_model()
    src = _write_sources(tmp_path, "fastmbrl_policy",
                         export_c.policy_sources(_params.policy_params(agent)))
    src += _write_sources(tmp_path, "fastmbrl_model",
                          export_c.model_sources(_params.model_params(model)))
    driver = r"""
#include <stdio.h>
#include "fastmbrl_policy.h"
#include "fastmbrl_model.h"
int main(void)
{
    float obs[4] = {0.1f, 0.2f, 0.3f, 0.4f}, act[2];
    float mean[FASTMBRL_MODEL_ENSEMBLE_SIZE * FASTMBRL_MODEL_OBS_DIM];
    float logvar[FASTMBRL_MODEL_ENSEMBLE_SIZE * FASTMBRL_MODEL_OBS_DIM];
    int (*policy)(const float *, float *) = fastmbrl_policy_act;
    int (*predict)(const float *, const float *, float *, float *) = fastmbrl_model_predict;
    int rc = policy(obs, act);
    rc += predict(obs, act, mean, logvar);
    printf("%d %d %d\n", rc, FASTMBRL_MODEL_NUM_ELITES, fastmbrl_model_elites[0]);
    return 0;
}
"""
    import subprocess

    exe = build(tmp_path, driver, src, name="both")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", str(model.num_elites), str(int(model.elites[0]))]
