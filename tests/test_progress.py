"""Progress through tqdm: the acting bar of the command and the fit's epoch bar."""
import io
from types import SimpleNamespace

import numpy as np

from fastmbrl.cli import _ConsoleCallback
from fastmbrl.models.trainer import _ProgressBar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _record(episode):
    return SimpleNamespace(episode=episode, ret=-12.5, length=3, fit_time=0.1, fit_epochs=4,
                           ms_per_action=1.0, wall_time=2.0)


def test_acting_bar_then_one_summary_line_per_episode():
    out, err = io.StringIO(), io.StringIO()
    console = _ConsoleCallback(2, show_bar=True, stream_out=out, stream_err=err)
    for step in (1, 2, 3):
        assert console.on_step(1, step, 3) is False
    console.on_episode_end(_record(1))
    # Drawn at least once (then at most every 0.2 s), and wiped at the episode's end.
    assert "episode 1:" in err.getvalue() and "/3 [" in err.getvalue()
    assert err.getvalue().endswith("\r") and console._bar is None
    assert out.getvalue().splitlines() == [
        "episode   1/2  return     -12.50  length    3  fit   0.10s (4 epochs)  act    1.00 "
        "ms/action  wall     2.0s"]


def test_quiet_console_writes_no_bar():
    out, err = io.StringIO(), io.StringIO()
    console = _ConsoleCallback(1, show_bar=False, stream_out=out, stream_err=err)
    console.on_step(1, 1, 3)
    console.on_episode_end(_record(1))
    assert err.getvalue() == "" and len(out.getvalue().splitlines()) == 1


def test_fit_bar_only_on_a_terminal():
    for stream, shown in ((io.StringIO(), False), (_Terminal(), True)):
        bar = _ProgressBar(True, 5, stream=stream)
        for epoch in (1, 2, 3):
            bar.update(epoch, 0.5, np.array([0.25, 0.5]), 2)
        bar.close()
        text = stream.getvalue()
        assert ("3/5" in text and "train NLL=0.5000" in text and "holdout best=0.25" in text) \
            == shown, text
    off = io.StringIO()
    bar = _ProgressBar(False, 5, stream=off)
    bar.update(1, 0.5, None, 0)
    bar.close()
    assert off.getvalue() == ""
