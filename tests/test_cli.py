"""The fastmbrl command: listing, a tiny real run, resume, plot, and the bad-input paths."""
import json
import os
import subprocess
import sys

import pytest

from fastmbrl.cli import main

SMALL = ["--set", "model.hidden=16,16", "--set", "model.ensemble_size=2",
         "--set", "model.num_elites=2", "--set", "model.max_epochs=5",
         "--set", "planner.population=20", "--set", "planner.particles=2",
         "--set", "planner.horizon=3", "--set", "planner.iterations=2",
         "--set", "algorithm.initial_steps=20", "--set", "algorithm.max_episode_steps=10"]


def test_envs_lists_specs(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "Pendulum-v1" in out and "CartPoleContinuous-v0" in out and "HalfCheetah-v5" in out


def test_run_resume_and_plot(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["run", "Pendulum-v1", "--episodes", "1", "--seed", "2", "--out", str(out_dir),
                 "--quiet"] + SMALL) == 0
    out = capsys.readouterr().out
    assert "episode   1/1" in out and "done: 1 episodes, wall" in out
    config = json.loads((out_dir / "config.json").read_text())
    assert config["seed"] == 2 and config["model"]["hidden"] == [16, 16]
    assert config["algorithm"]["max_episode_steps"] == 10
    # Running again into the same folder is refused; resuming extends it.
    assert main(["run", "Pendulum-v1", "--out", str(out_dir)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(out_dir), "--episodes", "2", "--quiet"]) == 0
    results = json.loads((out_dir / "results.json").read_text())
    assert [e["episode"] for e in results["episodes"]] == [1, 2]
    assert all(e["length"] == 10 for e in results["episodes"])
    os.remove(out_dir / "learning_curve.png")
    assert main(["plot", str(out_dir)]) == 0
    assert (out_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    ([], None),
    (["run"], "environment id"),
    (["run", "Nope-v0"], "unknown environment 'Nope-v0'"),
    (["run", "Pendulum-v1", "--set", "planner.horizon=abc"], "planner.horizon"),
    (["run", "Pendulum-v1", "--set", "noequals"], "key=value"),
    (["run", "Pendulum-v1", "--set", "model.widht=3"], "model.widht"),
    (["run", "Pendulum-v1", "--set", "model.num_elites=9"], "model.num_elites"),
    (["run", "Pendulum-v1", "--episodes", "-1"], "--episodes"),
    (["run", "Pendulum-v1", "--episodes", "x"], "invalid int"),
    (["run", "Pendulum-v1", "--config", "/no/such/file.json"], "no such file"),
    (["run", "--resume", "/no/such/dir"], "no such folder"),
    (["run", "Pendulum-v1", "--resume", "/tmp"], "takes no ENV"),
    (["plot", "/no/such/dir"], "results.json"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    if message is not None:
        assert message in captured.err
        assert "Traceback" not in captured.err


def test_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["run", "Pendulum-v1", "--config", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"planner": {"horizon": "long"}}))
    assert main(["run", "Pendulum-v1", "--config", str(wrong)]) == 2
    assert "planner.horizon" in capsys.readouterr().err


def test_module_entry_point_gives_message_not_traceback():
    proc = subprocess.run([sys.executable, "-m", "fastmbrl", "run", "Nope-v0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown environment" in proc.stderr and "Traceback" not in proc.stderr


def test_config_round_trip_and_overrides():
    from fastmbrl.config import (ConfigError, RunConfig, apply_overrides, from_dict,
                                 parse_override, to_dict)
    cfg = apply_overrides(RunConfig(), ["planner.horizon=20", "model.hidden=[64,64]",
                                        "model.lr=3e-4", "algorithm.max_episode_steps=null",
                                        "planner.name=icem", "algorithm.warm_start=false",
                                        "seed=4", 'planner.options={"keep_elite_frac": 0.2}'])
    assert cfg.planner.horizon == 20 and cfg.model.hidden == (64, 64) and cfg.model.lr == 3e-4
    assert cfg.algorithm.max_episode_steps is None and cfg.planner.name == "icem"
    assert cfg.algorithm.warm_start is False and cfg.seed == 4
    assert cfg.planner.options == {"keep_elite_frac": 0.2}
    assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert parse_override("model.hidden=32,32") == {"model": {"hidden": [32, 32]}}
    for bad, key in [("planner.population=1", "planner.population"),
                     ("model.lr=-1", "model.lr"), ("model.hidden=[0]", "model.hidden"),
                     ("planner.propagation=ts2", "planner.propagation"),
                     ("algorithm.warm_start=maybe", "algorithm.warm_start")]:
        with pytest.raises(ConfigError, match=key):
            apply_overrides(RunConfig(), [bad])


# ---- damaged run folders and impossible settings, never a traceback ----------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("done") / "run"
    assert main(["run", "Pendulum-v1", "--episodes", "1", "--out", str(out_dir), "--quiet"]
                + SMALL) == 0
    return out_dir


def _copy_run(src, tmp_path):
    import shutil
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("fastmbrl: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def _truncate_buffer(run):
    path = run / "checkpoints" / "ep0001" / "buffer.npz"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return "buffer.npz"


def _config_not_object(run):
    (run / "config.json").write_text("[1, 2, 3]")
    return "config.json"


def _pointer_without_dir(run):
    (run / "checkpoint.json").write_text(json.dumps({"format_version": 1, "episode": 1}))
    return "checkpoint.json"


def _state_not_object(run):
    (run / "checkpoints" / "ep0001" / "state.json").write_text('"oops"')
    return "state.json"


def _records_damaged(run):
    path = run / "checkpoints" / "ep0001" / "state.json"
    state = json.loads(path.read_text())
    state["records"] = [{"episode": 1}]
    path.write_text(json.dumps(state))
    return "records"


def _config_bad_value(run):
    config = json.loads((run / "config.json").read_text())
    config["planner"]["horizon"] = "long"
    (run / "config.json").write_text(json.dumps(config))
    return "planner.horizon"


@pytest.mark.parametrize("damage", [_truncate_buffer, _config_not_object, _pointer_without_dir,
                                    _state_not_object, _records_damaged, _config_bad_value])
def test_resume_of_a_damaged_folder_is_one_line_exit_2(finished_run, tmp_path, capsys, damage):
    run = _copy_run(finished_run, tmp_path)
    needle = damage(run)
    capsys.readouterr()
    assert main(["run", "--resume", str(run), "--episodes", "2", "--quiet"]) == 2
    _assert_one_line_error(capsys, needle)


@pytest.mark.parametrize("overrides, needle", [
    (["--set", 'planner.options={"no_such_option": 1}'], "no_such_option"),
    (["--set", "planner.name=mppi", "--set", 'planner.options={"temperature": 0}'],
     "temperature"),
    (["--set", "algorithm.buffer_capacity=10"], "algorithm.buffer_capacity"),
    (["--algorithm", "nosuch"], "algorithm: expected one of"),
    (["--steps", "100"], "steps: pets counts episodes"),
])
def test_impossible_settings_are_refused_before_anything_is_written(tmp_path, capsys, overrides,
                                                                    needle):
    out_dir = tmp_path / "run"
    assert main(["run", "Pendulum-v1", "--episodes", "1", "--out", str(out_dir), "--quiet"]
                + SMALL + overrides) == 2
    _assert_one_line_error(capsys, needle)
    assert not out_dir.exists()
    # Nothing is stuck: the same folder takes a good run afterwards.
    if overrides[0] == "--set" and "temperature" in overrides[-1]:
        assert main(["run", "Pendulum-v1", "--episodes", "1", "--out", str(out_dir), "--quiet",
                     "--set", "planner.name=mppi", "--set",
                     'planner.options={"temperature": 0.5}'] + SMALL) == 0


def test_resume_removes_stale_temporaries(finished_run, tmp_path, capsys):
    from tests.algorithms.test_common import _dead_pid
    run = _copy_run(finished_run, tmp_path)
    pid = _dead_pid()
    stale = [run / f"results.json.tmp{pid}", run / "checkpoints" / "ep0001" / f"model.npz.tmp{pid}"]
    for path in stale:
        path.write_text("partial")
    assert main(["run", "--resume", str(run), "--episodes", "2", "--quiet"]) == 0
    assert not any(path.exists() for path in stale)
    assert [e["episode"] for e in json.loads((run / "results.json").read_text())["episodes"]] \
        == [1, 2]


def test_algorithm_choice_on_the_command_line(tmp_path, capsys):
    out_dir = tmp_path / "rand"
    assert main(["run", "Pendulum-v1", "--algorithm", "random", "--episodes", "2", "--out",
                 str(out_dir), "--quiet"] + SMALL) == 0
    assert "running random on Pendulum-v1" in capsys.readouterr().out
    config = json.loads((out_dir / "config.json").read_text())
    assert config["algorithm"]["name"] == "random"
    results = json.loads((out_dir / "results.json").read_text())
    assert results["algorithm"] == "random" and len(results["episodes"]) == 2
    assert all(e["fit_epochs"] == 0 for e in results["episodes"])
    assert main(["run", "--resume", str(out_dir), "--algorithm", "pets"]) == 2
    assert "takes no ENV, --algorithm" in capsys.readouterr().err
