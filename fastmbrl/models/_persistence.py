"""Saving and loading a GaussianEnsemble: one ``.npz`` file, every array checked on the way in.

``save_model`` writes the configuration, the weights, the log-variance bounds, both normalizers,
the elites, the optimizer state and the generator state (atomically); ``load_model`` refuses a file
that is unreadable, of another kind or format version, or whose arrays do not match its
configuration or lie outside their domain, naming the file and the array.
"""
import io
import json
import os

import numpy as np

from fastmbrl._io import atomic_savez
from fastmbrl._validate import check_int

MODEL_FORMAT_VERSION = 1


def save_model(model, path):
    """Write ``model`` (a GaussianEnsemble) to ``path``; see ``GaussianEnsemble.save``."""
    path = os.fspath(path)
    data = {"format_version": np.array(MODEL_FORMAT_VERSION, np.int64),
            "kind": np.array("fastmbrl.GaussianEnsemble"),
            "config": np.array(json.dumps(model.init_kwargs())),
            "rng_state": np.array(json.dumps(model.generator.bit_generator.state)),
            "n_fits": np.array(model.n_fits, np.int64),
            "flat": model.net.flat, "elites": model.elites}
    for prefix, norm in (("in_", model.input_normalizer), ("out_", model.output_normalizer)):
        for k, v in norm.state_dict().items():
            data[prefix + k] = v
    for k, v in model.train_step.state_dict().items():      # Adam moments, step count, bounds
        data["opt_" + k] = np.asarray(v)
    atomic_savez(path, **data)


def load_model(cls, path):
    """A ``cls`` (GaussianEnsemble) read from ``path``; see ``GaussianEnsemble.load``."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
        data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"path: {path!r} is not a readable GaussianEnsemble file "
                         f"({exc})") from exc
    except Exception as exc:  # zipfile.BadZipFile and friends from a corrupt archive
        raise ValueError(f"path: {path!r} is corrupt ({type(exc).__name__}: {exc})") from exc
    if str(data.get("kind", "")) != "fastmbrl.GaussianEnsemble":
        raise ValueError(f"path: {path!r} is not a GaussianEnsemble file")
    version = int(data.get("format_version", -1))
    if version != MODEL_FORMAT_VERSION:
        raise ValueError(f"path: {path!r} has model format version {version}, expected "
                         f"{MODEL_FORMAT_VERSION}")
    try:
        cfg = json.loads(str(data["config"]))
        cfg["dtype"] = np.dtype(cfg["dtype"]).type
        model = cls(**cfg)

        def take(key, like):
            arr = data[key]
            if arr.shape != like.shape or arr.dtype != like.dtype:
                raise ValueError(f"array {key!r}: expected {like.dtype} {like.shape}, got "
                                 f"{arr.dtype} {arr.shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"array {key!r}: contains non-finite values")
            return arr

        model.net.flat[...] = take("flat", model.net.flat)
        elites = data["elites"]
        if elites.dtype.kind not in "iu" or elites.shape != (model.num_elites,) or np.any(
                elites < 0) or np.any(elites >= model.ensemble_size) or np.unique(
                elites).size != elites.size:
            raise ValueError(f"array 'elites': expected {model.num_elites} distinct member "
                             f"indices in [0, {model.ensemble_size}), got {elites}")
        model.elites = elites.astype(np.int64)
        for prefix, norm in (("in_", model.input_normalizer),
                             ("out_", model.output_normalizer)):
            try:
                norm.load_state_dict({k: data[prefix + k] for k in norm.state_dict()})
            except ValueError as exc:
                raise ValueError(str(exc).replace("state['", f"array '{prefix}")) from None
        opt = {k: take("opt_" + k, np.asarray(v))
               for k, v in model.train_step.state_dict().items() if k != "t"}
        if not np.all(opt["min_logvar"] < opt["max_logvar"]):
            raise ValueError("arrays 'opt_min_logvar', 'opt_max_logvar': expected "
                             "min_logvar < max_logvar in every dim")
        for key in ("v", "bounds_v"):
            if np.any(opt[key] < 0):
                raise ValueError(f"array 'opt_{key}': expected non-negative second moments")
        opt["t"] = check_int("opt_t", data["opt_t"][()], minimum=0)
        model.train_step.load_state_dict(opt)
        model.generator.bit_generator.state = json.loads(str(data["rng_state"]))
        model.n_fits = int(data["n_fits"])
    except KeyError as exc:
        raise ValueError(f"path: {path!r} is missing the array {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"path: {path!r} holds an invalid or inconsistent model ({exc})"
                         ) from exc
    return model
