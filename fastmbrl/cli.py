"""The ``fastmbrl`` command: train on an environment, resume a run, sweep, list envs, plot results.

    fastmbrl run Pendulum-v1 --episodes 10 --seed 0 --out runs/pendulum
    fastmbrl run Pendulum-v1 --algorithm random --episodes 3
    fastmbrl run Pendulum-v1 --set planner.horizon=20 --set model.hidden=64,64
    fastmbrl run --resume runs/pendulum
    fastmbrl envs
    fastmbrl plot runs/pendulum
    fastmbrl sweep Pendulum-v1 --seeds 0-2 --grid planner.horizon=10,20 --out runs/sweep
    fastmbrl plot runs/sweep
    fastmbrl eval runs/pendulum --episodes 5
    fastmbrl export runs/pendulum --format c --out controller

Bad arguments, unknown environments, impossible settings and unreadable or damaged run folders
end with one clear line on stderr and exit status 2, never a traceback (settings are checked before
anything is written, so a refused run leaves no folder to resume). Any other failure prints one
line and exits with 1; ``FASTMBRL_DEBUG=1`` shows its traceback.

The parser is ``fastmbrl._cli_parser``, the console display of a run ``fastmbrl._console``; this
module runs the commands.
"""
import dataclasses
import json
import os
import sys
import time

from fastmbrl._cli_parser import _build_parser, _UsageError
from fastmbrl._console import _ConsoleCallback

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _cmd_envs(args):
    from fastmbrl import envs

    print(f"{'id':28s} {'steps':>5s}  {'available':9s}  description")
    for spec in envs.list_specs():
        avail = "yes" if spec.available else f"no ({spec.requires})"
        print(f"{spec.id:28s} {spec.max_episode_steps:5d}  {avail:9s}  {spec.description}")
    return 0


def _cmd_plot(args):
    from fastmbrl import plot

    if not args.dirs and not args.model:
        raise _UsageError("plot: give run or sweep folders, or --model PATH --data BUFFER")
    if bool(args.model) != bool(args.data):
        raise _UsageError("plot: --model and --data go together (a saved model and a saved "
                          "buffer of held-out transitions)")
    written = []
    if args.dirs:
        for d in args.dirs:
            if not os.path.isdir(d):
                raise _UsageError(f"plot: no such folder {d!r} (expected a run folder with "
                                  f"results.json, or a sweep folder)")
        try:
            written += plot.plot_dir(args.dirs, out=args.out)
        except FileNotFoundError as exc:
            raise _UsageError(f"plot: {exc}")
        except ValueError as exc:
            raise _UsageError(f"plot: {exc}")
    if args.model:
        from fastmbrl.buffer import ReplayBuffer
        from fastmbrl.models import GaussianEnsemble

        for flag, path in (("--model", args.model), ("--data", args.data)):
            if not os.path.isfile(path):
                raise _UsageError(f"{flag}: no such file {path!r}")
        model = GaussianEnsemble.load(args.model)
        buffer = ReplayBuffer.load(args.data)
        out = args.out or os.path.dirname(os.path.abspath(args.model))
        os.makedirs(out, exist_ok=True)
        written.append(plot.plot_calibration(
            os.path.join(out, "calibration.png"), model, buffer.obs, buffer.act, buffer.next_obs,
            title=f"calibration of {os.path.basename(args.model)} on {len(buffer)} transitions"))
    for path in written:
        print(path)
    return 0


def _read_config_file(path):
    """The settings in the ``--config`` JSON file, without its "env" key (the command names the
    environment); a value that is not a JSON object is returned as is, for the config layer to
    reject with its own message."""
    try:
        with open(path, encoding="utf-8") as fh:
            values = json.load(fh)
    except FileNotFoundError:
        raise _UsageError(f"--config: no such file {path!r}")
    except (OSError, json.JSONDecodeError) as exc:
        raise _UsageError(f"--config: {path!r} is not valid JSON ({exc})")
    if isinstance(values, dict):
        values = {k: v for k, v in values.items() if k != "env"}
    return values


def _parse_grid(items):
    """``["planner.horizon=10,20", "model.hidden=[64,64],[200]"]`` -> {key: [values]}."""
    grid = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key or not raw:
            raise _UsageError(f"--grid: expected key=v1,v2 (e.g. planner.horizon=10,20), got "
                              f"{item!r}")
        try:
            values = json.loads(f"[{raw}]")
        except json.JSONDecodeError:
            values = []
            for v in raw.split(","):
                try:
                    values.append(json.loads(v))
                except json.JSONDecodeError:
                    values.append(v.strip())      # a bare word: planner.name=cem,icem
        if key in grid:
            raise _UsageError(f"--grid: {key!r} given twice")
        grid[key] = values
    return grid


def _cmd_sweep(args):
    import inspect

    from fastmbrl import config as cfg_mod
    from fastmbrl import envs
    from fastmbrl import _sweep as sweep_mod
    from fastmbrl.algorithms import run

    spec = envs.get_spec(args.env)              # unknown ids raise UnknownEnvError
    if not spec.available:
        envs.make(spec.id)                      # raises ImportError naming the missing extra
    try:
        seeds = sweep_mod.parse_seeds(args.seeds)
    except ValueError as exc:
        raise _UsageError(f"--seeds: {exc}")
    for flag, least, want in (("episodes", 0, "non-negative"), ("steps", 0, "non-negative"),
                              ("workers", 1, "positive")):
        value = getattr(args, flag)
        if value is not None and value < least:
            raise _UsageError(f"--{flag}: expected a {want} integer, got {value}")
    # Settings for every trial, as overrides on top of the env's defaults (fm.run layers them).
    values = _read_config_file(args.config) if args.config else {}
    values = cfg_mod.merge(values, *[cfg_mod.parse_override(o) for o in args.overrides])
    grid = _parse_grid(args.grid)
    # Check every setting now (ConfigError names the key) rather than in every trial.
    base = cfg_mod.from_dict(spec.defaults, base=cfg_mod.RunConfig(env=spec.id))
    base = cfg_mod.from_dict(values, base=base)
    try:
        settings = sweep_mod.grid_settings(grid, len(seeds))
    except ValueError as exc:
        raise _UsageError(f"--grid: {exc}")
    for setting in settings:
        cfg_mod.from_dict(cfg_mod.merge(*[cfg_mod.parse_override(f"{k}={json.dumps(v)}")
                                          for k, v in setting.items()]), base=base)
    run_kwargs = {"config": values}
    params = inspect.signature(run).parameters
    for flag in ("algorithm", "episodes", "steps"):
        value = getattr(args, flag)
        if value is None:
            continue
        if flag not in params:
            raise _UsageError(f"--{flag}: this fastmbrl's run() takes no {flag}= yet")
        run_kwargs[flag] = value

    def report(row):
        if args.quiet:
            return
        extra = f": {row['error']}" if row["status"] == "failed" else ""
        final = row["final_return"]
        final = f", final return {final:.1f}, best {row['best_return']:.1f}" if final != "" else ""
        print(f"trial {row['setting']}/seed_{row['seed']}: {row['status']}{final}{extra}",
              flush=True)

    n = len(seeds) * len(settings)
    if not args.quiet:
        print(f"fastmbrl: sweep of {spec.id}, {n} trials ({len(seeds)} seeds x "
              f"{n // len(seeds)} settings), output in {args.out}", flush=True)
    t0 = time.perf_counter()
    try:
        rows = sweep_mod.sweep(spec.id, seeds=seeds, grid=grid, out=args.out,
                               workers=args.workers, address=args.address,
                               threshold=args.threshold, callback=report,
                               rerun_changed=args.rerun_changed, **run_kwargs)
    except KeyboardInterrupt:
        sys.stderr.write("\nfastmbrl: interrupted; rerun the same command to resume\n")
        return EXIT_INTERRUPTED
    print(sweep_mod.markdown_table(rows, threshold=args.threshold is not None))
    print(f"sweep wall time {time.perf_counter() - t0:.1f}s; summary in "
          f"{os.path.join(args.out, 'summary.csv')}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


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
        saved = algorithms.read_saved_config(args.resume)
        saved_cfg = cfg_mod.from_dict({k: v for k, v in saved.items() if k != "env"})
        env_id, out_dir, resume = saved.get("env"), args.resume, True
        if not isinstance(env_id, str):
            raise _UsageError(f"--resume: {args.resume!r}/config.json names no environment")
        config, seed, algorithm = None, None, None
        layered = saved_cfg
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
            layered = cfg_mod.from_dict(_read_config_file(args.config), base=layered)
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
        from fastmbrl.algorithms._common import step_budget

        section = getattr(layered, algorithms.get(name).SECTION)
        total = args.steps if args.steps is not None else step_budget(layered, section)
    else:
        total = args.episodes if args.episodes is not None else alg.episodes
    show = not args.quiet and alg.progress
    console = _ConsoleCallback(total, show_bar=show and sys.stderr.isatty())
    print(f"fastmbrl: {'resuming' if resume else 'running'} {name} on {env_id}, "
          f"{total} {budget}, output in {out_dir}")
    from fastmbrl.algorithms._memory import estimate_for

    planned = dataclasses.replace(layered, env=env_id, algorithm=dataclasses.replace(
        layered.algorithm, name=name, steps=args.steps if budget == "steps" else None))
    print(f"fastmbrl: peak memory {estimate_for(planned).describe()}")
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
        what = "evaluations" if budget == "steps" else "episodes"
        print(f"done: {len(returns)} {what}, wall {result.records[-1].wall_time:.1f}s "
              f"(this session {time.perf_counter() - t0:.1f}s; fit {result.fit_times.sum():.1f}s, "
              f"act {result.act_times.sum():.1f}s, "
              f"env {result.env_times.sum():.1f}s); best return {returns.max():.2f}, "
              f"mean of last {len(last)} {last.mean():.2f}; results in {out_dir}")
    else:
        print(f"done: no episodes to run; results in {out_dir}")
    return 0


def _cmd_eval(args):
    from fastmbrl.deploy import evaluation, loading

    if args.episodes < 1:
        raise _UsageError(f"--episodes: expected a positive integer, got {args.episodes}")
    if args.seed is not None and args.seed < 0:
        raise _UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
    run = loading.open_run(args.run_dir, "eval")
    if args.video:
        evaluation.check_video_dependencies()
    what = "deterministic policy" if run.has_policy else (
        "planner" if run.algorithm == "pets" else "random actions")
    seed = run.seed if args.seed is None else args.seed
    print(f"fastmbrl: evaluating the {run.algorithm} {what} of {run.path} "
          f"({os.path.relpath(run.checkpoint, run.path)}) on {run.env_id}, {args.episodes} "
          f"episode{'s' if args.episodes > 1 else ''}, seed {seed}", flush=True)

    def report(k, record):
        print(f"episode {k + 1:3d}/{args.episodes}  return {record.ret:10.2f}  "
              f"length {record.length:5d}  act {record.ms_per_action:8.3f} ms/action", flush=True)

    result = evaluation.evaluate(run.path, episodes=args.episodes, seed=args.seed,
                                 video=args.video, callback=report)
    n = len(result.returns)
    print(f"mean return {result.mean:.2f} +- {result.std:.2f} (std over {n} "
          f"episode{'s' if n > 1 else ''})")
    if args.video:
        print(f"videos in {args.video}")
    return 0


def _cmd_export(args):
    from fastmbrl.deploy import FORMATS, export

    if args.fmt not in FORMATS:
        raise _UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {args.fmt!r}")
    parts = None if args.what == "all" else (args.what,)
    result = export(args.run_dir, args.fmt, args.out, force=args.force, parts=parts)
    for path in result.files:
        print(path)
    for note in result.notes:
        print(f"note: {note}")
    return 0


def main(argv=None):
    """Entry point of the ``fastmbrl`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int : 0 on success, 1 when a sweep trial failed or on any other failure, 2 on bad input or a
    damaged run folder, 130 when interrupted
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
        handler = {"run": _cmd_run, "envs": _cmd_envs, "plot": _cmd_plot,
                   "sweep": _cmd_sweep, "eval": _cmd_eval, "export": _cmd_export}[args.command]
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
