"""A local Ray sweep listens on loopback only, and nothing of it outlives its driver (SIGKILL too).

The sockets are read from /proc (the inodes of each process's fds matched in /proc/net/tcp, tcp6,
udp, udp6), independently of the sweep's own check, so these tests run on Linux only.
"""
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

import fastmbrl as fm

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")]

TINY = {"model": {"hidden": [16, 16], "ensemble_size": 2, "num_elites": 2, "max_epochs": 3},
        "planner": {"population": 20, "particles": 2, "horizon": 3, "iterations": 2},
        "algorithm": {"initial_steps": 20, "max_episode_steps": 10}}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stat(pid):
    """(ppid, start time, state) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19]), fields[0].decode()


def _tree(root):
    """``{pid: start}`` of ``root`` and all its descendants."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(name)) is not None:
            table[int(name)] = st
    found = {root: table[root][1]} if root in table else {}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, start, _) in table.items():
            if ppid in found and pid not in found:
                found[pid] = start
                grew = True
    return found


def _alive(pid, start):
    st = _stat(pid)
    return st is not None and st[1] == start and st[2] != "Z"


def _name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:90]
    except OSError:
        return "?"


def _decode(hexaddr):
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, raw), int(port, 16)


def _listening(pids):
    """``[(proto, address, port, pid, inode)]``: TCP sockets in LISTEN, unconnected UDP sockets."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[int(target[8:-1])] = pid
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            inode, state = int(f[9]), f[3]
            # 0A: TCP_LISTEN; 07: TCP_CLOSE, which for UDP means bound and not connected.
            if inode in owner and state == ("0A" if proto.startswith("tcp") else "07"):
                host, port = _decode(f[1])
                found.append((proto, host, port, owner[inode], inode))
    return found


def _loopback(host):
    addr = ipaddress.ip_address(host)
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback


def test_local_sweep_listens_on_loopback_only_and_leaves_nothing(tmp_path):
    pytest.importorskip("ray")
    me = os.getpid()
    before = {s[:3] for s in _listening([me])}
    seen, procs, stop = {}, {}, threading.Event()

    def look():
        tree = _tree(me)
        procs.update(tree)
        for proto, host, port, pid, _ in _listening(tree):
            if (proto, host, port) not in before:
                seen.setdefault((proto, host, port), _name(pid))

    def poll():
        while not stop.wait(0.2):
            look()

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        rows = fm.sweep("Pendulum-v1", seeds=[0, 1], out=tmp_path / "sw", workers=2, episodes=1,
                        config=TINY, callback=lambda row: look())
    finally:
        stop.set()
        watcher.join()
    assert [r["status"] for r in rows] == ["finished", "finished"]
    names = " ".join(seen.values())
    # The listing saw Ray's servers (else the check below would pass for nothing).
    assert "gcs_server" in names and "raylet" in names and "ray::" in names, seen
    exposed = {k: v for k, v in seen.items() if not _loopback(k[1])}
    assert not exposed, f"listening beyond loopback: {exposed}"
    # Nothing of the sweep's Ray is left once it returned (agents included, which are no
    # longer in this process's tree once the raylet is gone).
    left = {p: _name(p) for p, s in procs.items() if p != me and _alive(p, s)}
    _kill(left)
    assert not left, f"still running after the sweep: {left}"


DRIVER = """
import json, sys
import fastmbrl as fm
fm.sweep("Pendulum-v1", seeds=[0, 1], out=sys.argv[1], workers=2, episodes=10**6,
         config=json.loads(sys.argv[2]))
"""


def test_sigkill_of_the_driver_leaves_no_ray_process_or_socket(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "sw"
    with open(tmp_path / "driver.err", "wb") as err:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), json.dumps(TINY)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        started = [out / "default" / f"seed_{s}" / "config.json" for s in (0, 1)]
        deadline = time.monotonic() + 90
        while not all(p.exists() for p in started):
            assert driver.poll() is None, (tmp_path / "driver.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the trials did not start"
            time.sleep(0.2)
        time.sleep(0.5)
        tree = _tree(driver.pid)
        sockets = _listening(tree)
        names = " ".join(_name(p) for p in tree)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 15
    while True:
        left = {p: (_name(p), _stat(p)) for p, s in tree.items() if _alive(p, s)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    _kill(left)                 # whatever the outcome, leave nothing running on this machine
    assert "gcs_server" in names and "raylet" in names and "RuntimeEnvAgent" in names, names
    assert not left, f"outlived the driver's SIGKILL: {left}"
    inodes = {s[4] for s in sockets}
    assert not inodes & _socket_inodes(), f"sockets of the killed sweep still open: {sockets}"
    assert sockets and all(_loopback(s[1]) for s in sockets), sockets


def _socket_inodes():
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{proto}") as fh:
            found.update(int(line.split()[9]) for line in fh.read().splitlines()[1:])
    return found


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_the_sweep_names_what_is_not_loopback(monkeypatch, caplog):
    # What a Ray version that binds elsewhere would get: a warning naming each address (the
    # sweep goes on). No Ray is started: the node address and the sockets are stand-ins.
    ray = pytest.importorskip("ray")
    from fastmbrl import _sweep_ray

    with socket.socket() as sock:       # the listing (psutil, Ray's copy) sees a real socket
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert ("127.0.0.1", port) in _sweep_ray._listening(_sweep_ray._process(os.getpid()))
    fake = types.SimpleNamespace(__version__=ray.__version__, util=types.SimpleNamespace(
        get_node_ip_address=lambda: "192.0.2.7"))
    monkeypatch.setattr(_sweep_ray, "_listening", lambda proc: {("::", 4321), ("127.0.0.1", 99)})
    with caplog.at_level("WARNING", logger="fastmbrl.sweep"):
        _sweep_ray._warn_unless_loopback(fake, set())
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "node address 192.0.2.7" in text and "listens on [::]:4321" in text
    assert ":99" not in text and "trusted" in text
    caplog.clear()
    fake.util.get_node_ip_address = lambda: "127.0.0.1"
    monkeypatch.setattr(_sweep_ray, "_listening",
                        lambda proc: {("::ffff:127.0.0.1", 5), ("::1", 6)})
    with caplog.at_level("WARNING", logger="fastmbrl.sweep"):
        _sweep_ray._warn_unless_loopback(fake, set())
    assert not caplog.records
