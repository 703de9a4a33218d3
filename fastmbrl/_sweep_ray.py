"""The Ray engine of a sweep: trials as Ray tasks, and a local Ray that listens on loopback only
and that nothing of outlives the sweep (a watchdog process ends it). See ``fastmbrl._sweep``'s
notes.
"""
import logging
import os
import signal
import subprocess
import sys
import time

from fastmbrl._sweep_trials import _summarize, _trial, _write_trial

log = logging.getLogger("fastmbrl.sweep")


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
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; from fastmbrl._sweep_ray import "
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
