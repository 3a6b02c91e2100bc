"""The Recipe's ranking stage: a :class:`~tfrs_kit.Cascade` trained, measured and kept on the log.

``Recipe(rerank="auto")`` runs :meth:`Cascade.fit <tfrs_kit.Cascade.fit>`'s split
protocol inside ``fit`` on the Recipe's own training log less its validation slice
and each user's latest ranking slice before it: a helper retriever of the chosen
settings learns from each user's earlier rows and is blended as the Recipe serves its
model (the factorisation and the popularity at the chosen weights, fitted on those
rows only), and the ranker learns to re-order that first stage's top ``retrieve_k`` of
the ranking slice (hard negatives by construction; the blended score is the retrieval
score it reads, as served, and each of its components apart: the towers', iALS's, the
popularity's). The cascade over the search's best model (trained on the fit log, the
blend included; the next-item model and the items' popularity as of that log too) is
then scored on the validation slice beside the model alone, for each ``retrieve_k``
tried, user by user; ``"auto"`` keeps the ranker only when its mean gain is above the
noise margin of the paired per-user differences (:func:`lift_margin`).

The ranker served is not the one measured: a kept ranker learns again, on the
validation slice over the search's best model (its first stage as measured), and the
served cascade is the final model (trained on the whole log) with it. So the served
ranker's lists end where the served model's log ends, and the measured one's end a
ranking slice before the validation slice: the measured ranker is the staler by that
slice, and its lift a conservative estimate. Measured on a log whose tastes drift
(``benchmarks/ranking.py``, ``drift``): a ranker whose lists ended right before the
validation slice promised 5 to 8% there and lost 2% on test when served a slice later;
the one measured a slice before validation promised what the fresh one gave on test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit.recipe._blend import blend_model
from tfrs_kit.recipe._inputs import attach, split_validation
from tfrs_kit.recipe._recommender import RecipeRecommender, per_user_scores
from tfrs_kit.recipe._report import Rerank
from tfrs_kit.recipe._training import Data, Trained

__all__ = ["RETRIEVE_KS", "cascade_recommender", "check_rerank", "fit_rerank", "index_inputs",
           "lift_margin", "out_of_core_choice", "read_cascade", "rerank_scores", "served_cascade",
           "serving_cascade", "write_ranker"]

#: The candidates per query tried (those within the catalogue).
RETRIEVE_KS = (20, 50, 100)
#: The ranking slice: each user's latest share of the fit log the ranker learns from.
_RANKING_FRACTION = 0.2
_RANKER_EPOCHS = 10
_RANKER_DIM = 32  # the ranker's id embeddings (its head is linear)
#: Seconds the stage is expected to take, in final trainings of the chosen settings.
_COST = 2.5
_TIME = "timestamp"  # the time column of the log handed to Cascade.fit
#: The ranker reads the blend's score components (towers, iALS, popularity) apart.
_COMPONENTS = True
_NEXT_ITEMS = True  # the ranker reads a next-item model's scores (ranking/_sequence.py)
#: Standard errors of the paired per-user difference a kept ranker's validation gain must
#: exceed ("auto": a lift the validation users' noise could give is not kept).
_MARGIN_Z = 1.645
_MODES: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


def check_rerank(value: Any) -> bool | str:
    """``"auto"``, ``True`` or ``False`` (the CLI's ``"on"``/``"off"`` too)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value in _MODES:
        return _MODES[value]
    raise invalid_argument("rerank", "be 'auto', True or False", value,
                           hint="rerank='auto' keeps the ranking stage only when it lifts "
                           "the validation metric; True forces it, False turns it off.")


def out_of_core_choice(mode: bool | str, in_memory_rows: int) -> Rerank | None:
    """The report's ranking stage on a log fitted out of core, where none is trained:
    skipped (``"auto"``) or none (``False``).

    Raises:
        ValueError: ``mode`` is ``True``: the stage trains in memory only.
    """
    if mode is True:
        raise invalid_argument(
            "rerank", "be 'auto' or False on a log fitted out of core", True,
            hint=f"The log has more than in_memory_rows={in_memory_rows:,} rows; the ranking "
            "stage trains in memory only. Pass rerank='auto' (skipped, said in the report) or "
            "False, or a larger in_memory_rows if the log fits in memory.")
    return Rerank.skipped(mode, "skipped: a log fitted out of core (more than in_memory_rows "
                          "rows) has none") if mode else None


def fit_rerank(mode: bool | str, data: Data, validation: pd.DataFrame | None,
               best: Trained | None, blend: Any, log: Any, *, metric: str, seed: int,
               end: float | None) -> tuple[Any, Rerank | None]:
    """Trains a ranker on ``data`` (the fit log) less its latest ranking slice and
    measures it on ``validation``; a kept one learns again on ``validation`` (the module's
    docstring says why).

    Args:
        mode: The Recipe's ``rerank``: ``"auto"``, ``True`` or ``False`` (no stage).
        data: The fit log (the training log less the validation slice).
        validation: The validation slice (``None``: the log had none).
        best: The search's best model, trained on ``data``.
        blend: The blend chosen beside it, if any (the cascade re-ranks the blend's
            candidates, as it will serve them).
        metric: The validation metric.
        seed: Seeds the helper retriever and the ranker.
        end: When the time budget ends (``time.monotonic()``; ``None``: no budget);
            the stage must end before the final training's share of it, and is
            skipped (``"auto"``) when it would not.
        log: The Recipe's progress logger.

    Returns:
        The ranker to serve (``None`` unless kept) and the :class:`Rerank` report
        (``None`` when ``mode`` is ``False``).

    Raises:
        ValueError: ``mode`` is ``True`` and the log has no validation or ranking slice.
    """
    if mode is False:
        return None, None
    if validation is None or best is None:
        if mode is True:
            raise invalid_argument(
                "rerank", "have a validation slice to measure the ranking stage on", True,
                hint="The log has fewer than 10 users with two or more interactions: pass "
                "a longer log, or rerank='auto' (skipped on such a log) or False.")
        return None, Rerank.skipped(mode, "skipped: no validation slice")
    started = time.monotonic()
    settings = best.settings
    needed = _COST * max(best.final_seconds, best.seconds / max(best.epochs_run, 1))
    if _NEXT_ITEMS and end is not None and settings.history != "none":
        needed += 3 * _next_item_seconds(data, settings)  # _measured_cascade: 2, served: 1
    deadline = math.inf if end is None else end - best.final_seconds
    if mode == "auto" and started + needed > deadline:
        return None, Rerank.skipped(mode, f"skipped: about {needed:.0f} s needed, "
                                    f"{max(deadline - started, 0):.0f} s left of the time "
                                    "budget")
    items = data.candidates(settings)
    ks = tuple(k for k in RETRIEVE_KS if k < len(items)) or (len(items),)
    blended = blend is not None and bool(blend.weight or blend.popularity)
    served = blend_model(data, best, blend, seed=seed) if blended else best.model
    rows = _log_rows(data, settings)  # the fit log, as both rankers read it
    try:
        cascade = _measured_cascade(data, rows, best, blend, items, max(ks), seed=seed)
    except ValueError as error:
        if mode is True:
            raise invalid_argument(
                "rerank", "have a log long enough for a ranking slice", True,
                hint=f"{error} Pass rerank='auto' (skipped on such a log) or False.",
            ) from error
        return None, Rerank.skipped(mode, f"skipped: no ranking slice ({error})")
    per_user = _measure(cascade, data, settings, validation, served, ks, metric)
    scores = {key: float(values.mean()) for key, values in per_user.items()}
    base = scores.pop(0)
    k = max(scores, key=lambda key: (scores[key], -key))
    margin = lift_margin(per_user[k] - per_user[0])
    kept = mode is True or scores[k] - base > margin
    log(f"rerank: kept only above the noise margin {margin:.4f} ({_MARGIN_Z:g} standard errors "
        f"of the paired per-user difference, {len(per_user[0])} validation users); "
        f"measured {scores[k] - base:+.4f}")
    ranker = cascade.ranker
    if kept:
        ranker = _served_ranker(ranker, served, data, rows, validation, settings=settings,
                                items=items, retrieve_k=max(ks), log=log, seed=seed)
    choice = Rerank(
        mode=mode, kept=kept, retrieve_k=k, loss=ranker.ranking_loss,
        features=_features(ranker), base=base, score=scores[k], scores=scores,
        seconds=time.monotonic() - started)
    log(choice.describe(metric))
    return (ranker if kept else None), choice


def _measured_cascade(data: Data, rows: pd.DataFrame, best: Trained, blend: Any,
                      items: pd.DataFrame, retrieve_k: int, *, seed: int) -> Any:
    """The cascade measured on validation: its ranker learned on ``data``'s log less each
    user's latest ranking slice (one slice staler than the served one: see the module's
    docstring), served as of the whole fit log (``rows``: :func:`_log_rows` of ``data``;
    the next-item model and the items' counts)."""
    earlier, _ = split_validation(data.log, data.columns, _RANKING_FRACTION, min_users=1)
    return _fit_cascade(dataclasses.replace(data, log=earlier), best, blend, items, retrieve_k,
                        served_log=rows, seed=seed)


def _served_ranker(measured: Any, served: Any, data: Data, rows: pd.DataFrame,
                   validation: pd.DataFrame, *, settings: Any, items: pd.DataFrame,
                   retrieve_k: int, log: Any, seed: int) -> Any:
    """A ranker like ``measured`` (sharing its next-item model) learned on ``validation``
    over ``served`` (the search's best model, as measured) as of the fit log (``rows``);
    ``measured`` itself when no validation user's item is in their lists."""
    from tfrs_kit.ranking._protocol import fit_ranker

    c = data.columns
    try:
        return fit_ranker(
            served, rows, validation, items=items,
            users=_users(data, settings), history_feature=measured.history_feature,
            history=_history(data, settings), components=_COMPONENTS, retrieve_k=retrieve_k,
            next_items=False if measured.next_items is None else measured.next_items,
            user_id=c.user_id, item_id=c.item_id, epochs=_RANKER_EPOCHS, dim=_RANKER_DIM,
            seed=seed)
    except ValueError as error:
        log(f"rerank: serving the measured ranker (none learned on validation: {error})")
        return measured


def _fit_cascade(data: Data, best: Trained, blend: Any, items: pd.DataFrame, retrieve_k: int,
                 *, served_log: pd.DataFrame, seed: int) -> Any:
    """:meth:`Cascade.fit <tfrs_kit.Cascade.fit>` on ``data``'s log: a helper of ``best``'s
    settings (blended as ``blend``) on each user's earlier rows, the ranker on the rest,
    served after ``served_log``."""
    from tfrs_kit.ranking import Cascade

    settings, c = best.settings, data.columns
    blended = blend is not None and bool(blend.weight or blend.popularity)
    return Cascade.fit(
        best.model, _log_rows(data, settings), served_log=served_log, items=items,
        users=_users(data, settings),
        history=_history(data, settings), retrieve_k=retrieve_k,
        first_stage=_first_stage(data, best, blend, seed) if blended else None,
        components=_COMPONENTS, next_items=_NEXT_ITEMS, ranking_fraction=_RANKING_FRACTION,
        user_id=c.user_id,
        epochs=_RANKER_EPOCHS, dim=_RANKER_DIM, retriever_epochs=max(best.epochs, 1),
        batch_size=settings.batch_size, seed=seed)


def _next_item_seconds(data: Data, settings: Any) -> float:
    """About how long one next-item model of the ranker trains on ``data``'s log."""
    from tfrs_kit.ranking._sequence import training_seconds

    c = data.columns
    return training_seconds(_log_rows(data, settings), data.candidates(settings)[c.item_id],
                            user_id=c.user_id, item_id=c.item_id)


def lift_margin(differences: np.ndarray) -> float:
    """The gain in the mean a kept ranker must beat: :data:`_MARGIN_Z` standard errors of
    the mean of the per-user ``differences`` (ranker's metric less the first stage's), so
    that a lift the validation users' noise could give is not kept (inf for < 2 users).

    >>> round(lift_margin(np.array([0.0, 0.2, -0.1, 0.3])), 4)
    0.1502
    """
    if len(differences) < 2:
        return math.inf
    return _MARGIN_Z * float(np.std(differences, ddof=1)) / math.sqrt(len(differences))


def _first_stage(data: Data, best: Trained, blend: Any, seed: int) -> Any:
    """``Cascade.fit``'s ``first_stage``: the helper retriever blended as the Recipe
    serves its model (the factorisation and the popularity at the chosen weights),
    both fitted on the helper's rows only, so that the ranker learns to re-order the
    candidates and scores it will be served."""
    c = data.columns

    def stage(helper: Any, earlier: pd.DataFrame) -> Any:
        log = {c.user_id: earlier[c.user_id].to_numpy(), c.item_id: earlier[c.item_id].to_numpy()}
        if c.timestamp is not None:
            log[c.timestamp] = earlier[_TIME].to_numpy()
        rows = dataclasses.replace(data, log=pd.DataFrame(log))
        trained = dataclasses.replace(best, model=helper)
        return blend_model(rows, trained, blend, seed=seed)

    return stage


def _measure(cascade: Any, data: Data, settings: Any, validation: pd.DataFrame, served: Any,
             ks: tuple[int, ...], metric: str) -> dict[int, np.ndarray]:
    """Each validation user's metric of ``served`` alone (key 0) and re-ranked at each ``k``."""
    from tfrs_kit.ranking import Cascade

    c = data.columns
    queries, items = data.queries(settings), data.candidates(settings)
    recommenders: dict[int, Any] = {0: RecipeRecommender(
        served, queries=queries, items=items, user_id=c.user_id, item_id=c.item_id)}
    for k in ks:
        recommenders[k] = Cascade(served, cascade.ranker, retrieve_k=k).as_recommender(
            data.log, user_id=c.user_id, item_id=c.item_id, users=queries,
            items=cascade.with_features(items))
    return {key: per_user_scores(recommender, data.log, validation, c, metric)
            for key, recommender in recommenders.items()}


def served_cascade(ranker: Any, choice: Rerank | None, data: Data, settings: Any,
                   model: Any, *, seed: int) -> Any:
    """The cascade the fitted Recipe serves: its final ``model``, the ranker (its next-item
    model retrained on the whole log), the items' popularity over the whole log (``None``
    without a kept ranker)."""
    from tfrs_kit.ranking import Cascade
    from tfrs_kit.ranking._sequence import refit_next_items

    if ranker is None or choice is None:
        return None
    if ranker.next_items is not None:  # learned without the validation slice so far
        c = data.columns
        refit_next_items(ranker.next_items, _log_rows(data, settings), user_id=c.user_id,
                         item_id=c.item_id, seed=seed)
    cascade = Cascade(model, ranker, retrieve_k=choice.retrieve_k)
    return cascade.count_items(data.candidates(settings), data.log)


def serving_cascade(recipe: Any) -> Any:
    """The cascade ``recipe`` serves: the kept one, over its current model (``update``
    replaces the model), or ``None`` (none kept, or a later fit that kept none)."""
    cascade, report = recipe.cascade_, recipe.report_
    if cascade is None or report is None or report.rerank is None or not report.rerank.kept:
        return None
    cascade.retriever = recipe.model
    return cascade


def cascade_recommender(recipe: Any) -> Any:
    """The fitted Recipe's kept cascade as a :class:`~tfrs_kit.evaluation.Recommender`
    (each user's training items left out before retrieval); a user the log never saw
    is ranked by the first stage alone, as the Recipe without the ranking stage ranks
    them (the average known user: no history or id for the ranker to read)."""
    c, cascade = recipe.columns, serving_cascade(recipe)
    queries, candidates = recipe.queries(), recipe.candidates()
    known = cascade.as_recommender(recipe._seen(), user_id=c.user_id, item_id=c.item_id,
                                   users=queries, items=cascade.with_features(candidates))
    first = RecipeRecommender(recipe.model, queries=queries, items=candidates,
                              user_id=c.user_id, item_id=c.item_id)
    return _WithNewUsers(known, first, pd.Index(queries[c.user_id]))


class _WithNewUsers:
    """The cascade's scores for the users it knows, the first stage's for the others."""

    display_name = "Recipe"  # the name tk.evaluate reports it under

    def __init__(self, cascade: Any, first: RecipeRecommender, known: pd.Index) -> None:
        self.item_ids = np.asarray(cascade.item_ids)
        self._cascade, self._first, self._known = cascade, first, known
        self._columns = pd.Index(first.item_ids).get_indexer(self.item_ids)

    def score(self, user_ids: Any) -> np.ndarray:
        """``[users, items]`` scores, rows in the order of ``user_ids``."""
        ids = np.asarray(user_ids)
        known = self._known.get_indexer(pd.Index(ids)) >= 0
        if known.all():
            return np.asarray(self._cascade.score(ids))
        scores = np.empty((len(ids), len(self.item_ids)))
        if known.any():
            scores[known] = self._cascade.score(ids[known])
        scores[~known] = self._first.score(ids[~known])[:, self._columns]
        return scores


def index_inputs(recipe: Any, k_max: int) -> tuple[Any, pd.DataFrame, int]:
    """What ``build_index`` builds: the model (the kept cascade, if any), the candidates
    (with the ranker's item features) and ``k_max`` (at most the cascade's ``retrieve_k``)."""
    cascade, candidates = serving_cascade(recipe), recipe.candidates()
    if cascade is None:
        return recipe.model, candidates, k_max
    return cascade, cascade.with_features(candidates), min(k_max, cascade.retrieve_k)


def rerank_scores(cascade: Any, rows: pd.DataFrame, items: pd.DataFrame,
                  scores: np.ndarray) -> np.ndarray:
    """``scores`` (``[rows, items]``, seen items at ``-inf``) with each row's top
    ``retrieve_k`` re-ranked by the ranker, above the rest (as ``tk.evaluate`` scores
    a :class:`~tfrs_kit.Cascade`)."""
    return cascade.rerank_scores(scores, rows, items)


def _log_rows(data: Data, settings: Any) -> pd.DataFrame:
    """The fit log with each row's item and user features, its time column ``_TIME``."""
    c = data.columns
    log = data.log if c.timestamp is None else data.log.sort_values(c.timestamp, kind="stable")
    rows = {c.user_id: log[c.user_id].to_numpy(), c.item_id: log[c.item_id].to_numpy()}
    if c.timestamp is not None:
        rows[_TIME] = log[c.timestamp].to_numpy()
    rows = attach(rows, data.items, c.item_id, settings.item_features)
    return pd.DataFrame(attach(rows, data.users, c.user_id, settings.user_features))


def _users(data: Data, settings: Any) -> pd.DataFrame | None:
    if not settings.user_features:
        return None
    return data.users[[data.columns.user_id, *settings.user_features]]


def _history(data: Data, settings: Any) -> Any:
    """The Recipe's history column, built over the ``_TIME`` column of :func:`_log_rows`."""
    from tfrs_kit.features._history import HistoryBuilder

    if settings.history == "none":
        return None
    c = data.columns
    return HistoryBuilder(user_id=c.user_id, item_id=c.item_id, timestamp=_TIME,
                          max_length=data.max_history, name=c.history)


def _features(ranker: Any) -> tuple[str, ...]:
    history = (f"similarity to {ranker.history_feature}",) if ranker.history_feature else ()
    parts = ("the retrieval score's components",) if ranker.components else ()
    return (*ranker.query_tower.features, *ranker.candidate_tower.features, *history,
            "retrieval score", *parts)


_RANKER = "ranker"  # the version folder's ranker files: config.json, weights, items.parquet


def write_ranker(cascade: Any, folder: Path) -> dict[str, Any]:
    """Writes the kept cascade's ranker into ``folder/ranker``; returns the manifest's
    ``cascade`` entry (``retrieve_k``, the files)."""
    import tensorflow as tf

    ranker, target = cascade.ranker, folder / _RANKER
    target.mkdir()
    config = {"config": ranker.get_config(), "label": ranker.label_,
              "group_size": ranker.group_size_}
    (target / "config.json").write_text(json.dumps(config, default=_plain), encoding="utf-8")
    tf.train.Checkpoint(ranker=ranker).write(str(target / "weights" / "ranker"))
    stored = [c for c in cascade.LOG_FEATURES if c in cascade.items_]
    items = cascade.items_[[ranker.item_id, *stored]].reset_index(drop=True)
    items.attrs = {}
    items.to_parquet(target / "items.parquet", index=False)
    return {"retrieve_k": cascade.retrieve_k, "folder": _RANKER,
            "files": ["config.json", "weights", "items.parquet"]}


def read_cascade(folder: Path, entry: dict[str, Any] | None, model: Any) -> Any:
    """The cascade a version folder holds (``None`` if it kept none), over ``model``.

    Raises:
        ValueError: The manifest names a cascade whose ranker files are missing.
    """
    import tensorflow as tf

    from tfrs_kit.ranking import Cascade, Ranker

    if not entry:
        return None
    target = folder / entry["folder"]
    missing = [name for name in entry["files"] if not (target / name).exists()]
    if missing:
        raise invalid_argument(
            "path", "hold every file of the saved cascade's ranker", str(target),
            hint=f"Missing: {missing}. Copy the whole version folder, or load another "
            "version (tfrs_kit.recipe.versions lists them).")
    stored = json.loads((target / "config.json").read_text(encoding="utf-8"))
    ranker = Ranker.from_config(stored["config"])
    ranker.label_, ranker.group_size_ = stored["label"], stored["group_size"]
    status = tf.train.Checkpoint(ranker=ranker).read(str(target / "weights" / "ranker"))
    status.expect_partial()
    cascade = Cascade(model, ranker, retrieve_k=int(entry["retrieve_k"]))
    cascade.items_ = pd.read_parquet(target / "items.parquet")
    return cascade


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
