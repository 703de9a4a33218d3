"""The README's "Custom environments" guide runs as written and quotes the real error messages."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _guide():
    text = open(README, encoding="utf-8").read()
    start = text.index("## Custom environments")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(section, lang):
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_custom_environment_guide_runs(tmp_path, monkeypatch):
    import gymnasium as gym

    monkeypatch.chdir(tmp_path)
    code = _blocks(_guide(), "python")
    assert len(code) == 3
    ns = {"__name__": "readme_guide"}
    try:
        for block in code:
            exec(compile(block, "README.md", "exec"), ns)
        result, records = ns["result"], ns["records"]
        assert len(result.returns) == 3
        assert [(r["setting"], r["seed"]) for r in records] == [
            (f"planner.horizon={h}", s) for h in (5, 10) for s in range(3)]
        assert all(r["status"] == "finished" for r in records)
        for name in ("learning_curve.png", "time_split.png"):
            assert os.path.getsize(tmp_path / "runs" / "point_sweep" / name) > 10_000
        summary = (tmp_path / "runs" / "point_sweep" / "summary.csv").read_text().splitlines()
        assert len(summary) == 1 + 6

        # The quoted errors are the real ones.
        quoted = _blocks(_guide(), "text")[0]
        np, fm, numba, small = ns["np"], ns["fm"], ns["numba"], ns["small"]

        bad = {"np": np}
        exec("def reward_fn(obs, act):\n    return -obs[:, 0] ** 2\n\n"
             "def column(obs, act, next_obs):\n    return -next_obs[:, :1] ** 2\n", bad)
        for fn in (bad["reward_fn"], numba.njit(bad["reward_fn"]), bad["column"]):
            with pytest.raises((TypeError, ValueError)) as info:
                fm.run("PointOnALine-v0", episodes=1, seed=0, config=small, reward_fn=fn)
            message = f"{type(info.value).__name__}: {info.value}"
            assert message in quoted, message
    finally:
        gym.registry.pop("PointOnALine-v0", None)
