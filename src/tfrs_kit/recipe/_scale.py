"""``Recipe.fit`` on a log in files bigger than ``in_memory_rows``: out of core.

The log is never read whole into memory:

1. :func:`~tfrs_kit.features.prepare` writes, out of core and resumably, into the work
   directory: vocabularies, training shards with a history column, a validation shard
   (each held-out user's latest event with the history before it), a sample of users'
   rows and each user's latest history;
2. the settings search runs in memory on the sample (its id and time columns), with the
   same functions the in-memory ``fit`` calls (:func:`~tfrs_kit.recipe._search.search`);
3. the chosen settings train on every training row streamed from the shards, the
   validation shard scored after each epoch (:class:`RankingMonitor`): the best epoch's
   weights are kept, and no epoch starts that would end after the budget;
4. the users' latest histories, the item vocabulary (and the catalogue) and each user's
   seen items become the tables the fitted Recipe serves from, as a loaded one does.

5. with ``blend`` on, the towers are blended as the in-memory ``fit`` blends them, the
   factorisation and the popularity counted shard by shard from the training shards and
   the weights chosen on the validation shard (:mod:`~tfrs_kit.recipe._scale_blend`);
   the final training leaves it a share of the budget.

Left for later steps: item and user features (left out, named in the report), the
factorisation warm start (not searched: it needs the log in memory).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit.data._files import _pyarrow, estimated_rows
from tfrs_kit.data._source import is_files, resolve
from tfrs_kit.recipe._fit_progress import BatchProgress
from tfrs_kit.recipe._inputs import Columns, attribute_table, split_validation, to_frame
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import RecipeReport, Trial
from tfrs_kit.recipe._scale_blend import BLEND_SHARE, blend_shards
from tfrs_kit.recipe._search import search
from tfrs_kit.recipe._settings import Allowed, Settings, base_settings
from tfrs_kit.recipe._towers import Towers
from tfrs_kit.recipe._training import (
    Data,
    RankingMonitor,
    Saved,
    Trained,
    _with_kinds,
    build_model,
    validation_scores,
)

__all__ = ["DEFAULT_IN_MEMORY_ROWS", "DEFAULT_SEARCH_ROWS", "fit_out_of_core",
           "out_of_core"]

DEFAULT_IN_MEMORY_ROWS = 500_000
DEFAULT_SEARCH_ROWS = 300_000
_SEARCH_SHARE = 0.35  # of the budget left after the preparation, for the search at most
_MIN_SEARCH_SHARE = 0.15  # ... and at least, when the final training needs the rest
_ROWS_PER_SECOND = 10_000  # rows trained a second, a guess (5k-15k on 2 busy CPU cores)
_TRIAL_EPOCHS = 6  # epochs over the sample the search's share should hold
_MIN_SAMPLE_ROWS = 20_000
_SERVING_SHARE = 0.05  # of the budget, kept for the serving tables after the final training
_VALIDATION_USERS = 5_000  # users held out for the final model's epochs, aimed at
_EVENTS_PER_USER = 20  # a guess of the log's shape, to turn that count into a share
_SHUFFLE_BUFFER = 65_536  # rows mixed by the streaming window
_PATIENCE = 2  # epochs without a better validation score before the final training stops
_MIN_VALIDATION_USERS = 10


def out_of_core(train: Any, in_memory_rows: int, *, argument: str = "train") -> bool:
    """Whether ``fit(train)`` takes the out-of-core path: files of more rows than
    ``in_memory_rows``."""
    return (is_files(train)
            and estimated_rows(resolve(train, argument=argument)) > in_memory_rows)


def _no_warm_start(towers: Towers) -> Towers:
    """``towers`` whose search leaves out the factorisation warm start (it fits on the
    whole log in memory, and the final training is streamed)."""

    class _Towers(Towers):
        def allowed(self) -> Allowed:
            return dataclasses.replace(super().allowed(), warm_start=False)

    return _Towers(towers.query, towers.candidate)


@dataclasses.dataclass
class _Clock:
    """The fit's start, its budget and the seconds each stage took."""

    budget: float | None
    start: float = dataclasses.field(default_factory=time.monotonic)
    stages: dict[str, float] = dataclasses.field(default_factory=dict)
    _last: float = dataclasses.field(default_factory=time.monotonic)

    def lap(self, stage: str) -> float:
        now = time.monotonic()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + now - self._last, 2)
        self._last = now
        return self.stages[stage]

    def left(self) -> float:
        """Seconds the budget has left (infinite without a budget)."""
        if self.budget is None:
            return math.inf
        return max(self.start + self.budget - time.monotonic(), 0.0)

    def deadline(self, share_of_left: float, keep: float = 0.0) -> float:
        """Now plus ``share_of_left`` of what the budget has left, less ``keep`` of it."""
        if self.budget is None:
            return math.inf
        left = self.start + self.budget * (1.0 - keep) - time.monotonic()
        return time.monotonic() + max(left, 0.0) * share_of_left


def fit_out_of_core(recipe: Any, train: Any, *, items: Any = None, users: Any = None) -> Any:
    """``recipe.fit(train)`` without reading ``train`` into memory (see the module)."""
    clock = _Clock(recipe.time_budget)
    recipe.columns = recipe._columns(train)
    recipe.schema_ = recipe.columns.schema
    c: Columns = recipe.columns
    paths = resolve(train, argument="train")
    rows = estimated_rows(paths)
    folder = recipe.work_dir or tempfile.mkdtemp(prefix="tfrs_kit_recipe_")
    try:
        prepared = _prepare(recipe, paths, rows, folder)
        recipe._log(f"prepared {prepared.rows:,} events of {prepared.users:,} users and "
                    f"{prepared.items:,} items in {clock.lap('prepare'):.1f} s ({folder})")
        given_items = None if items is None else to_frame(items, "items",
                                                          {"item_id": c.item_id})
        searched = _search_sample(recipe, prepared, given_items, clock)
        chosen = searched.settings
        recipe._log(f"search: {len(searched.trials)} trial(s) on {prepared.sample_rows:,} "
                    f"rows of {prepared.sample_users:,} users in {clock.lap('search'):.1f} s; "
                    f"chosen {chosen.describe()}")
        blending = bool(recipe.blend) and prepared.validation is not None
        trained, why = _train_streamed(recipe, prepared, searched, clock if not blending or (
            clock.budget is None) else dataclasses.replace(  # a share kept for the blend
                clock, budget=clock.budget * (1.0 - BLEND_SHARE)))
        recipe._log(f"final training: {why} ({clock.lap('final'):.1f} s)")
        saved = _serving_tables(recipe, prepared, chosen, given_items)
        recipe._log(f"serving tables: {clock.lap('serving tables'):.1f} s")
        blend = None
        if blending:
            trained, blend = blend_shards(
                recipe, trained, _first_only(prepared, c) if chosen.first_only
                else list(prepared.train), validation=_validation(recipe, prepared),
                saved=saved, deadline=clock.deadline(1.0))
            recipe._log(f"blend: {clock.lap('blend'):.1f} s")
    finally:
        if recipe.work_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    dropped = {name: "not used yet on the out-of-core path (a log over in_memory_rows)"
               for name in (*recipe.item_features, *recipe.user_features)}
    report = dataclasses.replace(RecipeReport.build(
        chosen=chosen, epochs=trained.epochs, trials=searched.trials, metric=recipe.metric,
        dropped=dropped, seconds=time.monotonic() - clock.start,
        time_budget=recipe.time_budget, note="; ".join(n for n in (searched.note, why) if n),
        validation_users=searched.validation_users, blend=blend,
        towers=recipe._towers.names()), stages=dict(clock.stages))
    recipe._set_state(trained, report, None, saved)  # served from its tables, as if loaded
    return recipe


def _prepare(recipe: Any, paths: Sequence[str], rows: int, folder: str) -> Any:
    """The preparation in ``folder``: reused when one of the same log and settings is
    there (finished, or resumed where it stopped), else made anew."""
    from tfrs_kit.features import prepare

    c = recipe.columns
    users_guess = max(rows / _EVENTS_PER_USER, 1.0)
    return prepare(
        paths, work_dir=folder, user_id=c.user_id, item_id=c.item_id, timestamp=c.timestamp,
        history_length=recipe.max_history, history=c.history,
        validation_users=float(min(1.0, max(1e-3, _VALIDATION_USERS / users_guess))),
        validation_events=1,
        sample_users=float(min(1.0, _sample_rows(recipe) / max(rows, 1))),
        seed=recipe.seed, overwrite=True,  # a folder of another log's preparation: redone
        verbose=False if recipe.verbose is False else "auto")


def _sample_rows(recipe: Any) -> int:
    """The search sample's rows: ``search_rows``, fewer when the search's share of the
    budget would not hold a few trials over them (at a guessed training speed)."""
    if recipe.time_budget is None:
        return int(recipe.search_rows)
    fits = recipe.time_budget * _SEARCH_SHARE * _ROWS_PER_SECOND / _TRIAL_EPOCHS
    return int(min(recipe.search_rows, max(fits, _MIN_SAMPLE_ROWS)))


def _search_deadline(clock: _Clock, train_rows: int) -> float:
    """When the search ends: ``_SEARCH_SHARE`` of the budget left, less if the final
    training's first two epochs (at a guessed speed) need more of it, down to
    ``_MIN_SEARCH_SHARE``."""
    left = clock.left()
    if not math.isfinite(left):
        return math.inf
    final = 2 * train_rows / _ROWS_PER_SECOND
    share = float(np.clip((left - final) / max(left, 1e-9), _MIN_SEARCH_SHARE, _SEARCH_SHARE))
    return time.monotonic() + left * share


def _read(paths: Sequence[str], columns: Sequence[str], users: Any = None) -> pd.DataFrame:
    """``columns`` of Parquet files as one DataFrame (only the rows of ``users``, if given)."""
    pa = _pyarrow()
    tables = []
    for path in paths:
        table = pa.parquet.read_table(path, columns=list(columns))
        if users is not None:
            found = pa.compute.is_in(table.column(columns[0]),
                                     value_set=pa.array(users, table.column(columns[0]).type))
            table = table.filter(found)
        tables.append(table)
    if not tables:
        return pd.DataFrame({name: [] for name in columns})
    return pa.concat_tables(tables).to_pandas()


@dataclasses.dataclass(frozen=True)
class _Searched:
    """What the search on the sample chose: its trials, the settings, the chosen trial's
    model (``None`` without a validation slice), a note, and the sample's rows."""

    trials: list[Trial]
    settings: Settings
    best: Trained | None
    note: str
    rows: int
    validation_users: int = 0  # users of the sample's validation slice


def _search_sample(recipe: Any, prepared: Any, given_items: pd.DataFrame | None,
                   clock: _Clock) -> _Searched:
    """The in-memory search on the sample's ids and times, as ``fit`` runs it on a log."""
    c = recipe.columns
    log = _read(prepared.sample, c.ids())
    items = attribute_table(log, c.item_id, (), given_items, argument="items")
    users = pd.DataFrame({c.user_id: pd.unique(log[c.user_id])})
    data = Data(log=log, items=items, users=users, columns=c, max_history=recipe.max_history,
                towers=_no_warm_start(recipe._towers))
    fit_log, validation = split_validation(log, c, recipe.validation_fraction,
                                           min_users=_MIN_VALIDATION_USERS)
    histories = recipe.histories if log[c.user_id].duplicated().any() else ("none",)
    if not recipe._towers.sequence:
        histories = tuple(h for h in histories if h != "sequence")
    base = base_settings(len(fit_log), histories=histories, item_features=(),
                         user_features=(), max_epochs=recipe.max_epochs,
                         allowed=data.towers.allowed())
    if validation is None:
        return _Searched([], base, None, f"fewer than {_MIN_VALIDATION_USERS} users of the "
                         "search sample have two or more events: default settings", len(log))
    trials, best = search(
        dataclasses.replace(data, log=fit_log), validation, base=base, features=((), ()),
        histories=histories, metric=recipe.metric, max_trials=recipe.max_trials,
        seed=recipe.seed, deadline=_search_deadline(clock, prepared.train_rows),
        log=recipe._log, work_dir=recipe.work_dir, time_budget=recipe.time_budget,
        retrain=False)  # the final training streams a new model: the trial's is not used
    note = ("" if len(trials) >= recipe.max_trials else f"the time budget ended the search "
            f"after {len(trials)} of max_trials={recipe.max_trials} trials")
    return _Searched(trials, best.settings, best, note, len(log),
                     int(validation[c.user_id].nunique()))


def _planned_epochs(settings: Settings, searched: _Searched, train_rows: int,
                    seconds_left: float) -> tuple[int, str]:
    """The epochs the final schedule spans, and why: the settings'; for a decaying rate,
    fewer if the budget left holds fewer, so that the rate decays within the budget. An
    epoch's time is estimated from the chosen trial's training, scaled by the rows."""
    best = searched.best
    if best is None or not best.epochs or not math.isfinite(seconds_left):
        return settings.epochs, ""
    per_epoch = best.final_seconds / best.epochs * train_rows / max(searched.rows, 1)
    fits = int(seconds_left // max(per_epoch, 1e-9))
    why = (f"about {fits} epoch(s) of {per_epoch:.0f} s (the chosen trial's speed) fit in "
           f"the {seconds_left:.0f} s left")
    if settings.schedule != "cosine":
        return settings.epochs, f"{why}; no epoch starts that would end after the budget"
    epochs = int(np.clip(fits, 1, settings.epochs))
    return epochs, f"the cosine schedule planned over {epochs}: {why}"


def _validation(recipe: Any, prepared: Any) -> tuple[pd.DataFrame, pd.DataFrame, Data]:
    """The held-out events, their users' queries (the history before them) and a
    :class:`Data` whose log is those users' training rows (masked when scoring)."""
    c = recipe.columns
    held = _read([prepared.validation], [c.user_id, c.item_id, c.history])
    queries = held.drop_duplicates(c.user_id, keep="first")[[c.user_id, c.history]]
    known = _read(prepared.train, [c.user_id, c.item_id], users=queries[c.user_id].to_numpy())
    empty = pd.DataFrame()
    data = Data(log=known, items=empty, users=empty, columns=c, max_history=recipe.max_history)
    return held[[c.user_id, c.item_id]], queries.reset_index(drop=True), data


def _train_streamed(recipe: Any, prepared: Any, searched: _Searched,
                    clock: _Clock) -> tuple[Trained, str]:
    """The chosen settings trained on every training row streamed from the shards; the
    epochs chosen by the validation shard's metric within the budget left."""
    c, settings = recipe.columns, searched.settings
    started = time.monotonic()
    held, queries, known = _validation(recipe, prepared)
    candidates = pd.DataFrame({c.item_id: _item_ids(prepared, c.item_id)})
    deadline = clock.deadline(1.0, keep=_SERVING_SHARE)
    epochs, why = _planned_epochs(settings, searched, prepared.train_rows,
                                  deadline - time.monotonic())
    model = _compiled(recipe, prepared, settings, epochs)
    if why:
        recipe._log(f"final training: {epochs} epoch(s) planned; {why}")

    def score() -> dict[str, float]:
        recommender = RecipeRecommender(model, queries=queries, items=candidates,
                                        user_id=c.user_id, item_id=c.item_id)
        return validation_scores(recommender, known, held, recipe.metric)

    def report(epoch: int, value: float) -> None:
        recipe._log(f"final epoch {epoch + 1}/{epochs}: validation {recipe.metric} "
                    f"{value:.4f} ({time.monotonic() - started:.0f} s)")

    monitor = RankingMonitor(score, recipe.metric, _PATIENCE, deadline, report)
    paths = _first_only(prepared, c) if settings.first_only else list(prepared.train)
    rows = estimated_rows(paths)  # exact for Parquet: its footers' row counts
    bar = BatchProgress(epochs=epochs, steps=-(-rows // settings.batch_size), rows=rows,
                        description="Final training", verbose=recipe.verbose)
    history = model.fit(paths, epochs=epochs, batch_size=settings.batch_size, seed=recipe.seed,
                        shuffle_buffer=_SHUFFLE_BUFFER, verbose=0, callbacks=[monitor, bar])
    monitor.restore()
    run = len(history.epoch)
    stop = (f"no better validation score for {_PATIENCE} epochs"
            if run < epochs and run - monitor.best_epoch >= _PATIENCE
            else "the planned epochs ran" if run >= epochs else "the time budget ended it")
    why = (f"{run} of {epochs} planned epoch(s) streamed over {prepared.train_rows:,} rows "
           f"({why + '; ' if why else ''}stopped: {stop}); the best validation "
           f"{recipe.metric} {monitor.best.get(recipe.metric, float('nan')):.4f} on "
           f"{prepared.validation_users:,} held-out users, after epoch {monitor.best_epoch}, "
           "kept")
    trained = Trained(model, settings, monitor.best_epoch, monitor.best,
                      time.monotonic() - started, epochs_run=run)
    return trained, why


def _compiled(recipe: Any, prepared: Any, settings: Settings, epochs: int) -> Any:
    """The model of ``settings`` on the prepared vocabularies, compiled as the in-memory
    path compiles it (Adagrad; a cosine decay spans the planned epochs), seeded."""
    import tensorflow as tf

    c = recipe.columns
    kinds = {c.user_id: "categorical", c.item_id: "categorical", c.history: "multi"}
    vocabularies = _with_kinds(prepared.load_vocabularies(), kinds)
    empty = pd.DataFrame()
    data = Data(log=empty, items=empty, users=empty, columns=c, max_history=recipe.max_history,
                towers=recipe._towers)
    tf.keras.utils.set_random_seed(recipe.seed)
    model = build_model(data, settings, vocabularies=vocabularies)
    rate: Any = settings.learning_rate
    if settings.schedule == "cosine":
        steps = epochs * -(-prepared.train_rows // settings.batch_size)
        rate = tf.keras.optimizers.schedules.CosineDecay(rate, steps)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=rate))
    return model


def _item_ids(prepared: Any, item_id: str) -> np.ndarray:
    """Every item of the log: the item vocabulary's tokens."""
    vocabulary = prepared.load_vocabularies()[item_id]
    return np.asarray(vocabulary.tokens, dtype=object if vocabulary.dtype == "string"
                      else np.int64)


def _first_only(prepared: Any, c: Columns) -> list[str]:
    """The training shards less the later repeats of each (user, item) pair, written once
    into the work directory. Exact per shard: every event of a user is in one shard."""
    pa = _pyarrow()
    folder = os.path.join(prepared.work_dir, "first_only")
    targets = [os.path.join(folder, os.path.basename(p)) for p in prepared.train]
    of = _text(os.path.join(prepared.work_dir, "manifest.json"))  # the preparation used
    marker = os.path.join(folder, "_COMPLETE")
    if os.path.exists(marker) and _text(marker) == of:
        return targets
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for source, target in zip(prepared.train, targets, strict=True):
        table = pa.parquet.read_table(source)
        keys = pd.DataFrame({
            "user": table.column(c.user_id).to_numpy(zero_copy_only=False),
            "item": table.column(c.item_id).to_numpy(zero_copy_only=False),
            # Earlier events first: by time, then by the length of the history before them.
            "time": (table.column(c.timestamp).to_numpy(zero_copy_only=False)
                     if c.timestamp is not None else 0),
            "length": pa.compute.list_value_length(table.column(c.history)).to_numpy(
                zero_copy_only=False)})
        ordered = keys.sort_values(["time", "length"], kind="stable")
        first = np.sort(ordered.index[~ordered.duplicated(["user", "item"])].to_numpy())
        pa.parquet.write_table(table.take(pa.array(first)), f"{target}.tmp")
        os.replace(f"{target}.tmp", target)
    with open(marker, "w", encoding="utf-8") as f:
        f.write(of)
    return targets


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _serving_tables(recipe: Any, prepared: Any, settings: Settings,
                    given_items: pd.DataFrame | None) -> Saved:
    """What the fitted Recipe serves from: each user's query features at the end of the
    log (their latest history), every item of the log and the catalogue, and the user,
    item and time of every interaction (read from the training and validation shards)."""
    c = recipe.columns
    columns = [c.user_id] if settings.history == "none" else [c.user_id, c.history]
    queries = _read(prepared.latest, columns)
    items = pd.Series(_item_ids(prepared, c.item_id))
    if given_items is not None:
        items = pd.concat([items, given_items[c.item_id]], ignore_index=True)
    candidates = pd.DataFrame({c.item_id: pd.unique(items)})
    seen = _read([*prepared.train, *([prepared.validation] if prepared.validation else [])],
                 c.ids())  # as Recipe._seen: each interaction's user, item and time
    return Saved(queries=queries, candidates=candidates, seen=seen)
