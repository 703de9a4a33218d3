"""Zero-order optimizers over action sequences: random shooting, CEM, iCEM and MPPI.

They know nothing about models: ``optimize(objective, lower, upper, init_mean=None)`` maximizes
``objective``, a callable mapping candidate sequences (P, H, D_act) to values (P,), over sequences
inside the box ``[lower, upper]`` and returns the chosen sequence (H, D_act). The sampling
distribution starts from its default for every call unless ``init_mean`` is given (the agent passes
the previous plan shifted by one step when warm starting). Sampling and the elite statistics are
NumPy on (P, H, D_act) arrays, except CEM's, which are two small compiled calls per iteration
(``_kernels._cem_sample``/``_cem_refit``, NumPy twins in ``_reference``): at the size of the small
planning benchmark (benchmarks/bench_planning.py) the NumPy version was a visible share of
``act()`` (benchmarks/README.md).

Time budget: ``optimize(..., time_budget=s)`` starts the first iteration, then starts another only
if the elapsed time plus the estimated cost of that iteration (the last measured time per candidate
times its population) stays within ``s``; the best plan so far is returned. ``last_iterations``
records how many iterations scored at least one candidate and ``last_info`` what the call did.

Within an iteration, an objective that has a method ``evaluate_until(samples, deadline, clock) ->
(values (P,), n[, n_aborted])`` (the model rollout's objective has) is asked to score the
candidates in order and to stop before the deadline (``clock()`` at most ``deadline``, in the
optimizer's clock); only its first ``n`` values are read and the update uses those members alone:
random shooting and iCEM keep the best of them, CEM and iCEM refit to the best
``min(num_elites, n)`` of them, MPPI weights only them. An iteration cut short ends the call. A
plain callable is always evaluated whole (it cannot be interrupted), so with one the budget holds
between iterations only. An objective with a method ``budget_check(seconds, horizon) -> None or
reason`` is asked first whether the budget can fit one candidate at all; a reason (e.g.
``"budget_below_one_step"``) returns the fallback at once, before anything is sampled.

Non-finite values (NaN, +-inf: a diverged model, a reward returning NaN) mark a candidate as
invalid: it is never chosen and never an elite. If no candidate of the call had a finite value, or
none could be scored within the budget, the call returns its fallback: ``init_mean`` when given,
else the middle of the bounds, with a ``RuntimeWarning`` in the non-finite case;
``last_info["fallback"]`` says which and ``last_info["fallback_reason"]`` why.

Modules: the shared loop and checks are ``fastmbrl.planning._optimizer``; the families
``_random_shooting`` (RandomShooting), ``_cem`` (CEM, ICEM, ``colored_noise``) and ``_mppi`` (MPPI).
This module gathers them under one name.
"""
from fastmbrl._validate import alpha_in_range
from fastmbrl.planning._cem import CEM, ICEM, colored_noise
from fastmbrl.planning._mppi import MPPI
from fastmbrl.planning._optimizer import check_bounds
from fastmbrl.planning._random_shooting import RandomShooting

__all__ = ["RandomShooting", "CEM", "ICEM", "MPPI", "check_bounds", "colored_noise",
           "alpha_in_range"]
