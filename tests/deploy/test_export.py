"""fastmbrl.deploy.export on real run folders: the files of each format, their contract against the
loaded agent and model, the pure-NumPy modules in a process without fastmbrl or Numba, and the
refusals (existing files, parts a run lacks, damaged or missing runs), which write nothing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.deploy import export
from fastmbrl.deploy.loading import load_model, open_run
from tests.deploy.helpers import MODEL_DRIVER, POLICY_DRIVER, build, close, random_obs, run_rows

FILES = {"onnx": (["policy.onnx"], ["model.onnx"]),
         "c": (["fastmbrl_policy.c", "fastmbrl_policy.h"], ["fastmbrl_model.c", "fastmbrl_model.h"]),
         "numpy": (["policy.npz", "fastmbrl_policy.py"], ["model.npz", "fastmbrl_model.py"])}


def _model_of(out):
    return load_model(open_run(out))


def _inputs(n=100):
    return random_obs(n), random_obs(n, dim=1, seed=1, scale=2.0)


@pytest.mark.parametrize("fmt", ["onnx", "c", "numpy"])
def test_export_mbpo_policy_and_model(fmt, mbpo_run, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    out, result = mbpo_run
    dest = tmp_path / "exported"
    res = export(out, fmt, dest)
    policy_files, model_files = FILES[fmt]
    assert [os.path.basename(p) for p in res.files] == policy_files + model_files
    assert res.notes == ()
    assert sorted(os.listdir(dest)) == sorted(policy_files + model_files)   # no temporaries
    obs, act = _inputs()
    want_act = fm.load(out).act(obs, deterministic=True)
    np.testing.assert_array_equal(want_act, result.agent.act(obs, deterministic=True))
    mean, var = _model_of(out).predict(obs, act)
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        got = ort.InferenceSession(str(dest / "policy.onnx")).run(None, {"obs": obs})[0]
        close(got, want_act, 1e-5)
        m, lv = ort.InferenceSession(str(dest / "model.onnx")).run(None, {"obs": obs, "act": act})
    elif fmt == "c":
        exe = build(tmp_path, POLICY_DRIVER, [dest / "fastmbrl_policy.c"], name="policy")
        rc, got = run_rows(exe, obs)
        assert np.all(rc == 0)
        close(got, want_act, 1e-5)
        exe = build(tmp_path, MODEL_DRIVER, [dest / "fastmbrl_model.c"], name="model")
        rc, got = run_rows(exe, np.concatenate([obs, act], axis=1))
        assert np.all(rc == 0)
        e = mean.shape[0]
        m = got[:, :3 * e].reshape(-1, e, 3).transpose(1, 0, 2)
        lv = got[:, 3 * e:].reshape(-1, e, 3).transpose(1, 0, 2)
    else:
        sys.path.insert(0, str(dest))
        try:
            import fastmbrl_model
            import fastmbrl_policy
        finally:
            sys.path.remove(str(dest))
            for name in ("fastmbrl_policy", "fastmbrl_model"):
                sys.modules.pop(name, None)
        close(fastmbrl_policy.load(dest / "policy.npz").act(obs), want_act, 1e-6)
        pred = fastmbrl_model.load(dest / "model.npz").predict(obs, act)
        m, lv = pred["mean"], pred["logvar"]
    assert m.shape == mean.shape == (3, 100, 3)
    close(m, mean, 1e-5)
    close(lv, np.log(var), 1e-5)


def test_numpy_export_runs_without_fastmbrl_or_numba(sac_run, tmp_path):
    """The NumPy modules in ``python -I -S`` with a sys.path of the export folder and a folder
    holding only numpy: fastmbrl and numba cannot be imported there."""
    out, result = sac_run
    dest = tmp_path / "np"
    export(out, "numpy", dest)
    site = tmp_path / "only_numpy"
    site.mkdir()
    np_dir = os.path.dirname(os.path.dirname(np.__file__))
    for name in ("numpy", "numpy.libs"):
        if os.path.exists(os.path.join(np_dir, name)):
            os.symlink(os.path.join(np_dir, name), site / name)
    obs = random_obs(20)
    code = ("import sys, json\n"
            f"sys.path[:] = [{str(dest)!r}, {str(site)!r}] + [p for p in sys.path if "
            "'site-packages' not in p and 'dist-packages' not in p]\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('fastmbrl') is None, 'fastmbrl importable'\n"
            "assert importlib.util.find_spec('numba') is None, 'numba importable'\n"
            "import numpy as np, fastmbrl_policy\n"
            "p = fastmbrl_policy.load(sys.argv[1])\n"
            "obs = np.array(json.loads(sys.argv[2]), np.float32)\n"
            "print(json.dumps(p.act(obs).tolist()))\n"
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "('fastmbrl', 'numba', 'gymnasium', 'scipy')))\n")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(dest / "policy.npz"),
                           json.dumps(obs.tolist())], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    got = np.array(json.loads(lines[0]), np.float32)
    close(got, result.agent.act(obs, deterministic=True), 1e-6)
    assert lines[1] == "[]"


@pytest.mark.parametrize("fmt", ["onnx", "c", "numpy"])
def test_export_pets_writes_the_model_and_says_planning_stays_in_python(fmt, pets_run, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    out, _ = pets_run
    res = export(out, fmt, tmp_path / "x")
    assert [os.path.basename(p) for p in res.files] == FILES[fmt][1]
    assert len(res.notes) == 1 and "stays in Python" in res.notes[0]
    assert "no policy file" in res.notes[0]
    with pytest.raises(ValueError, match=r"no policy network.*--what model"):
        export(out, fmt, tmp_path / "y", parts=("policy",))
    assert not (tmp_path / "y").exists()


def test_export_sac_has_no_model(sac_run, tmp_path):
    out, _ = sac_run
    res = export(out, "c", tmp_path / "c")
    assert [os.path.basename(p) for p in res.files] == FILES["c"][0]
    with pytest.raises(ValueError, match="no dynamics model"):
        export(out, "c", tmp_path / "m", parts="model")


def test_export_parts(mbpo_run, tmp_path):
    out, _ = mbpo_run
    res = export(out, "numpy", tmp_path / "p", parts=["model"])
    assert [os.path.basename(p) for p in res.files] == FILES["numpy"][1]
    with pytest.raises(ValueError, match="parts: expected"):
        export(out, "numpy", tmp_path / "q", parts=["critic"])


def test_export_unfinished_run_uses_its_last_checkpoint(unfinished_run, tmp_path):
    out, result = unfinished_run
    export(out, "numpy", tmp_path / "u")
    sys.path.insert(0, str(tmp_path / "u"))
    try:
        import fastmbrl_policy
    finally:
        sys.path.pop(0)
        sys.modules.pop("fastmbrl_policy", None)
    obs = random_obs(10)
    close(fastmbrl_policy.load(tmp_path / "u" / "policy.npz").act(obs),
          result.agent.act(obs, deterministic=True), 1e-6)


# ------------------------------------------------------------------------------------ refusals
def test_existing_files_need_force(sac_run, tmp_path):
    out, _ = sac_run
    dest = tmp_path / "d"
    export(out, "c", dest)
    before = (dest / "fastmbrl_policy.c").read_text()
    (dest / "fastmbrl_policy.h").write_text("old")
    with pytest.raises(ValueError) as info:
        export(out, "c", dest)
    assert repr(str(dest / "fastmbrl_policy.c")) in str(info.value) and "force" in str(info.value)
    assert (dest / "fastmbrl_policy.h").read_text() == "old"          # nothing rewritten
    # one of two files present: the refused export writes neither
    os.remove(dest / "fastmbrl_policy.c")
    with pytest.raises(ValueError, match=r"fastmbrl_policy.h' already exists"):
        export(out, "c", dest)
    assert not (dest / "fastmbrl_policy.c").exists()
    res = export(out, "c", dest, force=True)
    assert len(res.files) == 2 and (dest / "fastmbrl_policy.c").read_text() == before
    assert sorted(os.listdir(dest)) == ["fastmbrl_policy.c", "fastmbrl_policy.h"]


def test_bad_arguments(sac_run, tmp_path):
    out, _ = sac_run
    with pytest.raises(ValueError, match=r"format: expected one of onnx, c, numpy, got 'tflite'"):
        export(out, "tflite", tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        export(out, "c", tmp_path / "file")
    with pytest.raises(ValueError, match="not a fastmbrl run folder"):
        export(tmp_path, "c", tmp_path / "x")
    with pytest.raises(ValueError, match="no such folder"):
        export(tmp_path / "nope", "c", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_random_run_has_nothing_to_export(tmp_path):
    out = tmp_path / "random"
    fm.run("Pendulum-v1", algorithm="random", episodes=1, out_dir=out,
           config={"algorithm": {"initial_steps": 5, "max_episode_steps": 5}})
    with pytest.raises(ValueError, match="nothing to export"):
        export(out, "numpy", tmp_path / "x")


def test_damaged_checkpoint_writes_nothing(mbpo_run, copy_run, tmp_path):
    out = copy_run(mbpo_run[0])
    pointer = json.loads((out / "checkpoint.json").read_text())
    path = out / pointer["dir"] / "agent.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError) as info:
        export(out, "numpy", tmp_path / "x")
    assert repr(str(path)) in str(info.value) and "damaged" in str(info.value)
    assert not (tmp_path / "x").exists()
