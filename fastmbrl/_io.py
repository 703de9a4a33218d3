"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A reader (or a run resumed after a crash) sees either the old file or the complete new one, never a
partial write.
"""
import os

import numpy as np


def _atomic_write(path, mode, write):
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    _atomic_write(path, "w", lambda fh: fh.write(text))


def atomic_savez(path, **arrays):
    """``np.savez`` to exactly ``path`` (no suffix added), atomically."""
    _atomic_write(path, "wb", lambda fh: np.savez(fh, **arrays))
