"""Run checkpoints: everything needed to resume a run after its last completed episode.

Layout inside a run's output folder::

    checkpoint.json            pointer: {"format_version", "episode", "dir"}  (replaced atomically)
    checkpoints/ep0003/        one complete checkpoint
        buffer.npz             the replay buffer (ReplayBuffer.save)
        model.npz              weights, normalizers, optimizer state, model RNG (GaussianEnsemble.save)
        agent.npz, agent.json  the agent's ``state_dict()`` (arrays / everything else), if it has one
        algo.npz, algo.json    the algorithm's own state with arrays (e.g. MBPO's model-buffer
                               sources), if it has one
        state.json             episode counter, per-episode records, loop RNG states

A checkpoint directory is written in full first; only then is ``checkpoint.json`` replaced (write to
a temporary file, fsync, ``os.replace``), and only then are older checkpoint directories removed.
A process killed at any moment therefore leaves a pointer to a complete checkpoint.

Agent state (the protocol of ``fastmbrl.agents.base``) and the algorithm's state: nested dicts are
flattened to "/"-joined keys; NumPy arrays go to ``<stem>.npz`` (dtype and shape kept), the other
values to ``<stem>.json``.
"""
import json
import os
import re
import shutil

import numpy as np

from fastmbrl._io import atomic_savez, atomic_write_text, confined, read_json_object

CHECKPOINT_FORMAT_VERSION = 1
POINTER = "checkpoint.json"
CHECKPOINTS = "checkpoints"
_POINTER_KEYS = ("format_version", "episode", "dir")
_CKPT_NAME = re.compile(r"ep\d{4,}")


def checkpoint_name(episode):
    """The folder name of the checkpoint after ``episode``: ``epNNNN``."""
    return f"ep{episode:04d}"


def checkpoints_folder(out_dir):
    """``out_dir/checkpoints``, refusing a symlink there (a run folder is confined to itself).

    Raises
    ------
    ValueError
        Naming the path, when it is a symbolic link.
    """
    parent = os.path.join(os.fspath(out_dir), CHECKPOINTS)
    if os.path.islink(parent):
        raise ValueError(f"resume: {parent!r} is a symbolic link; fastmbrl keeps its checkpoints "
                         "in a real folder inside the run folder and will not follow it")
    return parent


def checkpoint_folders(out_dir):
    """The names of the checkpoint folders fastmbrl made in ``out_dir/checkpoints`` (``epNNNN``,
    real folders, not symlinks), sorted."""
    parent = checkpoints_folder(out_dir)
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return sorted(n for n in names if _CKPT_NAME.fullmatch(n)
                  and not os.path.islink(os.path.join(parent, n))
                  and os.path.isdir(os.path.join(parent, n)))


def _flatten(state, prefix, arrays, plain):
    if not isinstance(state, dict):
        raise TypeError(f"state_dict: expected a dict, got {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"state_dict: keys must be non-empty strings without '/', got {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, name + "/", arrays, plain)
            if not value:
                plain[name] = {}
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"state_dict: {name!r} is an object array")
            arrays[name] = value
        elif isinstance(value, np.generic):
            plain[name] = value.item()
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(f"state_dict: {name!r} is neither an array nor JSON-serialisable "
                                f"({type(value).__name__})") from None
            plain[name] = value


def _unflatten(flat):
    out = {}
    for name, value in flat.items():
        parts = name.split("/")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def save_agent_state(folder, state, stem="agent"):
    """Write a nested state dict (an agent's ``state_dict()``) into ``folder`` as
    ``<stem>.npz`` (its arrays) and ``<stem>.json`` (everything else)."""
    arrays, plain = {}, {}
    _flatten(state, "", arrays, plain)
    atomic_savez(os.path.join(folder, f"{stem}.npz"), **{f"a{i}": a for i, a in
                                                          enumerate(arrays.values())})
    atomic_write_text(os.path.join(folder, f"{stem}.json"), json.dumps(
        {"arrays": list(arrays), "values": plain}, indent=1))


def load_agent_state(folder, stem="agent"):
    """Read what :func:`save_agent_state` wrote; None when the checkpoint has no such state."""
    meta_path = os.path.join(folder, f"{stem}.json")
    if not os.path.exists(meta_path):
        return None
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), list) or not isinstance(
            meta.get("values"), dict):
        raise ValueError(f"{meta_path!r} is not a state file")
    flat = dict(meta["values"])
    with np.load(os.path.join(folder, f"{stem}.npz"), allow_pickle=False) as data:
        for i, name in enumerate(meta["arrays"]):
            flat[name] = data[f"a{i}"]
    return _unflatten(flat)


def save_checkpoint(out_dir, episode, buffer, model, state, agent=None, algo_state=None):
    """Write a checkpoint of a run after ``episode`` and point ``checkpoint.json`` at it.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The run's output folder.
    episode : int
        The loop's progress counter (pets: completed model-based episodes, 0 after the random
        data; a step-based loop counts its own units, e.g. evaluations).
    buffer : fastmbrl.buffer.ReplayBuffer
    model : fastmbrl.models.GaussianEnsemble or None
    state : dict
        JSON-serialisable loop state (records, RNG states, ...).
    agent : object with ``state_dict()``, optional
        Its state is stored with the checkpoint (see ``fastmbrl.agents.base``).
    algo_state : dict, optional
        The algorithm's own state with arrays (nested dict of arrays and JSON values, stored as
        ``algo.npz`` / ``algo.json``).

    Returns
    -------
    str : the checkpoint directory written
    """
    out_dir = os.fspath(out_dir)
    parent = checkpoints_folder(out_dir)
    name = checkpoint_name(episode)
    rel = f"{CHECKPOINTS}/{name}"
    ckpt = os.path.join(parent, name)
    if os.path.islink(ckpt):
        os.unlink(ckpt)                 # the link itself, never what it points at
    elif os.path.exists(ckpt):
        shutil.rmtree(ckpt)
    os.makedirs(ckpt)
    buffer.save(os.path.join(ckpt, "buffer.npz"))
    if model is not None:
        model.save(os.path.join(ckpt, "model.npz"))
    if agent is not None:
        save_agent_state(ckpt, agent.state_dict())
    if algo_state is not None:
        save_agent_state(ckpt, algo_state, stem="algo")
    atomic_write_text(os.path.join(ckpt, "state.json"),
                      json.dumps({"episode": episode, **state}, indent=1))
    atomic_write_text(os.path.join(out_dir, POINTER), json.dumps(
        {"format_version": CHECKPOINT_FORMAT_VERSION, "episode": episode, "dir": rel}))
    # Only now is the older checkpoint no longer needed: remove the folders fastmbrl made
    # (epNNNN, real folders), nothing else and nothing through a link.
    for old in checkpoint_folders(out_dir):
        if old != name:
            shutil.rmtree(os.path.join(parent, old), ignore_errors=True)
    return ckpt


def has_checkpoint(out_dir):
    """True if ``out_dir`` holds a checkpoint pointer."""
    return os.path.isfile(os.path.join(os.fspath(out_dir), POINTER))


def checkpoint_pointer(out_dir):
    """``(episode, folder)`` of the checkpoint ``checkpoint.json`` points at.

    The pointer may only name the folder fastmbrl itself names for its episode,
    ``checkpoints/epNNNN``, a real folder inside ``out_dir`` (no symlink on the way).

    Raises
    ------
    ValueError
        Naming ``checkpoint.json`` when it is missing, of another format version, damaged, or
        names anything else.
    """
    out_dir = os.fspath(out_dir)
    pointer = confined(out_dir, os.path.join(out_dir, POINTER), "resume")
    meta = read_json_object(pointer, "resume",
                            missing=f"resume: no checkpoint in {out_dir!r} (missing {POINTER})")
    if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"resume: {pointer!r} has checkpoint format "
                         f"{meta.get('format_version')!r}, expected {CHECKPOINT_FORMAT_VERSION}")
    missing = [k for k in _POINTER_KEYS if k not in meta]
    if missing or not isinstance(meta["dir"], str) or isinstance(meta["episode"], bool) or \
            not isinstance(meta["episode"], int) or meta["episode"] < 0:
        raise ValueError(f"resume: {pointer!r} is damaged (expected keys {', '.join(_POINTER_KEYS)}"
                         f" with an integer episode and a folder name, got {meta!r})")
    episode = int(meta["episode"])
    expected = f"{CHECKPOINTS}/{checkpoint_name(episode)}"
    if meta["dir"] not in (expected, os.path.join(CHECKPOINTS, checkpoint_name(episode))):
        raise ValueError(f"resume: {pointer!r} names the folder {meta['dir']!r}; a checkpoint "
                         f"pointer may only name {expected!r} inside the run folder")
    ckpt = os.path.join(checkpoints_folder(out_dir), checkpoint_name(episode))
    if os.path.islink(ckpt) or not os.path.isdir(ckpt):
        raise ValueError(f"resume: {pointer!r} names {expected!r}, which is "
                         f"{'a symbolic link' if os.path.islink(ckpt) else 'missing'}")
    return episode, ckpt


def read_checkpoint_state(out_dir):
    """The JSON state (state.json) of the checkpoint ``checkpoint.json`` points at."""
    _, ckpt = checkpoint_pointer(out_dir)
    path = confined(out_dir, os.path.join(ckpt, "state.json"), "resume")
    return read_json_object(path, "resume")


def load_checkpoint(out_dir, agent=None):
    """Read the checkpoint ``checkpoint.json`` points at.

    Parameters
    ----------
    out_dir : str or os.PathLike
    agent : object with ``load_state_dict``, optional
        Receives the stored agent state (an error if the checkpoint holds none).

    Returns
    -------
    episode : int
    buffer : ReplayBuffer
    model : GaussianEnsemble or None
    state : dict
        The loop state; ``state["agent"]`` is the stored agent state (nested dict) or None, and
        ``state["algo"]`` the algorithm's array state or None.

    Raises
    ------
    ValueError
        If there is no checkpoint, or it is of another format version, incomplete or damaged
        (the message names the file).
    """
    from fastmbrl.buffer import ReplayBuffer
    from fastmbrl.models import GaussianEnsemble

    out_dir = os.fspath(out_dir)
    episode, ckpt = checkpoint_pointer(out_dir)
    for name in sorted(os.listdir(ckpt)):
        confined(out_dir, os.path.join(ckpt, name), "resume")
    state = read_checkpoint_state(out_dir)
    # Any failure reading the binary files (truncated zip, missing member, bad header) is reported
    # as a damaged checkpoint naming the file.
    path = os.path.join(ckpt, "buffer.npz")
    try:
        buffer = ReplayBuffer.load(path)
        path = os.path.join(ckpt, "model.npz")
        model = GaussianEnsemble.load(path) if os.path.exists(path) else None
        path = os.path.join(ckpt, "agent.json")
        state["agent"] = load_agent_state(ckpt)
        path = os.path.join(ckpt, "algo.json")
        state["algo"] = load_agent_state(ckpt, stem="algo")
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one message
        raise ValueError(f"resume: checkpoint file {path!r} is damaged "
                         f"({type(exc).__name__}: {exc})") from None
    if agent is not None:
        if state["agent"] is None:
            raise ValueError(f"resume: checkpoint {ckpt!r} holds no agent state")
        agent.load_state_dict(state["agent"])
    return episode, buffer, model, state
