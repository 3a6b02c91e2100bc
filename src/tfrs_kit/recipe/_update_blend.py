"""The blend of an update: its weights chosen again, its counts and factorisation refreshed,
with one factorisation instead of three.

A refit factorises the log from random factors (15 sweeps) three times: to choose the
weights, for the model the guard measures, for the one published. An update fits it
once (the log less the held-out events) and shares it between the weights' choice and
the guard's model; the published model's factors are one more sweep from there over
every event (the held-out ones included). With :data:`WARM_ITERATIONS` above 0, that
one fit starts from the serving model's item factors instead (the candidate side's
factor table, in the items' vocabulary order, new items at zero; the users' rows are
solved first, so they need no start) for that many sweeps: off by default, as it lost
recall on MovieLens 100K (below).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit.recipe._blend import (
    JoinedTower,
    Sources,
    _popularity,
    _windows,
    blended,
    choose,
    spread_sample,
)
from tfrs_kit.recipe._training import Data, Trained

__all__ = ["COLD_ITERATIONS", "RECHOOSE", "WARM_ITERATIONS", "Refreshed", "als_tables",
           "refresh_blend"]

#: Sweeps of the factorisation warm-started from the serving model's item factors; 0: one
#: fit from random factors. Measured in ``benchmarks/lifecycle.py`` (recall@10 over a
#: refit's, the weights chosen again): the synthetic log, 5 days, 1 sweep 0.883, 3 sweeps
#: 0.909, 15 sweeps 0.920, random factors 0.923; MovieLens 100K days 1 to 3, 3 sweeps
#: 0.92, 0.96, 1.02 against random factors 1.28, 1.14, 1.24.
WARM_ITERATIONS = 0
#: Sweeps from random factors, when the serving model has none (``ImplicitALS``'s default).
COLD_ITERATIONS = 15
#: Whether the blend's weights and popularity window are chosen again on each update
#: (else the fit's are kept, their counts and factors refreshed). On: on MovieLens 100K
#: (``benchmarks/lifecycle.py``, days 1 to 3) the weights chosen on the newest events
#: gave the update 1.28, 1.14 and 1.24 of a refit's next-day recall@10, kept 1.04, 0.95
#: and 1.09 (the synthetic log, 5 days: 0.923 against 0.885), for about 1.7x the update's
#: time on the synthetic log.
RECHOOSE = True


@dataclasses.dataclass(frozen=True)
class Refreshed:
    """The refreshed blend: ``measured`` (fitted without the held-out events, what the
    guard scores), ``published`` (on every event), the weights and whether they were
    chosen again. Without a blend, both models are the towers'."""

    measured: Any
    published: Any
    blend: Any
    rechosen: bool


def refresh_blend(blend: Any, serving: Any, fit_data: Data, full: Data, base: Trained,
                  choice: pd.DataFrame, *, metric: str, seed: int,
                  min_users: int) -> Refreshed:
    """The update's blend: ``blend`` (the serving one's weights; ``None``: none), with
    :data:`RECHOOSE` chosen again on ``choice`` (at least ``min_users`` users, else
    kept), for ``base``'s fine-tuned towers, factorised from ``serving``'s item factors."""
    if blend is None:
        return Refreshed(base.model, base.model, None, False)
    settings, c = base.settings, fit_data.columns
    users = choice[c.user_id].nunique() if len(choice) else 0
    rechosen = RECHOOSE and users >= min_users
    tables = None  # no factorisation without implicit, or when no weight reads it
    if importlib.util.find_spec("implicit") is not None and (rechosen or blend.weight):
        start = (_previous_item_factors(serving, settings.embedding_dim)
                 if WARM_ITERATIONS else None)
        tables = als_tables(fit_data, base, start, seed=seed)
    queries = fit_data.queries(settings)  # read once: for the choice and the measured model
    if rechosen:
        sources = _sources(fit_data, base, tables, _windows(fit_data), queries)
        # Only the choice users' items are masked: the rest of the log is not read.
        known = fit_data.log[c.user_id].isin(choice[c.user_id])
        sources = dataclasses.replace(sources, known=dataclasses.replace(
            fit_data, log=fit_data.log[known.to_numpy()]))
        blend = choose(sources, choice, metric=metric, seed=seed)
    if not (blend.weight or blend.popularity):
        return Refreshed(base.model, base.model, blend, rechosen)
    measured = _blended(fit_data, base, tables, blend, seed, queries)
    if len(full.log) == len(fit_data.log):
        return Refreshed(measured, measured, blend, rechosen)
    if tables is not None and blend.weight:  # one more sweep over every event
        tables = als_tables(full, base, tables[1], seed=seed, iterations=1,
                            users=tables[0])
    return Refreshed(measured, _blended(full, base, tables, blend, seed), blend, rechosen)


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


def _previous_item_factors(model: Any, dim: int) -> np.ndarray | None:
    """The item factors of ``model``'s blend (its candidate side's factor table less the
    popularity column), if it has ``dim`` of them; else ``None``."""
    tower = model.candidate_tower
    if not isinstance(tower, JoinedTower):
        return None
    table = tower.factors.numpy()
    return table[:, :-1] if table.shape[1] == dim + 1 else None


def als_tables(data: Data, base: Trained, items: np.ndarray | None, *, seed: int,
               iterations: int | None = None,
               users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An implicit-feedback ALS of ``data``'s events (the settings of the Recipe's
    factorisation), as the users' and the items' factor tables in ``base``'s
    vocabularies' index order: started from ``items`` (rows of a vocabulary as large or
    smaller: the rows after it, new items, start at zero) for :data:`WARM_ITERATIONS`
    sweeps, or from random factors for :data:`COLD_ITERATIONS`. Rows without events
    (the unknown id's) are zero."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    s, c = base.settings, data.columns
    vocabularies = base.model.query_tower.vocabularies
    user_vocabulary, item_vocabulary = vocabularies[c.user_id], vocabularies[c.item_id]
    events = data.events(s)
    rows = user_vocabulary.index(events[c.user_id].to_numpy())
    columns = item_vocabulary.index(events[c.item_id].to_numpy())
    shape = (user_vocabulary.size, item_vocabulary.size)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    if iterations is None:
        iterations = COLD_ITERATIONS if items is None or not WARM_ITERATIONS else \
            WARM_ITERATIONS
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
    if not all(np.isfinite(t).all() for t in tables):
        raise ValueError("The update's factorisation gave NaN or infinite factors: raise the "
                         "Recipe's warm_regularization or lower its warm_alpha and fit again.")
    return tables


def _rows_of(table: np.ndarray, size: int) -> np.ndarray:
    """``table``'s rows, then zero rows up to ``size`` (a vocabulary that grew)."""
    rows = np.zeros((size, table.shape[1]), np.float32)
    rows[:min(size, len(table))] = table[:size]
    return np.ascontiguousarray(rows)
