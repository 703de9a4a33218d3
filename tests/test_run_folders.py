"""Run folders: the checkpoint pointer and cleanup are confined to the folder, a resume checks the
settings its checkpoint was made with, and the environment's keywords are recorded and checked."""
import json
import os

import numpy as np
import pytest

import fastmbrl as fm
from tests.algorithms.systems import LinearSystem, linear_reward

TINY_SAC = {"sac": {"hidden": [16, 16], "batch_size": 32, "learning_starts": 50,
                    "eval_every": 50, "eval_episodes": 1, "updates_per_step": 1}}


def _sac(out, steps=100, resume=False, **kwargs):
    return fm.run(LinearSystem(), algorithm="sac", steps=steps, reward_fn=linear_reward,
                  config=None if resume else TINY_SAC, seed=None if resume else 0, out_dir=out,
                  resume=resume, **kwargs)


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    _sac(out, steps=100)
    return out


def _pointer(out):
    return json.loads((out / "checkpoint.json").read_text())


# ------------------------------------------------------------------ the pointer and cleanup
@pytest.mark.parametrize("bad_dir", ["../elsewhere", "/tmp", "checkpoints/ep0001",
                                     "checkpoints/../../x", "checkpoints/ep0002/.."])
def test_pointer_naming_anything_else_is_refused(run_dir, tmp_path, bad_dir):
    meta = _pointer(run_dir)
    assert meta["dir"] == "checkpoints/ep0002"
    (tmp_path / "elsewhere").mkdir()
    (run_dir / "checkpoint.json").write_text(json.dumps({**meta, "dir": bad_dir}))
    with pytest.raises(ValueError, match=r"checkpoint\.json.*may only name 'checkpoints/ep0002'"):
        _sac(run_dir, steps=150, resume=True)


def test_symlinked_checkpoints_folder_is_refused_and_nothing_outside_is_touched(run_dir,
                                                                                tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "ep0001").mkdir()
    (other / "precious.txt").write_text("keep me")
    os.rename(run_dir / "checkpoints", tmp_path / "moved")
    os.symlink(other, run_dir / "checkpoints")
    with pytest.raises(ValueError, match="symbolic link"):
        _sac(run_dir, steps=150, resume=True)
    assert sorted(os.listdir(other)) == ["ep0001", "precious.txt"]


def test_cleanup_removes_only_checkpoint_folders_and_never_follows_links(run_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    ckpts = run_dir / "checkpoints"
    (ckpts / "notes.txt").write_text("mine")
    os.symlink(outside, ckpts / "ep0000")
    _sac(run_dir, steps=150, resume=True)
    assert (ckpts / "notes.txt").read_text() == "mine"
    assert (outside / "data.txt").read_text() == "keep me"
    assert os.path.islink(ckpts / "ep0000")
    assert sorted(p.name for p in ckpts.iterdir() if p.is_dir() and not p.is_symlink()) == \
        ["ep0003"]


# ------------------------------------------------------------------ settings on resume
def test_config_edited_after_the_checkpoint_is_refused_naming_the_keys(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["sac"]["hidden"] = [32, 32]
    cfg["seed"] = 7
    (run_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"sac\.hidden: \[16, 16\] in the checkpoint, \[32, 32\] "
                                         r"now; seed: 0 in the checkpoint, 7 now"):
        _sac(run_dir, steps=150, resume=True)


def _drop_from_checkpoint_record(run_dir, section, key):
    path = run_dir / _pointer(run_dir)["dir"] / "state.json"
    state = json.loads(path.read_text())
    del state["config"][section][key]
    path.write_text(json.dumps(state))


def test_a_setting_added_since_the_checkpoint_passes_at_its_default_only(run_dir):
    """A checkpoint made before a setting existed resumes when the setting has its default (the
    older code's behaviour); a missing setting with another value is refused, named."""
    _drop_from_checkpoint_record(run_dir, "dhmbpo", "update_every")
    assert _sac(run_dir, steps=150, resume=True).steps.tolist() == [50, 100, 150]
    _drop_from_checkpoint_record(run_dir, "sac", "hidden")           # set to [16, 16], not default
    with pytest.raises(ValueError, match=r"sac\.hidden: None in the checkpoint, \[16, 16\] now"):
        _sac(run_dir, steps=200, resume=True)


def test_extending_the_budget_on_resume_is_allowed(run_dir):
    result = _sac(run_dir, steps=150, resume=True)
    assert result.steps.tolist() == [50, 100, 150]


# ------------------------------------------------------------------ environment keywords
def test_env_kwargs_are_recorded_and_a_resume_with_others_is_refused(tmp_path):
    out = tmp_path / "pendulum"
    cfg = {"sac": {**TINY_SAC["sac"], "eval_every": 100}}
    first = fm.run("Pendulum-v1", algorithm="sac", steps=100, seed=0, config=cfg, out_dir=out,
                   env_kwargs={"g": 9.0})
    assert json.loads((out / "config.json").read_text())["env_kwargs"] == {"g": 9.0}
    assert first.config.env_kwargs == {"g": 9.0}
    with pytest.raises(ValueError, match=r"env_kwargs: the run in .* was made with \{'g': 9\.0\}, "
                                         r"got \{'g': 5\.0\}"):
        fm.run("Pendulum-v1", steps=200, out_dir=out, resume=True, env_kwargs={"g": 5.0})
    # without env_kwargs, the run's own are used
    rest = fm.run("Pendulum-v1", steps=200, out_dir=out, resume=True)
    assert rest.steps.tolist() == [100, 200] and rest.config.env_kwargs == {"g": 9.0}
    np.testing.assert_array_equal(rest.returns[:1], first.returns)


def test_env_kwargs_must_be_json_values():
    with pytest.raises(ValueError, match="env_kwargs: expected JSON values"):
        fm.run("Pendulum-v1", algorithm="sac", steps=10, env_kwargs={"g": object()})


def test_unknown_env_kwarg_of_a_suite_env_names_it(tmp_path):
    pytest.importorskip("mujoco")
    with pytest.raises(TypeError, match="Hopper-v5: unknown keyword 'jump_height'"):
        fm.run("Hopper-v5", algorithm="sac", steps=10, env_kwargs={"jump_height": 2},
               out_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


# ------------------------------------------------------------------ one writer per folder
def test_a_second_writer_exits_at_once_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from fastmbrl._io import RunFolderBusyError

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from fastmbrl._io import run_folder_lock\n"
         f"with run_folder_lock({str(out)!r}):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(RunFolderBusyError, match=rf"being written by another process \(pid "
                                                     rf"{holder.pid} on "):
            _sac(out, steps=50)
        assert time.perf_counter() - t0 < 10
        assert not (out / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the OS released the killed holder's lock
    assert _sac(out, steps=50).steps.tolist() == [50]


def test_cli_second_writer_is_one_line_exit_2(tmp_path, capsys):
    from fastmbrl.cli import main
    from fastmbrl._io import run_folder_lock

    out = tmp_path / "run"
    with run_folder_lock(out):
        code = main(["run", "Pendulum-v1", "--algorithm", "sac", "--steps", "10", "--out",
                     str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "being written by another process" in err[0]


# ------------------------------------------------------------------ files that are links
@pytest.mark.parametrize("name", ["state.json", "buffer.npz"])
def test_a_checkpoint_file_linked_outside_is_not_read_through(run_dir, tmp_path, name):
    ckpt = run_dir / "checkpoints" / "ep0002"
    outside = tmp_path / f"outside_{name}"
    os.rename(ckpt / name, outside)
    os.symlink(outside, ckpt / name)
    with pytest.raises(ValueError, match=rf"resume: .*{name}' leads outside .* through a "
                                         r"symbolic link"):
        _sac(run_dir, steps=150, resume=True)


def test_plot_neither_reads_nor_writes_through_links(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from fastmbrl.plot import plot_dir

    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not a picture of fastmbrl's")
    (run_dir / "learning_curve.png").unlink()          # the run's own, replaced by a link
    os.symlink(outside, run_dir / "learning_curve.png")
    plot_dir([run_dir])
    assert outside.read_bytes() == b"not a picture of fastmbrl's"
    assert not os.path.islink(run_dir / "learning_curve.png")
    os.rename(run_dir / "results.json", tmp_path / "results.json")
    os.symlink(tmp_path / "results.json", run_dir / "results.json")
    with pytest.raises(ValueError, match=r"plot: .*results\.json' leads outside"):
        plot_dir([run_dir], out=tmp_path / "x.png")
