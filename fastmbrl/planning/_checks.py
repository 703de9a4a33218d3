"""Argument checks of the planners' rollout: the model snapshot and the optimism bonus weight.

``check_model_arrays`` runs at every ``act()`` (``ModelRollout.objective`` binds a fresh snapshot),
so it is written for speed on inputs already in the kernel's form.
"""
import numpy as np

from fastmbrl._validate import as_float_array
from fastmbrl.models.arrays import ModelArrays


def _writable(a):
    # Numba types read-only arrays differently; the kernel's entry point is compiled for writable
    # ones, so read-only inputs (np.load mmap, frozen model snapshots) are copied.
    return a if a.flags.writeable else a.copy()


def check_bonus_weight(bonus_weight):
    """The optimism bonus weight as a float ``>= 0``; raise ValueError naming it otherwise."""
    if isinstance(bonus_weight, bool) or not isinstance(bonus_weight, (int, float, np.floating,
                                                                       np.integer)):
        raise TypeError(f"bonus_weight: expected a number >= 0, got {bonus_weight!r}")
    w = float(bonus_weight)
    if not (np.isfinite(w) and w >= 0):
        raise ValueError(f"bonus_weight: expected a finite number >= 0, got {bonus_weight!r}")
    return w


def check_model_arrays(arrays, obs_dim=None, act_dim=None):
    """Validate a ModelArrays snapshot; return ``(arrays cast to one dtype, dtype, D_obs, D_act)``.

    Raises
    ------
    TypeError, ValueError
        Naming the offending field, what was expected and what came.
    """
    if not isinstance(arrays, ModelArrays):
        raise TypeError(f"model: expected a GaussianEnsemble (with .arrays()) or a ModelArrays, "
                        f"got {type(arrays).__name__}")
    flat = _writable(np.ascontiguousarray(arrays.flat))
    if flat.dtype not in (np.float32, np.float64) or flat.ndim != 1:
        raise TypeError(f"model.flat: expected a 1-D float32/float64 array, got {flat.dtype} "
                        f"{flat.shape}")
    dtype = flat.dtype
    dims = _writable(np.ascontiguousarray(arrays.layer_dims, dtype=np.int64))
    ensemble_size = int(arrays.ensemble_size)
    n_params = 0
    dims_list = dims.tolist()   # Python ints: NumPy scalar arithmetic is slower, at every act()
    for fan_in, fan_out in zip(dims_list[:-1], dims_list[1:]):
        n_params += ensemble_size * (fan_in * fan_out + fan_out)
    if flat.size != n_params:
        raise ValueError(f"model.flat: expected {n_params} parameters for layer_dims {tuple(dims)} "
                         f"and {ensemble_size} members, got {flat.size}")
    angle_mask = np.asarray(arrays.angle_mask, dtype=bool)
    delta_mask = _writable(np.ascontiguousarray(arrays.delta_mask, dtype=bool))
    d_obs = angle_mask.shape[0]
    if angle_mask.ndim != 1 or delta_mask.shape != (d_obs,):
        raise ValueError(f"model.delta_mask: expected shape ({d_obs},) like angle_mask, got "
                         f"{delta_mask.shape}")
    if obs_dim is not None and d_obs != obs_dim:
        raise ValueError(f"model: predicts {d_obs} observation dims, the agent expects {obs_dim}")
    d_out = d_obs + int(bool(arrays.has_reward))
    if dims[-1] != 2 * d_out:
        raise ValueError(f"model.layer_dims: expected last width 2 * {d_out} = {2 * d_out}, got "
                         f"{dims[-1]}")
    d_act = int(dims[0]) - d_obs - int(angle_mask.sum())
    if act_dim is not None and d_act != act_dim:
        raise ValueError(f"model: network input width {dims[0]} implies {d_act} action dims, the "
                         f"action space has {act_dim}")
    members = _writable(np.ascontiguousarray(arrays.members, dtype=np.int64))
    if members.ndim != 1 or members.size == 0 or members.min() < 0 or members.max() >= ensemble_size:
        raise ValueError(f"model.members: expected a non-empty 1-D array of indices in "
                         f"[0, {ensemble_size}), got {np.asarray(arrays.members)!r}")
    if int(arrays.activation) not in (0, 1, 2, 3):
        raise ValueError(f"model.activation: expected a code in 0..3, got {arrays.activation}")

    def vec(name, x, n):
        # An array already in the kernel's form needs only the finiteness check: this runs at
        # every act(), where as_float_array's general path would add its cost for every vector.
        if (type(x) is np.ndarray and x.dtype == dtype and x.shape == (n,)
                and x.flags.c_contiguous and x.flags.writeable and np.isfinite(x).all()):
            return x
        return _writable(as_float_array(f"model.{name}", x, dtype=dtype, shape=(n,)))

    d_in = int(dims[0])
    cast = ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=ensemble_size, activation=int(arrays.activation),
        members=members, angle_mask=angle_mask, delta_mask=delta_mask,
        in_mean=vec("in_mean", arrays.in_mean, d_in), in_std=vec("in_std", arrays.in_std, d_in),
        out_mean=vec("out_mean", arrays.out_mean, d_out),
        out_std=vec("out_std", arrays.out_std, d_out),
        max_logvar=vec("max_logvar", arrays.max_logvar, d_out),
        min_logvar=vec("min_logvar", arrays.min_logvar, d_out),
        has_reward=bool(arrays.has_reward))
    return cast, dtype, d_obs, d_act
