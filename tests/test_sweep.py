"""fm.sweep and ``fastmbrl sweep``: run folders, summary, skip and resume, with Ray and without."""
import csv
import json
import logging
import os
import shutil
import sys

import pytest

import fastmbrl as fm
from fastmbrl import _sweep, _sweep_trials
from fastmbrl.cli import main
from tests.algorithms.systems import LinearSystem, linear_reward

TINY = {"model": {"hidden": [16, 16], "ensemble_size": 2, "num_elites": 2, "max_epochs": 3},
        "planner": {"population": 20, "particles": 2, "horizon": 3, "iterations": 2},
        "algorithm": {"initial_steps": 20, "max_episode_steps": 10}}
TINY_ARGS = ["--set", "model.hidden=16,16", "--set", "model.ensemble_size=2",
             "--set", "model.num_elites=2", "--set", "model.max_epochs=3",
             "--set", "planner.population=20", "--set", "planner.particles=2",
             "--set", "planner.horizon=3", "--set", "planner.iterations=2",
             "--set", "algorithm.initial_steps=20", "--set", "algorithm.max_episode_steps=10"]


def _summary_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def no_ray(monkeypatch):
    """Make ``import ray`` fail, as on an install without the ray extra."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


def test_parse_seeds_and_slugs():
    assert _sweep.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert _sweep.parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    for bad in ("", "a", "3-1", "-1", "0-"):
        with pytest.raises(ValueError, match="seeds"):
            _sweep.parse_seeds(bad)
    assert _sweep.setting_slug({}) == "default"
    assert _sweep.setting_slug({"planner.horizon": 20, "model.hidden": [64, 64]}) == \
        "model.hidden=64,64_planner.horizon=20"
    assert _sweep.setting_slug({"planner.name": "a/b c"}) == "planner.name=a_b_c"


def test_bad_arguments_name_themselves(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        fm.sweep("Pendulum-v1", seeds=[], out=tmp_path)
    with pytest.raises(ValueError, match="workers"):
        fm.sweep("Pendulum-v1", workers=0, out=tmp_path)
    with pytest.raises(TypeError, match=r"grid\['planner.horizon'\]"):
        fm.sweep("Pendulum-v1", grid={"planner.horizon": 5}, out=tmp_path)
    with pytest.raises(TypeError, match="out_dir"):
        fm.sweep("Pendulum-v1", out=tmp_path, out_dir="x")


def test_sequential_without_ray_summary_failure_and_skip(tmp_path, no_ray):
    out = tmp_path / "sw"
    # planner.horizon=0 is refused by the config check inside its trial: reported, not fatal.
    rows = fm.sweep("Pendulum-v1", seeds="0-1", grid={"planner.horizon": [2, 0]}, out=out,
                    workers=1, threshold=-1e9, episodes=2, config=TINY)
    assert [(r["setting"], r["seed"], r["status"]) for r in rows] == [
        ("planner.horizon=2", 0, "finished"), ("planner.horizon=2", 1, "finished"),
        ("planner.horizon=0", 0, "failed"), ("planner.horizon=0", 1, "failed")]
    assert all("planner.horizon" in r["error"] for r in rows[2:])
    ok = rows[0]
    results = json.loads((out / "planner.horizon=2" / "seed_0" / "results.json").read_text())
    returns = [e["return"] for e in results["episodes"]]
    assert ok["episodes"] == 2 and ok["final_return"] == returns[-1]
    assert ok["best_return"] == max(returns)
    assert ok["episodes_to_threshold"] == 1     # every return beats -1e9
    assert ok["steps_to_threshold"] == 20 + 10
    assert ok["wall_time"] == results["episodes"][-1]["wall_time"]
    table = _summary_csv(out / "summary.csv")
    assert [(t["setting"], t["seed"], t["status"]) for t in table] == [
        (r["setting"], str(r["seed"]), r["status"]) for r in rows]
    assert table[0]["planner.horizon"] == "2"
    # The same call again: finished trials are skipped, failed ones are tried again.
    mtime = os.path.getmtime(out / "planner.horizon=2" / "seed_0" / "results.json")
    again = fm.sweep("Pendulum-v1", seeds="0-1", grid={"planner.horizon": [2, 0]}, out=out,
                     workers=1, episodes=2, config=TINY)
    assert [r["status"] for r in again] == ["skipped", "skipped", "failed", "failed"]
    assert again[0]["final_return"] == ok["final_return"]
    assert os.path.getmtime(out / "planner.horizon=2" / "seed_0" / "results.json") == mtime


def test_without_ray_more_workers_name_the_extra(tmp_path, no_ray, caplog, capsys):
    with pytest.raises(_sweep.RayMissingError, match=r'pip install "fastmbrl\[ray\]"'):
        fm.sweep("Pendulum-v1", out=tmp_path / "a", workers=2, episodes=1, config=TINY)
    assert main(["sweep", "Pendulum-v1", "--out", str(tmp_path / "b"), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "fastmbrl[ray]"' in err[0]
    # The default (workers=None) falls back to one trial after another, saying so once.
    with caplog.at_level(logging.WARNING, logger="fastmbrl.sweep"):
        rows = fm.sweep("Pendulum-v1", out=tmp_path / "c", episodes=1, config=TINY)
    assert [r["status"] for r in rows] == ["finished"]
    notes = [r.getMessage() for r in caplog.records if r.name == "fastmbrl.sweep"
             and r.levelno == logging.WARNING]
    assert len(notes) == 1 and "fastmbrl[ray]" in notes[0]


def test_sweep_command_prints_a_markdown_table(tmp_path, capsys, no_ray):
    out = tmp_path / "sw"
    argv = ["sweep", "Pendulum-v1", "--episodes", "1", "--seeds", "0-1", "--grid",
            "model.hidden=[8],[8,8]", "--out", str(out), "--workers", "1",
            "--threshold=-1e9"] + TINY_ARGS
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| setting | seed | status | episodes | final_return | best_return | " \
           "episodes_to_threshold | steps_to_threshold | wall_time |" in text
    assert "| model.hidden=8 | 0 | finished | 1 |" in text
    assert "| model.hidden=8,8 | 1 | finished | 1 |" in text
    config = json.loads((out / "model.hidden=8,8" / "seed_1" / "config.json").read_text())
    assert config["model"]["hidden"] == [8, 8] and config["seed"] == 1
    assert config["planner"]["population"] == 20
    assert len(_summary_csv(out / "summary.csv")) == 4
    assert main(argv + ["--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "trial " not in quiet and quiet.count("| skipped |") == 4


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "x"], "--seeds"),
    (["--grid", "planner.horizon"], "--grid"),
    (["--grid", "planner.horizon=5,abc"], "planner.horizon"),
    (["--grid", "planner.horizont=5"], "planner.horizont"),
    (["--workers", "0"], "--workers"),
    (["--episodes", "1", "--steps", "5"], "not allowed with"),
])
def test_sweep_command_bad_input(tmp_path, capsys, argv, message):
    assert main(["sweep", "Pendulum-v1", "--out", str(tmp_path / "sw")] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "sw").exists()


@pytest.mark.ray
def test_ray_two_workers_summary_then_resume_a_killed_trial(tmp_path):
    pytest.importorskip("ray")      # the test extra installs it; CI runs this
    out = tmp_path / "sw"
    first = fm.sweep("Pendulum-v1", seeds=[0, 1], out=out, workers=2, episodes=2, config=TINY)
    assert [(r["seed"], r["status"], r["episodes"]) for r in first] == [
        (0, "finished", 2), (1, "finished", 2)]
    assert len(_summary_csv(out / "summary.csv")) == 2

    # Simulate seed 1 killed after its first episode: the folder a kill between the episode-1
    # checkpoint and the episode-2 checkpoint leaves (no trial.json, checkpoint at episode 1).
    victim = out / "default" / "seed_1"
    for name in os.listdir(victim):
        path = victim / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            os.remove(path)
    fm.run("Pendulum-v1", episodes=2, seed=1, config=TINY, out_dir=victim,
           callbacks=[lambda record: True])
    before = json.loads((victim / "results.json").read_text())["episodes"]
    assert len(before) == 1 and not (victim / "trial.json").exists()
    untouched = os.path.getmtime(out / "default" / "seed_0" / "results.json")

    second = fm.sweep("Pendulum-v1", seeds=[0, 1], out=out, workers=2, episodes=2, config=TINY)
    assert [(r["seed"], r["status"]) for r in second] == [(0, "skipped"), (1, "resumed")]
    after = json.loads((victim / "results.json").read_text())["episodes"]
    assert [e["episode"] for e in after] == [1, 2]
    assert after[0] == before[0]           # continued from the checkpoint, not started again
    assert os.path.getmtime(out / "default" / "seed_0" / "results.json") == untouched
    assert second[1]["final_return"] == pytest.approx(first[1]["final_return"], rel=1e-5)


def test_thread_limit_after_numba_is_imported(monkeypatch):
    # A trial whose arguments carry a Numba function imports numba before the limit is set:
    # then only set_num_threads may change (a changed NUMBA_NUM_THREADS makes numba refuse to run).
    import numba

    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    before = numba.get_num_threads()
    try:
        _sweep_trials._limit_threads(1)
        assert numba.get_num_threads() == 1
        assert "NUMBA_NUM_THREADS" not in os.environ
    finally:
        numba.set_num_threads(before)


# ------------------------------------------------------------------ sizes and changed requests
def test_a_sweep_too_large_is_refused_before_any_list_is_built():
    import time as _time

    from fastmbrl._sweep import MAX_TRIALS, parse_seeds

    t0 = _time.perf_counter()
    with pytest.raises(ValueError, match=r"seeds: '0-100000000' names 100000001 seeds, more than "
                                         rf"a sweep's limit of {MAX_TRIALS} trials"):
        parse_seeds("0-100000000")
    assert _time.perf_counter() - t0 < 1.0
    with pytest.raises(ValueError, match=r"grid: 200 settings x 100 seeds = 20000 trials"):
        fm.sweep("Pendulum-v1", seeds=range(100), grid={"planner.horizon": list(range(1, 201))},
                 out="never", workers=1, episodes=1)


def test_a_rerun_with_other_settings_is_refused_unless_asked_and_a_larger_budget_extends(
        tmp_path):
    kw = dict(seeds=[0], out=tmp_path, workers=1, algorithm="sac", reward_fn=linear_reward,
              config={"sac": {"hidden": [8, 8], "batch_size": 16, "learning_starts": 20,
                              "eval_every": 20, "eval_episodes": 1}})
    first = fm.sweep(LinearSystem(), steps=20, **kw)
    assert first[0]["status"] == "finished"
    assert fm.sweep(LinearSystem(), steps=20, **kw)[0]["status"] == "skipped"
    longer = fm.sweep(LinearSystem(), steps=40, **kw)        # a larger budget: resumed, extended
    assert longer[0]["status"] == "resumed" and longer[0]["steps"] == 40
    other = dict(kw, config={"sac": {**kw["config"]["sac"], "lr": 1e-3}})
    with pytest.raises(ValueError, match=r"1 finished trial\(s\) in .* were run with other "
                                         r"settings \(.*seed_0: config\.sac\.lr None then, 0\.001 "
                                         r"now\).*rerun_changed=True"):
        fm.sweep(LinearSystem(), steps=40, **other)
    rerun = fm.sweep(LinearSystem(), steps=40, rerun_changed=True, **other)
    assert rerun[0]["status"] == "finished"
    assert (tmp_path / "default" / "seed_0.replaced-1" / "trial.json").exists()
