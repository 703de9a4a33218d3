"""Seeds x settings, each trial its own resumable run folder, spread over cores or machines by Ray.

``fm.sweep`` is this module's :func:`sweep` (the module is private so that the package attribute
``fastmbrl.sweep`` stays the function: importing a submodule of that name would rebind it).

    records = fm.sweep("Pendulum-v1", seeds=range(3), grid={"planner.horizon": [10, 20]},
                       out="runs/sweep", episodes=5)

Layout: ``out/<setting>/seed_<s>/`` is an ordinary run folder (config.json, results, checkpoints)
plus ``trial.json``, the trial's status, written when it ends. Rerunning the same sweep skips the
trials whose ``trial.json`` says finished and resumes the others from their checkpoints
(``fm.run(..., resume=True)``). ``out/summary.csv`` has one row per trial.

Engine: Ray (the ``ray`` extra). With ``workers=1`` the trials run one after another in this
process, Ray or not.

Local (no ``address``): Ray starts from this process with ``workers`` CPUs (default: the machine's
cores), each trial taking one, and it is private to this machine and this sweep. Every Ray process
(GCS, raylet, agents, workers, this process's own Ray server) listens on the loopback address only
(127.0.0.1 or ::1), so nothing is offered to the network (a Ray version that binds anything else
is named in a warning). Nothing of it outlives the sweep: ``ray.shutdown()`` at the end, and a
small watchdog process (POSIX) ends every Ray process the sweep started as soon as this process
is gone, however it ended (SIGKILL included). A Ray already initialized in this process is used
as it is.

Cluster: ``address`` joins a running Ray cluster (``"HEAD:6379"``, or ``"auto"`` on a node of
it): ``ray start --head --node-ip-address=<the head's address on the cluster's private network>``
on one machine, ``ray start --address=HEAD:6379`` on the others; fastmbrl must be installed on
every node and ``out`` must be on storage they all see. The sweep then starts and stops nothing
(``ray stop`` ends a node). Ray's own security guidance: its ports run whatever code is sent to
them, so they must only ever be reachable from trusted machines (a private network or a firewall
around the cluster), never from an untrusted network.
"""
import csv
import io
import itertools
import json
import math
import logging
import os
import re
import signal
import subprocess
import sys
import time
import traceback

import numpy as np

from fastmbrl._io import atomic_write_text

__all__ = ["sweep", "SUMMARY_FIELDS", "RAY_HINT", "RayMissingError", "setting_slug",
           "parse_seeds"]

log = logging.getLogger("fastmbrl.sweep")

RAY_HINT = 'pip install "fastmbrl[ray]"'
# Trials (seeds x settings) one sweep may ask for; counted before the trial list is built.
MAX_TRIALS = 10_000
TRIAL_FILE = "trial.json"
SUMMARY_FIELDS = ("setting", "seed", "status", "episodes", "steps", "final_return", "best_return",
                  "episodes_to_threshold", "steps_to_threshold", "wall_time", "error", "dir")


class RayMissingError(ImportError):
    """More than one worker (or a cluster address) was asked for and Ray is not installed."""


# ---------------------------------------------------------------------------------------------
# settings and seeds
# ---------------------------------------------------------------------------------------------
def parse_seeds(text):
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` and ``"0-2,5"`` work too.

    Raises
    ------
    ValueError
        Naming ``seeds`` and the text, when it is not a list of non-negative ranges.
    """
    ranges = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"seeds: expected e.g. 0-4 or 0,1,5 (non-negative), got {text!r}")
        lo = int(m.group(1))
        ranges.append((lo, lo if m.group(2) is None else int(m.group(2))))
    count = sum(hi - lo + 1 for lo, hi in ranges)       # counted before any list is built
    if count > MAX_TRIALS:
        raise ValueError(f"seeds: {text!r} names {count} seeds, more than a sweep's limit of "
                         f"{MAX_TRIALS} trials")
    seeds = []
    for lo, hi in ranges:
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def setting_slug(setting):
    """Folder name of a setting: ``{"planner.horizon": 20}`` -> ``"planner.horizon=20"``.

    Keys are sorted; ``"default"`` for the empty setting; characters other than letters, digits and
    ``._=,-`` become ``_``.
    """
    if not setting:
        return "default"
    parts = []
    for key in sorted(setting):
        value = setting[key]
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return re.sub(r"[^A-Za-z0-9._=,-]", "_", "_".join(parts))


def _nested(key, value):
    section, dot, name = str(key).partition(".")
    return {section: {name: value}} if dot else {section: value}


def _settings(grid, n_seeds=1):
    if grid is None:
        return [{}]
    if not isinstance(grid, dict):
        raise TypeError(f"grid: expected a dict of setting -> list of values, got "
                        f"{type(grid).__name__}")
    keys = list(grid)
    values = []
    for key in keys:
        v = grid[key]
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError(f"grid[{key!r}]: expected a list of values, got {v!r}")
        v = list(v)
        if not v:
            raise ValueError(f"grid[{key!r}]: expected at least one value, got an empty list")
        values.append(v)
    count = math.prod(len(v) for v in values)
    if count * n_seeds > MAX_TRIALS:
        raise ValueError(f"grid: {count} settings x {n_seeds} seeds = {count * n_seeds} trials, "
                         f"more than a sweep's limit of {MAX_TRIALS}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


# ---------------------------------------------------------------------------------------------
# one trial (runs in a Ray worker or in this process)
# ---------------------------------------------------------------------------------------------
def _limit_threads(n):
    """Cap Numba's threads at ``n`` (BLAS is capped by the caller's threadpool_limits)."""
    if "numba" not in sys.modules:
        # Read once, at import. Changing it after numba is imported makes numba refuse to run
        # once its thread pool exists (the pool size is fixed), so then only set_num_threads.
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def _read_results(run_dir):
    from fastmbrl.plot import load_run

    try:
        return load_run(run_dir)
    except (FileNotFoundError, ValueError):
        return None


def _summarize(run_dir, setting, seed, status, threshold, wall=None, error=""):
    """One summary row from a trial's folder (so finished, resumed and skipped trials agree)."""
    res = _read_results(run_dir)
    row = {k: "" for k in SUMMARY_FIELDS}
    row.update(setting=setting_slug(setting), seed=seed, status=status, error=error,
               dir=run_dir)
    if res is not None and res["returns"].size:
        r = res["returns"]
        row.update(episodes=int(r.size), steps=int(res["steps"][-1]),
                   final_return=float(r[-1]), best_return=float(np.nanmax(r)),
                   wall_time=float(res["wall_total"]) if wall is None else wall)
        if threshold is not None:
            hit = np.flatnonzero(r >= threshold)
            if hit.size:
                row.update(episodes_to_threshold=int(hit[0] + 1),
                           steps_to_threshold=int(res["steps"][hit[0]]))
    elif wall is not None:
        row["wall_time"] = wall
    for key, value in setting.items():
        row[key] = value
    return row


def _trial(env, seed, setting, run_dir, run_kwargs, cpus, threshold, request=None):
    """Run (or resume) one trial; never raises: failures become a 'failed' row."""
    from threadpoolctl import threadpool_limits

    from fastmbrl import config as _cfg
    from fastmbrl._checkpoint import has_checkpoint

    t0 = time.perf_counter()
    os.makedirs(run_dir, exist_ok=True)
    resume = os.path.isfile(os.path.join(run_dir, "config.json"))
    status = "resumed" if resume and has_checkpoint(run_dir) else "finished"
    kwargs = dict(run_kwargs)
    config = kwargs.pop("config", None)
    if isinstance(config, _cfg.RunConfig):
        config = _cfg.to_dict(config)
    overrides = _cfg.merge(*[_nested(k, v) for k, v in setting.items()])
    if cpus is not None:
        # A config section with an n_threads setting gets the trial's CPUs (unless the grid
        # sets it).
        for name, section in _cfg.RunConfig().__dict__.items():
            if hasattr(section, "n_threads") and "n_threads" not in overrides.get(name, {}):
                overrides = _cfg.merge(overrides, {name: {"n_threads": cpus}})
    config = _cfg.merge(config or {}, overrides)
    try:
        if cpus is not None:
            _limit_threads(cpus)
        with threadpool_limits(limits=cpus):
            from fastmbrl.algorithms import run
            run(env, seed=seed, config=config, out_dir=run_dir, resume=resume, **kwargs)
    except Exception as exc:  # a failed trial is reported; the sweep goes on
        error = f"{type(exc).__name__}: {exc}"
        log.warning("trial %s failed: %s\n%s", run_dir, error, traceback.format_exc())
        _write_trial(run_dir, "failed", error, request)
        return _summarize(run_dir, setting, seed, "failed", threshold,
                          wall=time.perf_counter() - t0, error=error)
    _write_trial(run_dir, "finished", request=request)
    return _summarize(run_dir, setting, seed, status, threshold)


def _request(env, seed, setting, run_kwargs):
    """What a trial was asked for, as JSON values: the environment (an id), the seed, the
    configuration with the setting applied, and the other JSON-valued arguments (``episodes``,
    ``steps``, ``algorithm``, ``env_kwargs``)."""
    from fastmbrl import config as _cfg

    config = run_kwargs.get("config")
    if isinstance(config, _cfg.RunConfig):
        config = _cfg.to_dict(config)
    config = _cfg.merge(config or {}, *[_nested(k, v) for k, v in setting.items()])
    request = {"env": env if isinstance(env, str) else None, "seed": seed, "config": config}
    for key in ("episodes", "steps", "algorithm", "env_kwargs"):
        if run_kwargs.get(key) is not None:
            request[key] = run_kwargs[key]
    try:
        return json.loads(json.dumps(request))
    except (TypeError, ValueError):
        return None       # not JSON (e.g. objects in config): the trial is not compared


def _lookup(tree, dotted):
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def _set_aside(run_dir):
    """Rename a trial folder to the first free ``<run_dir>.replaced-<n>``; return the new name."""
    n = 1
    while os.path.lexists(f"{run_dir}.replaced-{n}"):
        n += 1
    os.rename(run_dir, f"{run_dir}.replaced-{n}")
    return f"{run_dir}.replaced-{n}"


def _write_trial(run_dir, status, error="", request=None):
    atomic_write_text(os.path.join(run_dir, TRIAL_FILE),
                      json.dumps({"status": status, "error": error, "request": request}))


def _read_trial(run_dir):
    try:
        with open(os.path.join(run_dir, TRIAL_FILE), encoding="utf-8") as fh:
            trial = json.load(fh)
    except (OSError, ValueError):
        return None
    return trial if isinstance(trial, dict) else None


def _finished(run_dir):
    trial = _read_trial(run_dir)
    return trial is not None and trial.get("status") == "finished"


_BUDGET_KEYS = ("episodes", "steps")


def _changed(before, now):
    """The keys (dotted) whose values differ between two requests, budgets excluded."""
    def flat(tree, prefix=""):
        out = {}
        for key, value in (tree or {}).items():
            if isinstance(value, dict) and key != "env_kwargs":
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out
    a, b = flat(before), flat(now)
    return [k for k in sorted(set(a) | set(b)) if k not in _BUDGET_KEYS and a.get(k) != b.get(k)]


# ---------------------------------------------------------------------------------------------
# engines
# ---------------------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        return None
    return ray


def _run_ray(ray, todo, workers, address, callback):
    started, watchdog = False, None
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            watchdog = _init_local_ray(ray, workers)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_trial)
        pending = {remote.remote(*args): args for args in todo}
        rows = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            env, seed, setting, run_dir, _, _, threshold, request = pending.pop(ref)
            try:
                row = ray.get(ref)
            except Exception as exc:  # the worker died (killed, out of memory, ...)
                first = (str(exc).strip().splitlines() or [""])[0]
                error = f"{type(exc).__name__}: {first}"
                _write_trial(run_dir, "failed", error, request)
                row = _summarize(run_dir, setting, seed, "failed", threshold, error=error)
            rows.append(row)
            if callback is not None:
                callback(row)
        return rows
    finally:
        if started:
            try:
                ray.shutdown()
            finally:
                if watchdog is not None:
                    _stop_watchdog(watchdog)


# ---------------------------------------------------------------------------------------------
# a local Ray: loopback only, nothing outlives this process
# ---------------------------------------------------------------------------------------------
def _init_local_ray(ray, workers):
    """Start a private Ray instance for this sweep; return its watchdog (None where there is none).

    Ray (2.60 checked) derives every bind address from the node address: a loopback node
    address makes the GCS, raylet, object manager, core workers, dashboard/metrics agents and
    runtime-env agent listen on loopback, any other address makes them listen on it or on all
    interfaces. But ``ray.init`` replaces a loopback ``_node_ip_address`` by the machine's own
    address unless ``ray_constants.ENABLE_RAY_CLUSTER`` is false (Ray's setting for Windows and
    macOS, where it is the default), so that flag is lowered while this node starts. Older Ray
    versions bind some servers to all interfaces whatever the node address: then the sweep warns
    (:func:`_warn_unless_loopback`) and goes on.
    """
    # Workers import fastmbrl from where this process found it (a source checkout works).
    import fastmbrl
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmbrl.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    mark = os.urandom(8).hex()
    watchdog = _start_watchdog(ray, root, mark)
    before = _listening(_process(os.getpid()))
    # Ray starts its workers at niceness 15: next to any other load they would get a fraction of
    # their core, so this instance's raylet is told 0 (it reads RAY_* at start). _MARK: every
    # process Ray starts inherits it (the raylet passes its environment on to the workers).
    env = {"RAY_worker_niceness": "0", _MARK: mark}
    saved_env = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    saved_flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    try:
        if saved_flag is not None:
            constants.ENABLE_RAY_CLUSTER = False
        # address="local": a new instance, never a cluster some `ray start` left running.
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 dashboard_host="127.0.0.1", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, _node_ip_address="127.0.0.1")
    except BaseException:
        if watchdog is not None:
            _stop_watchdog(watchdog)
        raise
    finally:
        if saved_flag is not None:
            constants.ENABLE_RAY_CLUSTER = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _warn_unless_loopback(ray, before)
    return watchdog


def _is_loopback(host):
    import ipaddress

    try:
        addr = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(addr, "ipv4_mapped", None)     # ::ffff:127.0.0.1, an IPv6 socket's view
    return (mapped or addr).is_loopback


def _process(pid):
    try:
        # Ray brings its own copy (ray/thirdparty_files), found once ray is imported.
        import psutil
        return psutil.Process(pid)
    except Exception:       # noqa: BLE001 - no psutil, or the process is gone: nothing to check
        return None


def _listening(proc):
    """``{(address, port)}`` on which ``proc`` (a psutil.Process) accepts connections or data."""
    if proc is None:
        return set()
    import socket

    import psutil
    try:
        conns = getattr(proc, "net_connections", None) or proc.connections
        found = set()
        for c in conns(kind="inet"):
            if not c.laddr:
                continue
            if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr):
                found.add((c.laddr.ip, c.laddr.port))
        return found
    except (psutil.Error, OSError):
        return set()


def _warn_unless_loopback(ray, before):
    """Warn, naming them, about the node address or sockets of this Ray that are not loopback."""
    problems = []
    try:
        node_ip = ray.util.get_node_ip_address()
    except Exception:   # noqa: BLE001 - only the warning depends on it
        node_ip = None
    if node_ip is not None and not _is_loopback(node_ip):
        problems.append(f"node address {node_ip}")
    me = _process(os.getpid())
    if me is not None:
        try:
            procs = [me] + me.children(recursive=True)
        except Exception:   # noqa: BLE001
            procs = [me]
        for proc in procs:
            for host, port in sorted(_listening(proc) - (before if proc is me else set())):
                if not _is_loopback(host):
                    try:
                        name = proc.name()
                    except Exception:   # noqa: BLE001
                        name = "?"
                    where = f"[{host}]" if ":" in host else host
                    problems.append(f"{name} (pid {proc.pid}) listens on {where}:{port}")
    if problems:
        log.warning("sweep: this local Ray (%s) is reachable from the network, not only from "
                    "this machine: %s. Ray's ports must only be reachable from trusted machines: "
                    "run on a trusted network or behind a firewall.",
                    getattr(ray, "__version__", "?"), "; ".join(problems))


def _start_watchdog(ray, root, mark):
    """A process that ends the Ray processes this one starts once this one is gone (or done).

    Ray ties the GCS, raylet and its other direct children to this process (Linux parent-death
    signal), but the raylet's children outlive a SIGKILL of this process (the dashboard and
    runtime-env agents hang on exit; the latter keeps listening). The watchdog follows the Ray
    processes (this process's children from the ray package, and all their descendants, plus any
    process whose environment holds ``_MARK=mark``: one the raylet started just before it died)
    and ends them, SIGTERM then SIGKILL, when this process dies or closes the watchdog's stdin.
    It has its own session (a Ctrl-C or a kill of this process group does not reach it). POSIX
    only.
    """
    if os.name != "posix" or not sys.executable:
        return None
    ray_dir = os.path.dirname(os.path.abspath(ray.__file__))
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; from fastmbrl._sweep import "
            "_watchdog_main; _watchdog_main(int(sys.argv[3]), sys.argv[4], sys.argv[5])")
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, root, os.path.join(ray_dir, "thirdparty_files"),
             str(os.getpid()), ray_dir, mark],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
    except OSError as exc:
        log.warning("sweep: could not start the watchdog that ends Ray's processes if this "
                    "process is killed (%s); after a kill, look for ray:: processes", exc)
        return None


def _stop_watchdog(watchdog, timeout=10.0):
    """Close the watchdog's stdin: it ends whatever Ray left running and exits; wait for it."""
    try:
        watchdog.stdin.close()
    except OSError:
        pass
    try:
        watchdog.wait(timeout)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


_WATCH_INTERVAL = 0.5       # seconds between two looks at the process table
_MARK = "FASTMBRL_SWEEP_RAY"  # environment variable naming the Ray instance of one sweep
_GRACE = 1.0                # seconds from SIGTERM to SIGKILL


def _processes():
    """``{pid: (ppid, start, zombie)}`` of every process (``start`` tells reused pids apart)."""
    table = {}
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2:].split()
            table[int(name)] = (int(fields[1]), int(fields[19]), fields[0] == b"Z")
        return table
    import psutil
    for proc in psutil.process_iter(["ppid", "create_time", "status"]):
        info = proc.info
        table[proc.pid] = (info["ppid"], info["create_time"],
                           info["status"] == psutil.STATUS_ZOMBIE)
    return table


def _command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        pass
    try:
        import psutil
        return " ".join(psutil.Process(pid).cmdline())
    except Exception:   # noqa: BLE001
        return ""


def _marked(pid, mark):
    """Whether ``pid`` started with ``_MARK=mark`` in its environment."""
    entry = f"{_MARK}={mark}".encode()
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return entry in fh.read().split(b"\0")
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    except OSError:
        return False
    try:
        import psutil
        return psutil.Process(pid).environ().get(_MARK) == mark
    except Exception:   # noqa: BLE001
        return False


def _watchdog_main(driver, ray_dir, mark):
    """The watchdog process (see :func:`_start_watchdog`)."""
    import select

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    me = os.getpid()
    born = _processes()[me][1]
    tracked = {}                                  # pid -> start

    def follow():
        table = _processes()
        for pid, (ppid, start, zombie) in table.items():
            if pid in tracked or pid in (me, driver) or zombie:
                continue
            if ppid in tracked or (ppid == driver and start >= born and ray_dir in _command(pid)):
                tracked[pid] = start
        # A tracked process that ended: forget it (its pid may be reused).
        for pid in [p for p, s in tracked.items() if table.get(p, (0, None))[1] != s]:
            del tracked[pid]
        return table

    while True:
        follow()
        if os.getppid() != driver:
            break
        ready, _, _ = select.select([0], [], [], _WATCH_INTERVAL)
        if ready:
            break                                 # the driver closed our stdin, or died
    table = follow()
    for pid, (_, start, zombie) in table.items():
        if pid not in tracked and pid not in (me, driver) and start >= born and not zombie \
                and _marked(pid, mark):
            tracked[pid] = start
    alive = [p for p, s in tracked.items() if table.get(p, (0, None, True))[1:] == (s, False)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + _GRACE
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            table = _processes()
            alive = [p for p in alive
                     if table.get(p, (0, None, True))[1:] == (tracked[p], False)]
        if not alive:
            break


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
def sweep(env, seeds=(0,), grid=None, out="runs/sweep", workers=None, address=None,
          threshold=None, callback=None, rerun_changed=False, **run_kwargs):
    """Run every (seed, setting) as its own resumable run folder; return the summary.

    Parameters
    ----------
    env : str
        Environment id (what ``fm.run`` takes; a gymnasium.Env object works with ``workers=1``).
    seeds : iterable of int or str
        Seeds, or a range text such as ``"0-4"``.
    grid : dict of str -> list, optional
        Settings to cross, ``{"planner.horizon": [10, 20], "model.hidden": [[64, 64], [200]]}``
        (config keys as for ``--set``). Every combination is run with every seed.
    out : str or os.PathLike
        The sweep folder: trials go to ``out/<setting>/seed_<s>``, the summary to
        ``out/summary.csv``.
    workers : int, optional
        CPUs for an in-process Ray (default: ``os.cpu_count()``); each trial takes one and limits
        its BLAS and Numba threads to it. 1 runs the trials one after another in this process.
    address : str, optional
        Join the Ray cluster at this address (``"auto"``, ``"HEAD:6379"``) instead of starting
        a local Ray (which listens on loopback only and ends with this process). A cluster's
        ports must only be reachable from trusted machines (see the module docstring).
    threshold : float, optional
        Also report the first episode (and environment steps) whose return reaches it.
    callback : callable, optional
        Called with each trial's summary row as it ends (in order of completion).
    rerun_changed : bool
        A trial that finished with other settings than this request (its ``trial.json`` records
        the request) is refused unless this is set; then its folder is moved aside
        (``seed_<s>.replaced-<n>``) and the trial runs again. A larger budget (``episodes``,
        ``steps``) is no change: the finished trial is resumed and extended.
    **run_kwargs
        Passed to ``fastmbrl.run`` for every trial (``episodes=``, ``config=`` (dict or
        RunConfig; the grid is applied on top), ``agent=``, ``reward_fn=``, ...); ``seed``,
        ``out_dir`` and ``resume`` are set by the sweep.

    Returns
    -------
    list of dict
        One record per trial with the keys of ``SUMMARY_FIELDS`` (plus one per grid key), in
        (setting, seed) order. ``status`` is ``finished``, ``resumed`` (finished now, continued from
        a checkpoint), ``skipped`` (finished by an earlier call) or ``failed`` (``error`` says why).

    Raises
    ------
    RayMissingError
        When ``workers`` > 1 or ``address`` is given and Ray is not installed.
    ValueError
        More trials than ``MAX_TRIALS``, counted before the list is built; finished trials run
        with other settings, naming them and the changed keys (see ``rerun_changed``).
    """
    for key in ("seed", "out_dir", "resume"):
        if key in run_kwargs:
            raise TypeError(f"{key}: set by the sweep for every trial; do not pass it")
    if isinstance(seeds, str):
        seeds = parse_seeds(seeds)
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds: expected at least one non-negative seed, got {seeds!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers: expected a positive integer or None, got {workers!r}")
    settings = _settings(grid, len(seeds))
    slugs = [setting_slug(s) for s in settings]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"grid: two settings share a folder name ({slugs})")
    out = os.fspath(out)

    ray = None
    if workers != 1 or address is not None:
        ray = _import_ray()
        if ray is None:
            if workers is not None or address is not None:
                raise RayMissingError(f"sweep: more than one worker needs Ray: {RAY_HINT} "
                                      "(or run the trials one after another: workers=1, "
                                      "--workers 1)")
            log.warning("Ray is not installed: running the trials one after another (%s for "
                        "parallel trials)", RAY_HINT)
    n_workers = workers or os.cpu_count() or 1
    os.makedirs(out, exist_ok=True)

    rows, todo, changed = {}, [], []
    cpus = 1 if ray is not None else None
    for setting, slug in zip(settings, slugs):
        for seed in seeds:
            run_dir = os.path.join(out, slug, f"seed_{seed}")
            request = _request(env, seed, setting, run_kwargs)
            trial = _read_trial(run_dir) if _finished(run_dir) else None
            before = None if trial is None else trial.get("request")
            diff = [] if before is None or request is None else _changed(before, request)
            if diff:
                changed.append((run_dir, diff, before, request, setting, seed))
                continue
            if trial is not None and (before is None or request is None or all(
                    before.get(k) == request.get(k) for k in _BUDGET_KEYS)):
                rows[(slug, seed)] = _summarize(run_dir, setting, seed, "skipped", threshold)
                if callback is not None:
                    callback(rows[(slug, seed)])
            else:       # new, unfinished, or finished with another budget (resumed: extended)
                todo.append((env, seed, setting, run_dir, run_kwargs, cpus, threshold, request))
    if changed and not rerun_changed:
        shown = "; ".join(f"{d}: " + ", ".join(
            f"{k} {_lookup(b, k)!r} then, {_lookup(r, k)!r} now" for k in diff)
            for d, diff, b, r, _, _ in changed[:3])
        raise ValueError(f"sweep: {len(changed)} finished trial(s) in {out!r} were run with other "
                         f"settings ({shown}{'; ...' if len(changed) > 3 else ''}); their results "
                         "are not the answer to this request: rerun them with "
                         "rerun_changed=True (--rerun-changed), or use another out folder")
    for run_dir, _, _, request, setting, seed in changed:
        aside = _set_aside(run_dir)
        log.warning("sweep: %s was run with other settings; moved to %s and run again", run_dir,
                    aside)
        todo.append((env, seed, setting, run_dir, run_kwargs, cpus, threshold, request))
    log.info("sweep: %d trials, %d already finished, %d to run", len(slugs) * len(seeds),
             len(rows), len(todo))
    if todo:
        if ray is not None:
            done = _run_ray(ray, todo, n_workers, address, callback)
        else:
            done = []
            for args in todo:
                done.append(_trial(*args))
                if callback is not None:
                    callback(done[-1])
        for row in done:
            rows[(setting_slug({k: row[k] for k in (grid or {})}), row["seed"])] = row
    ordered = [rows[(slug, seed)] for slug in slugs for seed in seeds]
    write_summary(os.path.join(out, "summary.csv"), ordered, list(grid or ()))
    return ordered


def write_summary(path, rows, extra_keys=()):
    """Write the summary rows as CSV (``SUMMARY_FIELDS`` then the grid keys)."""
    fields = list(SUMMARY_FIELDS[:2]) + list(extra_keys) + list(SUMMARY_FIELDS[2:])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    atomic_write_text(os.fspath(path), buf.getvalue())


def markdown_table(rows, threshold=False):
    """The summary as a markdown table (what ``fastmbrl sweep`` prints)."""
    cols = ["setting", "seed", "status", "episodes", "final_return", "best_return"]
    if threshold:
        cols += ["episodes_to_threshold", "steps_to_threshold"]
    cols += ["wall_time"]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.1f}" if np.isfinite(v) else "nan"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |")
    failed = [r for r in rows if r.get("status") == "failed"]
    for r in failed:
        lines.append(f"\nfailed: {r['setting']} seed {r['seed']}: {r['error']}")
    return "\n".join(lines)
