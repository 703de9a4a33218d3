"""Make the hand-built model helpers importable (the suite runs with --import-mode=importlib)."""
import pathlib
import sys

_HERE = str(pathlib.Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
