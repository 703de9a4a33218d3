"""benchmarks/run_suite.py on Pendulum-v1 with a tiny SAC: the CSV's rows, a rerun that does
nothing, an interrupted or shorter suite continued to the rows of an uninterrupted one, one-line
errors for bad input, and --report-only's figure."""
import csv
import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_suite.py"
_spec = importlib.util.spec_from_file_location("run_suite", SCRIPT)
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)

TINY = ["--set", "sac.hidden=16,16", "--set", "sac.batch_size=32",
        "--set", "sac.learning_starts=50", "--set", "sac.eval_every=100",
        "--set", "sac.n_threads=1"]
FIELDS = ["env", "algorithm", "seed", "steps", "return", "wall_s", "cpu", "commit"]


def args_for(folder, steps, seeds="0", extra=()):
    folder = Path(folder)
    return ["--envs", "Pendulum-v1", "--algorithms", "sac", "--seeds", seeds, "--steps",
            str(steps), "--out", str(folder / "out"), "--csv", str(folder / "suite.csv"),
            "--figure", str(folder / "suite.png"), *TINY, *extra]


def run_main(argv, callbacks=()):
    out, err = io.StringIO(), io.StringIO()
    code = suite.main(argv, callbacks=callbacks, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def read_rows(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == FIELDS
        return list(reader)


def key_values(rows, seed="0"):
    return [(int(r["steps"]), float(r["return"])) for r in rows if r["seed"] == seed]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """An uninterrupted suite: seeds 0 and 1, 300 steps, evaluations at 100, 200, 300."""
    folder = tmp_path_factory.mktemp("suite")
    code, out, err = run_main(args_for(folder, 300, seeds="0-1"))
    assert code == 0, err
    return folder, out


def test_csv_has_one_row_per_evaluation(full):
    folder, out = full
    rows = read_rows(folder / "suite.csv")
    assert [(r["seed"], int(r["steps"])) for r in rows] == [
        ("0", 100), ("0", 200), ("0", 300), ("1", 100), ("1", 200), ("1", 300)]
    for r in rows:
        assert r["env"] == "Pendulum-v1" and r["algorithm"] == "sac"
        int(r["seed"]), int(r["steps"])
        assert -2000 < float(r["return"]) <= 0 and float(r["wall_s"]) >= 0
        assert r["cpu"] and r["cpu"] != "unknown" and r["commit"] and r["commit"] != "unknown"
    # the results files are the truth for return and wall time
    for seed in ("0", "1"):
        with open(folder / "out" / "Pendulum-v1" / "sac" / f"seed_{seed}" / "results.csv") as fh:
            results = list(csv.DictReader(fh))
        mine = [r for r in rows if r["seed"] == seed]
        assert [float(r["return"]) for r in mine] == [float(r["return"]) for r in results]
        assert [round(float(r["wall_time"]), 2) for r in results] == [
            float(r["wall_s"]) for r in mine]
    # progress: a start and a finish line per run, one line per evaluation
    assert out.count(": starting,") == 2 and out.count(": finished,") == 2
    assert "Pendulum-v1 sac seed 1: steps 200/300 return" in out
    assert (folder / "suite.png").is_file() or importlib.util.find_spec("matplotlib") is None


def test_rerun_does_no_new_work(full):
    folder, _ = full
    before = (folder / "suite.csv").read_bytes()
    run_dir = folder / "out" / "Pendulum-v1" / "sac" / "seed_0"
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "results.json",
                                                run_dir / "checkpoint.json",
                                                folder / "suite.csv")}
    code, out, err = run_main(args_for(folder, 300, seeds="0-1"))
    assert code == 0, err
    assert out.count("finished earlier") == 2 and "starting" not in out and "resuming" not in out
    assert (folder / "suite.csv").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_shorter_then_longer_suite_equals_uninterrupted(full, tmp_path):
    code, out, err = run_main(args_for(tmp_path, 100))
    assert code == 0, err
    assert key_values(read_rows(tmp_path / "suite.csv")) == key_values(
        read_rows(full[0] / "suite.csv"))[:1]
    code, out, err = run_main(args_for(tmp_path, 300))
    assert code == 0, err
    assert "resuming from its last checkpoint" in out
    assert key_values(read_rows(tmp_path / "suite.csv")) == key_values(
        read_rows(full[0] / "suite.csv"))


class _Interrupt:
    """Ctrl-C at a given environment step (after the first evaluation's checkpoint)."""

    def __init__(self, at):
        self.at = at

    def on_step(self, episode, step, max_steps):
        if step == self.at:
            raise KeyboardInterrupt


def test_interrupted_suite_continues(full, tmp_path):
    code, _, err = run_main(args_for(tmp_path, 300), callbacks=[_Interrupt(150)])
    assert code == 130 and "rerun the same command" in err
    assert [s for s, _ in key_values(read_rows(tmp_path / "suite.csv"))] == [100]
    code, _, err = run_main(args_for(tmp_path, 300))
    assert code == 0, err
    rows = read_rows(tmp_path / "suite.csv")
    assert key_values(rows) == key_values(read_rows(full[0] / "suite.csv"))
    assert all(r["cpu"] != "unknown" for r in rows)


def test_missing_provenance_is_unknown_and_csv_merges(full, tmp_path):
    src = full[0] / "out" / "Pendulum-v1" / "sac" / "seed_1"
    dst = tmp_path / "out" / "Pendulum-v1" / "sac" / "seed_1"
    shutil.copytree(src, dst)
    lines = (dst / suite.SIDECAR).read_text().splitlines()
    (dst / suite.SIDECAR).write_text("\n".join(lines[:-1]) + "\n")   # lost the last evaluation
    # the CSV already holds rows of another folder: seed 7 is kept, seed 1 is replaced
    other = [dict(zip(FIELDS, ["Pendulum-v1", "sac", s, "100", "-1.5", "2.00", "x", "y"]))
             for s in ("1", "7")]
    with open(tmp_path / "suite.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(other)
    suite.write_csv(str(tmp_path / "suite.csv"), str(tmp_path / "out"))
    rows = read_rows(tmp_path / "suite.csv")
    assert [(r["seed"], r["steps"], r["cpu"]) for r in rows][-1] == ("7", "100", "x")
    seed1 = [r for r in rows if r["seed"] == "1"]
    assert [int(r["steps"]) for r in seed1] == [100, 200, 300]
    assert [r["commit"] == "unknown" for r in seed1] == [False, False, True]


@pytest.mark.parametrize("change, option", [
    (("--seeds", "2-1"), "--seeds"), (("--seeds", "a,b"), "--seeds"), (("--steps", "0"), "--steps"),
    (("--steps", "ten"), "--steps"), (("--envs", "NoSuchEnv-v0"), "--envs"),
    (("--algorithms", "pets"), "--algorithms"), (("--algorithms", "nope"), "--algorithms"),
    (("--set", "sac.eval_episodes=2"), "sac.eval_episodes"), (("--set", "sac.nope=1"), "--set")])
def test_bad_input_is_one_line_naming_the_option(tmp_path, change, option):
    argv = args_for(tmp_path, 100)
    flag, value = change
    if flag == "--set":
        argv += [flag, value]
    else:
        argv[argv.index(flag) + 1] = value
    code, _, err = run_main(argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("run_suite: error: ") and option in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "suite.csv").exists()


def test_bad_seeds_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args_for(tmp_path, 100, seeds="0-x")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--seeds" in proc.stderr
    assert proc.stdout == ""


def test_report_only_writes_png(full, tmp_path):
    pytest.importorskip("matplotlib")
    figure, table = tmp_path / "fig.png", tmp_path / "suite.csv"
    code, _, err = run_main(["--out", str(full[0] / "out"), "--report-only", "--csv",
                               str(table), "--figure", str(figure)])
    assert code == 0, err
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table.read_bytes() == (full[0] / "suite.csv").read_bytes()
    code, _, err = run_main(["--out", str(tmp_path / "missing"), "--report-only", "--csv",
                               str(table), "--figure", str(figure)])
    assert code == 2 and "--out" in err


def test_without_matplotlib_the_figure_is_skipped(full, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import fails
    code, out, err = run_main(["--out", str(full[0] / "out"), "--report-only", "--csv",
                               str(tmp_path / "suite.csv"), "--figure", str(tmp_path / "f.png")])
    assert code == 0, err
    assert "figure: skipped (matplotlib is not installed" in out
    assert not (tmp_path / "f.png").exists() and (tmp_path / "suite.csv").is_file()
