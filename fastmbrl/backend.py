"""Compiled vs reference switch.

Set ``FASTMBRL_PUREPYTHON=1`` before importing fastmbrl to run every kernel on its plain NumPy
reference twin (slow, but the ground truth the compiled kernels are tested against).
"""
import os

PURE_PYTHON = os.environ.get("FASTMBRL_PUREPYTHON", "0") not in ("", "0", "false", "False")


def use_compiled() -> bool:
    """True unless FASTMBRL_PUREPYTHON asked for the NumPy reference kernels."""
    return not PURE_PYTHON
