"""The toolkit of an algorithm module, in one import: what every training loop needs.

An algorithm module (``fastmbrl/algorithms/<name>.py``, or a plug-in on the package's path)
receives a :class:`RunContext` (environment resolved, configuration resolved and checked, output
folder ready) and returns a :class:`RunResult`; everything here is algorithm-agnostic::

    from fastmbrl.algorithms._common import (STREAM_AGENT, RunResult, collect_episode,
                                             derive_seed, load_run_checkpoint, ...)

This module only re-exports; the code lives in one private module per concern:

==========================  =====================================================================
``_seeding``                ``derive_seed`` and the ``STREAM_*`` numbers of the random streams
``_records``                ``EpisodeRecord``, ``EvalRecord``, ``RunResult``, the results files
                            (``write_results``) and their summary blocks
``_callbacks``              ``Callback``, ``as_callback``
``_context``                ``RunContext``, ``episode_limits``, ``prepare_output``
``_collect``                ``collect_episode``, ``collect_initial_data``, ``evaluate``,
                            ``env_reward``, ``StepCollector``
``_checkpoints``            ``save_run_checkpoint``, ``load_run_checkpoint``,
                            ``check_resume_settings``, ``RESUME_MAY_CHANGE``
``_step_loop``              ``StepLoop`` (the step-based loops' outer loop), ``step_budget``
==========================  =====================================================================

The names below are kept importable from here for plug-ins and older code; fastmbrl's own modules
import from the module that defines each name.
"""
from fastmbrl.algorithms._callbacks import Callback, as_callback
from fastmbrl.algorithms._checkpoints import (RESUME_MAY_CHANGE, check_resume_settings,
                                              load_run_checkpoint, save_run_checkpoint)
from fastmbrl.algorithms._collect import (StepCollector, collect_episode, collect_initial_data,
                                          env_reward, evaluate)
from fastmbrl.algorithms._context import RunContext, episode_limits, prepare_output
from fastmbrl.algorithms._records import (RESULTS_FIELDS, STEP_RESULTS_FIELDS, EpisodeRecord,
                                          EvalRecord, RunResult, step_summary, summary,
                                          write_results)
from fastmbrl.algorithms._seeding import (STREAM_AGENT, STREAM_ENV, STREAM_EVAL_ENV,
                                          STREAM_INITIAL_ENV, STREAM_MODEL, STREAM_PLANNER,
                                          STREAM_RANDOM_ACTIONS, STREAM_ROLLOUT, derive_seed)
from fastmbrl.algorithms._step_loop import TIMERS, StepLoop, step_budget

__all__ = ["RunContext", "RunResult", "EpisodeRecord", "Callback", "as_callback", "derive_seed",
           "collect_episode", "collect_initial_data", "evaluate", "write_results", "summary",
           "save_run_checkpoint", "load_run_checkpoint", "RESULTS_FIELDS", "STREAM_ENV",
           "STREAM_PLANNER", "STREAM_RANDOM_ACTIONS", "STREAM_INITIAL_ENV", "STREAM_MODEL",
           "STREAM_AGENT", "STREAM_EVAL_ENV", "STREAM_ROLLOUT", "EvalRecord", "StepCollector",
           "StepLoop", "step_budget", "step_summary", "STEP_RESULTS_FIELDS",
           # also used by fastmbrl.run and the loops (not in the original __all__)
           "episode_limits", "prepare_output", "check_resume_settings", "RESUME_MAY_CHANGE",
           "env_reward", "TIMERS"]
