"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A reader (or a run resumed after a crash) sees either the old file or the complete new one, never a
partial write. The temporary file is ``<path>.tmp<pid>``; a process killed between creating it and
the replace leaves it behind, and :func:`remove_stale_temporaries` (run by every atomic write for its
own target, and by the training loops on their output folder) deletes the ones whose writer is gone.
"""
import contextlib
import csv
import io
import json
import os
import re
import socket

import numpy as np

_TMP = re.compile(r"^(?P<target>.+)\.tmp(?P<pid>\d+)$")


def temporary_path(path):
    """The temporary file name this process uses while writing ``path`` atomically."""
    return f"{os.fspath(path)}.tmp{os.getpid()}"


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True          # exists (owned by someone else) or cannot tell: keep the file
    return True


def remove_stale_temporaries(folder, target=None):
    """Delete ``*.tmp<pid>`` files in ``folder`` left by atomic writes of dead processes.

    Parameters
    ----------
    folder : str or os.PathLike
    target : str, optional
        Only temporaries of this file name (default: all).

    Returns
    -------
    list of str : the paths removed
    """
    folder = os.fspath(folder)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        if m is None or (target is not None and m.group("target") != target):
            continue
        if _process_alive(int(m.group("pid"))):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    return removed


def _atomic_write(path, mode, write):
    path = os.fspath(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    remove_stale_temporaries(os.path.dirname(path) or ".", os.path.basename(path))


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    _atomic_write(path, "w", lambda fh: fh.write(text))


def atomic_write_csv(path, fieldnames, rows, **options):
    """Write ``rows`` (dicts) as CSV under a header of ``fieldnames`` to ``path`` atomically;
    ``options`` go to ``csv.DictWriter`` (lines end with a bare newline)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n", **options)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def atomic_savez(path, **arrays):
    """``np.savez`` to exactly ``path`` (no suffix added), atomically."""
    _atomic_write(path, "wb", lambda fh: np.savez(fh, **arrays))


def read_json_object(path, what, *, missing=None):
    """Read a file that holds one JSON object, with errors that name the file.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file is read for; the first word of every error message (e.g. ``"resume"``).
    missing : str, optional
        The message for a file that does not exist (default: the one for an unreadable file).

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        ``"<what>: cannot read <path> (<reason>)"`` for a missing, unreadable or non-JSON file;
        ``"<what>: <path> is damaged (expected a JSON object, got <type>)"`` for another JSON value.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError as exc:
        raise ValueError(missing or f"{what}: cannot read {path!r} ({exc})") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what}: cannot read {path!r} ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: {path!r} is damaged (expected a JSON object, got "
                         f"{type(value).__name__})")
    return value


def confined(folder, path, what):
    """``path``, checked to lead to a place inside ``folder`` once symbolic links are resolved.

    A run folder is confined to itself: a file in it that is a link to somewhere else is not
    read through.

    Raises
    ------
    ValueError
        ``"<what>: <path> leads outside <folder> ..."`` naming the file.
    """
    root = os.path.realpath(os.fspath(folder))
    real = os.path.realpath(os.fspath(path))
    if real != root and not real.startswith(root + os.sep):
        raise ValueError(f"{what}: {os.fspath(path)!r} leads outside {os.fspath(folder)!r} (to "
                         f"{real!r}, through a symbolic link); fastmbrl reads and writes only "
                         "inside a run folder")
    return path


LOCK_FILE = "run.lock"


class RunFolderBusyError(OSError):
    """Another process holds a run folder's lock (one writer per run folder)."""


@contextlib.contextmanager
def run_folder_lock(folder):
    """Hold ``folder``'s writer lock for the duration of the ``with`` block.

    The lock is an OS lock (``flock``) on ``folder/run.lock``: the OS releases it when the process
    ends, however it ends, so a killed run never blocks its own resume. The file keeps the
    holder's process id and host for the error message of a second writer.

    Raises
    ------
    RunFolderBusyError
        At once, naming the folder and the process that holds it, when another process does.
    """
    import fcntl

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise RunFolderBusyError(
                f"out_dir: {folder!r} is being written by another process ({holder}); one "
                "fastmbrl run writes to a run folder at a time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)            # closing the descriptor releases the lock
