"""Record tests/data/golden.npz: the values tests/test_golden.py checks (run once, before a refactor).

    python tests/data/make_golden.py

The scenario is fixed: a small GaussianEnsemble (angle, delta and direct dims, learned reward) fitted
in float64 on synthetic data, the same weights cast to float32, then predict / sample and PETS.act
(CEM, seed 0) with ts1 and expectation propagation. Recorded on an AMD EPYC (OpenBLAS Haswell kernels).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def scenario():
    import fastmbrl as fm
    from fastmbrl.envs import reward_fns

    rng = np.random.default_rng(123)
    n = 400
    obs = rng.uniform(-1, 1, (n, 3))
    act = rng.uniform(-1, 1, (n, 1))
    next_obs = np.stack([0.9 * obs[:, 0] + 0.1 * act[:, 0], np.sin(obs[:, 1]) + 0.05 * obs[:, 2],
                         obs[:, 2] + 0.2 * act[:, 0] * obs[:, 0]], axis=1)
    next_obs += 0.01 * rng.standard_normal(next_obs.shape)
    reward = -(next_obs ** 2).sum(axis=1)
    out = {}
    m64 = fm.models.GaussianEnsemble(3, 1, hidden=(16, 16), ensemble_size=4, num_elites=3,
                                     predict_delta=[True, True, False], angle_dims=(1,),
                                     learn_reward=True, dtype=np.float64, seed=7,
                                     weight_decay="pets")
    m64.fit(obs, act, next_obs, reward, max_epochs=4, batch_size=64, progress=False)
    m32 = fm.models.GaussianEnsemble(3, 1, hidden=(16, 16), ensemble_size=4, num_elites=3,
                                     predict_delta=[True, True, False], angle_dims=(1,),
                                     learn_reward=True, dtype=np.float32, seed=7)
    m32.net.flat[...] = m64.net.flat.astype(np.float32)
    for dst, src in ((m32.input_normalizer, m64.input_normalizer),
                     (m32.output_normalizer, m64.output_normalizer)):
        dst.load_state_dict({k: np.asarray(v).astype(np.float32) if np.asarray(v).dtype.kind == "f"
                             else v for k, v in src.state_dict().items()})
    m32.max_logvar[...] = m64.max_logvar
    m32.min_logvar[...] = m64.min_logvar
    m32.elites = m64.elites.copy()
    q_obs, q_act = obs[:8], act[:8]
    members = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    for name, m in (("f64", m64), ("f32", m32)):
        mean, var, r_mean, r_var = m.predict(q_obs, q_act, return_reward=True)
        out[f"{name}_predict_mean"], out[f"{name}_predict_var"] = mean, var
        out[f"{name}_predict_rmean"], out[f"{name}_predict_rvar"] = r_mean, r_var
        out[f"{name}_sample_members"] = m.sample(q_obs, q_act, np.random.default_rng(5),
                                                 members=members)
        nxt, rew = m.sample(q_obs, q_act, np.random.default_rng(6), return_reward=True)
        out[f"{name}_sample_elites"], out[f"{name}_sample_reward"] = nxt, rew
        for prop in ("ts1", "expectation"):
            for learned in (False, True):
                planner = fm.planning.CEM(horizon=5, population=40, elite_frac=0.1, iterations=3,
                                          seed=0)
                agent = fm.agents.PETS(m, None if learned else reward_fns.pendulum,
                                       (np.array([-2.0]), np.array([2.0])), planner=planner,
                                       particles=4, propagation=prop, n_threads=1, seed=0)
                acts = [agent.act(o) for o in q_obs[:3]]
                agent.close()
                out[f"{name}_pets_{prop}_{'learned' if learned else 'fn'}"] = np.stack(acts)
    out["elites"] = m64.elites
    return out


if __name__ == "__main__":
    values = scenario()
    np.savez(os.path.join(os.path.dirname(__file__), "golden.npz"), **values)
    for k, v in values.items():
        print(k, np.asarray(v).ravel()[:4])
