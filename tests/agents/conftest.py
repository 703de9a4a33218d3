"""Make the hand-built model helpers of tests/planning importable (--import-mode=importlib)."""
import pathlib
import sys

_HELPERS = str(pathlib.Path(__file__).resolve().parent.parent / "planning")
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)
