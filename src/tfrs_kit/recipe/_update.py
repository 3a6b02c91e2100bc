"""``Recipe.update`` and ``tk.recipe.update``: a fitted model brought up to date with new events.

An update never starts over. The vocabularies grow (new users and items are
appended, so every known id keeps its index and its trained embedding row; a new
row starts at the mean of the known rows), the trained weights are copied into
the grown model, which is fine-tuned on the new events plus a bounded sample of
older ones (the replay, against forgetting, drawn from the latest of them), its
optimizer started from the serving
model's state (:mod:`~tfrs_kit.recipe._slots`: a known row moves as little as its
training left it to, a new row fast), each user's query features (their latest
history) and seen items are extended, and the index is rebuilt.

The blend goes stale as tastes drift, so it is refreshed at a cost that follows the
new events (:mod:`~tfrs_kit.recipe._update_blend`): with ``rechoose``, its weights and
popularity window are chosen again for the fine-tuned towers on the update's own
holdout (the latest new event of half the users with another event, at most 2,000),
on one factorisation shared with the model the guard measures (the serving one's
tables, their rows of the new events' users and items solved again), and replace the
serving weights only when they beat them there beyond noise; the published blend's
popularity is recounted on every event and its factorisation swept once more with the
held-out events.

The guard: the latest new event of other users (at most 2,000) is held out of the
fine-tuning and of the blend; the updated model and the serving one are scored on
it (training items masked, per user:
:func:`~tfrs_kit.recipe._recommender.per_user_scores`),
and an update worse by more than ``tolerance`` is refused (:class:`UpdateRejected`)
unless forced. Re-chosen weights the guard refuses are not the end: the serving
weights on the fine-tuned towers are measured next (on MovieLens 100K's fourth day,
weights chosen on 53 users' single events dropped the popularity the next day needed;
the guard's 53 other users halved their ndcg@10). The burden of proof differs: the
re-chosen weights, an optional change with a fallback, must stay within ``tolerance``;
the last option, the update itself (new events, new items), is refused only when its
drop passes ``tolerance`` by more than ``GUARD_NOISE`` standard errors of the mean
per-user difference. On a small holdout (100 users' single events at ndcg@10 near 0.005:
one or two hits) a drop of a hit is noise, and refusing on it kept a day's new items out
of the index; a broken model's drop still passes the allowance wherever the holdout has
hits to lose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_bool, check_int, check_number
from tfrs_kit.data._table import TableLike
from tfrs_kit.recipe import _slots, _store
from tfrs_kit.recipe._inputs import attribute_table
from tfrs_kit.recipe._recommender import RecipeRecommender, per_user_scores
from tfrs_kit.recipe._training import Data, Trained, build_model
from tfrs_kit.recipe._update_blend import refresh_blend
from tfrs_kit.recipe._update_events import late_events, read_new_events

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_RECHOOSE", "DEFAULT_REPLAY", "DEFAULT_REPLAY_WINDOW",
           "DEFAULT_TOLERANCE", "DEFAULT_WARM_SWEEPS", "FINE_TUNE_RATE", "GUARD_NOISE",
           "UpdateRejected", "UpdateReport", "check_folder", "update_recipe"]

#: Older events replayed per new event (measured in ``benchmarks/lifecycle.py``: on the
#: drifting log 0.5 kept 0.98 of a refit's recall, 2 only 0.89: old tastes replayed).
DEFAULT_REPLAY = 0.5
#: The latest share of the older events (by time) the replay is drawn from (1: all of
#: them). Measured in ``benchmarks/lifecycle.py``, mean update/refit recall: better than 1
#: on 5 of 6 logs (MovieLens 100K, 3 seeds, 1.090 against 1.062; synthetic 1,500, 3,000
#: and 400 users 1.064, 1.046, 0.794 against 1.012, 1.020, 0.709).
DEFAULT_REPLAY_WINDOW = 0.25
#: Epochs of fine-tuning over the new events and the replay.
DEFAULT_EPOCHS = 4
#: Whether the blend's weights and popularity window are chosen again on each update (see
#: :mod:`~tfrs_kit.recipe._update_blend`; measured in ``benchmarks/lifecycle.py``).
DEFAULT_RECHOOSE = True
#: Sweeps of the update's iALS from the serving model's factors over the new events' users
#: and items (0: a fit from random factors over the whole log). Measured in
#: ``benchmarks/lifecycle.py``: update/refit recall 1.060 against 1.078 (MovieLens 100K, 3
#: seeds) and 1.012/1.020 against 1.009/1.027 (two synthetic logs); at 1e6 events and 1e4
#: new, 1.5 s of iALS against 6.2 s.
DEFAULT_WARM_SWEEPS = 3
#: The fine-tuning's learning rate over the fit's. The known rows' steps are already
#: shrunk by their accumulators (``_slots``); a faster rate moves the new rows and the
#: day's users further. Measured in ``benchmarks/lifecycle.py`` (docs/benchmarks.md).
FINE_TUNE_RATE = 4.0
#: The largest relative drop of the guard's metric an update may show and be published.
DEFAULT_TOLERANCE = 0.1
#: Standard errors of the mean per-user difference (updated minus serving) by which the
#: guard's drop must pass ``tolerance`` before it refuses the update's last option (the
#: serving weights on the fine-tuned towers): a drop within them is the holdout's noise, not
#: a regression. Measured on the days of ``benchmarks/lifecycle.py`` (docs/benchmarks.md,
#: issue 26): the sound update the strict guard refused (synthetic, 400 users, day 4) lay
#: 0.52 standard errors past the tolerance; updates with scrambled towers (the blend kept)
#: lay 1.29 to 4.6 past it (MovieLens 100K's 53 guard users: 1.29, 1.41, 1.69), so 2 would
#: have published three of them and 1 refuses all.
GUARD_NOISE = 1.0
_GUARD_USERS = 2_000  # the most users the guard holds out
_CHOICE_USERS = 2_000  # the most users held out to choose the blend's weights again
_MIN_CHOICE_USERS = 20  # fewer: the blend's weights are kept (too few to choose on)
#: The most multiply-adds of the update's largest product (users x candidates x width) for
#: which BLAS runs on one thread (on 2 busy cores, 2,000 x 1,682 x 81: 8 ms on one, 14 on
#: two; 2,000 x 20,000 x 81: 106 against 131).
_SMALL_PRODUCT = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class UpdateReport:
    """What an update did, and what the guard measured.

    Attributes:
        events: The new events learned from (those already logged left out).
        new_users: Users the model had not seen (new embedding rows).
        new_items: Items the model had not seen (new candidates).
        late_events: New events older than the model's newest event (accepted).
        already_logged: Rows of the new events already in the model's log (the same
            user, item and time: a day given twice), left out.
        replayed: Older events sampled into the fine-tuning.
        epochs: Epochs of fine-tuning.
        holdout_users: Users whose latest new event was held out for the guard.
        metric: The guard's metric (the Recipe's).
        serving_score: The serving model's score on the holdout (``None``: no holdout).
        updated_score: The updated model's score on the holdout.
        tolerance: The largest relative drop allowed.
        published: Whether the update replaced the model (and, with a folder, moved
            ``latest``).
        forced: Whether it was published whatever the guard said.
        version: The version saved (with a folder), else ``None``.
        seconds: The time the update took.
        blend: The blend published (:class:`~tfrs_kit.recipe.Blend`; ``None``: none):
            its popularity and factorisation recounted on every event.
        blend_users: Users whose held-out events chose the blend's weights and
            popularity window again (0: the serving weights kept, too few users).
        noise: The standard error of the mean per-user difference between the updated
            and the serving score (a small holdout's scores are noisy).
        allowance: The drop beyond ``tolerance`` the guard forgave as noise
            (``GUARD_NOISE`` times ``noise`` for the update's last option, 0 for
            re-chosen weights with the serving ones to fall back on).
        refused_blend: The weights chosen again that the guard refused (the serving
            weights were then tried, ``blend``), else ``None``.
    """

    events: int
    new_users: int
    new_items: int
    late_events: int
    replayed: int
    epochs: int
    holdout_users: int
    metric: str
    serving_score: float | None
    updated_score: float | None
    tolerance: float
    published: bool = False
    forced: bool = False
    version: int | None = None
    seconds: float = 0.0
    blend: Any = None
    blend_users: int = 0
    noise: float = 0.0
    refused_blend: Any = None
    allowance: float = 0.0
    already_logged: int = 0

    @property
    def passed(self) -> bool:
        """True when the guard passed (no holdout, or a drop within ``tolerance`` and
        ``allowance``)."""
        if self.serving_score is None or self.updated_score is None:
            return True
        return (self.updated_score >= self.serving_score * (1.0 - self.tolerance)
                - self.allowance - 1e-12)

    def __str__(self) -> str:
        scores = ("no holdout" if self.serving_score is None else
                  f"{self.metric} serving={self.serving_score:.4f} "
                  f"updated={self.updated_score:.4f} (+-{self.noise:.4f}) on "
                  f"{self.holdout_users} users")
        logged = f", {self.already_logged} already logged: left out" if self.already_logged \
            else ""
        return (f"update: {self.events} events ({self.late_events} late{logged}), "
                f"{self.new_users} new users, {self.new_items} new items, "
                f"{self.replayed} replayed, {self.epochs} epochs; {self._blend_note()}; "
                f"guard: {scores}; "
                f"{'published' if self.published else 'not published'}"
                + ("" if self.version is None else f" as version {self.version}"))

    def _blend_note(self) -> str:
        if self.blend is None:
            return "no blend"
        weights = (f"iALS {self.blend.weight:g}, popularity {self.blend.popularity:g} "
                   f"over the latest {self.blend.window:g} of the events")
        if self.refused_blend is not None:
            return (f"blend kept ({weights}): the weights chosen again (iALS "
                    f"{self.refused_blend.weight:g}, popularity "
                    f"{self.refused_blend.popularity:g}) failed the guard")
        if not self.blend_users:
            return f"blend kept ({weights})"
        return f"blend chosen again on {self.blend_users} users ({weights})"


class UpdateRejected(RuntimeError):
    """An update the guard refused: the updated model scored worse on the newest events
    than the serving one by more than the tolerance. ``report`` holds the scores."""

    def __init__(self, report: UpdateReport) -> None:
        drop = 1.0 - (report.updated_score or 0.0) / max(report.serving_score or 0.0, 1e-12)
        super().__init__(
            f"The update was not published: {report.metric} on each user's latest new event "
            f"fell from {report.serving_score:.4f} (serving) to {report.updated_score:.4f} "
            f"(updated), {drop:.1%} worse, more than tolerance={report.tolerance:g} and "
            f"{GUARD_NOISE:g} standard errors of the holdout's noise ({report.noise:.4f} "
            f"on {report.holdout_users} users). The "
            "serving model stays. Check the new events, or publish anyway with force=True "
            "(`tfrs-kit update --force`).")
        self.report = report


def update_recipe(recipe: Any, new_events: TableLike, *, replay: float, epochs: int,
                  tolerance: float, force: bool, rechoose: bool = DEFAULT_RECHOOSE,
                  warm_sweeps: int = DEFAULT_WARM_SWEEPS,
                  replay_window: float = DEFAULT_REPLAY_WINDOW,
                  seed: int | None = None) -> UpdateReport:
    """See :meth:`tfrs_kit.Recipe.update` (the folder left to the caller). On success
    (or ``force``) ``recipe`` holds the updated model; refused, it is unchanged and
    :class:`UpdateRejected` is raised."""
    start = time.monotonic()
    replay = check_number("replay", replay, minimum=0)
    replay_window = check_number("replay_window", replay_window, minimum=0, maximum=1,
                                 low_open=True)
    epochs = check_int("epochs", epochs, minimum=0)
    tolerance = check_number("tolerance", tolerance, minimum=0)
    check_bool("force", force)
    check_bool("rechoose", rechoose)
    warm_sweeps = check_int("warm_sweeps", warm_sweeps, minimum=0)
    seed = recipe.seed if seed is None else seed
    trained: Trained = recipe._fitted()
    settings, c = trained.settings, recipe.columns
    old = _old_data(recipe, settings)
    new, logged = read_new_events(new_events, old, c, settings)
    full, counts = _grown_data(old, new, settings)
    with _small_products(len(full.items), 2 * settings.embedding_dim + 1):
        return _updated(recipe, trained, old, new, full, (*counts, logged),
                        replay=(replay, replay_window), epochs=epochs, tolerance=tolerance,
                        force=force, rechoose=rechoose, warm_sweeps=warm_sweeps, seed=seed,
                        start=start)


def _small_products(items: int, width: int) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread while the update scores its held-out users (at most
    :data:`_GUARD_USERS` at a time, by ``items`` candidates of about ``width``
    dimensions), when those products are small: a second thread costs more than it saves
    there, and many times more on a busy machine (375 x 450 x 81 on 2 cores at load 6:
    23 ms on two threads, 1.5 ms on one; the update makes dozens). TensorFlow's threads
    are not BLAS's."""
    if _GUARD_USERS * items * width > _SMALL_PRODUCT:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional dependency (the ``implicit`` extra's)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _updated(recipe: Any, trained: Trained, old: Data, new: pd.DataFrame, full: Data,
             counts: tuple[int, int, int], *, replay: tuple[float, float], epochs: int,
             tolerance: float, force: bool, rechoose: bool, warm_sweeps: int, seed: int,
             start: float) -> UpdateReport:
    """:func:`update_recipe` once the new events are read and the data grown (``counts``:
    the new users, the new items, the events already logged and left out)."""
    settings, c = trained.settings, recipe.columns
    choice, guard = _holdouts(full, len(old.log), seed, rechoose=rechoose)
    fit_data = _without(full, choice | guard)
    grown = _grown_model(trained, full, settings, new)  # held-out ids get rows too
    rows, replayed = _fine_tune_rows(fit_data, settings, len(old.log), len(new), *replay,
                                     seed=seed)
    slots = _fine_tune(grown, rows, settings, epochs, seed, slots=trained.slots)
    base = dataclasses.replace(trained, model=grown, slots=slots)
    previous = recipe.report_.blend if recipe.report_ is not None else None
    refreshed = refresh_blend(previous, trained.model, fit_data, full, base, full.log[choice],
                              new, metric=recipe.metric, seed=seed, min_users=_MIN_CHOICE_USERS,
                              rechoose=rechoose, warm_sweeps=warm_sweeps)
    holdout = full.log[guard]
    score = _guard(trained.model, _without(full, guard), holdout, settings, recipe.metric)
    # The weights chosen again; refused by the guard, the serving ones (fine-tuned towers),
    # the last option, which alone is forgiven a drop within the holdout's noise.
    for tried, blend in enumerate(refreshed.options):
        serving_score, updated_score, noise = score(refreshed.measure(blend))
        last = tried == len(refreshed.options) - 1
        report = UpdateReport(
            events=len(new), new_users=counts[0], new_items=counts[1],
            late_events=late_events(old, new, c.timestamp), already_logged=counts[2],
            replayed=replayed, epochs=epochs,
            holdout_users=int(holdout[c.user_id].nunique()), metric=recipe.metric,
            serving_score=serving_score, updated_score=updated_score, noise=noise,
            tolerance=tolerance, forced=force, blend=blend,
            blend_users=int(full.log.loc[choice, c.user_id].nunique())
            if refreshed.rechosen and not tried else 0,
            refused_blend=refreshed.options[0] if tried else None,
            allowance=GUARD_NOISE * noise if last else 0.0)
        if report.passed:
            break
    if not report.passed and not force:  # the last option's report
        raise UpdateRejected(dataclasses.replace(report, seconds=time.monotonic() - start))
    # Published as measured, but the blend's counts and factorisation over every event:
    # the held-out ones are the newest, what the popularity's window is about.
    summary = recipe.report_
    if summary is not None:
        summary = dataclasses.replace(summary, blend=blend or summary.blend, update={
            name: getattr(report, name) for name in ("events", "metric", "holdout_users",
                                                     "updated_score", "serving_score")})
    recipe._set_state(dataclasses.replace(base, model=refreshed.publish(blend)), summary,
                      full, None)
    return dataclasses.replace(report, published=True, seconds=time.monotonic() - start)


def _old_data(recipe: Any, settings: Any) -> Data:
    """The data the model was trained on: a fitted Recipe's, or a loaded one's rebuilt
    from its saved tables (the seen log, the candidates, the users' features)."""
    data: Data | None = recipe._data
    if data is not None:
        return data
    c, saved = recipe.columns, recipe._saved
    log = saved.seen.reset_index(drop=True)
    log = log.assign(**{  # an out-of-core fit's ids are categorical codes: trained as values
        name: log[name].astype(log[name].cat.categories.dtype)
        for name in log if isinstance(log[name].dtype, pd.CategoricalDtype)})
    if c.timestamp is not None and c.timestamp not in log:  # saved before seen had times
        log = log.assign(**{c.timestamp: np.zeros(len(log), np.int64)})
    users = saved.queries[[c.user_id, *settings.user_features]]
    return Data(log=log[c.ids()], items=saved.candidates.reset_index(drop=True),
                users=users.reset_index(drop=True), columns=c,
                max_history=recipe.max_history, towers=recipe._towers)


def _grown_data(old: Data, new: pd.DataFrame, settings: Any) -> tuple[Data, tuple[int, int]]:
    """The old data plus the new events, new users' and items' features appended;
    with the numbers of new users and new items."""
    c = old.columns
    tables = []
    for key, table, features, role in (
            (c.user_id, old.users, settings.user_features, "user"),
            (c.item_id, old.items, settings.item_features, "item")):
        fresh = new[~new[key].isin(table[key])]
        missing = [f for f in features if f not in fresh]
        if len(fresh) and missing:
            raise missing_column("new_events", missing[0], map(str, new.columns),
                                 role=f"a {role} feature of the model, needed for new {role}s")
        if not len(fresh):
            tables.append((table, 0))
            continue
        added = attribute_table(fresh, key, list(features), None, argument="new_events")
        added = added.reindex(columns=table.columns)  # features the model does not read: NaN
        tables.append((pd.concat([table, added], ignore_index=True), len(added)))
    log = pd.concat([old.log[c.ids()], new[c.ids()]], ignore_index=True)
    data = dataclasses.replace(old, log=log, users=tables[0][0], items=tables[1][0])
    return data, (tables[0][1], tables[1][1])


def _holdouts(data: Data, first_new: int, seed: int, *,
              rechoose: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint sets of held-out rows, each the latest new event of users with another
    event, drawn at random: the blend's (at most :data:`_CHOICE_USERS` users, half the
    eligible ones; none with fewer than ``2 * _MIN_CHOICE_USERS``), on which the blend's
    weights are chosen again, and the guard's (at most :data:`_GUARD_USERS` of the
    others), on which the serving and updated models are compared; the other latest
    events stay in the fine-tuning. Fewer guard users make a noisier guard: with 200 on
    a day of the lifecycle benchmark, a sound update was refused. The guard's are not
    the blend's, so the weights chosen do not flatter the update before its guard."""
    c = data.columns
    log = data.log
    new = log.iloc[first_new:]
    order = new.sort_values(c.timestamp, kind="stable") if c.timestamp else new
    latest = order.drop_duplicates(c.user_id, keep="last")
    counts = log[c.user_id].value_counts()
    eligible = latest.index[latest[c.user_id].map(counts).to_numpy() > 1].to_numpy()
    eligible = np.random.default_rng(seed).permutation(eligible)
    half = (len(eligible) // 2 if rechoose
            and len(eligible) >= 2 * _MIN_CHOICE_USERS else 0)
    masks = np.zeros((2, len(log)), bool)
    masks[0, eligible[:min(half, _CHOICE_USERS)]] = True
    masks[1, eligible[min(half, _CHOICE_USERS):][:_GUARD_USERS]] = True
    return masks[0], masks[1]


def _without(data: Data, rows: np.ndarray) -> Data:
    """``data`` less the log's ``rows`` (a mask)."""
    if not rows.any():
        return data
    return dataclasses.replace(data, log=data.log[~rows].reset_index(drop=True))


def _grown_model(trained: Trained, data: Data, settings: Any,
                 new: pd.DataFrame | None = None) -> Any:
    """A model of the vocabularies grown by the ``new`` events (``None``: as trained), the
    trained weights copied in: known rows kept exactly, a new row set to the mean of the
    known rows."""
    from tfrs_kit.recipe._save import _parts

    (query, candidate), _ = _parts(trained.model)
    vocabularies = trained.model.vocabularies_
    if new is not None:
        vocabularies = _grown_vocabularies(vocabularies, new, data.columns, settings)
    model = build_model(data, settings, vocabularies=vocabularies)
    few = dataclasses.replace(data, log=data.log.head(2))  # to build the towers: 2 rows
    for old_tower, new_tower, table in ((query, model.query_tower, few.queries(settings)),
                                        (candidate, model.candidate_tower,
                                         few.candidates(settings))):
        new_tower.embed(table.head(2), verbose=False)  # built, so its variables exist
        if not old_tower.weights:  # a loaded tower is built on its first call
            old_tower.embed(table.head(2), verbose=False)
        _copy_weights(old_tower, new_tower)
    return model


def _grown_vocabularies(vocabularies: Any, new: pd.DataFrame, c: Any, settings: Any) -> Any:
    """Each categorical vocabulary with the ``new`` events' values it lacks appended and
    their occurrences counted (the known events' are counted already)."""
    from tfrs_kit.features._vocabulary import Vocabularies

    sources = {c.user_id: new[c.user_id], c.item_id: new[c.item_id],
               c.history: new[c.item_id]}
    for name in (*settings.item_features, *settings.user_features):
        if name in new:
            sources[name] = new[name]
    grown = []
    for name, vocabulary in vocabularies.items():
        values = sources.get(name)
        if values is not None and vocabulary.kind in ("categorical", "multi"):
            values = values.explode() if vocabulary.kind == "multi" and name != c.history \
                else values
            vocabulary = vocabulary.extend(values.dropna().to_numpy())
        grown.append(vocabulary)
    return Vocabularies(grown)


def _copy_weights(old: Any, new: Any) -> None:
    """Copies ``old``'s weights into ``new`` (the same towers, tables maybe grown)."""
    old_weights, new_weights = old.weights, new.weights
    if len(old_weights) != len(new_weights):
        raise RuntimeError("the updated tower's weights do not match the trained one's")
    for source, target in zip(old_weights, new_weights, strict=True):
        value = source.numpy()
        if tuple(value.shape) == tuple(target.shape):
            target.assign(value)
            continue
        grown = np.empty(target.shape, value.dtype)
        grown[:len(value)] = value
        grown[len(value):] = value[1:].mean(axis=0) if len(value) > 1 else 0.0
        target.assign(grown)


def _fine_tune_rows(data: Data, settings: Any, old_events: int, new_events: int,
                    replay: float, window: float = 1.0, *,
                    seed: int) -> tuple[dict[str, Any], int]:
    """The training rows of the new events and of ``replay`` older events per new one
    (drawn at random from the latest ``window`` share of them: by time, or in log order
    without a timestamp), histories from the whole log; with the number replayed. The
    rows (histories, attributes) are built for the chosen rows' users' events only
    (each user's history is whole without the others'), not for every event of the
    log."""
    c = data.columns
    events = data.events(settings)
    labels = events.index.to_numpy()
    fresh = labels >= old_events
    older = np.flatnonzero(~fresh)
    if window < 1.0:
        if c.timestamp is not None:  # stable: ties keep the log's order
            older = older[np.argsort(events[c.timestamp].to_numpy()[older], kind="stable")]
        older = older[len(older) - math.ceil(window * len(older)):]
    count = min(len(older), round(replay * new_events))
    chosen = np.random.default_rng(seed).choice(older, count, replace=False)
    keep = np.sort(np.concatenate([np.flatnonzero(fresh), chosen]))
    users = pd.unique(events[c.user_id].to_numpy()[keep])
    theirs = dataclasses.replace(data, log=data.log[data.log[c.user_id].isin(users).to_numpy()])
    kept = np.isin(theirs.events(settings).index.to_numpy(), labels[keep])
    rows = theirs.rows(settings)
    return {name: np.asarray(values)[kept] for name, values in rows.items()}, count


def _fine_tune(model: Any, rows: dict[str, Any], settings: Any, epochs: int, seed: int, *,
               slots: _slots.Slots | None = None) -> _slots.Slots | None:
    """Trains ``model`` on ``rows``, its optimizer's accumulators started from ``slots``
    (the serving model's, :mod:`~tfrs_kit.recipe._slots`: known rows move as little as
    their training left them to, new rows fast) at :data:`FINE_TUNE_RATE` times the
    fit's rate (without ``slots``, every row fresh: at the fit's); returns the
    accumulators after."""
    tf.keras.utils.set_random_seed(seed)
    towers = (model.query_tower, model.candidate_tower)
    slots = _slots.usable(slots, towers)
    rate = settings.learning_rate * (FINE_TUNE_RATE if slots is not None else 1.0)
    optimizer = tf.keras.optimizers.Adagrad(learning_rate=rate)
    model.compile(optimizer=optimizer)
    if not epochs or not len(next(iter(rows.values()))):
        return slots
    # The accumulators made now, not in the first step: a step that makes variables is
    # traced twice (the second trace: about a fifth of a small update's fine-tuning).
    optimizer.build(model.trainable_variables)
    _slots.assign(optimizer, towers, slots)
    model.fit(rows, epochs=epochs, batch_size=settings.batch_size, seed=seed, verbose=0)
    return _slots.read(model)


def _guard(serving: Any, data: Data, holdout: pd.DataFrame, settings: Any,
           metric: str) -> Callable[[Any], tuple[float | None, float | None, float]]:
    """A function of an updated model: the serving model's ``metric`` on ``holdout`` (the
    mean over its users, as ``tk.evaluate``), the updated one's, and the standard error
    of their mean per-user difference; both score the same query rows (histories from
    ``data``) and candidates, ``data``'s items masked (no holdout: ``None``)."""
    if not len(holdout):
        return lambda model: (None, None, 0.0)
    c = data.columns
    # Only the holdout's users are scored: their histories and items are all it reads.
    data = dataclasses.replace(data, log=data.log[
        data.log[c.user_id].isin(holdout[c.user_id]).to_numpy()])
    queries, candidates = data.queries(settings), data.candidates(settings)

    def scores(model: Any) -> np.ndarray:
        return per_user_scores(RecipeRecommender(
            model, queries=queries, items=candidates, user_id=c.user_id,
            item_id=c.item_id), data.log, holdout, c, metric)

    first = scores(serving)

    def score(model: Any) -> tuple[float | None, float | None, float]:
        updated = scores(model)
        difference = updated - first
        noise = (float(difference.std(ddof=1) / np.sqrt(len(difference)))
                 if len(difference) > 1 else 0.0)
        return float(first.mean()), float(updated.mean()), noise

    return score


def check_folder(path: Any) -> Path:
    """``dir`` as a folder path, checked before the update runs: a folder
    ``Recipe.save`` wrote, or a new or empty one."""
    if not isinstance(path, (str, os.PathLike)):
        raise invalid_argument("dir", "be a folder path or None", path, error=TypeError)
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise invalid_argument("dir", "name a folder", str(root), hint="It is a file.",
                               error=FileExistsError)
    if root.is_dir() and _store.foreign_files(root):
        raise invalid_argument("dir", "be new, empty, or a folder Recipe.save wrote",
                               str(root), hint="It holds other files: another tool wrote "
                               "it. Name another folder.", error=FileExistsError)
    return root
