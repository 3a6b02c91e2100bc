"""``tk.Recipe``: from an interaction log to a trained model, settings chosen on the log itself."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tfrs_kit._errors import NotFittedError, invalid_argument
from tfrs_kit._validation import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_verbose,
)
from tfrs_kit.data._table import TableLike
from tfrs_kit.recipe._blend import Blend, blend_model, choose_weights
from tfrs_kit.recipe._inputs import (
    Columns,
    attribute_table,
    split_validation,
    to_frame,
    usable_features,
)
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import RecipeReport, Trial
from tfrs_kit.recipe._search import search
from tfrs_kit.recipe._settings import HISTORY_ENCODERS, Settings, base_settings
from tfrs_kit.recipe._training import Data, Trained, train_final

__all__ = ["Recipe"]

_METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


class Recipe:
    """A two-tower model whose settings are chosen on a validation slice of your log.

    ``fit`` carves each user's latest interactions out of the training log
    (never the test set), trains candidate settings on the rest with an Optuna
    search inside ``time_budget``, stops each one on a ranking metric of the
    slice (not the loss), then retrains the winner on the whole log for the
    epochs it needed. It chooses among: a warm start from an implicit-feedback
    ALS factorisation (when the ``implicit`` package is installed:
    ``pip install "tfrs-kit[implicit]"``); history off, a mean-pooled bag or an
    order-aware sequence encoder; embedding size; cosine scores and their
    temperature; learning rate; epochs; training on each user's first
    interaction with an item only (when the log repeats pairs); and which item
    and user features to keep. Last, it weighs an implicit-feedback ALS
    factorisation's scores and the items' popularity beside the chosen towers'
    (``blend``; weights 0 keep the towers alone). :attr:`report` says what it
    chose and why.

    Args:
        user_id: The user id column.
        item_id: The item id column.
        timestamp: The time column (orders histories and the validation slice).
        item_features: Item attribute columns to consider, found in the log or
            in ``fit(items=...)``: one value per item is used (the catalogue's,
            else the mean of a number or the last value over the log).
        user_features: User attribute columns to consider, likewise.
        time_budget: Seconds for the whole ``fit`` (search and final training);
            ``None`` searches ``max_trials`` settings whatever the time. At
            least the default settings are always trained once.
        max_trials: The most settings tried.
        metric: The validation metric that chooses: ``"ndcg@10"``,
            ``"recall@10"``, ``"ndcg@20"`` or ``"recall@20"``.
        validation_fraction: Each user's latest share of interactions that
            forms the validation slice.
        histories: The history encoders to choose among (a subset of
            ``"none"``, ``"mean"``, ``"sequence"``).
        max_history: The most recent items a history holds.
        max_epochs: The most epochs of the default recipe (the search tries
            up to three times as many); default: about 600 optimizer steps'
            worth, 1 to 30. Each trial stops earlier when its validation
            metric has not improved for 2 epochs.
        blend: Add an implicit-feedback ALS factorisation's scores (with the
            ``implicit`` package) and the items' log popularity to the chosen
            towers' at weights chosen on the validation slice (0, the towers
            alone, is one of the choices); the model then embeds them side by
            side, one index still serves it.
        seed: Seeds the split-independent parts: weights, shuffles, the search.
        verbose: Show progress: ``True``, ``False`` or ``"auto"`` (a line per
            trial when the budget exceeds a minute).

    Example:
        >>> import tfrs_kit as tk
        >>> data = tk.datasets.synthetic(1_000, num_users=60, num_items=40, seed=0)
        >>> recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, verbose=False)
        >>> recipe = recipe.fit(data.interactions)
        >>> len(recipe.report.trials)  # one setting tried: the first of the search
        1
        >>> tk.evaluate(recipe, data.interactions.tail(50), train=data.interactions,
        ...             metrics=["recall"], k=10).models
        ('Recipe',)
    """

    def __init__(
        self,
        *,
        user_id: str = "user_id",
        item_id: str = "item_id",
        timestamp: str = "timestamp",
        item_features: Sequence[str] = (),
        user_features: Sequence[str] = (),
        time_budget: float | None = 45.0,
        max_trials: int = 12,
        metric: str = "ndcg@10",
        validation_fraction: float = 0.2,
        histories: Sequence[str] = HISTORY_ENCODERS,
        max_history: int = 50,
        max_epochs: int | None = None,
        blend: bool = True,
        seed: int = 0,
        verbose: bool | str = "auto",
    ) -> None:
        self.columns = Columns(user_id, item_id, timestamp, _history_name(
            [user_id, item_id, timestamp, *item_features, *user_features]))
        self.item_features = _names("item_features", item_features)
        self.user_features = _names("user_features", user_features)
        self.time_budget = check_number("time_budget", time_budget, minimum=0, low_open=True,
                                        allow_none=True)
        self.max_trials = check_int("max_trials", max_trials, minimum=1)
        self.metric = check_choice("metric", metric, _METRICS)
        self.validation_fraction = check_fraction("validation_fraction", validation_fraction)
        self.histories = tuple(check_choice("histories", h, HISTORY_ENCODERS)
                               for h in _names("histories", histories))
        if not self.histories:
            raise invalid_argument("histories", "name at least one history encoder",
                                   histories, hint=f"Choose from {list(HISTORY_ENCODERS)}.")
        self.max_history = check_int("max_history", max_history, minimum=1)
        self.max_epochs = check_int("max_epochs", max_epochs, minimum=1, allow_none=True)
        self.blend = check_bool("blend", blend)
        self.seed = check_int("seed", seed, minimum=0)
        self.verbose = check_verbose("verbose", verbose)
        self._trained: Trained | None = None
        self._data: Data | None = None
        self.report_: RecipeReport | None = None

    def __repr__(self) -> str:
        c = self.columns
        return (f"Recipe(user_id={c.user_id!r}, item_id={c.item_id!r}, "
                f"timestamp={c.timestamp!r}, item_features={list(self.item_features)}, "
                f"user_features={list(self.user_features)}, time_budget={self.time_budget})")

    def fit(self, train: TableLike, *, items: TableLike | None = None,
            users: TableLike | None = None) -> Recipe:
        """Chooses settings on a validation slice of ``train``, then trains on all of it.

        Args:
            train: The interaction log (a DataFrame, dict of arrays or dataset).
            items: The item catalogue: one row per item with the item id and
                item features; items never interacted with become candidates.
            users: One row per user with the user id and user features.

        Returns:
            ``self``, with :attr:`model` and :attr:`report`.
        """
        start = time.monotonic()
        data, dropped = self._prepare(train, items, users)
        fit_log, validation = split_validation(
            data.log, self.columns, self.validation_fraction, min_users=_MIN_VALIDATION_USERS)
        features = (tuple(f for f in self.item_features if f not in dropped),
                    tuple(f for f in self.user_features if f not in dropped))
        # Without a user seen twice, every history is empty: nothing to learn from.
        histories = (self.histories if data.log[self.columns.user_id].duplicated().any()
                     else ("none",))
        base = base_settings(len(fit_log), histories=histories, item_features=features[0],
                             user_features=features[1], max_epochs=self.max_epochs)
        blend = None
        if validation is None:
            trials: list[Trial] = []
            chosen, epochs = base, base.epochs
            note = (f"fewer than {_MIN_VALIDATION_USERS} users have two or more "
                    "interactions: no validation slice, default settings")
        else:
            fit_data = dataclasses.replace(data, log=fit_log)
            trials, best = search(
                fit_data, validation, base=base, features=features, histories=histories,
                metric=self.metric, max_trials=self.max_trials, seed=self.seed,
                deadline=_deadline(start, self.time_budget, _BLEND_SHARE), log=self._log)
            chosen, epochs = best.settings, best.epochs
            note = _cut_short(best, self.metric) if self.time_budget is not None else ""
            # The blend may use what the search left, less the final training.
            blend = self._blend(fit_data, best, validation, deadline=math.inf if self.time_budget
                                is None else start + self.time_budget - best.final_seconds)
        self._log(f"final training: {chosen.describe()}, {epochs} epochs on all of train")
        # Without a validated epoch count the budget stops the default settings' epochs.
        deadline = _deadline(start, self.time_budget) if validation is None else None
        trained = train_final(data, chosen, epochs=epochs, seed=self.seed,
                              deadline=math.inf if deadline is None else deadline)
        epochs = trained.epochs
        if blend is not None and (blend.weight or blend.popularity):
            trained = dataclasses.replace(trained, model=blend_model(
                data, trained, blend, seed=self.seed))
        self._trained, self._data = trained, data
        self.report_ = RecipeReport.build(
            chosen=chosen, epochs=epochs, trials=trials, metric=self.metric, dropped=dropped,
            seconds=time.monotonic() - start, time_budget=self.time_budget, note=note,
            validation_users=0 if validation is None else validation[
                self.columns.user_id].nunique(), blend=blend)
        return self

    def _blend(self, data: Data, best: Trained, validation: pd.DataFrame, *,
               deadline: float) -> Blend | None:
        """The weights of the factorisation (with the ``implicit`` package) and of the
        items' popularity beside the towers, chosen on ``validation`` (the popularity's
        finer weights only while ``deadline`` allows)."""
        if not self.blend:
            return None
        started = time.monotonic()
        blend = choose_weights(data, best, validation, metric=self.metric, seed=self.seed,
                               factorisation=importlib.util.find_spec("implicit") is not None,
                               deadline=deadline)
        for line in blend.reasons(self.metric):
            self._log(line)
        self._log(f"blend: {time.monotonic() - started:.1f} s")
        return blend

    @property
    def model(self) -> Any:
        """The trained :class:`~tfrs_kit.TwoTowerRetrieval`."""
        return self._fitted().model

    @property
    def report(self) -> RecipeReport:
        """What ``fit`` chose, why, and every trial's validation scores."""
        self._fitted()
        assert self.report_ is not None
        return self.report_

    @property
    def settings(self) -> Settings:
        """The chosen :class:`~tfrs_kit.recipe.Settings`."""
        return self._fitted().settings

    def queries(self) -> pd.DataFrame:
        """One row per user of the training log with their query features (history last)."""
        return self._data_or_raise().queries(self.settings)

    def candidates(self) -> pd.DataFrame:
        """One row per item (the log's and the catalogue's) with its candidate features."""
        return self._data_or_raise().candidates(self.settings)

    def as_recommender(self, train: TableLike | None = None, *, user_id: str | None = None,
                       item_id: str | None = None) -> Any:
        """The trained model as a :class:`~tfrs_kit.evaluation.Recommender` for ``tk.evaluate``.

        Users are scored from their query features at the end of the training
        log; a user it never saw, as the average known user. The catalogue is
        every item of the log and of ``fit(items=...)``.
        ``tk.evaluate(recipe, test, train=train)`` calls this itself.
        """
        c = self.columns
        for argument, value, expected in (("user_id", user_id, c.user_id),
                                          ("item_id", item_id, c.item_id)):
            if value is not None and value != expected:
                raise invalid_argument(argument, f"be {expected!r}, the column the Recipe "
                                       "was fitted with", value)
        return RecipeRecommender(self.model, queries=self.queries(), items=self.candidates(),
                                 user_id=c.user_id, item_id=c.item_id)

    def build_index(self, *, k_max: int = 100, backend: str = "auto", **options: Any) -> Any:
        """A servable :class:`~tfrs_kit.Index` over every candidate (see :class:`IndexBuilder`)."""
        from tfrs_kit.index import IndexBuilder

        return IndexBuilder(k_max=k_max, backend=backend, **options).build(
            self.model, self.candidates())

    def _prepare(self, train: TableLike, items: TableLike | None,
                 users: TableLike | None) -> tuple[Data, dict[str, str]]:
        c = self.columns
        log = to_frame(train, "train", c.settings())
        given_items = None if items is None else to_frame(items, "items", {"item_id": c.item_id})
        given_users = None if users is None else to_frame(users, "users", {"user_id": c.user_id})
        item_table = attribute_table(log, c.item_id, self.item_features, given_items,
                                     argument="items")
        user_table = attribute_table(log, c.user_id, self.user_features, given_users,
                                     argument="users")
        _, dropped_items = usable_features(item_table, self.item_features)
        _, dropped_users = usable_features(user_table, self.user_features)
        data = Data(log=log[c.ids()].reset_index(drop=True), items=item_table,
                    users=user_table, columns=c, max_history=self.max_history)
        return data, {**dropped_items, **dropped_users}

    def _log(self, message: str) -> None:
        if self.verbose is True or (self.verbose == "auto" and (
                self.time_budget is None or self.time_budget > 60)):
            print(f"Recipe: {message}", file=sys.stderr, flush=True)

    def _fitted(self) -> Trained:
        if self._trained is None:
            raise NotFittedError("This Recipe is not fitted yet: call fit(train) first.")
        return self._trained

    def _data_or_raise(self) -> Data:
        self._fitted()
        assert self._data is not None
        return self._data


_MIN_VALIDATION_USERS = 10
_BLEND_SHARE = 0.1  # of the time budget, kept back from the search for the blend


def _names(argument: str, names: Any) -> tuple[str, ...]:
    if isinstance(names, str):
        raise invalid_argument(argument, "be a list of names", names,
                               hint=f"Did you mean {argument}=[{names!r}]?", error=TypeError)
    return tuple(str(n) for n in names)


def _history_name(taken: Sequence[str]) -> str:
    name = "history"
    while name in taken:
        name = f"recipe_{name}"
    return name


def _cut_short(best: Trained, metric: str) -> str:
    """A note when the budget, not the validation metric, ended the chosen setting's
    training: its last epoch was its best and it had epochs left."""
    if best.epochs < best.epochs_run or best.epochs_run >= best.settings.epochs:
        return ""
    return (f"the time budget ended training while validation {metric} was still improving "
            f"({best.epochs_run} of {best.settings.epochs} epochs): a larger time_budget "
            "may find a better model")


def _deadline(start: float, budget: float | None, keep: float = 0.0) -> float | None:
    """When the search must end: ``start + budget``, less the share ``keep`` of the budget."""
    return None if budget is None else start + budget * (1.0 - keep)


