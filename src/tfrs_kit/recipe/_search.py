"""The search over :class:`Settings`: Optuna's TPE sampler, pruned on the validation metric.

With counts for budgets (``deadline=None``) the search is deterministic: the same data,
seed and ``max_trials`` give the same trials, in the same order, with the same scores
(TPE draws per trial number from the seed; training is seeded). With a ``work_dir``,
each finished trial is kept there (:mod:`tfrs_kit.recipe._trials`) and a search started
again replays the trials it finds instead of training them.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tfrs_kit.recipe._report import Trial
from tfrs_kit.recipe._settings import Settings, candidate_settings, feature_params, suggest
from tfrs_kit.recipe._training import Data, Trained, train
from tfrs_kit.recipe._trials import PerTrialSeeds, TrialStore, frozen_record, replay, trial_key

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
           seed: int, deadline: float | None, log: Any, work_dir: str | None = None,
           time_budget: float | None = None, retrain: bool = True,
           ) -> tuple[list[Trial], Trained]:
    """Trains settings on ``data`` until the budget ends; the best on ``validation`` wins.

    Args:
        base: The default recipe for this log, tried first; the others vary it.
        features: The item and user features the search may keep or leave out.
        work_dir: Where finished trials are kept and found again (``None``: nowhere).
        time_budget: The fit's budget, part of the trials' key in ``work_dir``.
        retrain: Train a chosen trial replayed from ``work_dir`` again (seeded) for its
            model; else its ``Trained`` has ``model=None`` (its settings, epochs and
            scores only).

    Returns:
        Every trial, and the chosen trial's model (its settings and best epoch).
    """
    optuna = _optuna()
    store = None if work_dir is None else TrialStore(work_dir, trial_key(
        {"log": data.log, "validation": validation, "items": data.items, "users": data.users},
        {"base": base.to_dict(), "histories": list(histories), "features": features,
         "metric": metric, "max_trials": max_trials, "seed": seed, "patience": _PATIENCE,
         "time_budget": time_budget, "towers": data.towers.names()}))
    done = [] if store is None else store.load()[:max_trials]
    study, shape = _study(optuna, data, base=base, histories=histories, features=features,
                          seed=seed, done=done)
    run = _Run(optuna, data, validation, base=base, features=features, histories=histories,
               metric=metric, seed=seed, shape=shape, budget=_Budget(deadline), log=log)
    for record in done:
        run.replayed(record["trial"])
    if done:
        log(f"{len(done)} finished trial(s) reused from {store.folder}")  # type: ignore[union-attr]

    def keep(study: Any, frozen: Any) -> None:
        if store is not None and frozen.number in run.records:
            store.write({**frozen_record(optuna, frozen), "trial": run.records[frozen.number]})
        if run.budget.exhausted():
            study.stop()

    if max_trials > len(done) and not (done and run.budget.exhausted()):
        study.optimize(run.objective, n_trials=max_trials - len(done), callbacks=[keep])
    if run.best is None:
        raise FloatingPointError(
            f"Recipe.fit: every setting tried ({len(run.trials)}) diverged or was stopped "
            "before its first epoch ended. Look for extreme values in the numeric features, "
            "or give a larger time_budget or max_trials.")
    best = run.best
    if best.model is None and retrain:  # replayed: train it again, seeded, for its model
        best = train(data, best.settings, validation=validation, metric=metric,
                     patience=_PATIENCE, deadline=run.budget.deadline, seed=seed,
                     final_share=run.share)
    return run.trials, best


class _Run:
    """The objective of one search, its trials and its best trial so far."""

    def __init__(self, optuna: Any, data: Data, validation: pd.DataFrame, *, base: Settings,
                 features: tuple[Sequence[str], Sequence[str]], histories: Sequence[str],
                 metric: str, seed: int, shape: dict, budget: _Budget, log: Any) -> None:
        self.optuna, self.data, self.validation = optuna, data, validation
        self.base, self.features, self.histories = base, features, histories
        self.metric, self.seed, self.shape, self.budget, self.log = (metric, seed, shape,
                                                                    budget, log)
        # The final model trains up to the best epoch on the whole log (the slice too).
        self.share = (len(data.log) + len(validation)) / len(data.log)
        self.trials: list[Trial] = []
        self.records: dict[int, dict[str, Any]] = {}  # by Optuna's trial number
        self.best: Trained | None = None

    def replayed(self, record: dict[str, Any]) -> None:
        """Counts a trial read back from the work directory as if it had run."""
        trial = Trial.from_dict(record)
        self.trials.append(trial)
        self.budget.add(trial.seconds, final=record.get("final_seconds"))
        if trial.state == "complete" and (self.best is None or trial.scores[self.metric]
                                          > self.best.scores[self.metric]):
            self.best = Trained(None, trial.settings, trial.epochs,  # type: ignore[arg-type]
                                dict(trial.scores), trial.seconds,
                                epochs_run=record.get("epochs_run", trial.epochs),
                                final_seconds=record.get("final_seconds", 0.0))

    def objective(self, trial: Any) -> float:
        optuna = self.optuna
        settings = suggest(trial, self.base, *self.features, self.histories,
                           allowed=self.data.towers.allowed(), **self.shape)
        seen: list[float] = []

        def report(epoch: int, value: float) -> None:
            seen.append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        started = time.monotonic()
        try:
            trained = train(self.data, settings, validation=self.validation,
                            metric=self.metric, patience=_PATIENCE,
                            deadline=self.budget.deadline, seed=self.seed, report=report,
                            final_share=self.share, reserved=self.budget.final)
        except (optuna.TrialPruned, FloatingPointError) as stop:
            # A diverged setting (a NaN loss) is left behind like a pruned one.
            state = "pruned" if isinstance(stop, optuna.TrialPruned) else "diverged"
            self._add(trial.number, Trial(settings, state, len(seen), {
                self.metric: max(seen, default=float("nan"))}, time.monotonic() - started))
            raise optuna.TrialPruned() from stop
        self._add(trial.number, Trial(settings, "complete", trained.epochs, trained.scores,
                                      trained.seconds, clock_cut=trained.clock_cut),
                  trained)
        if self.best is None or trained.scores[self.metric] > self.best.scores[self.metric]:
            self.best = trained
        self.log(f"trial {len(self.trials)}: {settings.describe()} -> {self.metric} "
                 f"{trained.scores[self.metric]:.4f} ({trained.epochs} epochs)")
        return trained.scores[self.metric]

    def _add(self, number: int, trial: Trial, trained: Trained | None = None) -> None:
        self.trials.append(trial)
        final = None if trained is None else trained.final_seconds
        self.budget.add(trial.seconds, final=final)
        self.records[number] = {**trial.to_dict(), "final_seconds": final,
                                "epochs_run": None if trained is None else trained.epochs_run}


def _study(optuna: Any, data: Data, *, base: Settings, histories: Sequence[str],
           features: tuple[Sequence[str], Sequence[str]], seed: int,
           done: Sequence[dict[str, Any]] = ()) -> tuple[Any, dict]:
    """An Optuna study with the trials ``done`` replayed, then the candidate settings
    not yet tried enqueued, and the log's shape."""
    study = optuna.create_study(
        direction="maximize",
        sampler=PerTrialSeeds(optuna, seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    c = data.columns
    allowed = data.towers.allowed()
    shape = {"repeats": bool(data.log.duplicated([c.user_id, c.item_id]).any()),
             # The warm start is ids only: a query without history, the built-in towers.
             "warm": ("none" in histories and allowed.warm_start
                      and importlib.util.find_spec("implicit") is not None)}
    short = data.log[c.user_id].value_counts().median() <= _SHORT_HISTORY
    sparse = data.log[c.item_id].value_counts().median() <= _SPARSE_ITEMS
    for record in done:
        replay(optuna, study, record)
    candidates = candidate_settings(base, histories, short=short, sparse=sparse,
                                    allowed=allowed, **shape)
    for settings in list(candidates)[len(done):]:
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
        if not self._trial_seconds:
            return False
        typical = sorted(self._trial_seconds)[len(self._trial_seconds) // 2]
        return time.monotonic() + typical / 2 + self.final > self.deadline
