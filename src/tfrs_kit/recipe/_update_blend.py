"""The blend of an update: its weights chosen again, its counts and factorisation refreshed,
with one factorisation instead of three.

A refit factorises the log from random factors (15 sweeps) three times: to choose the
weights, for the model the guard measures, for the one published. An update fits it
once (the log less the held-out events) and shares it between the weights' choice and
the guard's model; the published model's factors are one more sweep from there over
every event (the held-out ones included). With ``warm_sweeps`` above 0 (a setting of
``Recipe.update``), it starts from the serving model's factor tables instead (kept
beside the model by the fit and by every update, at any iALS weight; new ids' rows at
zero) and solves again only the rows of the new events' users
and items, from their events, for that many sweeps, then one more with the held-out
events (:func:`partial_tables`): what it reads and solves follows the new events, not
the log. A model without them (saved before they were kept) is factorised from random
factors once, or, from its items' factors when it serves them, swept over the whole
log.

The weights chosen again on a few users' newest events are partly luck (the best of
about 30 on a noisy sample): they replace the serving ones only when they beat them on
the same events by more than :data:`CHOICE_MARGIN` standard errors of the per-user
difference (:func:`~tfrs_kit.recipe._recommender.per_user_scores`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from tfrs_kit.recipe._blend import (
    JoinedTower,
    Sources,
    _dims_of,
    _popularity,
    _query_scale,
    _spreads,
    _windows,
    blended,
    choose,
    joined_recommender,
    spread_sample,
)
from tfrs_kit.recipe._recommender import RecipeRecommender, per_user_scores
from tfrs_kit.recipe._training import Data, Trained

__all__ = ["CHOICE_MARGIN", "COLD_ITERATIONS", "Refreshed", "als_tables",
           "refresh_blend"]

#: Sweeps from random factors, when the serving model has none or no warm start is asked
#: for (``ImplicitALS``'s default).
COLD_ITERATIONS = 15
#: Conjugate-gradient steps per row and sweep (``implicit``'s default).
_CG_STEPS = 3
#: Standard errors of the mean per-user difference by which re-chosen weights must beat the
#: serving ones on the choice users to replace them (measured in ``benchmarks/lifecycle.py``).
CHOICE_MARGIN = 1.0


@dataclasses.dataclass(frozen=True)
class Refreshed:
    """The refreshed blend: ``options``, the weights to try in turn (``None``: no blend):
    those chosen again, then the serving ones (the fallback when the guard refuses the
    first), or the serving ones alone; ``measure(weights)``: their model fitted without
    the held-out events (what the guard scores); ``publish(weights)``: with counts and
    factors over every event; ``rechosen``: whether the first weights were chosen again."""

    options: tuple[Any, ...]
    measure: Callable[[Any], Any]
    publish: Callable[[Any], Any]
    rechosen: bool


def refresh_blend(blend: Any, serving: Any, fit_data: Data, full: Data, base: Trained,
                  choice: pd.DataFrame, new: pd.DataFrame, *, metric: str, seed: int,
                  min_users: int, rechoose: bool = True, warm_sweeps: int = 0) -> Refreshed:
    """The update's blend: ``blend`` (the serving one's weights; ``None``: none), with
    ``rechoose`` chosen again on ``choice`` (at least ``min_users`` users, else kept;
    the new weights only when they beat the serving ones there beyond noise), for
    ``base``'s fine-tuned towers; factorised from random factors, or with
    ``warm_sweeps`` from ``serving``'s factors (the rows of ``new``'s users and items
    solved again). New weights come with the serving ones as a fallback."""
    if blend is None:
        return Refreshed((None,), lambda _: base.model, lambda _: base.model, False)
    settings, c = base.settings, fit_data.columns
    users = choice[c.user_id].nunique() if len(choice) else 0
    rechosen = rechoose and users >= min_users
    tables = None  # no factorisation without implicit, or when nothing reads it
    kept = _kept_tables(serving, settings.embedding_dim) if warm_sweeps else None
    partial = kept is not None  # kept tables are always refreshed
    if importlib.util.find_spec("implicit") is not None and (rechosen or blend.weight
                                                             or partial):
        if kept is not None:
            tables = partial_tables(fit_data, base, kept, new, sweeps=warm_sweeps)
        else:
            items = (_served_item_factors(serving, settings.embedding_dim)
                     if warm_sweeps else None)
            tables = als_tables(fit_data, base, items, seed=seed,
                                iterations=warm_sweeps if items is not None else None)
    queries = fit_data.queries(settings)  # read once: for the choice and the measured model
    weights = [blend]
    joined = None
    if rechosen:
        sources = _sources(fit_data, base, tables, _windows(fit_data), queries)
        # Only the choice users' items are masked: the rest of the log is not read.
        known = fit_data.log[c.user_id].isin(choice[c.user_id])
        sources = dataclasses.replace(sources, known=dataclasses.replace(
            fit_data, log=fit_data.log[known.to_numpy()]))
        joined = joined_recommender(sources)  # embedded once: for the choice and the check
        chosen = choose(sources, choice, metric=metric, seed=seed, joined=joined)
        if _key(chosen) == _key(blend):
            weights = [chosen]
        elif _better(sources, choice, blend, chosen, metric, joined):
            weights = [chosen, blend]
        else:
            rechosen = False

    def measured(weights: Any) -> Any:
        if not (weights.weight or weights.popularity):
            return base.model
        if joined is not None:  # the choice's embeddings: the towers not run again
            return _blended_from(joined, sources, weights)
        return _blended(fit_data, base, tables, weights, seed, queries)

    def publish(weights: Any) -> Any:
        every, grown = tables, len(full.log) > len(fit_data.log)
        if every is not None and grown:  # one more sweep with every event
            every = (partial_tables(full, base, every, new, sweeps=1) if partial else
                     als_tables(full, base, every[1], seed=seed, iterations=1, users=every[0]))
        model = (_blended(full, base, every, weights, seed)
                 if grown and (weights.weight or weights.popularity) else measured(weights))
        model.factor_tables_ = every  # where the next update goes on, at any weight
        return model

    return Refreshed(tuple(weights), measured, publish, rechosen)


def _key(blend: Any) -> tuple[float, float, float]:
    return blend.weight, blend.popularity, blend.window


def _better(sources: Sources, choice: pd.DataFrame, serving: Any, chosen: Any,
            metric: str, joined: RecipeRecommender | None = None) -> bool:
    """Whether ``chosen`` beats the ``serving`` weights on ``choice`` (both for the
    fine-tuned towers) by more than :data:`CHOICE_MARGIN` standard errors of the mean
    per-user difference: the best of many weights on a few users' events is partly
    luck, and the serving ones won on more."""
    c = sources.columns
    joined = joined_recommender(sources) if joined is None else joined
    dims = _dims_of(sources.model, sources.factors)
    spreads = _spreads(joined.query_embeddings, joined.item_embeddings, dims)
    rows = sources.model.query_tower.vocabularies[c.item_id].lookup_layer()(
        tf.constant(joined.item_ids)).numpy()

    def scores(blend: Any) -> np.ndarray:
        items = joined.item_embeddings.copy()
        items[:, -1] = sources.popularity(blend.window)[rows, 0]
        weight = blend.weight if sources.factors is not None else 0.0
        recommender = joined.with_item_embeddings(items).with_query_scale(
            _query_scale(dims, spreads, weight, blend.popularity))
        return per_user_scores(recommender, sources.known.log, choice, c, metric)

    difference = scores(chosen) - scores(serving)
    noise = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return bool(difference.mean() > CHOICE_MARGIN * noise)


def _sources(data: Data, base: Trained, tables: tuple[np.ndarray, np.ndarray] | None,
             windows: tuple[float, ...], queries: pd.DataFrame | None = None) -> Sources:
    settings = base.settings
    vocabulary = base.model.query_tower.vocabularies[data.columns.item_id]
    return Sources(
        model=base.model, columns=data.columns, factors=tables,
        queries=data.queries(settings) if queries is None else queries,
        candidates=data.candidates(settings), known=data, windows=windows,
        popularity=lambda window: _popularity(data, settings, vocabulary, window))


def _blended(data: Data, base: Trained, tables: tuple[np.ndarray, np.ndarray] | None,
             blend: Any, seed: int, queries: pd.DataFrame | None = None) -> Any:
    """``base``'s towers joined at ``blend``'s weights with ``tables`` (dropped at a
    factorisation weight of 0) and ``data``'s popularity over ``blend.window``; the
    spreads measured on at most 2,000 of ``queries`` (default ``data``'s; as
    ``blend_model``)."""
    queries = data.queries(base.settings) if queries is None else queries
    queries = spread_sample(queries, seed)
    return blended(_sources(data, base, tables if blend.weight else None, (blend.window,),
                            queries), blend)


def _blended_from(joined: RecipeRecommender, sources: Sources, blend: Any) -> Any:
    """:func:`_blended` of ``sources`` (with its factor tables) at ``blend``'s weights,
    its spreads measured on ``joined``'s embeddings of the same towers and tables (at
    most 2,000 users, as :func:`_blended`'s) instead of embedding them again."""
    spreads = _spreads(joined.query_embeddings, joined.item_embeddings,
                       _dims_of(sources.model, sources.factors))
    kept = dataclasses.replace(sources, factors=sources.factors if blend.weight else None)
    if kept.factors is None:  # no factorisation part: its spread is 1, as _spreads' of none
        spreads = (spreads[0], 1.0)
    return blended(kept, blend, spreads=spreads)


def _kept_tables(model: Any, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The users' and the items' factor tables kept beside ``model`` (its
    ``factor_tables_``: by the fit or the last update, at any iALS weight), if they
    have ``dim`` factors; else ``None`` (as for a version saved before they were kept)."""
    tables = getattr(model, "factor_tables_", None)
    return (tables[0], tables[1]) if tables is not None and tables[1].shape[1] == dim else None


def _served_item_factors(model: Any, dim: int) -> np.ndarray | None:
    """The item factors ``model``'s blend serves (its candidate side's factor table less
    the popularity column), if it has ``dim`` of them; else ``None``."""
    candidate = model.candidate_tower
    if not isinstance(candidate, JoinedTower):
        return None
    items = candidate.factors.numpy()
    return items[:, :-1] if items.shape[1] == dim + 1 else None


def partial_tables(data: Data, base: Trained, start: tuple[np.ndarray, np.ndarray],
                   touched: pd.DataFrame, *, sweeps: int) -> tuple[np.ndarray, np.ndarray]:
    """``start`` (the users' and the items' factor tables of a smaller or equal
    vocabulary: the rows after it start at zero) with the rows of ``touched``'s users
    and items solved again from their events in ``data``, ``sweeps`` times the users
    then the items, by the conjugate-gradient steps of ``implicit``'s fit (the Recipe's
    factorisation settings). Only the events of those users and items are read into
    the solves: the cost follows the new events, not the log (as implicit's
    ``partial_fit_users/items``, which solve each row exactly: about ``d * d``
    operations per event for ``d`` factors against these steps' ``3 * d``)."""
    from implicit.cpu._als import least_squares_cg
    from threadpoolctl import threadpool_limits

    s, c = base.settings, data.columns
    vocabularies = base.model.query_tower.vocabularies
    user_vocabulary, item_vocabulary = vocabularies[c.user_id], vocabularies[c.item_id]
    log = data.log
    read = (log[c.user_id].isin(touched[c.user_id]) | log[c.item_id].isin(touched[c.item_id]))
    # implicit's fit scales the confidences by alpha; its solver called here does not
    matrix = _binary_matrix(log.loc[read.to_numpy(), [c.user_id, c.item_id]], base, c,
                            value=s.warm_alpha)
    shape = matrix.shape
    users = np.unique(user_vocabulary.index(touched[c.user_id].to_numpy()))
    items = np.unique(item_vocabulary.index(touched[c.item_id].to_numpy()))
    users, items = users[users > 0], items[items > 0]  # never the unknown id's row
    by_user, by_item = matrix[users], matrix.T.tocsr()[items]
    tables = _rows_of(start[0], shape[0]), _rows_of(start[1], shape[1])
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(sweeps):
            for rows, solved, fixed, events_of in ((users, *tables, by_user),
                                                   (items, *tables[::-1], by_item)):
                block = np.ascontiguousarray(solved[rows])
                least_squares_cg(events_of, block, fixed, s.warm_regularization,
                                 num_threads=1, cg_steps=_CG_STEPS)
                solved[rows] = block
    return _finite(tables)


def als_tables(data: Data, base: Trained, items: np.ndarray | None, *, seed: int,
               iterations: int | None = None,
               users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An implicit-feedback ALS of ``data``'s events (the settings of the Recipe's
    factorisation), as the users' and the items' factor tables in ``base``'s
    vocabularies' index order: started from ``items`` (rows of a vocabulary as large or
    smaller: the rows after it, new items, start at zero), or from random factors; for
    ``iterations`` sweeps (default :data:`COLD_ITERATIONS`). Rows without events (the
    unknown id's) are zero."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    s, c = base.settings, data.columns
    matrix = _binary_matrix(data.events(s), base, c)
    shape = matrix.shape
    if iterations is None:
        iterations = COLD_ITERATIONS
    model = AlternatingLeastSquares(factors=s.embedding_dim, regularization=s.warm_regularization,
                                    alpha=s.warm_alpha, iterations=iterations,
                                    random_state=seed, num_threads=1)
    if items is not None:
        model.item_factors = _rows_of(items, shape[1])
        model.user_factors = (np.zeros((shape[0], s.embedding_dim), np.float32)
                              if users is None else _rows_of(users, shape[0]))
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(matrix, show_progress=False)
    tables = (np.asarray(model.user_factors, np.float32),
              np.asarray(model.item_factors, np.float32))
    tables[0][np.diff(matrix.indptr) == 0] = 0.0
    tables[1][np.bincount(matrix.indices, minlength=shape[1]) == 0] = 0.0
    return _finite(tables)


def _binary_matrix(events: pd.DataFrame, base: Trained, c: Any, *,
                   value: float = 1.0) -> sp.csr_matrix:
    """``events`` as a users by items matrix in ``base``'s vocabularies' index order:
    ``value`` where a user met an item (a repeated pair counts once, as in the fit)."""
    vocabularies = base.model.query_tower.vocabularies
    users, items = vocabularies[c.user_id], vocabularies[c.item_id]
    matrix = sp.csr_matrix((np.ones(len(events), np.float32),
                            (users.index(events[c.user_id].to_numpy()),
                             items.index(events[c.item_id].to_numpy()))),
                           shape=(users.size, items.size))
    matrix.sum_duplicates()
    matrix.data[:] = value
    return matrix


def _finite(tables: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``tables``, if every factor is finite."""
    if not all(np.isfinite(t).all() for t in tables):
        raise ValueError("The update's factorisation gave NaN or infinite factors: raise the "
                         "Recipe's warm_regularization or lower its warm_alpha and fit again.")
    return tables


def _rows_of(table: np.ndarray, size: int) -> np.ndarray:
    """``table``'s rows, then zero rows up to ``size`` (a vocabulary that grew)."""
    rows = np.zeros((size, table.shape[1]), np.float32)
    rows[:min(size, len(table))] = table[:size]
    return np.ascontiguousarray(rows)
