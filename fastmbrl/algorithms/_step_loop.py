"""The outer loop of the step-based algorithms (sac, mbpo, mve, svg): collect a step, train,
evaluate every ``eval_every`` steps, record, checkpoint, write the results, call the callbacks.
"""
import copy
import logging
import time

import numpy as np

from fastmbrl.algorithms._checkpoints import load_run_checkpoint, save_run_checkpoint
from fastmbrl.algorithms._collect import StepCollector, evaluate
from fastmbrl._threads import limit_blas
from fastmbrl.algorithms._records import EvalRecord, RunResult, step_summary, write_results
from fastmbrl.algorithms._seeding import STREAM_RANDOM_ACTIONS, derive_seed

__all__ = ["StepLoop", "step_budget", "TIMERS"]

log = logging.getLogger("fastmbrl.algorithms")

# the time split of a segment (what each row reports since the previous evaluation)
TIMERS = ("env", "act", "update", "fit", "rollout", "eval")


def _rng_state(rng):
    return copy.deepcopy(rng.bit_generator.state)


def _set_rng_state(rng, state):
    rng.bit_generator.state = state
    return rng


def step_budget(config, section):
    """Total environment steps of a step-based run: ``algorithm.steps`` or ``section.total_steps``."""
    steps = config.algorithm.steps
    return section.total_steps if steps is None else int(steps)


class StepLoop:
    """The outer loop shared by the step-based algorithms (sac, mbpo).

    For ``t = 1 .. total_steps``: act (uniformly random for the first ``random_steps`` steps, then
    ``policy``), step the environment into ``buffer`` (:class:`StepCollector`), call
    ``train(loop)`` (the algorithm's updates; it adds its seconds to ``loop.times``), and every
    ``eval_every`` steps and at the last step evaluate ``eval_policy`` for ``eval_episodes``
    episodes on a second environment instance, append an :class:`EvalRecord`, checkpoint, write
    the results files and call the callbacks (a callback returning True stops the run after that
    checkpoint).

    Checkpoints hold the buffer, the model, the agent's ``state_dict()``, the records, the
    collector's progress, the random-action generator, the cumulative counters and
    ``extra_state()`` of the algorithm; a resumed run (``ctx.resume``) continues exactly where the
    checkpoint was taken (see :class:`StepCollector` for the environment's state).

    Parameters
    ----------
    ctx : RunContext
    buffer : ReplayBuffer
        The environment buffer (replaced by the checkpoint's on resume).
    agent : object with ``state_dict`` / ``load_state_dict`` (or None)
    total_steps, eval_every, eval_episodes, random_steps : int
    model : GaussianEnsemble or None
        Checkpointed with the run (replaced by the checkpoint's on resume).
    """

    def __init__(self, ctx, buffer, agent, total_steps, eval_every, eval_episodes, random_steps,
                 model=None):
        cfg = ctx.config
        self.ctx, self.buffer, self.agent, self.model = ctx, buffer, agent, model
        self.total_steps, self.eval_every = int(total_steps), int(eval_every)
        self.eval_episodes, self.random_steps = int(eval_episodes), int(random_steps)
        env = ctx.env.env
        self.collector = StepCollector(env, buffer, cfg.seed, ctx.max_episode_steps)
        self.eval_env = ctx.make_env()
        self.random_rng = np.random.default_rng(derive_seed(cfg.seed, STREAM_RANDOM_ACTIONS, 0))
        self._low = env.action_space.low.astype(np.float64)
        self._high = env.action_space.high.astype(np.float64)
        self._act_dtype = env.action_space.dtype
        self.records = []
        self.times = {k: 0.0 for k in TIMERS}
        self.counters = {"updates": 0, "fit_epochs": 0}
        self.last_fit = {"holdout_mse": float("nan")}
        self.model_rows = 0
        self.wall_offset = 0.0
        self.restored_state = None
        self.restored_algo_state = None

    # ------------------------------------------------------------------ policies
    def random_action(self, obs):
        """A uniformly random action in the bounds (the first ``random_steps`` steps)."""
        return self.random_rng.uniform(self._low, self._high).astype(self._act_dtype)

    @property
    def steps(self):
        """Environment steps collected so far."""
        return self.collector.steps

    # ------------------------------------------------------------------ checkpoints
    def restore(self, record_cls=EvalRecord):
        """Load the last checkpoint of ``ctx.out_dir`` when resuming; returns True if one was
        loaded (then ``buffer``, ``model``, the agent, the records and the counters are the
        checkpoint's, ``restored_state`` holds the algorithm's ``extra`` entry and
        ``restored_algo_state`` its array state, None when the checkpoint has none)."""
        restored = load_run_checkpoint(self.ctx, agent=self.agent, record_cls=record_cls)
        if restored is None:
            return False
        done, buffer, model, records, _, state = restored
        if len(records) != done:
            raise ValueError(f"resume: checkpoint in {self.ctx.out_dir!r} is inconsistent "
                             f"({len(records)} records for evaluation {done})")
        try:
            loop = state["loop"]
            self.buffer = self.collector.buffer = buffer
            if model is not None:
                self.model = model
            self.records = records
            self.counters = dict(loop["counters"])
            self.times = {k: float(loop["times"][k]) for k in TIMERS}
            self.last_fit = dict(loop["last_fit"])
            self.model_rows = int(loop["model_rows"])
            self.wall_offset = float(loop["wall_time"])
            _set_rng_state(self.random_rng, loop["random_rng"])
            self.collector.restore(loop["collector"])
            self.collector.times = {"env": self.times["env"], "act": self.times["act"]}
            self.restored_state = state.get("extra")
            self.restored_algo_state = state.get("algo")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"resume: checkpoint in {self.ctx.out_dir!r} has a damaged loop state "
                             f"({type(exc).__name__}: {exc})") from None
        if self.collector.steps != self.buffer.n_added:
            raise ValueError(f"resume: checkpoint in {self.ctx.out_dir!r} is inconsistent "
                             f"({self.collector.steps} steps, {self.buffer.n_added} transitions)")
        return True

    def checkpoint(self, wall_time, extra=None, algo_state=None):
        """Write a checkpoint after the last record (a no-op without ``out_dir``)."""
        loop = {"counters": self.counters, "times": self.times, "last_fit": self.last_fit,
                "model_rows": self.model_rows, "wall_time": wall_time,
                "random_rng": _rng_state(self.random_rng), "collector": self.collector.state()}
        save_run_checkpoint(self.ctx, len(self.records), self.buffer, self.model, self.records, [],
                            agent=self.agent, extra={"loop": loop, "extra": extra},
                            algo_state=algo_state)

    # ------------------------------------------------------------------ the model
    def refit(self, model_config, max_steps=None, max_seconds=0.0):
        """Refit ``self.model`` to the whole buffer (warm: it goes on from its weights), timed
        into ``times["fit"]``; records the epochs and the elites' last holdout MSE (normalised
        units) and calls the callbacks' ``on_fit_end``.

        Parameters
        ----------
        model_config : fastmbrl.config.ModelConfig
            ``max_epochs``, ``batch_size``, ``holdout_frac``, ``patience``, ``learn_reward``.
        max_steps : int or None
            Cap on the refit's gradient steps (None: epochs and early stopping decide).
        max_seconds : float
            Cap on the refit's wall seconds, checked after each epoch (0: none).
        """
        m, buf = model_config, self.buffer
        deadline = (time.perf_counter() + max_seconds) if max_seconds else None

        def past_deadline(epoch, train_loss, holdout_loss):
            return deadline is not None and time.perf_counter() >= deadline

        t0 = time.perf_counter()
        # one BLAS thread: spinning OpenBLAS teams collapse on a busy 2-core machine
        with limit_blas(1):
            history = self.model.fit(buf.obs, buf.act, buf.next_obs,
                                     buf.reward if m.learn_reward else None,
                                     max_epochs=m.max_epochs, max_steps=max_steps,
                                     batch_size=m.batch_size, holdout_frac=m.holdout_frac,
                                     patience=m.patience, progress=False, callback=past_deadline)
        self.times["fit"] += time.perf_counter() - t0
        self.counters["fit_epochs"] += int(history.epochs_run)
        if history.holdout_mse.size:
            self.last_fit["holdout_mse"] = float(np.mean(history.holdout_mse[-1][history.elites]))
        for cb in self.ctx.callbacks:
            cb.on_fit_end(len(self.records) + 1, history)
        return history

    def result(self, config, stopped, model=None):
        """The run's :class:`RunResult` (agent, buffer and records of this loop), after writing
        the results files of the finished (or stopped) run to ``out_dir``."""
        if self.ctx.out_dir is not None and self.records:
            write_results(self.ctx.out_dir, config, self.records, [],
                          step_summary(self.records, self.records[-1].wall_time))
        return RunResult(config=config, records=self.records, initial_records=[], model=model,
                         agent=self.agent, buffer=self.buffer, stopped_early=stopped,
                         out_dir=self.ctx.out_dir)

    # ------------------------------------------------------------------ the loop
    def run(self, policy, eval_policy, train, extra_state=None, algo_state=None):
        """Run the steps left of the budget.

        Parameters
        ----------
        policy : callable
            ``policy(obs) -> action`` once ``random_steps`` steps are collected.
        eval_policy : callable
            The deterministic policy evaluated.
        train : callable
            ``train(loop)`` after each environment step (the loop's ``steps`` already counts it).
        extra_state : callable, optional
            ``extra_state() -> JSON-serialisable`` stored with every checkpoint.
        algo_state : callable, optional
            ``algo_state() -> nested dict of arrays and JSON values`` stored with every
            checkpoint (``restored_algo_state`` on resume).

        Returns
        -------
        stopped_early : bool
        """
        ctx, cbs = self.ctx, self.ctx.callbacks
        t_start = time.perf_counter() - self.wall_offset
        for cb in cbs:
            cb.on_run_start(ctx.config, len(self.records) + 1)
        mark = dict(self.times)
        mark_updates, mark_steps = self.counters["updates"], self.steps
        mark_fit_epochs = self.counters["fit_epochs"]
        col = self.collector
        while self.steps < self.total_steps:
            # ---- act in the environment, store the transition -----------------------------------
            col.step(self.random_action if self.steps < self.random_steps else policy)
            stop = False
            for cb in cbs:
                stop = bool(cb.on_step(len(self.records) + 1, self.steps, self.total_steps)) or stop
            # ---- the algorithm's training after this step ---------------------------------------
            train(self)
            if self.steps % self.eval_every and self.steps < self.total_steps:
                continue
            # ---- evaluate the deterministic policy on its own environment -----------------------
            t0 = time.perf_counter()
            _, eval_recs = evaluate(eval_policy, self.eval_env, self.eval_episodes, ctx.config.seed,
                                    ctx.max_episode_steps)
            self.times["eval"] += time.perf_counter() - t0
            self.times["env"] = col.times["env"]
            self.times["act"] = col.times["act"]
            seg = {k: self.times[k] - mark[k] for k in TIMERS}
            n_upd = self.counters["updates"] - mark_updates
            rets = np.array([r.ret for r in eval_recs])
            wall = time.perf_counter() - t_start
            record = EvalRecord(
                episode=len(self.records) + 1, steps=self.steps, ret=float(rets.mean()),
                ret_std=float(rets.std()),
                length=int(round(float(np.mean([r.length for r in eval_recs])))),
                wall_time=wall, updates=self.counters["updates"],
                updates_per_s=n_upd / seg["update"] if seg["update"] > 0 else 0.0,
                env_time=seg["env"], act_time=seg["act"], update_time=seg["update"],
                fit_time=seg["fit"], fit_epochs=self.counters["fit_epochs"] - mark_fit_epochs,
                holdout_mse=float(self.last_fit["holdout_mse"]), rollout_time=seg["rollout"],
                model_rows=self.model_rows, eval_time=seg["eval"],
                train_episodes=col.episode, buffer_size=len(self.buffer),
                segment_steps=self.steps - mark_steps)
            self.records.append(record)
            log.info("step %d: eval return %.2f +- %.2f, wall %.1fs (env %.1f act %.1f updates %.1f "
                     "fit %.1f rollouts %.1f)", self.steps, record.ret, record.ret_std, wall,
                     seg["env"], seg["act"], seg["update"], seg["fit"], seg["rollout"])
            mark = dict(self.times)
            mark_updates, mark_steps = self.counters["updates"], self.steps
            mark_fit_epochs = self.counters["fit_epochs"]
            # ---- checkpoint first (results never get ahead of a resumable state), results -------
            self.checkpoint(wall, None if extra_state is None else extra_state(),
                            None if algo_state is None else algo_state())
            if ctx.out_dir is not None:
                write_results(ctx.out_dir, ctx.config, self.records, [],
                              step_summary(self.records, wall))
            for cb in cbs:
                stop = bool(cb.on_episode_end(record)) or stop
            if stop and self.steps < self.total_steps:
                return True
        return False
