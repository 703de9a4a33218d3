"""The benchmark suite: every (env, algorithm, seed) as its own resumable run, one after another,
then one CSV of every evaluation and one figure against the published reference curves.

Usage::

    python benchmarks/run_suite.py --envs HalfCheetah-v5,Hopper-v5 --algorithms mbpo,sac \\
        --seeds 0-2 --steps 100000 --out runs/suite
    python benchmarks/run_suite.py ...same command...        # continue after an interruption
    python benchmarks/run_suite.py --out runs/suite --report-only   # CSV and figure only

Runs. Each (env, algorithm, seed) is ``fastmbrl.run(env, algorithm=, steps=, seed=, config=,
out_dir=OUT/<env>/<algorithm>/seed_<s>, resume=True)``, one run at a time in this process (no Ray:
the suite is meant for a 2-core machine). Rerunning the same command skips the runs whose results
already reach ``--steps``, continues the others from their last checkpoint (a checkpoint is taken at
every evaluation, so an interrupted suite loses at most each run's work since its last evaluation)
and extends finished runs when ``--steps`` grew. ``--set key=value`` (repeatable) are config
overrides for every run; an existing run keeps the settings it was created with (its config.json),
so an explicit ``--set`` that disagrees with an existing run folder is refused. Only the step-based
algorithms (``BUDGET == "steps"``: sac, mbpo, mve, svg) are run; pets and random are refused.
Evaluations average ``sac.eval_episodes`` episodes; the suite sets it to 5 (or the environment's
default when larger) unless ``--set`` gives it, and refuses fewer than 5.

Progress on stdout: a line when a run starts, resumes, is skipped or finishes, and one line per
evaluation (env, algorithm, seed, steps, return, wall), from a callback that also appends
``steps,cpu,commit`` to ``suite_evals.csv`` in the run folder: the machine and code that produced
each evaluation, as a run may be continued on other machines and commits.

CSV (``--csv``, default ``benchmarks/results/suite.csv``), written atomically after every run (and
by ``--report-only``), with exactly the columns::

    env,algorithm,seed,steps,return,wall_s,cpu,commit

one row per evaluation of every run folder found under ``--out`` (``<env>/<algorithm>/seed_<s>``,
whether or not this command asked for it), sorted by env, algorithm, seed, steps. ``return`` is the
evaluation's mean return and ``wall_s`` the run's ``wall_time`` at that evaluation (seconds since
the run started, summed over resumed sessions), both from the run's results file (the truth);
``cpu`` (``/proc/cpuinfo``'s model name with its family and model numbers, else
``platform.processor()``) and ``commit`` (short hash of this script's repository, ``-dirty`` when
tracked files differ from it) come from ``suite_evals.csv``, and are ``unknown`` for an evaluation
it lacks (a process killed between the checkpoint and the callback).

Merging: rows already in the CSV are kept, so one CSV can gather suites run into other ``--out``
folders (or on other machines), except that the rows of every (env, algorithm, seed) that has a run
folder under ``--out`` are replaced by that folder's rows. A run folder deleted from ``--out`` keeps
its old rows in the CSV; delete them by hand.

Figure (``--figure``, default ``docs/suite.png``; needs matplotlib, else skipped with a message):
one row per env in the CSV, evaluation return against environment steps and against wall-clock
hours (minutes for a row of runs shorter than half an hour without references);
each fastmbrl seed thin, the mean over seeds (at the steps every seed reached) thick; the reference
curves of ``benchmarks/reference/`` (erl_lib's MBPO and DHMBPO, Gym v4 on a GPU) as the mean over
seeds with a min-max band, drawn up to the largest step fastmbrl reached on that env (the last
point interpolated). One colour per algorithm (fastmbrl's mbpo and the MBPO reference share it).

Exit status: 0, 1 when a run failed (the others still ran), 2 on bad arguments (one line on stderr,
before anything runs), 130 when interrupted.
"""
import argparse
import csv
import importlib.util
import io
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if importlib.util.find_spec("fastmbrl") is None:     # a source checkout, not installed
    sys.path.insert(0, ROOT)

DEFAULT_CSV = os.path.join(HERE, "results", "suite.csv")
DEFAULT_FIGURE = os.path.join(ROOT, "docs", "suite.png")
REFERENCE_DIR = os.path.join(HERE, "reference")
CSV_FIELDS = ("env", "algorithm", "seed", "steps", "return", "wall_s", "cpu", "commit")
SIDECAR = "suite_evals.csv"
SIDECAR_FIELDS = ("steps", "cpu", "commit")
UNKNOWN = "unknown"
MIN_EVAL_EPISODES = 5
# reference file, legend label, the fastmbrl algorithm whose colour it shares
REFERENCES = (("mbpo_erl_lib.csv", "MBPO (erl_lib, GPU)", "mbpo"),
              ("dhmbpo_erl_lib.csv", "DHMBPO (erl_lib, GPU)", "dhmbpo"))
COLOURS = {"sac": "tab:blue", "mbpo": "tab:orange", "mve": "tab:purple", "svg": "tab:green",
           "dhmbpo": "tab:red"}
SPARE_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
SUITE_KEYS = {"algorithm.steps": "--steps", "algorithm.name": "--algorithms", "seed": "--seeds",
              "env": "--envs"}

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# ---------------------------------------------------------------------------------------------
# provenance: the machine and the code
# ---------------------------------------------------------------------------------------------
def cpu_name():
    """``"AMD EPYC (family 25, model 17)"``: /proc/cpuinfo's model name (trademarks, clock and core
    count removed) with its family and model numbers; else ``platform.processor()``."""
    info = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key = key.strip()
                if not sep:
                    if info:
                        break           # end of the first processor's block
                    continue
                if key in ("model name", "cpu family", "model") and key not in info:
                    info[key] = value.strip()
    except OSError:
        pass
    name = info.get("model name", "")
    name = re.sub(r"\((R|TM|tm)\)", "", name)
    name = re.sub(r"\s*@\s*[\d.]+\s*GHz", "", name)
    name = re.sub(r"\b(CPU|Processor|\d+-Core)\b", "", name)
    name = " ".join(name.split())
    if name:
        if info.get("cpu family") and info.get("model"):
            name += f" (family {info['cpu family']}, model {info['model']})"
        return name
    return platform.processor() or platform.machine() or UNKNOWN


def git_commit(path=HERE):
    """Short hash of the repository holding ``path``, ``-dirty`` when tracked files differ from it;
    ``unknown`` outside a git repository."""
    def git(*args):
        proc = subprocess.run(["git", "-C", path, *args], check=False, capture_output=True,
                              text=True, timeout=60)
        if proc.returncode != 0:
            raise OSError(proc.stderr.strip())
        return proc.stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return f"{commit}-dirty" if dirty else commit


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------
def build_parser():
    p = _Parser(prog="run_suite.py",
                description="Run every (env, algorithm, seed) as its own resumable fastmbrl run, "
                            "one after another; rerun the same command to continue. Writes the "
                            "CSV of every evaluation and the suite figure (details: the "
                            "docstring of benchmarks/run_suite.py).")
    p.add_argument("--envs", metavar="ENV[,ENV...]", help="fastmbrl environment ids")
    p.add_argument("--algorithms", metavar="ALG[,ALG...]",
                   help="step-based algorithms (sac, mbpo, mve, svg)")
    p.add_argument("--seeds", default="0", help="e.g. 0-2 or 0,3,5 (default 0)")
    p.add_argument("--steps", type=int, default=100_000,
                   help="environment steps per run (default 100000); a larger value extends "
                        "existing runs")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="suite folder: runs go to DIR/<env>/<algorithm>/seed_<s>")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="config override for every run, e.g. --set sac.eval_every=2500 "
                        "(repeatable)")
    p.add_argument("--csv", default=DEFAULT_CSV,
                   help="the CSV of every evaluation (default benchmarks/results/suite.csv)")
    p.add_argument("--figure", default=DEFAULT_FIGURE,
                   help="the figure (default docs/suite.png at the repository root)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the CSV and the figure from the run folders under --out; run "
                        "nothing")
    return p


def _names(text, option):
    names = [n.strip() for n in (text or "").split(",")]
    if not text or not all(names):
        raise UsageError(f"{option}: expected a comma-separated list of names, got {text!r}")
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def parse_seeds(text):
    """``"0-2"`` -> [0, 1, 2]; ``"0,3"`` and ``"0-2,5"`` too. UsageError naming --seeds."""
    seeds = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"--seeds: expected e.g. 0-2 or 0,3,5 (non-negative integers, "
                             f"ranges low-high), got {text!r}")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def _flat(nested, prefix=""):
    """``{"sac": {"lr": 1}}`` -> ``{"sac.lr": 1}``."""
    out = {}
    for k, v in nested.items():
        if isinstance(v, dict) and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resolve_plan(args):
    """Check every argument before anything runs; return the list of runs to do.

    Returns
    -------
    list of dict
        ``env, algorithm, seed, dir, config`` (the overrides for fm.run, eval_episodes included)
    """
    from fastmbrl import algorithms, envs
    from fastmbrl import config as cfg_mod
    from fastmbrl.config import ConfigError

    if args.envs is None or args.algorithms is None:
        missing = "--envs" if args.envs is None else "--algorithms"
        raise UsageError(f"{missing}: required (unless --report-only)")
    seeds = parse_seeds(args.seeds)
    if args.steps < 1:
        raise UsageError(f"--steps: expected a positive integer, got {args.steps}")
    specs = []
    for name in _names(args.envs, "--envs"):
        try:
            spec = envs.get_spec(name)
            if not spec.available:
                envs.make(spec.id)          # raises ImportError naming the missing extra
        except (KeyError, ImportError) as exc:
            raise UsageError(f"--envs: {_one_line(exc)}") from None
        specs.append(spec)
    algs = []
    for name in _names(args.algorithms, "--algorithms"):
        try:
            module = algorithms.get(name)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--algorithms: {_one_line(exc)}") from None
        if module.BUDGET != "steps":
            step_based = [a for a in algorithms.available()
                          if algorithms.get(a).BUDGET == "steps"]
            raise UsageError(f"--algorithms: {name} is episode-based ({module.BUDGET}=); the suite "
                             f"runs only step-based algorithms ({', '.join(step_based)})")
        algs.append(name)
    try:
        overrides = cfg_mod.merge(*[cfg_mod.parse_override(o) for o in args.overrides])
    except ConfigError as exc:
        msg = _one_line(exc)
        raise UsageError(msg if msg.startswith("--set") else f"--set: {msg}") from None
    user_keys = _flat(overrides)
    for key, option in SUITE_KEYS.items():
        if key in user_keys:
            raise UsageError(f"--set {key}: set by the suite; use {option}")
    plan = []
    for spec in specs:
        try:
            base = cfg_mod.from_dict(spec.defaults, base=cfg_mod.RunConfig(env=spec.id))
            requested = cfg_mod.from_dict(overrides, base=base)
        except ConfigError as exc:
            raise UsageError(f"--set: {_one_line(exc)} (env {spec.id})") from None
        run_overrides = cfg_mod.merge(overrides)
        if "sac.eval_episodes" in user_keys:
            if requested.sac.eval_episodes < MIN_EVAL_EPISODES:
                raise UsageError(f"--set sac.eval_episodes: the suite averages at least "
                                 f"{MIN_EVAL_EPISODES} evaluation episodes, got "
                                 f"{requested.sac.eval_episodes}")
        else:
            n = max(MIN_EVAL_EPISODES, requested.sac.eval_episodes)
            run_overrides = cfg_mod.merge(run_overrides, {"sac": {"eval_episodes": n}})
        wanted = _flat(cfg_mod.to_dict(cfg_mod.from_dict(run_overrides, base=base)))
        for alg in algs:
            for seed in seeds:
                run_dir = os.path.join(args.out, spec.id, alg, f"seed_{seed}")
                _check_existing(run_dir, spec.id, alg, seed, wanted, user_keys)
                plan.append({"env": spec.id, "algorithm": alg, "seed": seed, "dir": run_dir,
                             "config": run_overrides})
    return plan


def _check_existing(run_dir, env, alg, seed, wanted, keys):
    """Refuse a run folder made with other settings than the ones the command asks for."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
        saved_flat = _flat(saved)
    except (OSError, ValueError, AttributeError) as exc:
        raise UsageError(f"--out: {path} cannot be read ({_one_line(exc)}); move that run "
                         f"folder away") from None
    saved_alg = saved_flat.get("algorithm.name", "pets")
    if saved.get("env") != env or saved_alg != alg or saved_flat.get("seed") != seed:
        raise UsageError(f"--out: {run_dir} holds a run of {saved.get('env')} / {saved_alg} / "
                         f"seed {saved_flat.get('seed')}, not {env} / {alg} / seed {seed}")
    episodes = saved_flat.get("sac.eval_episodes")
    if not isinstance(episodes, int) or episodes < MIN_EVAL_EPISODES:
        raise UsageError(f"--out: the run in {run_dir} evaluates {episodes} episodes; the suite "
                         f"needs at least {MIN_EVAL_EPISODES}: move that run folder away")
    for key in sorted(keys):
        if key in wanted and saved_flat.get(key) != wanted[key]:
            raise UsageError(f"--set {key}={_json(wanted[key])}: the run in {run_dir} was made "
                             f"with {key}={_json(saved_flat.get(key))} (a run keeps its "
                             f"settings; use another --out or the same --set)")


def _json(v):
    return json.dumps(v)


def _one_line(exc):
    return " ".join(str(exc).split())


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
class SuiteCallback:
    """Prints one line per evaluation and appends ``steps,cpu,commit`` to the run's sidecar."""

    def __init__(self, run, total, cpu, commit, out=None):
        self.run, self.total, self.cpu, self.commit = run, total, cpu, commit
        self.out = out or sys.stdout
        self.path = os.path.join(run["dir"], SIDECAR)

    def on_episode_end(self, record):
        new = not os.path.isfile(self.path)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            if new:
                w.writerow(SIDECAR_FIELDS)
            w.writerow([int(record.steps), self.cpu, self.commit])
            fh.flush()
            os.fsync(fh.fileno())
        r = self.run
        self.out.write(f"{r['env']} {r['algorithm']} seed {r['seed']}: steps {record.steps}/"
                       f"{self.total} return {record.ret:.1f} wall {record.wall_time:.1f}s\n")
        self.out.flush()
        return False


def _last_steps(run_dir):
    res = _load(run_dir)
    if res is None or not len(res["steps"]):
        return 0
    return int(res["steps"][-1])


def run_one(run, steps, cpu, commit, callbacks=(), out=None):
    """Run, resume or skip one run; returns "skipped", "finished", "stopped" or "failed"."""
    import fastmbrl as fm
    from fastmbrl._checkpoint import has_checkpoint

    out = out or sys.stdout
    label = f"{run['env']} {run['algorithm']} seed {run['seed']}"
    done = _last_steps(run["dir"])
    if done >= steps:
        out.write(f"{label}: finished earlier ({done} steps), skipped\n")
        out.flush()
        return "skipped"
    resume = os.path.isfile(os.path.join(run["dir"], "config.json"))
    if resume and has_checkpoint(run["dir"]):
        out.write(f"{label}: resuming from its last checkpoint (last evaluation at step {done}) "
                  f"to {steps} steps, {run['dir']}\n")
    else:
        out.write(f"{label}: starting, {steps} steps, {run['dir']}\n")
    out.flush()
    t0 = time.perf_counter()
    cbs = [SuiteCallback(run, steps, cpu, commit, out)] + list(callbacks)
    try:
        result = fm.run(run["env"], algorithm=run["algorithm"], steps=steps, seed=run["seed"],
                        config=run["config"], out_dir=run["dir"], resume=resume, callbacks=cbs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 -- a failed run is reported; the suite goes on
        out.write(f"{label}: failed: {type(exc).__name__}: {_one_line(exc)}\n")
        out.flush()
        return "failed"
    session = time.perf_counter() - t0
    if not result.records:
        out.write(f"{label}: no evaluation ({session:.1f}s)\n")
        return "failed"
    last = result.records[-1]
    if result.stopped_early or last.steps < steps:
        out.write(f"{label}: stopped at step {last.steps} (rerun to continue), this session "
                  f"{session:.1f}s\n")
        out.flush()
        return "stopped"
    out.write(f"{label}: finished, {len(result.records)} evaluations, return {last.ret:.1f} at "
              f"step {last.steps}, wall {last.wall_time:.1f}s (this session {session:.1f}s)\n")
    out.flush()
    return "finished"


# ---------------------------------------------------------------------------------------------
# the CSV
# ---------------------------------------------------------------------------------------------
def _load(run_dir):
    from fastmbrl.plot import load_run

    try:
        return load_run(run_dir)
    except (FileNotFoundError, ValueError):
        return None


def read_sidecar(run_dir):
    """``{steps: (cpu, commit)}`` from the run's sidecar (a torn last line is ignored; a step
    recorded twice keeps its last entry)."""
    out = {}
    try:
        with open(os.path.join(run_dir, SIDECAR), encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    steps = int(row["steps"])
                except (KeyError, TypeError, ValueError):
                    continue
                cpu, commit = row.get("cpu"), row.get("commit")
                if cpu and commit:
                    out[steps] = (cpu, commit)
    except OSError:
        pass
    return out


def find_runs(out_dir):
    """Run folders under ``out_dir``: ``(env, algorithm, seed, dir)`` for each
    ``<env>/<algorithm>/seed_<s>`` with a results file."""
    found = []
    if not os.path.isdir(out_dir):
        return found
    for env in sorted(os.listdir(out_dir)):
        env_dir = os.path.join(out_dir, env)
        if not os.path.isdir(env_dir):
            continue
        for alg in sorted(os.listdir(env_dir)):
            alg_dir = os.path.join(env_dir, alg)
            if not os.path.isdir(alg_dir):
                continue
            for name in sorted(os.listdir(alg_dir)):
                m = re.fullmatch(r"seed_(\d+)", name)
                run_dir = os.path.join(alg_dir, name)
                if m and os.path.isdir(run_dir) and any(
                        os.path.isfile(os.path.join(run_dir, f))
                        for f in ("results.json", "results.csv")):
                    found.append((env, alg, int(m.group(1)), run_dir))
    return found


def _fmt_float(x):
    return repr(float(x)) if np.isfinite(x) else "nan"


def rows_from_runs(out_dir):
    """CSV rows (dicts of strings) of every evaluation of every run under ``out_dir``, and the set
    of (env, algorithm, seed) found."""
    rows, keys = [], set()
    for env, alg, seed, run_dir in find_runs(out_dir):
        res = _load(run_dir)
        if res is None:
            continue
        env = res.get("env") or env
        alg = res.get("algorithm") or alg
        seed = int(res["seed"]) if res.get("seed") is not None else seed
        keys.add((env, alg, str(seed)))
        prov = read_sidecar(run_dir)
        for steps, ret, wall in zip(res["steps"], res["returns"], res["wall"]):
            cpu, commit = prov.get(int(steps), (UNKNOWN, UNKNOWN))
            rows.append({"env": env, "algorithm": alg, "seed": str(seed),
                         "steps": str(int(steps)), "return": _fmt_float(ret),
                         "wall_s": f"{wall:.2f}" if np.isfinite(wall) else "nan",
                         "cpu": cpu, "commit": commit})
    return rows, keys


def read_csv_rows(path):
    """Rows of an existing suite CSV ([] when there is none); UsageError for other columns."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_FIELDS:
            raise UsageError(f"--csv: {path} has the columns {','.join(reader.fieldnames or ())}"
                             f", not {','.join(CSV_FIELDS)}; move it away or choose another "
                             f"--csv")
        return [dict(r) for r in reader]


def _sort_key(row):
    def num(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            return -1
    return row["env"], row["algorithm"], num(row["seed"]), num(row["steps"])


def write_csv(path, out_dir):
    """Merge the runs under ``out_dir`` into the CSV at ``path`` (atomically; untouched when the
    content is unchanged); returns the merged rows."""
    kept = read_csv_rows(path)
    rows, keys = rows_from_runs(out_dir)
    merged = [r for r in kept if (r["env"], r["algorithm"], r["seed"]) not in keys] + rows
    merged.sort(key=_sort_key)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(merged)
    text = buf.getvalue()
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if fh.read() == text:
                return merged
    except OSError:
        pass
    _atomic_write(path, text)
    return merged


def _atomic_write(path, text):
    from fastmbrl._io import atomic_write_text

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------
# the figure
# ---------------------------------------------------------------------------------------------
def read_references(folder=REFERENCE_DIR):
    """``[(label, colour key, {env: {seed: (steps, returns, wall_s)}})]`` of the reference files
    that exist."""
    refs = []
    for name, label, colour in REFERENCES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        curves = {}
        with open(path, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                curves.setdefault(r["env"], {}).setdefault(int(r["seed"]), []).append(
                    (int(r["steps"]), float(r["return"]), float(r["wall_s"])))
        refs.append((label, colour, {env: {s: tuple(np.array(c).T) for s, c in by.items()}
                                     for env, by in curves.items()}))
    return refs


def _mean_curve(curves):
    """Mean, min and max over seeds at the steps every seed has: (steps, ret mean, ret min,
    ret max, wall mean)."""
    common = None
    for steps, _, _ in curves:
        common = set(steps.tolist()) if common is None else common & set(steps.tolist())
    steps = np.array(sorted(common or ()), dtype=np.int64)
    if not steps.size:
        empty = np.zeros(0)
        return steps, empty, empty, empty, empty
    rets, walls = [], []
    for s, r, w in curves:
        idx = {int(v): i for i, v in enumerate(s)}
        take = [idx[int(v)] for v in steps]
        rets.append(np.asarray(r)[take])
        walls.append(np.asarray(w)[take])
    rets, walls = np.array(rets), np.array(walls)
    return steps, rets.mean(0), rets.min(0), rets.max(0), walls.mean(0)


def _crop(max_steps, steps, *columns):
    """The curve up to ``max_steps``: its points before it and, when it goes further, one point
    at ``max_steps`` interpolated linearly."""
    steps = np.asarray(steps, dtype=np.float64)
    keep = steps <= max_steps
    out = [steps[keep]] + [np.asarray(c)[keep] for c in columns]
    if steps.size and steps[-1] > max_steps and not np.any(steps == max_steps):
        out = [np.append(out[0], max_steps)] + [
            np.append(o, np.interp(max_steps, steps, c)) for o, c in zip(out[1:], columns)]
    return out


def _colour(key, used):
    if key in COLOURS:
        return COLOURS[key]
    if key not in used:
        used[key] = SPARE_COLOURS[len(used) % len(SPARE_COLOURS)]
    return used[key]


def _fmt_steps(x, _pos=None):
    return f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"


def plot_suite(path, rows, references=None):
    """Write the suite figure to ``path``; returns the path, or None when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return None
    references = read_references() if references is None else references
    data = {}
    for r in rows:
        try:
            point = (int(r["steps"]), float(r["return"]), float(r["wall_s"]))
        except (TypeError, ValueError):
            continue
        run = data.setdefault(r["env"], {}).setdefault(r["algorithm"], {}).setdefault(
            r["seed"], {"points": [], "cpus": set()})
        run["points"].append(point)
        run["cpus"].add(r["cpu"])
    envs = sorted(data)
    fig = Figure(figsize=(13, 3.8 * max(len(envs), 1) + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if not envs:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no evaluations yet", ha="center", va="center")
        ax.set_axis_off()
    spare = {}
    axes = fig.subplots(len(envs), 2, squeeze=False) if envs else []
    for env, (ax_s, ax_w) in zip(envs, axes):
        max_steps = 0
        has_ref = any(env in c for _, _, c in references)
        longest = max((p[2] for seeds in data[env].values() for run in seeds.values()
                       for p in run["points"]), default=0.0)
        # hours (minutes for a row of short runs without references)
        scale, unit = (3600.0, "hours") if has_ref or longest >= 1800 else (60.0, "minutes")
        for alg in sorted(data[env]):
            seeds = data[env][alg]
            colour = _colour(alg, spare)
            curves, cpus = [], set()
            for seed in sorted(seeds, key=lambda s: int(s) if s.isdigit() else -1):
                pts = np.array(sorted(seeds[seed]["points"]), dtype=np.float64)
                st, ret, wall = pts[:, 0], pts[:, 1], pts[:, 2] / scale
                max_steps = max(max_steps, int(st.max()))
                curves.append((st, ret, wall))
                cpus |= seeds[seed]["cpus"]
                if len(seeds) > 1:
                    ax_s.plot(st, ret, color=colour, lw=0.8, alpha=0.35)
                    ax_w.plot(wall, ret, color=colour, lw=0.8, alpha=0.35)
            known = sorted(c for c in cpus if c != UNKNOWN)
            cpu = known[0] if len(known) == 1 else (f"{len(known)} CPUs" if known else
                                                    "CPU unknown")
            n = len(curves)
            label = f"fastmbrl {alg} ({n} seed{'s' if n != 1 else ''}, {cpu})"
            st, mean, _, _, wall = _mean_curve(curves)
            ax_s.plot(st, mean, color=colour, lw=2.2, marker="o" if len(st) < 15 else None,
                      ms=3, label=label)
            ax_w.plot(wall, mean, color=colour, lw=2.2, marker="o" if len(st) < 15 else None,
                      ms=3, label=label)
        for label, key, curves_by_env in references:
            by_seed = curves_by_env.get(env)
            if not by_seed or max_steps <= 0:
                continue
            st, mean, lo, hi, wall = _mean_curve(
                [(np.asarray(s), np.asarray(r), np.asarray(w) / scale)
                 for s, r, w in by_seed.values()])
            st, mean, lo, hi, wall = _crop(max_steps, st, mean, lo, hi, wall)
            colour = _colour(key, spare)
            n = len(by_seed)
            ax_s.plot(st, mean, color=colour, lw=1.8, ls="--", label=f"{label}, {n} seeds")
            ax_s.fill_between(st, lo, hi, color=colour, alpha=0.15, lw=0)
            ax_w.plot(wall, mean, color=colour, lw=1.8, ls="--", label=f"{label}, {n} seeds")
            ax_w.fill_between(wall, lo, hi, color=colour, alpha=0.15, lw=0)
        ax_s.set_title(f"{env}{' (references: Gym v4)' if has_ref else ''}", loc="left",
                       fontsize=11)
        ax_s.set_xlabel("environment steps")
        ax_s.xaxis.set_major_formatter(FuncFormatter(_fmt_steps))
        ax_w.set_xlabel(f"wall-clock {unit}")
        for ax in (ax_s, ax_w):
            ax.set_ylabel("evaluation return")
            ax.grid(alpha=0.3)
        ax_s.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.suptitle("fastmbrl suite: mean evaluation return (thin: seeds, thick: mean over seeds; "
                 "dashed: references, band min-max over seeds)", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def report(args, out=None):
    """Rebuild the CSV and the figure from the run folders under ``args.out``."""
    out = out or sys.stdout
    rows = write_csv(args.csv, args.out)
    out.write(f"csv: {args.csv} ({len(rows)} rows)\n")
    try:
        written = plot_suite(args.figure, rows)
    except Exception as exc:  # noqa: BLE001 -- a failed figure must not stop the suite
        out.write(f"figure: failed ({type(exc).__name__}: {_one_line(exc)})\n")
        out.flush()
        return rows
    if written is None:
        out.write("figure: skipped (matplotlib is not installed: pip install matplotlib)\n")
    else:
        out.write(f"figure: {written}\n")
    out.flush()
    return rows


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def main(argv=None, callbacks=(), stdout=None, stderr=None):
    """Entry point; returns the exit status. ``callbacks`` are extra fm.run callbacks for every
    run (tests use them to interrupt a suite)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        if args.report_only:
            if not os.path.isdir(args.out):
                raise UsageError(f"--out: no such folder {args.out!r}")
            read_csv_rows(args.csv)
            report(args, out)
            return 0
        plan = resolve_plan(args)
        read_csv_rows(args.csv)             # an unrelated CSV fails now, not after the runs
    except UsageError as exc:
        err.write(f"run_suite: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except SystemExit as exc:               # --help
        return int(exc.code or 0)
    cpu, commit = cpu_name(), git_commit()
    out.write(f"suite: {len(plan)} runs ({args.envs} x {args.algorithms} x seeds {args.seeds}), "
              f"{args.steps} steps each, in {args.out}; {cpu}, commit {commit}\n")
    out.flush()
    statuses = []
    try:
        for run in plan:
            status = run_one(run, args.steps, cpu, commit, callbacks, out)
            statuses.append(status)
            if status != "skipped":
                report(args, out)
    except KeyboardInterrupt:
        write_csv(args.csv, args.out)
        err.write("\nrun_suite: interrupted; rerun the same command to continue (each run "
                  f"resumes from its last checkpoint); csv {args.csv} updated\n")
        return EXIT_INTERRUPTED
    if all(s == "skipped" for s in statuses):
        report(args, out)
    counts = {s: statuses.count(s) for s in ("finished", "skipped", "stopped", "failed")}
    out.write("suite: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "\n")
    out.flush()
    return EXIT_FAILED if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
