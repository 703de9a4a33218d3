"""docs/controller.md as written: its C control loop compiles strictly against an exported policy
and runs, its quoted error lines are the real ones, and its runnable blocks run in order."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastmbrl.cli import main
from fastmbrl.deploy import export
from tests.deploy.helpers import build

PAGE = Path(__file__).resolve().parents[2] / "docs" / "controller.md"
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\b.*-->$")


def _blocks():
    """[(lang, code, skipped)] of the page's fenced blocks, in order."""
    out, lines = [], PAGE.read_text(encoding="utf-8").splitlines()
    i, previous = 0, ""
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            lang, body = stripped[3:].strip().lower(), []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            out.append((lang, "\n".join(body) + "\n", bool(SKIP.match(previous))))
            previous = ""
        elif stripped:
            previous = stripped
        i += 1
    return out


def test_control_loop_compiles_and_runs(mbpo_run, tmp_path):
    (code,) = [c for lang, c, _ in _blocks() if lang == "c"]
    assert len(code.strip().splitlines()) <= 30
    export(mbpo_run[0], "c", tmp_path / "controller" / "c")
    exe = build(tmp_path, code, [tmp_path / "controller" / "c" / "fastmbrl_policy.c"],
                name="control_loop")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "return" and -3000 < float(out[1]) <= 0


def _normalise(line):
    return re.sub(r"'[^']*'", "'PATH'", line)


def test_quoted_errors_are_the_real_ones(mbpo_run, tmp_path, monkeypatch, capsys):
    import shutil

    quoted = [c for lang, c, _ in _blocks() if lang == "text"][-1].strip().splitlines()
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs/typo")
    shutil.copytree(mbpo_run[0], "runs/x")
    os.makedirs("runs/new")
    shutil.copy("runs/x/config.json", "runs/new/config.json")
    agent = next(Path("runs/x/checkpoints").glob("ep*")) / "agent.npz"
    agent.write_bytes(agent.read_bytes()[:2000])
    export(mbpo_run[0], "c", "controller/c")
    monkeypatch.setitem(sys.modules, "moviepy", None)
    commands = [["eval", "runs/typo"], ["export", "runs/new", "--format", "c", "--out", "o"],
                ["export", "runs/x", "--format", "c", "--out", "o"],
                ["export", str(mbpo_run[0]), "--format", "c", "--out", "controller/c"],
                ["eval", str(mbpo_run[0]), "--video", "v"]]
    assert len(commands) == len(quoted)
    for argv, line in zip(commands, quoted):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert _normalise(err) == _normalise(line), (err, line)


@pytest.mark.slow
def test_page_runs_as_written(tmp_path):
    """The bash and python blocks that are not marked skip, in order, in a fresh folder (as
    tests/test_docs.py runs every page)."""
    env = {**os.environ,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    ns = {"__name__": "docs_controller"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for lang, code, skipped in _blocks():
            if skipped or lang not in ("bash", "python"):
                continue
            if lang == "python":
                exec(compile(code, str(PAGE), "exec"), ns)
            else:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], env=env,
                                      text=True, capture_output=True, timeout=300)
                assert done.returncode == 0, done.stderr[-2000:]
    finally:
        os.chdir(cwd)
        sys.path[:] = [p for p in sys.path if not p.endswith("controller/numpy")]
        for name in ("fastmbrl_policy", "fastmbrl_model"):
            sys.modules.pop(name, None)
    assert ns["prediction"]["mean"].shape == (5, 3)
    assert len(ns["written"].files) == 4
    # the skipped blocks that can run here: the C loop against this page's export
    (c_code,) = [c for lang, c, _ in _blocks() if lang == "c"]
    exe = build(tmp_path, c_code, [tmp_path / "controller" / "c" / "fastmbrl_policy.c"],
                name="control_loop")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert out.startswith("return ")
