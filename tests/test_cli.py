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
