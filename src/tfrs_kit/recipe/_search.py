"""The search over :class:`Settings`: Optuna's TPE sampler, pruned on the validation metric."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tfrs_kit.recipe._report import Trial
from tfrs_kit.recipe._settings import Settings, candidate_settings, feature_params, suggest
from tfrs_kit.recipe._training import Data, Trained, train

__all__ = ["search"]

_PATIENCE = 2  # epochs without a better validation score before a trial stops
_SHORT_HISTORY = 5  # a median user with this many events or fewer: short histories
_SPARSE_ITEMS = 10  # a median item with this many events or fewer: a sparse catalogue


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - a dependency of tfrs-kit
        raise ImportError("tk.Recipe searches with Optuna: pip install optuna") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def search(data: Data, validation: pd.DataFrame, *, base: Settings, histories: Sequence[str],
           features: tuple[Sequence[str], Sequence[str]], metric: str, max_trials: int,
           seed: int, deadline: float | None, log: Any) -> tuple[list[Trial], Trained]:
    """Trains settings on ``data`` until the budget ends; the best on ``validation`` wins.

    Args:
        base: The default recipe for this log, tried first; the others vary it.
        features: The item and user features the search may keep or leave out.

    Returns:
        Every trial, and the chosen trial's model (its settings and best epoch).
    """
    optuna = _optuna()
    item_features, user_features = features
    study, shape = _study(optuna, data, base=base, histories=histories, features=features,
                          seed=seed)
    allowed = data.towers.allowed()
    budget = _Budget(deadline)
    # The final model trains up to the best epoch on the whole log (the slice too).
    share = (len(data.log) + len(validation)) / len(data.log)
    best: dict[str, Trained] = {}
    trials: list[Trial] = []

    def objective(trial: Any) -> float:
        settings = suggest(trial, base, item_features, user_features, histories,
                           allowed=allowed, **shape)

        seen: list[float] = []

        def report(epoch: int, value: float) -> None:
            seen.append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        started = time.monotonic()
        try:
            trained = train(data, settings, validation=validation, metric=metric,
                            patience=_PATIENCE, deadline=budget.deadline, seed=seed,
                            report=report, final_share=share, reserved=budget.final)
        except (optuna.TrialPruned, FloatingPointError) as stop:
            # A diverged setting (a NaN loss) is left behind like a pruned one.
            state = "pruned" if isinstance(stop, optuna.TrialPruned) else "diverged"
            trials.append(Trial(settings, state, len(seen),
                                {metric: max(seen, default=float("nan"))},
                                time.monotonic() - started))
            budget.add(time.monotonic() - started)
            raise optuna.TrialPruned() from stop
        trials.append(Trial(settings, "complete", trained.epochs, trained.scores,
                            trained.seconds))
        budget.add(trained.seconds, final=trained.final_seconds)
        if "model" not in best or trained.scores[metric] > best["model"].scores[metric]:
            best["model"] = trained
        log(f"trial {len(trials)}: {settings.describe()} -> "
                       f"{metric} {trained.scores[metric]:.4f} ({trained.epochs} epochs)")
        return trained.scores[metric]

    def stop_when_out_of_time(study: Any, trial: Any) -> None:
        if budget.exhausted():
            study.stop()

    study.optimize(objective, n_trials=max_trials, callbacks=[stop_when_out_of_time])
    if "model" not in best:
        raise FloatingPointError(
            f"Recipe.fit: every setting tried ({len(trials)}) diverged or was stopped before "
            "its first epoch ended. Look for extreme values in the numeric features, or "
            "give a larger time_budget or max_trials.")
    return trials, best["model"]


def _study(optuna: Any, data: Data, *, base: Settings, histories: Sequence[str],
           features: tuple[Sequence[str], Sequence[str]], seed: int) -> tuple[Any, dict]:
    """An Optuna study with the candidate settings enqueued, and the log's shape."""
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    c = data.columns
    allowed = data.towers.allowed()
    shape = {"repeats": bool(data.log.duplicated([c.user_id, c.item_id]).any()),
             # The warm start is ids only: a query without history, the built-in towers.
             "warm": ("none" in histories and allowed.warm_start
                      and importlib.util.find_spec("implicit") is not None)}
    short = data.log[c.user_id].value_counts().median() <= _SHORT_HISTORY
    sparse = data.log[c.item_id].value_counts().median() <= _SPARSE_ITEMS
    for settings in candidate_settings(base, histories, short=short, sparse=sparse,
                                       allowed=allowed, **shape):
        study.enqueue_trial({**settings.as_params(),
                             **feature_params(settings, *features)})
    return study, shape


class _Budget:
    """Time left for trials, keeping back what the final training will need."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = float("inf") if deadline is None else deadline
        self._trial_seconds: list[float] = []
        self.final = 0.0  # seconds kept for the final training of the best setting so far

    def add(self, seconds: float, *, final: float | None = None) -> None:
        self._trial_seconds.append(seconds)
        if final is not None:  # the caller's estimate of the final training's seconds
            self.final = max(self.final, final)

    def exhausted(self) -> bool:
        typical = sorted(self._trial_seconds)[len(self._trial_seconds) // 2]
        return time.monotonic() + typical / 2 + self.final > self.deadline
