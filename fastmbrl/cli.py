"""The ``fastmbrl`` command: train on an environment, resume a run, list envs, plot results.

    fastmbrl run Pendulum-v1 --episodes 10 --seed 0 --out runs/pendulum
    fastmbrl run Pendulum-v1 --algorithm random --episodes 3
    fastmbrl run Pendulum-v1 --set planner.horizon=20 --set model.hidden=64,64
    fastmbrl run --resume runs/pendulum
    fastmbrl envs
    fastmbrl plot runs/pendulum

Bad arguments, unknown environments, impossible settings and unreadable or damaged run folders
end with one clear line on stderr and exit status 2, never a traceback (settings are checked before
anything is written, so a refused run leaves no folder to resume). Any other failure prints one
line and exits with 1; ``FASTMBRL_DEBUG=1`` shows its traceback.
"""
import argparse
import json
import os
import sys
import time

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message}\n{self.format_usage().strip()}")


def _build_parser():
    from fastmbrl.algorithms import available

    parser = _Parser(prog="fastmbrl", description="Fast model-based RL (PETS) on a plain CPU.")
    sub = parser.add_subparsers(dest="command", metavar="{run,envs,plot}", parser_class=_Parser)
    p_run = sub.add_parser("run", help="train on an environment (or resume a run)",
                           description="Train an algorithm (default PETS, Algorithm 1) on an "
                                       "environment.")
    p_run.add_argument("env", nargs="?", help="environment id (see 'fastmbrl envs')")
    p_run.add_argument("--algorithm", metavar="NAME",
                       help=f"one of {', '.join(available())} (default pets)")
    p_run.add_argument("--episodes", type=int, help="episodes, for episode-based algorithms "
                                                    "such as pets (default: the env's)")
    p_run.add_argument("--steps", type=int, help="environment steps, for step-based algorithms "
                                                 "(pets refuses it)")
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
    from fastmbrl import algorithms, envs
    from fastmbrl import config as cfg_mod
    from fastmbrl._checkpoint import has_checkpoint

    for name in ("episodes", "steps"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise _UsageError(f"--{name}: expected a non-negative integer, got {value}")
    if args.algorithm is not None:
        algorithms.get(args.algorithm)          # unknown names: ValueError listing the known ones
    if args.resume:
        if args.env or args.config or args.overrides or args.seed is not None or args.out or \
                args.algorithm:
            raise _UsageError("run --resume DIR takes no ENV, --algorithm, --config, --set, --seed "
                              "or --out (the run's config.json is used; --episodes or --steps may "
                              "extend it)")
        if not os.path.isdir(args.resume):
            raise _UsageError(f"--resume: no such folder {args.resume!r}")
        if not os.path.isfile(os.path.join(args.resume, "config.json")):
            raise _UsageError(f"--resume: {args.resume!r} is not a fastmbrl run folder "
                              "(no config.json)")
        saved = algorithms._read_saved_config(args.resume)
        saved_cfg = cfg_mod.from_dict({k: v for k, v in saved.items() if k != "env"})
        env_id, out_dir, resume = saved.get("env"), args.resume, True
        if not isinstance(env_id, str):
            raise _UsageError(f"--resume: {args.resume!r}/config.json names no environment")
        config, seed, algorithm = None, None, None
        alg = saved_cfg.algorithm
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
        if args.seed is not None and args.seed < 0:
            raise _UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
        config, seed, algorithm = layered, args.seed, args.algorithm
        seed_used = layered.seed if seed is None else seed
        out_dir = args.out or os.path.join("runs", f"{env_id}-s{seed_used}")
        if has_checkpoint(out_dir):
            raise _UsageError(f"--out: {out_dir!r} already holds a run; continue it with "
                              f"'fastmbrl run --resume {out_dir}' or choose another --out")
        resume = False
        alg = layered.algorithm
    name = algorithm or alg.name
    budget = algorithms.get(name).BUDGET
    if budget == "steps":
        total = args.steps if args.steps is not None else alg.steps
    else:
        total = args.episodes if args.episodes is not None else alg.episodes
    show = not args.quiet and alg.progress
    console = _ConsoleCallback(total, show_bar=show and sys.stderr.isatty())
    print(f"fastmbrl: {'resuming' if resume else 'running'} {name} on {env_id}, "
          f"{total} {budget}, output in {out_dir}")
    t0 = time.perf_counter()
    try:
        result = algorithms.run(env_id, algorithm=algorithm, episodes=args.episodes,
                                steps=args.steps, seed=seed, config=config, callbacks=[console],
                                out_dir=out_dir, resume=resume)
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
    int : 0 on success, 2 on bad input or a damaged run folder, 1 on any other failure, 130
    when interrupted
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
        sys.stderr.write(f"fastmbrl: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("FASTMBRL_DEBUG"):
            raise
        sys.stderr.write(f"fastmbrl: error: {type(exc).__name__}: {_one_line(exc)} (set "
                         f"FASTMBRL_DEBUG=1 for the traceback)\n")
        return EXIT_FAILURE


def _one_line(exc):
    return " ".join(str(exc).split())
