"""The blend on the out-of-core path: iALS and the items' popularity counted shard by shard.

The in-memory ``fit`` blends the towers with an iALS factorisation of the log and the
items' (recent) popularity (:mod:`~tfrs_kit.recipe._blend`). On a log in files the
same blend is read from the prepared training shards, one at a time:

1. each shard's (user, item) pairs become vocabulary indices (``int32``, looked up by
   Arrow, no Python object per row) and its distinct pairs are kept; the pairs of all
   shards make a users x items CSR matrix of ``float32`` ones in the vocabularies'
   index order (what the in-memory factorisation fits: a pair counts once);
2. iALS is fitted on it with the in-memory path's hyper-parameters, one iteration at a
   time while its share of the time left holds another (three at least);
3. each event's item index (in time order) gives the popularity over the latest
   :data:`~tfrs_kit.recipe._blend.WINDOWS` shares of the events;
4. the weights are chosen on the validation shard by the in-memory path's
   :func:`~tfrs_kit.recipe._blend.choose`, and the model is joined as there
   (:func:`~tfrs_kit.recipe._blend.blended`): it serves, saves and loads as any blend.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit.data._files import _pyarrow
from tfrs_kit.features._vocabulary import Vocabulary
from tfrs_kit.recipe._blend import (
    WINDOWS,
    Blend,
    Sources,
    blended,
    choose,
    latest_rows,
    standardised_log_counts,
)
from tfrs_kit.recipe._inputs import Columns
from tfrs_kit.recipe._training import Data, Saved, Trained

__all__ = ["BLEND_SHARE", "ShardCounts", "blend_shards", "count_shards", "factorise_matrix"]

#: The share of the time budget the final training leaves to the blend.
BLEND_SHARE = 0.15
_ALS_SHARE = 0.5  # of the time the blend has, the most the factorisation's iterations take
_MIN_ITERATIONS = 3  # ... whatever the time: one or two leave factors of little use
_SPREAD_USERS = 2_000  # users whose scores measure a model's spread (as in _blend)


@dataclasses.dataclass(frozen=True)
class ShardCounts:
    """What the blend reads from the training shards.

    Attributes:
        matrix: ``[users' vocabulary size, items' vocabulary size]`` CSR of ``float32``
            ones, one per distinct (user, item) pair, rows and columns in the
            vocabularies' index order.
        items: Each event's item index (``int32``), in time order when the log has times.
        item_rows: The items' vocabulary size.
    """

    matrix: sp.csr_matrix
    items: np.ndarray
    item_rows: int

    def popularity(self, window: float) -> np.ndarray:
        """``[item_rows, 1]``: each item's standardised log count among the latest
        ``window`` share of the events (as the in-memory ``_popularity``)."""
        events = self.items
        if window < 1.0:
            events = events[len(events) - latest_rows(window, len(events)):]
        counts = np.bincount(events, minlength=self.item_rows).astype(np.float32)
        counts[0] = 0.0  # the unknown id's row (in-memory: no id of the log maps to it)
        return standardised_log_counts(counts[:, None])


def count_shards(paths: Sequence[str], columns: Columns, users: Vocabulary,
                 items: Vocabulary) -> ShardCounts:
    """The :class:`ShardCounts` of the events in ``paths`` (Parquet), read shard by shard."""
    pa = _pyarrow()
    c = columns
    names = [c.user_id, c.item_id, *([c.timestamp] if c.timestamp is not None else [])]
    user_tokens, item_tokens = _tokens(users), _tokens(items)
    pairs, events, times = [], [], []
    for path in paths:
        table = pa.parquet.read_table(path, columns=names)
        user_rows = _indices(table.column(c.user_id), user_tokens, users)
        item_rows = _indices(table.column(c.item_id), item_tokens, items)
        pairs.append(_distinct(user_rows.astype(np.int64) * items.size + item_rows))
        events.append(item_rows)
        if c.timestamp is not None:
            times.append(_numbers(table.column(c.timestamp)))
    keys = _distinct(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
    item_events = np.concatenate(events) if events else np.zeros(0, np.int32)
    if times:  # time order; ties keep the shards' order
        item_events = item_events[np.argsort(np.concatenate(times), kind="stable")]
    return ShardCounts(_ones(keys, users.size, items.size), item_events, items.size)


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``keys`` (by a sort: ``np.unique`` hashes, slower)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys


def _ones(keys: np.ndarray, rows: int, columns: int) -> sp.csr_matrix:
    """The CSR matrix of ones at the sorted distinct ``row * columns + column`` keys."""
    row, column = np.divmod(keys, columns)
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=rows), out=indptr[1:])
    index = np.int32 if len(keys) < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((np.ones(len(keys), np.float32), column.astype(np.int32),
                          indptr.astype(index)), shape=(rows, columns))


def _tokens(vocabulary: Vocabulary) -> Any:
    """The vocabulary's tokens as an Arrow array (looked up by :func:`_indices`)."""
    pa = _pyarrow()
    if vocabulary.dtype == "int64":
        return pa.array(np.asarray(vocabulary.tokens, np.int64))
    return pa.array(list(vocabulary.tokens), pa.string())


def _indices(column: Any, tokens: Any, vocabulary: Vocabulary) -> np.ndarray:
    """``int32`` vocabulary indices of an Arrow column (0, the unknown id's, if absent)."""
    pa = _pyarrow()
    found = pa.compute.index_in(pa.compute.cast(column, tokens.type), value_set=tokens)
    positions = pa.compute.fill_null(found, -1).to_numpy().astype(np.int32)
    return np.where(positions < 0, 0, positions + vocabulary.num_oov_buckets).astype(np.int32)


def _numbers(column: Any) -> np.ndarray:
    """A time column as numbers that sort as the times do."""
    values = np.asarray(column.to_numpy())
    return values.view(np.int64) if values.dtype.kind in "mM" else values


def factorise_matrix(matrix: sp.csr_matrix, settings: Any, seed: int, *,
                     deadline: float) -> tuple[tuple[np.ndarray, np.ndarray] | None, int, int]:
    """iALS of ``matrix`` with the in-memory path's hyper-parameters (the settings'
    ``embedding_dim``, ``warm_regularization`` and ``warm_alpha``, ``ImplicitALS``'s
    iterations): the users' and items' factor tables (rows without an interaction, the
    unknown ids' among them, at 0), or ``None`` if training diverged; the iterations
    run and planned. No iteration starts that would end after ``deadline`` (by the last
    one's time), but the first three always run."""
    from implicit.recommender_base import ModelFitError
    from threadpoolctl import threadpool_limits

    from tfrs_kit.baselines import ImplicitALS

    spec = ImplicitALS(factors=settings.embedding_dim, regularization=settings.warm_regularization,
                       alpha=settings.warm_alpha, seed=seed)
    model = spec._implicit_model()
    model.iterations, run = 1, 0  # fit again goes on from the factors it has
    with threadpool_limits(limits=1, user_api="blas"):
        while run < spec.iterations:
            began = time.monotonic()
            try:
                model.fit(matrix, show_progress=False)
            except ModelFitError:  # implicit's "NaN encountered in factors"
                return None, run + 1, spec.iterations
            run += 1
            now = time.monotonic()
            if run >= _MIN_ITERATIONS and now + (now - began) > deadline:
                break
    users = np.asarray(model.user_factors, np.float32).copy()
    items = np.asarray(model.item_factors, np.float32).copy()
    if not (np.isfinite(users).all() and np.isfinite(items).all()):
        return None, run, spec.iterations
    users[np.diff(matrix.indptr) == 0] = 0.0
    items[np.bincount(matrix.indices, minlength=matrix.shape[1]) == 0] = 0.0
    return (users, items), run, spec.iterations


def blend_shards(recipe: Any, trained: Trained, paths: Sequence[str], *,
                 validation: tuple[pd.DataFrame, pd.DataFrame, Data], saved: Saved,
                 deadline: float) -> tuple[Trained, Blend]:
    """``trained`` blended as the in-memory ``fit`` blends it, from the training shards
    ``paths`` (those the towers learned from), the weights chosen on ``validation``
    (the held-out events, their users' queries, a :class:`Data` of their training rows),
    the spreads measured on ``saved``'s users and candidates; ``deadline`` ends the
    factorisation's iterations (at half the time left) and the fine popularity weights."""
    c = recipe.columns
    vocabularies = trained.model.query_tower.vocabularies
    started = time.monotonic()
    counts = count_shards(paths, c, vocabularies[c.user_id], vocabularies[c.item_id])
    recipe._log(f"blend: {counts.matrix.nnz:,} distinct (user, item) pairs of "
                f"{len(counts.items):,} events counted in {time.monotonic() - started:.1f} s")
    factors = None
    if importlib.util.find_spec("implicit") is not None:
        began = time.monotonic()
        factors, run, planned = factorise_matrix(
            counts.matrix, trained.settings, recipe.seed,
            deadline=began + max(deadline - began, 0.0) * _ALS_SHARE)
        recipe._log(f"blend: iALS {run} of {planned} iteration(s) in "
                    f"{time.monotonic() - began:.1f} s" + (
                        "" if factors is not None else ": diverged, left out"))
    held, queries, known = validation
    sources = Sources(model=trained.model, columns=c, factors=factors, queries=queries,
                      candidates=saved.candidates, known=known,
                      windows=WINDOWS if c.timestamp is not None else (1.0,),
                      popularity=functools.lru_cache(maxsize=None)(counts.popularity))
    blend = choose(sources, held, metric=recipe.metric, seed=recipe.seed, deadline=deadline)
    for line in blend.reasons(recipe.metric):
        recipe._log(line)
    if not (blend.weight or blend.popularity):
        return trained, blend
    sample = saved.queries.iloc[np.sort(np.random.default_rng(recipe.seed).permutation(
        len(saved.queries))[:_SPREAD_USERS])]
    model = blended(dataclasses.replace(sources, queries=sample,
                                        factors=factors if blend.weight else None), blend)
    return dataclasses.replace(trained, model=model), blend
