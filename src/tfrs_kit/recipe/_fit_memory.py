"""``Recipe.fit`` on a log that fits in memory: validation slice, search, blend, final fit.

The log is read into a DataFrame; settings are searched on the log less its validation
slice (each sampled user's latest interactions), the blend's weights are chosen on that
slice, and the chosen settings train on all of it. Logs bigger than memory take
:mod:`tfrs_kit.recipe._scale` instead.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import time
from typing import Any, cast

import pandas as pd

from tfrs_kit.data._table import TableLike
from tfrs_kit.recipe import _rerank
from tfrs_kit.recipe._blend import Blend, _factor_tables, blend_model, choose_weights
from tfrs_kit.recipe._inputs import attribute_table, split_validation, to_frame, usable_features
from tfrs_kit.recipe._report import RecipeReport, Trial
from tfrs_kit.recipe._search import search
from tfrs_kit.recipe._settings import Settings, base_settings
from tfrs_kit.recipe._training import Data, Trained, train_final

_MIN_VALIDATION_USERS = 10
_BLEND_SHARE = 0.1  # of the time budget, kept back from the search for the blend
#: ... and for the ranking stage when it is forced (rerank=True). "auto" reserves none: the
#: stage runs in what the search leaves, or is skipped (on P1 at a 45 s budget the reserve
#: cut the search to 1 trial of 3 on two seeds of three, and the stage was then skipped).
_RERANK_SHARE = 0.25


def fit_in_memory(recipe: Any, train: TableLike, *, items: TableLike | None,
                  users: TableLike | None) -> Any:
    """``recipe.fit(train)`` on a log read into memory (see the module)."""
    start = time.monotonic()
    recipe.columns = recipe._columns(train)
    recipe.schema_ = recipe.columns.schema
    data, dropped = prepare_data(recipe, train, items, users)
    data = dataclasses.replace(data, towers=recipe._towers)
    fit_log, validation = split_validation(
        data.log, recipe.columns, recipe.validation_fraction, min_users=_MIN_VALIDATION_USERS)
    base, features, histories = _search_space(recipe, data, len(fit_log), dropped)
    (blend, als), best = (None, None), cast("Trained | None", None)
    if validation is None:
        trials: list[Trial] = []
        chosen, epochs = base, base.epochs
        note = (f"fewer than {_MIN_VALIDATION_USERS} users have two or more "
                "interactions: no validation slice, default settings")
    else:
        fit_data = dataclasses.replace(data, log=fit_log)
        trials, best = search(
            fit_data, validation, base=base, features=features, histories=histories,
            metric=recipe.metric, max_trials=recipe.max_trials, seed=recipe.seed,
            deadline=_deadline(start, recipe.time_budget, _kept_back(recipe.rerank)),
            log=recipe._log, work_dir=recipe.work_dir, time_budget=recipe.time_budget)
        chosen, epochs = best.settings, best.epochs
        note = _cut_short(best, recipe.metric) if recipe.time_budget is not None else ""
        # The blend may use what the search left, less the final training.
        blend, als = _choose_blend(recipe, fit_data, best, validation,
                                   deadline=math.inf if recipe.time_budget is None
                                   else start + recipe.time_budget - best.final_seconds)
    ranker, rerank = _rerank.fit_rerank(
        recipe.rerank, dataclasses.replace(data, log=fit_log), validation, best, blend,
        recipe._log, metric=recipe.metric, seed=recipe.seed,
        end=_deadline(start, recipe.time_budget))
    recipe._log(f"final training: {chosen.describe()}, {epochs} epochs on all of train")
    # Without a validated epoch count the budget stops the default settings' epochs.
    deadline = _deadline(start, recipe.time_budget) if validation is None else None
    trained = train_final(data, chosen, epochs=epochs, seed=recipe.seed,
                          deadline=math.inf if deadline is None else deadline)
    epochs = trained.epochs
    if blend is not None and (blend.weight or blend.popularity):
        trained = dataclasses.replace(trained, model=blend_model(
            data, trained, blend, seed=recipe.seed))
    _keep_factors(data, trained, als)
    recipe._set_state(trained, None, data, None)
    recipe.cascade_ = _rerank.served_cascade(ranker, rerank, data, chosen, trained.model,
                                             seed=recipe.seed)
    recipe.report_ = RecipeReport.build(
        chosen=chosen, epochs=epochs, trials=trials, metric=recipe.metric, dropped=dropped,
        seconds=time.monotonic() - start, time_budget=recipe.time_budget, note=note,
        validation_users=0 if validation is None else validation[
            recipe.columns.user_id].nunique(), blend=blend, towers=recipe._towers.names(),
        rerank=rerank, max_trials=recipe.max_trials, final_epochs_cut=trained.clock_cut)
    return recipe


def _search_space(recipe: Any, data: Data, rows: int, dropped: dict[str, str]
                  ) -> tuple[Settings, tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]]:
    """The default settings for ``rows`` training rows, and the features and history
    encoders the search may try (those the data and the towers allow)."""
    features = (tuple(f for f in recipe.item_features if f not in dropped),
                tuple(f for f in recipe.user_features if f not in dropped))
    # Without a user seen twice, every history is empty: nothing to learn from.
    histories = (recipe.histories if data.log[recipe.columns.user_id].duplicated().any()
                 else ("none",))
    if not recipe._towers.sequence:  # the query tower takes no sequence_features
        histories = tuple(h for h in histories if h != "sequence")
    base = base_settings(rows, histories=histories, item_features=features[0],
                         user_features=features[1], max_epochs=recipe.max_epochs,
                         allowed=recipe._towers.allowed())
    return base, features, histories


def _choose_blend(recipe: Any, data: Data, best: Trained, validation: pd.DataFrame, *,
                  deadline: float) -> tuple[Blend | None, Any]:
    """The weights of the factorisation (with the ``implicit`` package) and of the
    items' popularity beside the towers, chosen on ``validation`` (the popularity's
    finer weights only while ``deadline`` allows); and that factorisation."""
    if not recipe.blend:
        return None, None
    started = time.monotonic()
    blend, als = choose_weights(
        data, best, validation, metric=recipe.metric, seed=recipe.seed,
        factorisation=importlib.util.find_spec("implicit") is not None, deadline=deadline)
    for line in blend.reasons(recipe.metric):
        recipe._log(line)
    recipe._log(f"blend: {time.monotonic() - started:.1f} s")
    return blend, als


def _keep_factors(data: Data, trained: Trained, als: Any) -> None:
    """Keeps the factorisation the blend's weights were chosen with (the log less the
    validation slice; rows of ids it lacks at zero), in the final model's vocabularies'
    order, beside a model that serves none (an iALS weight of 0): where its first update
    goes on from (see ``_update_blend``) instead of a factorisation of the whole log."""
    if als is not None and getattr(trained.model, "factor_tables_", None) is None:
        trained.model.factor_tables_ = _factor_tables(data, trained, als)


def prepare_data(recipe: Any, train: TableLike, items: TableLike | None,
             users: TableLike | None) -> tuple[Data, dict[str, str]]:
    """The log, item and user tables ``fit`` trains on, and the features it drops (why)."""
    c = recipe.columns
    log = to_frame(train, "train", c.settings())
    given_items = None if items is None else to_frame(items, "items", {"item_id": c.item_id})
    given_users = None if users is None else to_frame(users, "users", {"user_id": c.user_id})
    item_table = attribute_table(log, c.item_id, recipe.item_features, given_items,
                                 argument="items")
    user_table = attribute_table(log, c.user_id, recipe.user_features, given_users,
                                 argument="users")
    _, dropped_items = usable_features(item_table, recipe.item_features)
    _, dropped_users = usable_features(user_table, recipe.user_features)
    data = Data(log=log[c.ids()].reset_index(drop=True), items=item_table,
                users=user_table, columns=c, max_history=recipe.max_history)
    return data, {**dropped_items, **dropped_users}


def _cut_short(best: Trained, metric: str) -> str:
    """A note when the budget, not the validation metric, ended the chosen setting's
    training: its last epoch was its best and it had epochs left."""
    if best.epochs < best.epochs_run or best.epochs_run >= best.settings.epochs:
        return ""
    return (f"the time budget ended training while validation {metric} was still improving "
            f"({best.epochs_run} of {best.settings.epochs} epochs): a larger time_budget "
            "may find a better model")


def _kept_back(rerank: bool | str) -> float:
    """The share of the time budget the search leaves to the blend (and a forced ranking
    stage)."""
    return _BLEND_SHARE + (_RERANK_SHARE if rerank is True else 0.0)


def _deadline(start: float, budget: float | None, keep: float = 0.0) -> float | None:
    """When the search must end: ``start + budget``, less the share ``keep`` of the budget."""
    return None if budget is None else start + budget * (1.0 - keep)


