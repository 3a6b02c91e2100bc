"""``Recipe.fit`` on a log in files bigger than ``in_memory_rows``: out of core.

The log is never read whole into memory:

1. :func:`~tfrs_kit.features.prepare` writes, out of core and resumably, into the work
   directory: vocabularies, training shards with a history column, a validation shard
   (each held-out user's latest event with the history before it), a sample of users'
   rows and each user's latest history;
2. the settings search runs in memory on the sample (its id and time columns), with the
   same functions the in-memory ``fit`` calls (:func:`~tfrs_kit.recipe._search.search`);
3. with ``blend`` on, the blend's factorisation and popularity are counted shard by
   shard from the training shards and fitted (:mod:`~tfrs_kit.recipe._scale_blend`)
   before the final training, so that their time is known when it is planned;
4. the chosen settings train on every training row streamed from the shards, the
   validation shard scored after each epoch (:class:`RankingMonitor`): the best epoch's
   weights are kept. With a time budget the training is planned in steps from its
   measured speed (:class:`~tfrs_kit.recipe._fit_progress.StepBudget`) and cut, mid-epoch
   if need be, when only the time reserved for what follows is left: the last
   validation score, the blend's weight choice (on fewer users when it is short) and the
   serving tables and export (:class:`_Reserve`, from what was timed);
5. the users' latest histories, the item vocabulary (and the catalogue) and each user's
   seen items become the tables the fitted Recipe serves from, as a loaded one does;
6. the blend's weights are chosen on the validation shard and the towers are blended as
   the in-memory ``fit`` blends them.

Each stage's seconds are in ``report.stages``; the log names each stage's time and the
process's peak memory so far. Budgets in counts (``time_budget=None``) never read the
clock: the same seed gives the same model.

Left for later steps: item and user features (left out, named in the report), the
factorisation warm start (not searched: it needs the log in memory), the ranking stage.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit.data._files import _pyarrow, estimated_rows
from tfrs_kit.recipe import _rerank, _slots
from tfrs_kit.recipe._blend import choice_users
from tfrs_kit.recipe._fit_progress import (
    BatchProgress,
    StepBudget,
    peak_gib,
    release_unused_memory,
)
from tfrs_kit.recipe._inputs import Columns, attribute_table, split_validation, to_frame
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import RecipeReport, Trial
from tfrs_kit.recipe._scale_blend import (
    BlendInputs,
    blend_shards,
    choice_passes,
    prepare_blend,
    spread_users,
)
from tfrs_kit.recipe._search import search
from tfrs_kit.recipe._settings import Allowed, Settings, base_settings
from tfrs_kit.recipe._source import shards as log_shards
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

__all__ = ["DEFAULT_IN_MEMORY_ROWS", "DEFAULT_SEARCH_ROWS", "fit_out_of_core"]

DEFAULT_IN_MEMORY_ROWS = 500_000
DEFAULT_SEARCH_ROWS = 300_000
_SEARCH_SHARE = 0.35  # of the budget left after the preparation, for the search at most
_MIN_SEARCH_SHARE = 0.15  # ... and at least, when the final training needs the rest
_ROWS_PER_SECOND = 10_000  # rows trained a second, a guess (5k-15k on 2 busy CPU cores)
_TRIAL_EPOCHS = 6  # epochs over the sample the search's share should hold
_MIN_SAMPLE_ROWS = 20_000
_MARGIN = 0.06  # of the budget, left unplanned: the process's start, estimates' errors
_ALS_SHARE = 0.12  # of the time left after the search, the most iALS's iterations take
_CHOICE_SHARE = 0.08  # of the budget, the most the blend's weight choice is planned to take
_MIN_CHOICE_USERS = 200  # ... on fewer validation users when its share holds fewer, not less
_EXPORT_READS = 6.0  # the serving tables and the export take about this many reads of the
_EXPORT_SECONDS = 15.0  # ... training shards' ids (timed), plus this (the index's SavedModel)
_SCORED = 100_000_000  # validation users x items scored per epoch, above which fewer users
_SECONDS_PER_SCORE = 5e-8  # a validation score's seconds per user and item, until timed
_VALIDATION_USERS = 5_000  # users held out for the final model's epochs, aimed at
_EVENTS_PER_USER = 20  # a guess of the log's shape, to turn that count into a share
_BATCH_ROWS = 65_536  # rows of a shard read at once where a whole shard is not needed
_SHUFFLE_BUFFER = 65_536  # rows mixed by the streaming window
_PATIENCE = 2  # epochs without a better validation score before the final training stops
_MIN_VALIDATION_USERS = 10


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

    def lap(self, stage: str) -> str:
        """Ends ``stage``: its seconds (kept in :attr:`stages`) and the process's peak
        memory so far, as words for the log."""
        gc.collect()  # the stage's models (Keras layers hold cycles) before the next's
        release_unused_memory()  # what Arrow's pool kept of the stage's buffers
        now = time.monotonic()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + now - self._last, 2)
        self._last = now
        return f"{self.stages[stage]:.1f} s, peak RSS {peak_gib():.2f} GiB"

    def left(self) -> float:
        """Seconds the budget has left (infinite without a budget)."""
        if self.budget is None:
            return math.inf
        return max(self.start + self.budget - time.monotonic(), 0.0)

    def end(self) -> float:
        """When the fit should end: the budget less a small margin (the process's start
        and the export around the fit; infinite without a budget)."""
        if self.budget is None:
            return math.inf
        return self.start + self.budget * (1.0 - _MARGIN)

    def deadline(self, share_of_left: float) -> float:
        """Now plus ``share_of_left`` of the time to :meth:`end`."""
        now = time.monotonic()
        return now + max(self.end() - now, 0.0) * share_of_left


def fit_out_of_core(recipe: Any, train: Any, *, items: Any = None, users: Any = None) -> Any:
    """``recipe.fit(train)`` without reading ``train`` into memory (see the module)."""
    rerank = _rerank.out_of_core_choice(recipe.rerank, recipe.in_memory_rows)  # before preparing
    clock = _Clock(recipe.time_budget)
    c: Columns = recipe._columns(train)
    recipe.columns, recipe.schema_ = c, c.schema
    paths, rows = log_shards(recipe, train)
    folder = recipe.work_dir or tempfile.mkdtemp(prefix="tfrs_kit_recipe_")
    try:
        prepared = _prepare(recipe, paths, rows, folder)
        recipe._log(f"prepared {prepared.rows:,} events of {prepared.users:,} users and "
                    f"{prepared.items:,} items in {clock.lap('prepare')} ({folder})")
        given_items = None if items is None else to_frame(items, "items",
                                                          {"item_id": c.item_id})
        searched = _search_sample(recipe, prepared, given_items, clock)
        chosen = searched.settings
        recipe._log(f"search: {len(searched.trials)} trial(s) on {prepared.sample_rows:,} "
                    f"rows of {prepared.sample_users:,} users in {clock.lap('search')}; "
                    f"chosen {chosen.describe()}")
        shards = _first_only(prepared, c) if chosen.first_only else list(prepared.train)
        inputs = None
        if recipe.blend and prepared.validation is not None:  # fitted first: its time known
            inputs = prepare_blend(recipe, chosen, shards, prepared.load_vocabularies(),
                                   deadline=clock.deadline(_ALS_SHARE))
            recipe._log(f"blend factors: {clock.lap('blend factors')}")
        final = _train_streamed(recipe, prepared, searched, clock, shards, inputs)
        trained, why = final.trained, final.why
        recipe._log(f"final training: {why} ({clock.lap('final')})")
        saved = _serving_tables(recipe, prepared, chosen, given_items)
        recipe._log(f"serving tables: {clock.lap('serving tables')}")
        blend = None
        if inputs is not None:
            trained, blend = blend_shards(
                recipe, trained, inputs, validation=final.validation, saved=saved,
                deadline=clock.end() - final.export, users=final.choice_users)
            recipe._log(f"blend: {clock.lap('blend')}")
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
        towers=recipe._towers.names(), max_trials=recipe.max_trials,
        final_epochs_cut=trained.clock_cut, rerank=rerank), stages=dict(clock.stages))
    recipe._set_state(trained, report, None, saved)  # served from its tables, as if loaded
    return recipe


def _prepare(recipe: Any, paths: Sequence[str], rows: int, folder: str) -> Any:
    """The preparation in ``folder``: reused when one of the same log and settings is
    there (finished, or resumed where it stopped), else made anew."""
    from tfrs_kit.features import prepare

    if recipe.beam_runner is not None:  # the same folder, written by Beam's workers
        from tfrs_kit.beam import prepare  # type: ignore[no-redef]  # needs the extra
    on_beam = {} if recipe.beam_runner is None else {
        "runner": recipe.beam_runner, "options": recipe.beam_options}
    c = recipe.columns
    users_guess = max(rows / _EVENTS_PER_USER, 1.0)
    return prepare(
        paths, **on_beam, work_dir=folder, user_id=c.user_id, item_id=c.item_id,
        timestamp=c.timestamp, history_length=recipe.max_history, history=c.history,
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


def _read(paths: Sequence[str], columns: Sequence[str], users: Any = None, *,
          categorical: Sequence[str] = ()) -> pd.DataFrame:
    """``columns`` of Parquet files as one DataFrame (only the rows of ``users``, if given);
    those of ``categorical`` as codes (1e7 events' ids: 0.32 GiB as strings, 0.13 GiB)."""
    pa = _pyarrow()
    tables = []
    for path in paths:
        table = pa.parquet.read_table(path, columns=list(columns),
                                      read_dictionary=list(categorical) or None)
        if users is not None:
            found = pa.compute.is_in(table.column(columns[0]),
                                     value_set=pa.array(users, table.column(columns[0]).type))
            table = table.filter(found)
        # pandas' strings are Arrow large strings: cast shard by shard, the frame then
        # takes the chunks as they are (one copy of a shard at a time, not of the log).
        tables.append(table.cast(pa.schema([
            field.with_type(pa.large_string()) if pa.types.is_string(field.type) else field
            for field in table.schema])))
        del table
    if not tables:
        return pd.DataFrame({name: [] for name in columns})
    table = pa.concat_tables(tables)
    del tables
    return table.to_pandas()


@dataclasses.dataclass(frozen=True)
class _Searched:
    """What the search on the sample chose: its trials, the settings, the chosen trial's
    best epoch and estimated final-training seconds (``None`` without a validation
    slice; its model is let go: its tables and optimizer slots grow with the catalogue),
    a note, and the sample's rows."""

    trials: list[Trial]
    settings: Settings
    best: tuple[int, float] | None
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
    return _Searched(trials, best.settings, (best.epochs, best.final_seconds), note, len(log),
                     int(validation[c.user_id].nunique()))


def _planned_epochs(settings: Settings, searched: _Searched, train_rows: int,
                    seconds_left: float) -> tuple[int, str]:
    """The epochs the final schedule spans, and why: the settings'; for a decaying rate,
    fewer if the budget left holds fewer, so that the rate decays within the budget. An
    epoch's time is estimated from the chosen trial's training, scaled by the rows."""
    if searched.best is None or not searched.best[0] or not math.isfinite(seconds_left):
        return settings.epochs, ""
    best_epochs, final_seconds = searched.best
    per_epoch = final_seconds / best_epochs * train_rows / max(searched.rows, 1)
    seconds_left = max(seconds_left, 0.0)
    fits = seconds_left / max(per_epoch, 1e-9)
    why = (f"about {fits:.2f} epoch(s) of {per_epoch:.0f} s (the chosen trial's speed) fit "
           f"in the {seconds_left:.0f} s left")
    if settings.schedule != "cosine":
        return settings.epochs, f"{why}; the clock may cut one mid-epoch"
    epochs = int(np.clip(int(fits), 1, settings.epochs))
    return epochs, f"the cosine schedule planned over {epochs}: {why}"


def _validation(recipe: Any, prepared: Any,
                items: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, Data]:
    """The held-out events, their users' queries (the history before them) and a
    :class:`Data` whose log is those users' training rows (masked when scoring). Of a
    large catalogue (``items``), fewer users: each score ranks every item for each, and
    at most about :data:`_SCORED` scores (at least 1,000 users) are drawn, by the seed."""
    c = recipe.columns
    held = _read([prepared.validation], [c.user_id, c.item_id, c.history])
    users = held[c.user_id].unique()
    most = max(1_000, _SCORED // max(items, 1))
    if len(users) > most:
        drawn = np.random.default_rng(recipe.seed).permutation(len(users))[:most]
        held = held[held[c.user_id].isin(users[np.sort(drawn)])]
    queries = held.drop_duplicates(c.user_id, keep="first")[[c.user_id, c.history]]
    known = _read(prepared.train, [c.user_id, c.item_id], users=queries[c.user_id].to_numpy())
    empty = pd.DataFrame()
    data = Data(log=known, items=empty, users=empty, columns=c, max_history=recipe.max_history)
    return held[[c.user_id, c.item_id]], queries.reset_index(drop=True), data


class _Reserve:
    """The seconds the final training leaves for what follows it, from what was timed:
    the last epoch's validation score, the blend's weight choice (its passes over the
    validation users, each about one score; on fewer users when its share of the
    budget holds fewer), the serving tables and the export (reads of the shards)."""

    def __init__(self, *, read_seconds: float, users: int, items: int,
                 inputs: BlendInputs | None, budget: float | None) -> None:
        self.export = _EXPORT_READS * read_seconds + _EXPORT_SECONDS
        self.users, self.items, self.inputs, self.budget = users, items, inputs, budget
        self.scores: list[float] = []  # seconds of each validation score so far

    def score(self) -> float:
        """A validation score's seconds: the slower of the last two, or before the first
        a prior of :data:`_SECONDS_PER_SCORE` per user and item."""
        if self.scores:
            return max(self.scores[-2:])
        return self.users * self.items * _SECONDS_PER_SCORE

    def choice(self) -> tuple[float, int | None]:
        """The weight choice's seconds and users (``None``: its own default)."""
        if self.inputs is None or self.budget is None:
            return 0.0, None
        per_user = self.score() / max(self.users, 1)  # a user's scores of every item
        users = min(self.users, choice_users(self.items))
        passes = choice_passes(self.inputs)
        spreads = 2 * spread_users(self.items) * per_user  # the blended model's spreads
        share = _CHOICE_SHARE * self.budget - spreads
        if passes * users * per_user > share:
            users = max(_MIN_CHOICE_USERS, int(share / (passes * per_user)))
            return passes * users * per_user + spreads, users
        return passes * users * per_user + spreads, None

    def __call__(self) -> float:
        return self.score() + self.choice()[0] + self.export


@dataclasses.dataclass(frozen=True)
class _Final:
    """The final training: the model, why it ran as it did, the validation it used, the
    seconds kept for the tables and the export, the weight choice's users."""

    trained: Trained
    why: str
    validation: tuple[pd.DataFrame, pd.DataFrame, Data]
    export: float
    choice_users: int | None


def _train_streamed(recipe: Any, prepared: Any, searched: _Searched, clock: _Clock,
                    paths: list[str], inputs: BlendInputs | None) -> _Final:
    """The chosen settings trained on every training row streamed from the shards; the
    epochs chosen by the validation shard's metric; with a budget, cut mid-epoch when
    only the time reserved for what follows is left (:class:`_Reserve`)."""
    c, settings = recipe.columns, searched.settings
    started = time.monotonic()
    candidates = pd.DataFrame({c.item_id: _item_ids(prepared, c.item_id)})
    validation = _validation(recipe, prepared, len(candidates))
    held, queries, known = validation
    reserve = _Reserve(read_seconds=time.monotonic() - started, users=len(queries),
                       items=len(candidates), inputs=inputs, budget=clock.budget)
    end = clock.end()
    epochs, why = _planned_epochs(settings, searched, prepared.train_rows,
                                  end - time.monotonic() - reserve.export)
    steps = -(-estimated_rows(paths) // settings.batch_size)  # exact for Parquet
    model, decay = _compiled(recipe, prepared, settings, epochs * steps)
    if why:
        recipe._log(f"final training: {epochs} epoch(s) planned; {why}")

    budget = StepBudget(steps=epochs * steps, end=end, reserve=reserve,
                        boundary=reserve.score, steps_per_epoch=steps, decay=decay)

    def score() -> dict[str, float]:
        began = time.monotonic()
        if budget.cut_by_clock and began + reserve() > end:  # no time left to score it
            return {name: math.nan for name in {recipe.metric, "recall@10", "ndcg@10"}}
        recommender = RecipeRecommender(model, queries=queries, items=candidates,
                                        user_id=c.user_id, item_id=c.item_id)
        scores = validation_scores(recommender, known, held, recipe.metric)
        reserve.scores.append(time.monotonic() - began)
        return scores

    if math.isfinite(end):  # timed once before training: what the reserve is planned from
        score()  # (a prior per user and item was 3-4x off on a large catalogue)

    def report(epoch: int, value: float) -> None:
        recipe._log(f"final epoch {epoch + 1}/{epochs}: validation {recipe.metric} "
                    f"{value:.4f} (scored in {reserve.score():.1f} s; "
                    f"{time.monotonic() - started:.0f} s, {reserve():.0f} s reserved)")

    kept = os.path.join(prepared.work_dir, "best_weights")  # one fit per work dir
    shutil.rmtree(kept, ignore_errors=True)
    monitor = RankingMonitor(score, recipe.metric, _PATIENCE, math.inf, report,
                             keep_in=kept)  # on disk: the tables grow with the users
    bar = BatchProgress(epochs=epochs, steps=steps, rows=estimated_rows(paths),
                        description="Final training", verbose=recipe.verbose)
    try:
        history = model.fit(paths, epochs=epochs, batch_size=settings.batch_size,
                            seed=recipe.seed, shuffle_buffer=_SHUFFLE_BUFFER, verbose=0,
                            callbacks=[monitor, budget, bar])
        monitor.restore()
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    slots = _release_slots(model, settings)
    # The clock's cut: epochs not (wholly) run when the training ran to the clock's plan.
    cut = settings.epochs - budget.done // steps if budget.done >= budget.planned else 0
    trained = Trained(model, settings, monitor.best_epoch, monitor.best,
                      time.monotonic() - started, epochs_run=len(history.epoch),
                      clock_cut=max(cut, 0), slots=slots)
    why = _why(recipe, prepared, monitor, budget, epochs, "; ".join(
        w for w in (why, budget.why()) if w), len(queries))
    return _Final(trained, why, validation, reserve.export, reserve.choice()[1])


def _why(recipe: Any, prepared: Any, monitor: RankingMonitor, budget: StepBudget,
         epochs: int, plan: str, users: int) -> str:
    """The report's words on the final training: what ran, why it stopped, what was kept."""
    run = budget.done / budget.steps_per_epoch
    stop = ("the time budget ended it" + (" mid-epoch" if budget.done % budget.steps_per_epoch
                                          else "")
            if budget.planned < budget.steps else
            f"no better validation score for {_PATIENCE} epochs"
            if budget.done < budget.steps else "the planned epochs ran")
    return (f"{run:.2f} of {epochs} planned epoch(s) streamed over {prepared.train_rows:,} "
            f"rows ({plan + '; ' if plan else ''}stopped: {stop}); the best validation "
            f"{recipe.metric} {monitor.best.get(recipe.metric, float('nan')):.4f} on "
            f"{users:,} held-out users, "
            f"after epoch {monitor.best_epoch}, kept")


def _compiled(recipe: Any, prepared: Any, settings: Settings, steps: int) -> tuple[Any, Any]:
    """The model of ``settings`` on the prepared vocabularies, compiled as the in-memory
    path compiles it (Adagrad; a cosine decay spans the planned ``steps``, a variable
    the step budget may lower), seeded; and that variable (``None``: a constant rate)."""
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
    decay = None
    if settings.schedule == "cosine":
        decay = tf.Variable(float(max(steps, 1)), trainable=False, dtype=tf.float32,
                            name="decay_steps")
        rate = tf.keras.optimizers.schedules.CosineDecay(rate, decay)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=rate))
    return model, decay


def _release_slots(model: Any, settings: Settings) -> Any:
    """Returns the row means of the trained Adagrad's slots (``_slots``, where an update
    starts), then lets the slots go (each the size of its table: TensorFlow reuses their
    memory for the blend and the export) by compiling ``model`` with a new Adagrad."""
    import tensorflow as tf

    slots = _slots.read(model)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=settings.learning_rate))
    gc.collect()
    return slots


def _item_ids(prepared: Any, item_id: str) -> np.ndarray:
    """Every item of the log: the item vocabulary's tokens."""
    vocabulary = prepared.load_vocabularies()[item_id]
    return np.asarray(vocabulary.tokens, dtype=object if vocabulary.dtype == "string"
                      else np.int64)


def _first_only(prepared: Any, c: Columns) -> list[str]:
    """The training shards less the later repeats of each (user, item) pair, written once
    into the work directory. Exact per shard: every event of a user is in one shard.
    A shard is read twice, :data:`_BATCH_ROWS` rows at a time: its keys, then its rows
    (whole, a shard's histories took more memory than the rest of the fit at 1e6)."""
    pa = _pyarrow()
    folder = os.path.join(prepared.work_dir, "first_only")
    targets = [os.path.join(folder, os.path.basename(p)) for p in prepared.train]
    of = Path(prepared.work_dir, "manifest.json").read_text("utf-8")  # the preparation used
    marker = os.path.join(folder, "_COMPLETE")
    if os.path.exists(marker) and Path(marker).read_text("utf-8") == of:
        return targets
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for source, target in zip(prepared.train, targets, strict=True):
        keep = _first_rows(source, c)
        with pa.parquet.ParquetFile(source, pre_buffer=False) as shard, \
                pa.parquet.ParquetWriter(f"{target}.tmp", shard.schema_arrow) as writer:
            start = 0
            for batch in shard.iter_batches(batch_size=_BATCH_ROWS):
                rows = keep[np.searchsorted(keep, start):np.searchsorted(keep, start + len(batch))]
                writer.write_batch(batch.take(pa.array(rows - start)))
                start += len(batch)
        os.replace(f"{target}.tmp", target)
    with open(marker, "w", encoding="utf-8") as f:
        f.write(of)
    return targets


def _first_rows(path: str, c: Columns) -> np.ndarray:
    """The sorted row numbers of a shard's first event of each (user, item) pair: the
    earliest, then the one with the shortest history before it."""
    pa = _pyarrow()
    names = [c.user_id, c.item_id, *([c.timestamp] if c.timestamp is not None else [])]
    with pa.parquet.ParquetFile(path, pre_buffer=False) as shard:
        lengths = np.concatenate([np.zeros(0, np.int32), *(
            pa.compute.list_value_length(batch.column(0)).to_numpy(zero_copy_only=False)
            for batch in shard.iter_batches(batch_size=_BATCH_ROWS, columns=[c.history]))])
        table = shard.read(columns=names)
    keys = pd.DataFrame({
        "user": table.column(c.user_id).to_numpy(zero_copy_only=False),
        "item": table.column(c.item_id).to_numpy(zero_copy_only=False),
        "time": (table.column(c.timestamp).to_numpy(zero_copy_only=False)
                 if c.timestamp is not None else 0),
        "length": lengths})
    del table
    ordered = keys.sort_values(["time", "length"], kind="stable")
    return np.sort(ordered.index[~ordered.duplicated(["user", "item"])].to_numpy())


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
                 c.ids(), categorical=(c.user_id, c.item_id))  # as Recipe._seen, as codes
    return Saved(queries=queries, candidates=candidates, seen=seen)
