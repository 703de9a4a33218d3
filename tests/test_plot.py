"""fastmbrl.plot and ``fastmbrl plot``: matplotlib PNGs of runs, sweeps and model calibration."""
import csv
import json
import logging
import os
import sys

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl import plot
from fastmbrl.cli import main

TINY = {"model": {"hidden": [16, 16], "ensemble_size": 2, "num_elites": 2, "max_epochs": 3},
        "planner": {"population": 20, "particles": 2, "horizon": 3, "iterations": 2},
        "algorithm": {"initial_steps": 20, "max_episode_steps": 10}}


def _png_software(path):
    """The PNG's tEXt 'Software' entry (matplotlib writes 'Matplotlib version...')."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.info.get("Software", ""), img.size


def _check_matplotlib_png(path, min_kb=10):
    assert os.path.getsize(path) > min_kb * 1024, f"{path}: {os.path.getsize(path)} bytes"
    software, size = _png_software(path)
    assert software.startswith("Matplotlib version"), software
    return size


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plot") / "run"
    fm.run("Pendulum-v1", episodes=2, seed=0, config=TINY, out_dir=out)
    return out


def test_a_run_writes_its_curve_with_matplotlib(tiny_run):
    _check_matplotlib_png(tiny_run / "learning_curve.png")


def test_plot_command_on_a_run(tiny_run, tmp_path, capsys):
    assert main(["plot", str(tiny_run), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    names = ["learning_curve.png", "time_split.png", "calibration.png"]
    assert printed == [str(tmp_path / n) for n in names]
    width, height = _check_matplotlib_png(tmp_path / "learning_curve.png")
    assert width > 2 * height        # two panels side by side
    for name in names[1:]:
        _check_matplotlib_png(tmp_path / name)


def test_load_run_counts_environment_steps_from_lengths(tiny_run):
    run = plot.load_run(tiny_run)
    results = json.loads((tiny_run / "results.json").read_text())
    initial = sum(r["length"] for r in results["initial"])
    lengths = [r["length"] for r in results["episodes"]]
    np.testing.assert_array_equal(run["steps"], initial + np.cumsum(lengths))
    np.testing.assert_array_equal(run["returns"], [r["return"] for r in results["episodes"]])
    assert run["random_return"] == pytest.approx(np.mean([r["return"]
                                                          for r in results["initial"]]))
    assert set(run["times"]) == {"fit", "act", "env"}
    assert run["times"]["act"] == pytest.approx(sum(r["act_time"] for r in results["episodes"]))
    assert run["env"] == "Pendulum-v1" and run["algorithm"] == "pets" and run["seed"] == 0


def _write_step_based_run(folder, seed, offset):
    """What a step-based algorithm writes: a steps column, return = evaluation mean."""
    os.makedirs(folder)
    (folder / "config.json").write_text(json.dumps({"env": "Pendulum-v1", "seed": seed,
                                                    "algorithm": {"name": "sac"}}))
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["steps", "return", "wall_time", "update_time",
                                           "env_time"])
        w.writeheader()
        for i in range(1, 6):
            w.writerow({"steps": 1000 * i, "return": -1200 + 200 * i + offset,
                        "wall_time": 10.0 * i + seed, "update_time": 8.0 * i, "env_time": i})


def test_step_based_results_and_a_sweep_folder(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for s, off in ((0, 0.0), (1, 30.0), (2, -30.0)):
        _write_step_based_run(sweep_dir / "lr=0.001" / f"seed_{s}", s, off)
    _write_step_based_run(sweep_dir / "lr=0.01" / "seed_0", 0, 100.0)
    run = plot.load_run(sweep_dir / "lr=0.001" / "seed_1")
    np.testing.assert_array_equal(run["steps"], [1000, 2000, 3000, 4000, 5000])
    assert run["algorithm"] == "sac" and run["times"] == {"update": 120.0, "env": 15.0}
    groups = plot.find_runs(sweep_dir)
    assert [(label, len(dirs)) for label, dirs in groups] == [("lr=0.001", 3), ("lr=0.01", 1)]
    grid, mean, se, n = plot._mean_band([plot.load_run(d) for d in groups[0][1]], "steps")
    np.testing.assert_allclose(mean, [-1000, -800, -600, -400, -200])
    np.testing.assert_allclose(se, 30.0 / np.sqrt(3))   # std of (0, 30, -30) is 30
    written = plot.plot_dir([sweep_dir])
    assert [os.path.basename(p) for p in written] == ["learning_curve.png", "time_split.png"]
    for path in written:
        _check_matplotlib_png(path)


def test_plot_command_on_a_tiny_sweep(tmp_path, capsys):
    rows = fm.sweep("Pendulum-v1", seeds=[0, 1], grid={"planner.horizon": [2, 3]},
                    out=tmp_path / "sw", workers=1, episodes=2, config=TINY)
    assert [r["status"] for r in rows] == ["finished"] * 4
    assert main(["plot", str(tmp_path / "sw")]) == 0
    assert capsys.readouterr().out.split()[0] == str(tmp_path / "sw" / "learning_curve.png")
    _check_matplotlib_png(tmp_path / "sw" / "learning_curve.png")
    _check_matplotlib_png(tmp_path / "sw" / "time_split.png")
    assert not (tmp_path / "sw" / "calibration.png").exists()


def test_plot_command_with_model_and_data(tiny_run, tmp_path, capsys):
    from fastmbrl._checkpoint import load_checkpoint

    _, buffer, model, _ = load_checkpoint(tiny_run)
    model.save(tmp_path / "model.npz")
    buffer.save(tmp_path / "buffer.npz")
    assert main(["plot", "--model", str(tmp_path / "model.npz"),
                 "--data", str(tmp_path / "buffer.npz")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "calibration.png")
    _check_matplotlib_png(tmp_path / "calibration.png")
    assert main(["plot", "--model", str(tmp_path / "model.npz")]) == 2
    assert "--data" in capsys.readouterr().err


def test_calibration_rejects_mismatched_shapes(tiny_run, tmp_path):
    from fastmbrl._checkpoint import load_checkpoint

    _, buffer, model, _ = load_checkpoint(tiny_run)
    with pytest.raises(ValueError, match="next_obs"):
        plot.plot_calibration(tmp_path / "c.png", model, buffer.obs, buffer.act,
                              buffer.next_obs[:-1])


def test_plot_command_bad_folders(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "no results.json or results.csv" in capsys.readouterr().err
    assert main(["plot"]) == 2
    assert "--model" in capsys.readouterr().err


def test_without_matplotlib_the_curve_is_skipped_with_one_warning(tmp_path, monkeypatch, caplog,
                                                                  tiny_run, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    monkeypatch.setattr(plot, "_warned_missing", False)
    with caplog.at_level(logging.WARNING, logger="fastmbrl.plot"):
        assert plot.plot_learning_curve(tmp_path / "a.png", [1.0, 2.0]) is None
        assert plot.plot_learning_curve(tmp_path / "b.png", [1.0, 2.0], baseline=0.0) is None
    assert not os.listdir(tmp_path)
    warnings = [r for r in caplog.records if r.name == "fastmbrl.plot"]
    assert len(warnings) == 1 and 'pip install "fastmbrl[plot]"' in warnings[0].getMessage()
    assert main(["plot", str(tiny_run), "--out", str(tmp_path / "out")]) == 2
    assert 'pip install "fastmbrl[plot]"' in capsys.readouterr().err


def test_several_run_folders_one_line_each(tmp_path):
    _write_step_based_run(tmp_path / "a", 0, 0.0)
    _write_step_based_run(tmp_path / "b", 1, 50.0)
    assert plot.find_runs(tmp_path / "a") == [("a", [str(tmp_path / "a")])]
    out = tmp_path / "pics"
    written = plot.plot_dir([tmp_path / "a", tmp_path / "b"], out=out)
    assert written == [str(out / "learning_curve.png"), str(out / "time_split.png")]
    for path in written:
        _check_matplotlib_png(path)
    with pytest.raises(ValueError, match="groups"):
        plot.plot_learning_curves(tmp_path / "x.png", [])
