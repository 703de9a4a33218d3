"""Helpers of the deploy tests: random inputs, tolerances, the C compiler and test drivers."""
import numpy as np


def random_obs(n, dim=3, seed=0, scale=3.0):
    """float32 (n, dim) inputs, uniform in +-scale."""
    return np.random.default_rng(seed).uniform(-scale, scale, (n, dim)).astype(np.float32)


def close(a, b, tol):
    """Assert |a - b| <= tol + tol |b| elementwise (relative + absolute)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.abs(a - b) - tol * (1 + np.abs(b))
    assert np.all(err <= 0), f"max excess {err.max():.3g} (max abs diff {np.abs(a - b).max():.3g})"


# ------------------------------------------------------------------------------ the C compiler
CFLAGS = ["-Wall", "-Wextra", "-Werror", "-std=c99", "-O2"]

POLICY_DRIVER = r"""
#include <stdio.h>
#include "fastmbrl_policy.h"

/* stdin: n, then n rows of FASTMBRL_POLICY_OBS_DIM floats; stdout per row: rc, then the action */
int main(void)
{
    int n, r, i, rc;
    float obs[FASTMBRL_POLICY_OBS_DIM], act[FASTMBRL_POLICY_ACT_DIM];
    if (scanf("%d", &n) != 1) {
        return 3;
    }
    for (r = 0; r < n; ++r) {
        for (i = 0; i < FASTMBRL_POLICY_OBS_DIM; ++i) {
            if (scanf("%f", &obs[i]) != 1) {
                return 3;
            }
        }
        for (i = 0; i < FASTMBRL_POLICY_ACT_DIM; ++i) {
            act[i] = -12345.0f;
        }
        rc = fastmbrl_policy_act(obs, act);
        printf("%d", rc);
        for (i = 0; i < FASTMBRL_POLICY_ACT_DIM; ++i) {
            printf(" %.9g", act[i]);
        }
        printf("\n");
    }
    return 0;
}
"""

MODEL_DRIVER = r"""
#include <stdio.h>
#include "fastmbrl_model.h"

#define N_OUT (FASTMBRL_MODEL_ENSEMBLE_SIZE * FASTMBRL_MODEL_OBS_DIM)

/* stdin: n, then n rows of OBS_DIM + ACT_DIM floats; stdout per row: rc, mean (E x D_obs),
   logvar (E x D_obs), and with a reward head the reward means and log-variances (E each) */
int main(void)
{
    int n, r, i, rc;
    float obs[FASTMBRL_MODEL_OBS_DIM], act[FASTMBRL_MODEL_ACT_DIM], mean[N_OUT], logvar[N_OUT];
#if FASTMBRL_MODEL_HAS_REWARD
    float rmean[FASTMBRL_MODEL_ENSEMBLE_SIZE], rlogvar[FASTMBRL_MODEL_ENSEMBLE_SIZE];
#endif
    if (scanf("%d", &n) != 1) {
        return 3;
    }
    for (r = 0; r < n; ++r) {
        for (i = 0; i < FASTMBRL_MODEL_OBS_DIM; ++i) {
            if (scanf("%f", &obs[i]) != 1) {
                return 3;
            }
        }
        for (i = 0; i < FASTMBRL_MODEL_ACT_DIM; ++i) {
            if (scanf("%f", &act[i]) != 1) {
                return 3;
            }
        }
        for (i = 0; i < N_OUT; ++i) {
            mean[i] = logvar[i] = -12345.0f;
        }
#if FASTMBRL_MODEL_HAS_REWARD
        for (i = 0; i < FASTMBRL_MODEL_ENSEMBLE_SIZE; ++i) {
            rmean[i] = rlogvar[i] = -12345.0f;
        }
        rc = fastmbrl_model_predict_reward(obs, act, mean, logvar, rmean, rlogvar);
#else
        rc = fastmbrl_model_predict(obs, act, mean, logvar);
#endif
        printf("%d", rc);
        for (i = 0; i < N_OUT; ++i) {
            printf(" %.9g", mean[i]);
        }
        for (i = 0; i < N_OUT; ++i) {
            printf(" %.9g", logvar[i]);
        }
#if FASTMBRL_MODEL_HAS_REWARD
        for (i = 0; i < FASTMBRL_MODEL_ENSEMBLE_SIZE; ++i) {
            printf(" %.9g", rmean[i]);
        }
        for (i = 0; i < FASTMBRL_MODEL_ENSEMBLE_SIZE; ++i) {
            printf(" %.9g", rlogvar[i]);
        }
#endif
        printf("\n");
    }
    return 0;
}
"""


def c_compiler():
    """The system C compiler ($CC, cc, gcc or clang), or None."""
    import os
    import shutil

    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(folder, driver_source, sources, name="driver"):
    """Compile ``driver_source`` (written to folder/name.c) with ``sources`` (paths) using the
    strict flags; returns the executable's path."""
    import os
    import subprocess

    import pytest

    cc = c_compiler()
    if cc is None:
        pytest.skip("no C compiler found (cc, gcc, clang)")
    drv = folder / f"{name}.c"
    drv.write_text(driver_source)
    exe = folder / name
    includes = sorted({f"-I{folder}"} | {f"-I{os.path.dirname(os.fspath(s))}" for s in sources})
    cmd = [cc, *CFLAGS, *includes, str(drv), *map(str, sources), "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return exe


def run_rows(exe, rows):
    """Feed ``rows`` (n, k) to a driver; returns (rc int array (n,), values float64 (n, m))."""
    import subprocess

    text = f"{len(rows)}\n" + "\n".join(" ".join(f"{float(v):.9g}" for v in row)
                                       for row in rows) + "\n"
    proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln.split() for ln in proc.stdout.strip().splitlines()]
    assert len(lines) == len(rows)
    rc = np.array([int(ln[0]) for ln in lines])
    values = np.array([[float(v) for v in ln[1:]] for ln in lines], np.float64)
    return rc, values
