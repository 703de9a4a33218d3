"""The ``fastmbrl`` command: run PETS on an environment, resume a run, list envs, plot results.

    fastmbrl run Pendulum-v1 --episodes 10 --seed 0 --out runs/pendulum
    fastmbrl run Pendulum-v1 --set planner.horizon=20 --set model.hidden=64,64
    fastmbrl run --resume runs/pendulum
    fastmbrl envs
    fastmbrl plot runs/pendulum

Bad arguments, unknown environments and unreadable files end with one clear line on stderr and a
non-zero exit status (2), never a traceback.
"""
import argparse
import json
import os
import sys
import time

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message}\n{self.format_usage().strip()}")


def _build_parser():
    parser = _Parser(prog="fastmbrl", description="Fast model-based RL (PETS) on a plain CPU.")
    sub = parser.add_subparsers(dest="command", metavar="{run,envs,plot}", parser_class=_Parser)
    p_run = sub.add_parser("run", help="run PETS on an environment (or resume a run)",
                           description="Run Algorithm 1 (PETS) on an environment.")
    p_run.add_argument("env", nargs="?", help="environment id (see 'fastmbrl envs')")
    p_run.add_argument("--episodes", type=int, help="model-based episodes (default: the env's)")
    p_run.add_argument("--seed", type=int, help="random seed (default 0)")
    p_run.add_argument("--out", metavar="DIR", help="output folder (default runs/ENV-sSEED)")
    p_run.add_argument("--config", metavar="FILE", help="JSON file of settings (see fastmbrl.config)")
    p_run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one setting, e.g. --set planner.horizon=20 (repeatable)")
    p_run.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    p_run.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("envs", help="list the known environments",
                   description="List the environments fastmbrl has exact reward functions for.")
    p_plot = sub.add_parser("plot", help="draw the learning curve of a run folder",
                            description="Write DIR/learning_curve.png from DIR/results.json.")
    p_plot.add_argument("dir", metavar="DIR")
    return parser


class _ConsoleCallback:
    """Progress bar on stderr while acting, one summary line per episode on stdout."""

    def __init__(self, total_episodes, show_bar, stream_out=None, stream_err=None):
        self.total = total_episodes
        self.show_bar = show_bar
        self.out = stream_out or sys.stdout
        self.err = stream_err or sys.stderr
        self._t_episode = time.perf_counter()
        self._last_draw = 0.0

    def on_run_start(self, config, start_episode):
        self._t_episode = time.perf_counter()

    def on_fit_end(self, episode, history):
        self._t_episode = time.perf_counter()

    def on_step(self, episode, step, max_steps):
        if not self.show_bar:
            return False
        now = time.perf_counter()
        if now - self._last_draw < 0.2:
            return False
        self._last_draw = now
        width = 30
        total = max_steps or 0
        if total:
            filled = int(width * min(step / total, 1.0))
            bar = "#" * filled + "." * (width - filled)
            count = f"{step}/{total}"
        else:
            bar, count = "", str(step)
        rate = 1000.0 * (now - self._t_episode) / max(step, 1)
        self.err.write(f"\r  episode {episode} [{bar}] {count} steps, {rate:.1f} ms/step ")
        self.err.flush()
        return False

    def on_episode_end(self, record):
        if self.show_bar:
            self.err.write("\r" + " " * 72 + "\r")
            self.err.flush()
        self.out.write(f"episode {record.episode:3d}/{self.total}  return {record.ret:10.2f}  "
                       f"length {record.length:4d}  fit {record.fit_time:6.2f}s "
                       f"({record.fit_epochs} epochs)  act {record.ms_per_action:7.2f} ms/action  "
                       f"wall {record.wall_time:7.1f}s\n")
        self.out.flush()
        return False


def _cmd_envs(args):
    from fastmbrl import envs

    print(f"{'id':28s} {'steps':>5s}  {'available':9s}  description")
    for spec in envs.list_specs():
        avail = "yes" if spec.available else f"no ({spec.requires})"
        print(f"{spec.id:28s} {spec.max_episode_steps:5d}  {avail:9s}  {spec.description}")
    return 0


def _cmd_plot(args):
    from fastmbrl._plot import plot_learning_curve

    path = os.path.join(args.dir, "results.json")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        returns = [float(r["return"]) for r in data["episodes"]]
        initial = [float(r["return"]) for r in data.get("initial", [])]
    except FileNotFoundError:
        raise _UsageError(f"plot: no results.json in {args.dir!r} (is it a fastmbrl run folder?)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _UsageError(f"plot: cannot read {path!r} ({exc})")
    out = os.path.join(args.dir, "learning_curve.png")
    plot_learning_curve(out, returns, baseline=sum(initial) / len(initial) if initial else None)
    print(out)
    return 0


def _cmd_run(args):
    from fastmbrl import config as cfg_mod
    from fastmbrl import envs
    from fastmbrl._checkpoint import has_checkpoint
    from fastmbrl.loop import run

    if args.resume:
        if args.env or args.config or args.overrides or args.seed is not None or args.out:
            raise _UsageError("run --resume DIR takes no ENV, --config, --set, --seed or --out "
                              "(the run's config.json is used; --episodes may extend it)")
        if not os.path.isdir(args.resume):
            raise _UsageError(f"--resume: no such folder {args.resume!r}")
        if not os.path.isfile(os.path.join(args.resume, "config.json")):
            raise _UsageError(f"--resume: {args.resume!r} is not a fastmbrl run folder "
                              "(no config.json)")
        with open(os.path.join(args.resume, "config.json"), encoding="utf-8") as fh:
            saved = json.load(fh)
        env_id, out_dir, resume = saved.get("env"), args.resume, True
        config, seed = None, None
        total = args.episodes or saved.get("algorithm", {}).get("episodes")
        show = not args.quiet and saved.get("algorithm", {}).get("progress", True)
    else:
        if not args.env:
            raise _UsageError("run: give an environment id (see 'fastmbrl envs') or --resume DIR")
        spec = envs.get_spec(args.env)          # unknown ids raise UnknownEnvError
        if not spec.available:
            envs.make(spec.id)                  # raises ImportError naming the missing extra
        env_id = spec.id
        layered = cfg_mod.from_dict(spec.defaults, base=cfg_mod.RunConfig(env=env_id))
        if args.config:
            try:
                with open(args.config, encoding="utf-8") as fh:
                    file_values = json.load(fh)
            except FileNotFoundError:
                raise _UsageError(f"--config: no such file {args.config!r}")
            except (OSError, json.JSONDecodeError) as exc:
                raise _UsageError(f"--config: {args.config!r} is not valid JSON ({exc})")
            if isinstance(file_values, dict):
                file_values = {k: v for k, v in file_values.items() if k != "env"}
            layered = cfg_mod.from_dict(file_values, base=layered)
        layered = cfg_mod.apply_overrides(layered, args.overrides)
        if args.episodes is not None and args.episodes < 0:
            raise _UsageError(f"--episodes: expected a non-negative integer, got {args.episodes}")
        if args.seed is not None and args.seed < 0:
            raise _UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
        config, seed = layered, args.seed
        seed_used = layered.seed if seed is None else seed
        out_dir = args.out or os.path.join("runs", f"{env_id}-s{seed_used}")
        if has_checkpoint(out_dir):
            raise _UsageError(f"--out: {out_dir!r} already holds a run; continue it with "
                              f"'fastmbrl run --resume {out_dir}' or choose another --out")
        resume = False
        total = args.episodes if args.episodes is not None else layered.algorithm.episodes
        show = not args.quiet and layered.algorithm.progress
    console = _ConsoleCallback(total, show_bar=show and sys.stderr.isatty())
    print(f"fastmbrl: {'resuming' if resume else 'running'} PETS on {env_id}, "
          f"{total} episodes, output in {out_dir}")
    t0 = time.perf_counter()
    try:
        result = run(env_id, agent="pets", episodes=args.episodes, seed=seed, config=config,
                     callbacks=[console], out_dir=out_dir, resume=resume)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nfastmbrl: interrupted; continue with 'fastmbrl run --resume "
                         f"{out_dir}'\n")
        return EXIT_INTERRUPTED
    returns = result.returns
    if len(returns):
        last = returns[-min(5, len(returns)):]
        print(f"done: {len(returns)} episodes, wall {result.records[-1].wall_time:.1f}s "
              f"(this session {time.perf_counter() - t0:.1f}s; fit {result.fit_times.sum():.1f}s, "
              f"act {result.act_times.sum():.1f}s, "
              f"env {result.env_times.sum():.1f}s); best return {returns.max():.2f}, "
              f"mean of last {len(last)} {last.mean():.2f}; results in {out_dir}")
    else:
        print(f"done: no episodes to run; results in {out_dir}")
    return 0


def main(argv=None):
    """Entry point of the ``fastmbrl`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int : 0 on success, 2 on bad input, 130 when interrupted
    """
    from fastmbrl.config import ConfigError
    from fastmbrl.envs import UnknownEnvError

    parser = _build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:       # --help
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        handler = {"run": _cmd_run, "envs": _cmd_envs, "plot": _cmd_plot}[args.command]
        return handler(args)
    except (_UsageError, ConfigError, UnknownEnvError, ImportError) as exc:
        sys.stderr.write(f"fastmbrl: error: {exc}\n")
        return EXIT_USAGE
    except (ValueError, TypeError, OSError) as exc:
        sys.stderr.write(f"fastmbrl: error: {exc}\n")
        return EXIT_USAGE
