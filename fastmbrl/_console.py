"""What ``fastmbrl run`` shows while it runs: a progress bar on stderr while acting and one line
per episode or evaluation on stdout (a run callback, ``fastmbrl.algorithms._callbacks``).
"""
import sys


class _ConsoleCallback:
    """A tqdm bar on stderr while acting, one summary line per episode on stdout."""

    def __init__(self, total_episodes, show_bar, stream_out=None, stream_err=None):
        self.total = total_episodes
        self.show_bar = show_bar
        self.out = stream_out or sys.stdout
        self.err = stream_err or sys.stderr
        self._bar = None

    def on_run_start(self, config, start_episode):
        self.close()

    def on_fit_end(self, episode, history):
        self.close()

    def on_step(self, episode, step, max_steps):
        if not self.show_bar:
            return False
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=max_steps, desc=f"episode {episode}", unit="step",
                             file=self.err, leave=False, dynamic_ncols=True, mininterval=0.2)
        self._bar.update(step - self._bar.n)
        return False

    def close(self):
        """Remove the bar (end of an episode, or an interrupt)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_episode_end(self, record):
        self.close()
        if hasattr(record, "ret_std"):      # a step-based algorithm's evaluation
            self.out.write(f"steps {record.steps:7d}/{self.total}  eval return {record.ret:10.2f} "
                           f"+- {record.ret_std:7.2f}  updates/s {record.updates_per_s:8.1f}  "
                           f"wall {record.wall_time:7.1f}s\n")
            self.out.flush()
            return False
        self.out.write(f"episode {record.episode:3d}/{self.total}  return {record.ret:10.2f}  "
                       f"length {record.length:4d}  fit {record.fit_time:6.2f}s "
                       f"({record.fit_epochs} epochs)  act {record.ms_per_action:7.2f} ms/action  "
                       f"wall {record.wall_time:7.1f}s\n")
        self.out.flush()
        return False
