"""Maximum-likelihood training of a Gaussian ensemble: bootstrap, holdout, early stopping, elites.

Design
------
* The data arrive already transformed and normalized (``X (N, D_in)``, ``Y (N, D_out)``, model
  dtype); :class:`EnsembleTrainer` only splits, resamples, batches and steps.
* The minibatch buffers of all members are allocated once per ``fit`` call; a step gathers its
  rows with ``np.take`` into them and makes one call, :meth:`EnsembleTrainer._train_step`, to the
  fused compiled step ``fastmbrl.nn.GaussianTrainStep`` (forward, NLL, bounds, backward, Adam).
* Each epoch has ``ceil(N_train / batch_size)`` steps of exactly ``batch_size`` rows per member: the
  last one is topped up from the start of the member's permutation, so shapes never change and the
  network's per-layer buffers are never reallocated. The holdout set is evaluated in chunks of the
  same size for the same reason, by the compiled step's evaluation mode (on the step's threads): one
  forward pass gives each member's NLL and the predictions the MSE and the calibration need.
* Early stopping is per member (PETS, Chua et al. 2018; mbrl-lib): each member keeps a copy of its
  best weights (lowest holdout loss seen), and its patience counter is reset only by an improvement
  larger than ``min_rel_improvement`` relative to its last reference loss. Training stops when every
  member has run out of patience (or after ``max_epochs``); each member then gets its best weights
  back. The log-variance bounds are shared by all members, so they keep their final values.
"""
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from fastmbrl.config import ModelConfig
from fastmbrl.nn import soft_bound_logvar


def _padded_batches(batch_size, *pairs):
    """Copy the rows of each ``(source, buffer)`` pair into its buffer, ``batch_size`` at a time.

    Parameters
    ----------
    batch_size : int
    *pairs : (array (N, D), array (E, batch_size, D))
        Sources of equal length N and the fixed-size buffers they are copied into, broadcast over
        the E members.

    Yields
    ------
    (start, stop) : int, int
        The source rows now in ``buffer[:, :stop - start]``. The last batch is padded with copies
        of row ``start`` (a valid row), so every forward pass has the same shape; callers count
        only the first ``stop - start`` rows.
    """
    n = pairs[0][0].shape[0]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        k = stop - start
        for source, buffer in pairs:
            buffer[:, :k] = source[start:stop]
            if k < batch_size:
                buffer[:, k:] = source[start]
        yield start, stop


class _NonFinite(Exception):
    """Raised inside a step when the network output or the loss stops being finite."""


@dataclass
class FitHistory:
    """What one ``GaussianEnsemble.fit`` call did.

    Attributes
    ----------
    train_loss : float64 array (epochs_run,)
        Mean training NLL per epoch (minibatch average over all members; normalized units,
        the notes' loss without the bound penalty and weight decay).
    holdout_loss : float64 array (epochs_run, E)
        Per-member holdout score used for early stopping and elites (``holdout_metric``).
    train_member_loss : float64 array (epochs_run, E)
        The same per member.
    holdout_mse, holdout_nll : float64 arrays (epochs_run, E)
        Both holdout scores per member (normalized target units; NLL summed over target dims and
        averaged over rows, the scale of the training loss).
    initial_holdout : float64 array (E,)
        The holdout score of the weights the fit started from (warm start baseline).
    best_holdout : float64 array (E,)
        Each member's score at the weights it ends with.
    best_holdout_mse : float64 array (E,)
        Each member's holdout MSE at the weights it ends with (whatever ``holdout_metric``; NaN
        without a holdout set).
    best_epoch : int64 array (E,)
        The epoch (1-based) whose weights each member keeps. The starting weights never compete:
        after a warm start their holdout score is optimistic (see ``fit``).
    epochs_run : int
    elites : int64 array (num_elites,)
        The ``num_elites`` members with the lowest ``best_holdout``, in increasing index order.
    stopped_early : bool
        True when every member ran out of patience before ``max_epochs``.
    calibration : float64 array (E, 2)
        For the weights each member ends with, the fraction of held-out target values (all rows
        and target dims) inside the predicted 1-sigma and 2-sigma bands ``|y - mean| <= k sigma``;
        a calibrated Gaussian gives 0.683 and 0.954. NaN without a holdout set.
    holdout_metric : str
    n_train, n_holdout : int
    seconds : float
        Wall-clock time of the fit.
    """

    train_loss: np.ndarray
    train_member_loss: np.ndarray
    holdout_loss: np.ndarray
    holdout_mse: np.ndarray
    holdout_nll: np.ndarray
    initial_holdout: np.ndarray
    best_holdout: np.ndarray
    best_holdout_mse: np.ndarray
    best_epoch: np.ndarray
    epochs_run: int
    elites: np.ndarray
    stopped_early: bool
    calibration: np.ndarray
    holdout_metric: str
    n_train: int
    n_holdout: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class _ProgressBar:
    """The fit's epochs as a tqdm bar on stderr; silent when disabled or stderr is no terminal."""

    def __init__(self, enabled, max_epochs, stream=None):
        self.enabled = bool(enabled)
        self.max_epochs = max_epochs
        self._bar = None
        if self.enabled:
            from tqdm import tqdm

            # disable=None: tqdm turns itself off when the stream is not a terminal.
            self._bar = tqdm(total=max_epochs, desc="fit:", unit="epoch",
                             file=sys.stderr if stream is None else stream, disable=None,
                             dynamic_ncols=True, leave=True,
                             bar_format="{desc} epoch {n_fmt}/{total_fmt} |{bar}| "
                                        "[{elapsed}<{remaining}{postfix}]")

    def update(self, epoch, train_loss, holdout, waiting):
        if self._bar is None:
            return
        postfix = {"train NLL": f"{train_loss:.4f}"}
        if holdout is not None:
            postfix["holdout best"] = f"{np.min(holdout):.4g}"
            postfix["improving"] = waiting
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(epoch - self._bar.n)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EnsembleTrainer:
    """Runs the MLE fit of one ensemble network plus its shared soft log-variance bounds.

    Parameters
    ----------
    net : fastmbrl.nn.EnsembleMLP
        Output width 2 D_out: the normalized mean then the raw log-variance.
    step : fastmbrl.nn.GaussianTrainStep
        The fused minibatch step over ``net``; owns Adam's state and the learnable bounds
        ``max_logvar``/``min_logvar`` (trained with the penalty ``0.01 (sum max - sum min)``).
    """

    def __init__(self, net, step):
        self.net = net
        self.step = step
        self.max_logvar = step.max_logvar
        self.min_logvar = step.min_logvar
        self.d_out = int(net.layer_dims[-1]) // 2
        self._rows = -1

    # ------------------------------------------------------------------ buffers
    def _buffers(self, rows):
        if rows == self._rows:
            return
        E, dt = self.net.ensemble_size, self.net.dtype
        self._xb = np.empty((E, rows, int(self.net.layer_dims[0])), dt)
        self._yb = np.empty((E, rows, self.d_out), dt)
        self._out = np.empty((E, rows, 2 * self.d_out), dt)
        self._rows = rows

    # ------------------------------------------------------------------ one step
    def _train_step(self, xb, yb):
        """One Adam step on a minibatch of every member; returns the mean NLL before the step.

        Parameters
        ----------
        xb : float array (E, B, D_in), normalized inputs
        yb : float array (E, B, D_out), normalized targets

        Returns
        -------
        float
            The NLL of the course notes (mean over rows and members, summed over target dims).

        Raises
        ------
        _NonFinite
            If the loss is not finite; the step then leaves parameters and optimizer untouched.
        """
        try:
            return self.step(xb, yb)
        except FloatingPointError:
            raise _NonFinite("the loss") from None

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, X, Y, batch_size=256):
        """Per-member MSE and NLL on a data set shared by all members.

        Parameters
        ----------
        X : float array (N, D_in), normalized inputs, N >= 1
        Y : float array (N, D_out), normalized targets
        batch_size : int
            Rows per forward call.

        Returns
        -------
        mse : float64 array (E,)
            Mean over rows and target dims of the squared error of the mean.
        nll : float64 array (E,)
            Mean over rows of ``sum_d (y - mean)^2 exp(-lv) + lv`` (the training loss per member).
        """
        self._buffers(batch_size)
        E, d = self.net.ensemble_size, self.d_out
        n = X.shape[0]
        sse = np.zeros(E)
        nll = np.zeros(E)
        xb, yb, out = self._xb, self._yb, self._out
        for start, stop in _padded_batches(batch_size, (X, xb), (Y, yb)):
            k = stop - start                    # padded rows beyond k are not counted below
            # the NLL as the train step defines it (its evaluation mode, no update) and the outputs
            member_nll = self.step.evaluate(xb, yb, out=out)
            if not np.isfinite(out).all():      # weights broken by the last update
                return np.full(E, np.nan), np.full(E, np.nan)
            sse += np.square(out[:, :k, :d] - yb[:, :k]).sum(axis=(1, 2), dtype=np.float64)
            if k < batch_size:                  # the NLL of the real rows only
                member_nll = self.step.evaluate(xb[:, :k], yb[:, :k])
            nll += k * member_nll
        return sse / (n * d), nll / n

    def coverage(self, X, Y, batch_size=256):
        """Per-member fraction of targets inside the predicted 1- and 2-sigma bands.

        Parameters
        ----------
        X, Y, batch_size :
            As :meth:`evaluate`.

        Returns
        -------
        float64 array (E, 2)
            Fractions over rows and target dims of ``|y - mean| <= sigma`` and ``<= 2 sigma``
            (0.683 and 0.954 for a calibrated Gaussian).
        """
        self._buffers(batch_size)
        E, d = self.net.ensemble_size, self.d_out
        n = X.shape[0]
        inside = np.zeros((E, 2))
        xb, yb, out = self._xb, self._yb, self._out
        for start, stop in _padded_batches(batch_size, (X, xb), (Y, yb)):
            k = stop - start                    # padded rows beyond k are not counted below
            self.step.evaluate(xb, yb, out=out)
            lv, _ = soft_bound_logvar(out[:, :k, d:], self.max_logvar, self.min_logvar)
            z = np.abs(out[:, :k, :d] - Y[start:stop]) * np.exp(-0.5 * lv)
            inside[:, 0] += np.sum(z <= 1.0, axis=(1, 2))
            inside[:, 1] += np.sum(z <= 2.0, axis=(1, 2))
        return inside / (n * d)

    # ------------------------------------------------------------------ the fit
    def fit(self, X, Y, rng, *, max_epochs=ModelConfig.max_epochs,
            batch_size=ModelConfig.batch_size, holdout_frac=ModelConfig.holdout_frac,
            patience=ModelConfig.patience, min_rel_improvement=0.01, bootstrap=True,
            num_elites=None, holdout_metric="nll", progress=True, callback=None, max_steps=None):
        """Train on normalized data; see ``GaussianEnsemble.fit`` for the parameters.

        Returns
        -------
        FitHistory

        Raises
        ------
        FloatingPointError
            When a step produces a non-finite output or loss. Like any exception raised during the
            fit (a callback's, KeyboardInterrupt), it leaves the weights, the bounds and the
            optimizer exactly as they were before the call.
        """
        t0 = time.perf_counter()
        net = self.net
        E = net.ensemble_size
        num_elites = E if num_elites is None else int(num_elites)
        n = X.shape[0]

        # ---- holdout split (a random subset shared by all members)
        n_hold = int(round(holdout_frac * n)) if holdout_frac > 0 else 0
        n_hold = min(max(n_hold, 1 if holdout_frac > 0 else 0), n - 1)
        perm = rng.permutation(n)
        hold_idx, train_idx = np.sort(perm[:n_hold]), perm[n_hold:]
        X_train, Y_train = np.take(X, train_idx, axis=0), np.take(Y, train_idx, axis=0)
        X_hold, Y_hold = np.take(X, hold_idx, axis=0), np.take(Y, hold_idx, axis=0)
        n_train = X_train.shape[0]

        # ---- per-member data sets: bootstrap resamples (notes, section 4) or the full training set
        if bootstrap:
            member_rows = rng.integers(0, n_train, size=(E, n_train), dtype=np.int64)
        else:
            member_rows = np.broadcast_to(np.arange(n_train, dtype=np.int64), (E, n_train)).copy()
        batch_size = int(min(batch_size, n_train))
        n_batches = -(-n_train // batch_size)
        epoch_rows = np.empty((E, n_batches * batch_size), np.int64)
        self._buffers(batch_size)
        xb, yb = self._xb, self._yb

        # ---- early-stopping state
        def score():
            mse, nll = self.evaluate(X_hold, Y_hold, batch_size)
            return mse, nll, (mse if holdout_metric == "mse" else nll)

        start_flat = net.flat.copy()
        start_state = self.step.state_dict()
        best_params = [p.copy() for p in net.params]
        if n_hold:
            _, _, initial = score()
        else:
            initial = np.full(E, np.inf)
        # The starting weights do not compete for "best": after a warm start the fresh holdout rows
        # were mostly trained on before, so their score is optimistic, and letting it win made
        # refits stop after `patience` epochs and keep stale weights that never learn the newest
        # episode (measured on Pendulum-v1: every refit from episode 6 on stopped at 5 epochs).
        # Each member therefore keeps its best weights among the epochs of this fit.
        best = np.full(E, np.inf)
        best_mse = np.full(E, np.nan)
        ref = np.full(E, np.inf)
        best_epoch = np.zeros(E, np.int64)
        since = np.zeros(E, np.int64)

        train_hist, member_hist, mse_hist, nll_hist, hold_hist = [], [], [], [], []
        bar = _ProgressBar(progress, max_epochs)
        stopped_early = False
        epoch = 0
        steps_left = np.inf if max_steps is None else int(max_steps)
        try:
            for epoch in range(1, max_epochs + 1):
                # ======== one pass over every member's resample
                permuted = rng.permuted(member_rows, axis=1)
                epoch_rows[:, :n_train] = permuted
                epoch_rows[:, n_train:] = permuted[:, : epoch_rows.shape[1] - n_train]
                total = 0.0
                member_total = np.zeros(E)
                n_run = int(min(n_batches, steps_left))   # the step budget may end this epoch
                for b in range(n_run):
                    rows = epoch_rows[:, b * batch_size:(b + 1) * batch_size]
                    # the rows are valid by construction: "clip" skips the bounds-checked,
                    # buffered copy that the default mode="raise" makes with out=
                    np.take(X_train, rows, axis=0, out=xb, mode="clip")
                    np.take(Y_train, rows, axis=0, out=yb, mode="clip")
                    total += self._train_step(xb, yb)
                    member_total += self.step.member_loss
                steps_left -= n_run
                train_hist.append(total / n_run)
                member_hist.append(member_total / n_run)

                # ======== holdout, per-member best weights, patience
                if n_hold:
                    mse, nll, cur = score()
                    if not np.all(np.isfinite(cur)):
                        raise _NonFinite("the holdout loss")
                    mse_hist.append(mse)
                    nll_hist.append(nll)
                    hold_hist.append(cur)
                    better = cur < best
                    if better.any():
                        for p, keep in zip(net.params, best_params):
                            keep[better] = p[better]
                        best[better] = cur[better]
                        best_mse[better] = mse[better]
                        best_epoch[better] = epoch
                    first = ~np.isfinite(ref)
                    rel = np.full(E, np.inf)
                    rel[~first] = (ref[~first] - cur[~first]) / np.maximum(np.abs(ref[~first]), 1e-12)
                    significant = rel > min_rel_improvement
                    ref[significant] = cur[significant]
                    since[significant] = 0
                    since[~significant] += 1
                waiting = int(np.sum(since < patience))
                bar.update(epoch, train_hist[-1], hold_hist[-1] if n_hold else None, waiting)
                if callback is not None and callback(epoch, train_hist[-1],
                                                     hold_hist[-1] if n_hold else None):
                    break
                if n_hold and waiting == 0:
                    stopped_early = epoch < max_epochs
                    break
                if steps_left <= 0:
                    break
        except _NonFinite as exc:
            self._restore(start_flat, start_state)
            raise FloatingPointError(
                f"fit: {exc} became non-finite at epoch {epoch}; training stopped and the model "
                f"was left as it was before this fit (try a lower lr or check the data scale)"
            ) from None
        except BaseException:
            self._restore(start_flat, start_state)
            raise
        finally:
            bar.close()

        if n_hold:
            for p, keep in zip(net.params, best_params):
                p[...] = keep
            order = np.argsort(best, kind="stable")
            calibration = self.coverage(X_hold, Y_hold, batch_size)
        else:
            best_epoch[:] = epoch
            order = np.arange(E)
            calibration = np.full((E, 2), np.nan)
        empty = np.zeros((0, E))
        return FitHistory(
            train_loss=np.asarray(train_hist, np.float64),
            train_member_loss=np.asarray(member_hist, np.float64).reshape(-1, E),
            holdout_loss=np.asarray(hold_hist, np.float64).reshape(-1, E) if n_hold else empty,
            holdout_mse=np.asarray(mse_hist, np.float64).reshape(-1, E) if n_hold else empty,
            holdout_nll=np.asarray(nll_hist, np.float64).reshape(-1, E) if n_hold else empty,
            initial_holdout=np.asarray(initial, np.float64),
            best_holdout=np.asarray(best, np.float64),
            best_holdout_mse=best_mse,
            best_epoch=best_epoch,
            epochs_run=len(train_hist),
            elites=np.sort(order[:num_elites]).astype(np.int64),
            stopped_early=stopped_early,
            calibration=calibration,
            holdout_metric=holdout_metric,
            n_train=n_train,
            n_holdout=n_hold,
            seconds=time.perf_counter() - t0,
        )

    def _restore(self, flat, step_state):
        self.net.flat[...] = flat
        self.step.load_state_dict(step_state)
