"""Compiled extension modules (Cython wrappers of the C kernels in ``csrc/``), built by setup.py."""
