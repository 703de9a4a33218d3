"""Run checkpoints: everything needed to resume a run after its last completed episode.

Layout inside a run's output folder::

    checkpoint.json            pointer: {"format_version", "episode", "dir"}  (replaced atomically)
    checkpoints/ep0003/        one complete checkpoint
        buffer.npz             the replay buffer (ReplayBuffer.save)
        model.npz              weights, normalizers, optimizer state, model RNG (GaussianEnsemble.save)
        state.json             episode counter, per-episode records, loop RNG states, agent state

A checkpoint directory is written in full first; only then is ``checkpoint.json`` replaced (write to
a temporary file, fsync, ``os.replace``), and only then are older checkpoint directories removed.
A process killed at any moment therefore leaves a pointer to a complete checkpoint.
"""
import json
import os
import shutil

from fastmbrl._io import atomic_write_text

CHECKPOINT_FORMAT_VERSION = 1
POINTER = "checkpoint.json"


def save_checkpoint(out_dir, episode, buffer, model, state):
    """Write a checkpoint of a run after ``episode`` and point ``checkpoint.json`` at it.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The run's output folder.
    episode : int
        Number of completed model-based episodes (0 after the random data).
    buffer : fastmbrl.buffer.ReplayBuffer
    model : fastmbrl.models.GaussianEnsemble or None
    state : dict
        JSON-serialisable loop state (records, RNG states, ...).

    Returns
    -------
    str : the checkpoint directory written
    """
    out_dir = os.fspath(out_dir)
    rel = os.path.join("checkpoints", f"ep{episode:04d}")
    ckpt = os.path.join(out_dir, rel)
    if os.path.exists(ckpt):
        shutil.rmtree(ckpt)
    os.makedirs(ckpt)
    buffer.save(os.path.join(ckpt, "buffer.npz"))
    if model is not None:
        model.save(os.path.join(ckpt, "model.npz"))
    atomic_write_text(os.path.join(ckpt, "state.json"),
                      json.dumps({"episode": episode, **state}, indent=1))
    atomic_write_text(os.path.join(out_dir, POINTER), json.dumps(
        {"format_version": CHECKPOINT_FORMAT_VERSION, "episode": episode, "dir": rel}))
    # Only now is the older checkpoint no longer needed.
    parent = os.path.join(out_dir, "checkpoints")
    for name in os.listdir(parent):
        if name != os.path.basename(rel):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    return ckpt


def has_checkpoint(out_dir):
    """True if ``out_dir`` holds a checkpoint pointer."""
    return os.path.isfile(os.path.join(os.fspath(out_dir), POINTER))


def load_checkpoint(out_dir):
    """Read the checkpoint ``checkpoint.json`` points at.

    Returns
    -------
    episode : int
    buffer : ReplayBuffer
    model : GaussianEnsemble or None
    state : dict

    Raises
    ------
    ValueError
        If there is no checkpoint, or it is of another format version or incomplete.
    """
    from fastmbrl.buffer import ReplayBuffer
    from fastmbrl.models import GaussianEnsemble

    out_dir = os.fspath(out_dir)
    pointer = os.path.join(out_dir, POINTER)
    try:
        with open(pointer, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"resume: no checkpoint in {out_dir!r} (missing {POINTER})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"resume: unreadable {pointer!r} ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"resume: {pointer!r} has checkpoint format "
                         f"{meta.get('format_version') if isinstance(meta, dict) else meta!r}, "
                         f"expected {CHECKPOINT_FORMAT_VERSION}")
    ckpt = os.path.join(out_dir, meta["dir"])
    try:
        with open(os.path.join(ckpt, "state.json"), encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"resume: checkpoint {ckpt!r} is incomplete ({exc})") from None
    buffer = ReplayBuffer.load(os.path.join(ckpt, "buffer.npz"))
    model_path = os.path.join(ckpt, "model.npz")
    model = GaussianEnsemble.load(model_path) if os.path.exists(model_path) else None
    return int(meta["episode"]), buffer, model, state
