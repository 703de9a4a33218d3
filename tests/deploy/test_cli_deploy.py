"""``fastmbrl eval`` and ``fastmbrl export``: output, the run's own evaluation reproduced, and one
line with exit status 2 on bad input."""
import json
import os
import sys

import numpy as np
import pytest

from fastmbrl.cli import main


def test_eval_replays_the_runs_evaluation(sac_run, capsys):
    out, result = sac_run
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].startswith("fastmbrl: evaluating the sac deterministic policy of")
    assert "Pendulum-v1" in lines[0] and "2 episodes, seed 0" in lines[0]
    assert lines[1].startswith("episode   1/2  return") and lines[2].startswith("episode   2/2")
    returns = [float(ln.split("return")[1].split()[0]) for ln in lines[1:3]]
    # the run evaluated 1 episode with its seed: episode 1 here is that episode
    assert returns[0] == pytest.approx(result.records[-1].ret, abs=0.006)
    words = lines[3].split()
    assert words[:2] == ["mean", "return"] and words[3] == "+-"
    assert lines[3].endswith("(std over 2 episodes)")
    assert float(words[2]) == pytest.approx(np.mean(returns), abs=0.011)
    assert float(words[4]) == pytest.approx(np.std(returns), abs=0.011)


def test_eval_pets_and_seed(pets_run, capsys):
    out, _ = pets_run
    assert main(["eval", str(out), "--episodes", "1", "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert "pets planner" in text and "1 episode, seed 7" in text
    assert "(std over 1 episode)" in text


@pytest.mark.parametrize("argv, message", [
    (["eval", "/no/such/run"], "no such folder '/no/such/run'"),
    (["eval", "{tmp}"], "not a fastmbrl run folder (no config.json)"),
    (["eval", "{run}", "--episodes", "0"], "--episodes: expected a positive integer, got 0"),
    (["eval", "{run}", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["eval"], "RUN_DIR"),
    (["export", "{run}", "--out", "{tmp}/x"], "--format"),
    (["export", "{run}", "--format", "tflite", "--out", "{tmp}/x"], "--format: expected one of"),
    (["export", "{run}", "--format", "c", "--out", "{tmp}/x", "--what", "model"],
     "no dynamics model"),
    (["export", "/no/such/run", "--format", "c", "--out", "{tmp}/x"], "no such folder"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, sac_run, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, run=sac_run[0]) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("fastmbrl: error: ")
    assert message in err
    if "RUN_DIR" not in message and "--format" != message:
        assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_eval_video_without_moviepy(sac_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "moviepy", None)       # import moviepy -> ImportError
    assert main(["eval", str(sac_run[0]), "--video", "videos"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ("fastmbrl: error: video: recording needs moviepy; install it "
                                    "with pip install moviepy")
    assert captured.out == ""


def test_eval_video(sac_run, tmp_path, capsys):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")          # Pendulum-v1 renders with pygame
    assert main(["eval", str(sac_run[0]), "--episodes", "1", "--video",
                 str(tmp_path / "v")]) == 0
    assert any(name.endswith(".mp4") for name in os.listdir(tmp_path / "v"))


def test_eval_video_wiring(sac_run, tmp_path, monkeypatch, capsys):
    """--video wraps the environment in RecordVideo, one file per episode, flushed at the end;
    moviepy and the renderer are stand-ins here (a frame per step, a clip that writes bytes)."""
    import types

    import gymnasium as gym

    from fastmbrl.deploy import loading

    clips = []

    class Clip:
        def __init__(self, frames, fps):
            self.frames = list(frames)
            clips.append(len(self.frames))

        def write_videofile(self, path, logger=None):
            with open(path, "wb") as fh:
                fh.write(b"mp4")

    names = ("moviepy", "moviepy.video", "moviepy.video.io", "moviepy.video.io.ImageSequenceClip")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["moviepy.video.io.ImageSequenceClip"].ImageSequenceClip = Clip

    class Frames(gym.Wrapper):
        render_mode = "rgb_array"

        def render(self):
            return np.zeros((4, 4, 3), np.uint8)

    make_env = loading.make_env
    seen = {}

    def fake_make_env(run, what="load", hint="", **extra):
        seen.update(extra)
        extra.pop("render_mode", None)
        return Frames(make_env(run, what, hint, **extra))

    monkeypatch.setattr(loading, "make_env", fake_make_env)
    video = tmp_path / "videos"
    assert main(["eval", str(sac_run[0]), "--episodes", "2", "--video", str(video)]) == 0
    assert seen == {"render_mode": "rgb_array"}
    assert sorted(os.listdir(video)) == ["sac-Pendulum-v1-episode-0.mp4",
                                         "sac-Pendulum-v1-episode-1.mp4"]
    assert clips == [201, 201]                 # the reset frame and one per step
    assert f"videos in {video}" in capsys.readouterr().out


def test_export_command(mbpo_run, pets_run, tmp_path, capsys):
    dest = tmp_path / "c"
    assert main(["export", str(mbpo_run[0]), "--format", "c", "--out", str(dest)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [str(dest / n) for n in ("fastmbrl_policy.c", "fastmbrl_policy.h",
                                               "fastmbrl_model.c", "fastmbrl_model.h")]
    # again: refused, naming the file; --force overwrites
    assert main(["export", str(mbpo_run[0]), "--format", "c", "--out", str(dest)]) == 2
    err = capsys.readouterr().err
    assert f"{str(dest / 'fastmbrl_policy.c')!r} already exists" in err and "--force" in err
    assert main(["export", str(mbpo_run[0]), "--format", "c", "--out", str(dest),
                 "--force"]) == 0
    capsys.readouterr()
    # pets: the model and the note
    assert main(["export", str(pets_run[0]), "--format", "numpy", "--out",
                 str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[:2] == [str(tmp_path / "p" / "model.npz"),
                           str(tmp_path / "p" / "fastmbrl_model.py")]
    assert printed[2].startswith("note: pets plans online") and "stays in Python" in printed[2]
    assert main(["export", str(pets_run[0]), "--format", "c", "--out", str(tmp_path / "q"),
                 "--what", "policy"]) == 2
    assert "--what model" in capsys.readouterr().err


def test_export_onnx_command(sac_run, tmp_path, capsys):
    pytest.importorskip("onnx")
    assert main(["export", str(sac_run[0]), "--format", "onnx", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "policy.onnx")


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "eval" in text and "export" in text
    assert main(["export", "--help"]) == 0
    assert "--format" in capsys.readouterr().out


def test_eval_config_json_damaged(sac_run, copy_run, capsys):
    out = copy_run(sac_run[0])
    config = json.loads((out / "config.json").read_text())
    config["algorithm"]["name"] = "nope"
    (out / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "'nope'" in err and len(err.strip().splitlines()) == 1
