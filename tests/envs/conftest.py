"""Fixtures for the environment tests."""
import pytest


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    # MuJoCo writes MUJOCO_LOG.TXT into the working directory on model-compiler warnings.
    monkeypatch.chdir(tmp_path)
