"""The blend on the out-of-core path: iALS and the items' popularity counted shard by shard.

The in-memory ``fit`` blends the towers with an iALS factorisation of the log and the
items' (recent) popularity (:mod:`~tfrs_kit.recipe._blend`). On a log in files the
same blend is read from the prepared training shards, one at a time:

1. each shard's (user, item) pairs become vocabulary indices (``int32``, looked up by
   Arrow, no Python object per row) and its distinct pairs are kept; the pairs of all
   shards make a users x items CSR matrix of ``float32`` ones in the vocabularies'
   index order (what the in-memory factorisation fits: a pair counts once);
2. each event's item index and time give the popularity over the latest
   :data:`~tfrs_kit.recipe._blend.WINDOWS` shares of the events (a partition of the
   times, not a sort), counted once, and the events are let go;
3. iALS is fitted on the matrix with the in-memory path's hyper-parameters, one
   iteration at a time while its share of the time left holds another (three at
   least) -- steps 1-3 before the final training (:func:`prepare_blend`);
4. after it, the weights are chosen on the validation shard by the in-memory path's
   :func:`~tfrs_kit.recipe._blend.choose` (on fewer users when time is short), and the
   model is joined as there (:func:`~tfrs_kit.recipe._blend.blended`): it serves,
   saves and loads as any blend (:func:`blend_shards`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit.data._files import _pyarrow
from tfrs_kit.features._vocabulary import Vocabulary
from tfrs_kit.recipe._blend import (
    _SPREAD_USERS,
    POPULARITY_WEIGHTS,
    WEIGHTS,
    WINDOWS,
    Blend,
    Sources,
    blended,
    choose,
    latest_rows,
    spread_sample,
    standardised_log_counts,
)
from tfrs_kit.recipe._fit_progress import peak_gib
from tfrs_kit.recipe._inputs import Columns
from tfrs_kit.recipe._training import Data, Saved, Trained

__all__ = ["BlendInputs", "ShardCounts", "blend_shards", "choice_passes",
           "count_shards", "factorise_matrix", "prepare_blend", "spread_users"]

_MIN_ITERATIONS = 3  # ... whatever the time: one or two leave factors of little use
_SPREAD_SCORES = 100_000_000  # ... fewer for a large catalogue: about this many scores,
_MIN_SPREAD_USERS = 200  # ... but not fewer users


@dataclasses.dataclass(frozen=True)
class ShardCounts:
    """What the blend reads from the training shards.

    Attributes:
        matrix: ``[users' vocabulary size, items' vocabulary size]`` CSR of ``float32``
            ones, one per distinct (user, item) pair, rows and columns in the
            vocabularies' index order.
        counts: For each window of the popularity, ``[item_rows]`` counts of each item
            among the latest ``window`` share of the events (in time order when the log
            has times, ties in the shards' order).
        item_rows: The items' vocabulary size.
    """

    matrix: sp.csr_matrix
    counts: dict[float, np.ndarray]
    item_rows: int

    def popularity(self, window: float) -> np.ndarray:
        """``[item_rows, 1]``: each item's standardised log count among the latest
        ``window`` share of the events (as the in-memory ``_popularity``)."""
        counts = self.counts[window].astype(np.float32)
        counts[0] = 0.0  # the unknown id's row (in-memory: no id of the log maps to it)
        return standardised_log_counts(counts[:, None])


def count_shards(paths: Sequence[str], columns: Columns, users: Vocabulary,
                 items: Vocabulary, windows: Sequence[float] = WINDOWS) -> ShardCounts:
    """The :class:`ShardCounts` of the events in ``paths`` (Parquet), read shard by shard.

    Memory: the distinct pairs as two ``int32`` arrays, each event's item (``int32``)
    and time (``int64``) until the windows are counted; no sort of the whole log.
    """
    pa = _pyarrow()
    c = columns
    names = [c.user_id, c.item_id, *([c.timestamp] if c.timestamp is not None else [])]
    user_tokens, item_tokens = _tokens(users), _tokens(items)
    rows, cols, events, times = [], [], [], []
    for path in paths:
        table = pa.parquet.read_table(path, columns=names)
        user_rows = _indices(table.column(c.user_id), user_tokens, users)
        item_rows = _indices(table.column(c.item_id), item_tokens, items)
        keys = _distinct(user_rows.astype(np.int64) * items.size + item_rows)
        rows.append((keys // items.size).astype(np.int32))
        cols.append((keys % items.size).astype(np.int32))
        events.append(item_rows)
        if c.timestamp is not None:
            times.append(_numbers(table.column(c.timestamp)))
        del table, keys, user_rows
    matrix = _ones(rows, cols, users.size, items.size)
    del rows, cols
    item_events = np.concatenate(events) if events else np.zeros(0, np.int32)
    del events
    time_order = np.concatenate(times) if times else None
    del times
    counts = {float(w): _latest_counts(item_events, time_order, w, items.size)
              for w in dict.fromkeys([1.0, *windows])}
    return ShardCounts(matrix, counts, items.size)


def _latest_counts(items: np.ndarray, times: np.ndarray | None, window: float,
                   size: int) -> np.ndarray:
    """``[size]`` counts of ``items`` among the latest ``window`` share of the events:
    those after a threshold time (a partition, not a sort) and, of those at it, the
    last in the shards' order (as a stable sort by time would take them)."""
    if window >= 1.0 or not len(items):
        return np.bincount(items, minlength=size)
    take = latest_rows(window, len(items))
    if times is None:
        return np.bincount(items[len(items) - take:], minlength=size)
    threshold = np.partition(times, len(times) - take)[len(times) - take]
    later = times > threshold
    at = np.flatnonzero(times == threshold)
    chosen = at[len(at) - (take - int(later.sum())):]
    return (np.bincount(items[later], minlength=size)
            + np.bincount(items[chosen], minlength=size))


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``keys`` (by a sort: ``np.unique`` hashes, slower)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys


def _ones(rows: list[np.ndarray], cols: list[np.ndarray], shape_rows: int,
          shape_cols: int) -> sp.csr_matrix:
    """The CSR matrix of ones at the (row, column) pairs of each shard (distinct within
    a shard; a pair two shards share counts once)."""
    row = np.concatenate(rows) if rows else np.zeros(0, np.int32)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int32)
    matrix = sp.coo_matrix((np.ones(len(row), np.float32), (row, col)),
                           shape=(shape_rows, shape_cols)).tocsr()
    del row, col
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


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


@dataclasses.dataclass(frozen=True)
class BlendInputs:
    """What the blend needs besides the trained towers, fitted before their final
    training (so that its time is known when that training is planned): the iALS
    factor tables (``None``: no ``implicit``, or it diverged) and the popularity."""

    factors: tuple[np.ndarray, np.ndarray] | None
    popularity: Callable[[float], np.ndarray]
    windows: tuple[float, ...]


def prepare_blend(recipe: Any, settings: Any, paths: Sequence[str],
                  vocabularies: Any, *, deadline: float) -> BlendInputs:
    """The factorisation and the popularity of the training shards ``paths`` (those the
    towers learn from) in ``vocabularies``' index order; no iALS iteration past the
    third starts that would end after ``deadline``."""
    c = recipe.columns
    started = time.monotonic()
    windows = WINDOWS if c.timestamp is not None else (1.0,)
    counts = count_shards(paths, c, vocabularies[c.user_id], vocabularies[c.item_id],
                          windows)
    recipe._log(f"blend: {counts.matrix.nnz:,} distinct (user, item) pairs counted in "
                f"{time.monotonic() - started:.1f} s (peak RSS {peak_gib():.2f} GiB)")
    factors = None
    if importlib.util.find_spec("implicit") is not None:
        began = time.monotonic()
        factors, run, planned = factorise_matrix(counts.matrix, settings, recipe.seed,
                                                 deadline=deadline)
        recipe._log(f"blend: iALS {run} of {planned} iteration(s) in "
                    f"{time.monotonic() - began:.1f} s (peak RSS {peak_gib():.2f} GiB)" + (
                        "" if factors is not None else ": diverged, left out"))
    popularity = functools.lru_cache(maxsize=None)(dataclasses.replace(
        counts, matrix=sp.csr_matrix((1, 1), dtype=np.float32)).popularity)
    return BlendInputs(factors, popularity, windows)


def spread_users(items: int) -> int:
    """The users whose scores against every item measure the blended parts' spreads:
    as in memory, fewer for a large catalogue (about :data:`_SPREAD_SCORES` scores)."""
    return int(np.clip(_SPREAD_SCORES // max(items, 1), _MIN_SPREAD_USERS, _SPREAD_USERS))


def choice_passes(inputs: BlendInputs) -> int:
    """How many times :func:`~tfrs_kit.recipe._blend.choose` scores its users at
    least: each factorisation weight, every third popularity weight on every window,
    and its setup (about two more)."""
    weights = len(WEIGHTS) if inputs.factors is not None else 1
    coarse = len([p for p in POPULARITY_WEIGHTS[::3] if p])
    return weights + coarse * len(inputs.windows) + 2


def blend_shards(recipe: Any, trained: Trained, inputs: BlendInputs, *,
                 validation: tuple[pd.DataFrame, pd.DataFrame, Data], saved: Saved,
                 deadline: float, users: int | None = None) -> tuple[Trained, Blend]:
    """``trained`` blended as the in-memory ``fit`` blends it, with ``inputs`` (the
    factorisation and popularity of the shards the towers learned from), the weights
    chosen on ``validation`` (the held-out events, their users' queries, a
    :class:`Data` of their training rows) -- on at most ``users`` of its users, drawn
    at random, when the time left is short --, the spreads measured on ``saved``'s
    users and candidates; ``deadline`` leaves out the fine popularity weights."""
    c = recipe.columns
    held, queries, known = validation
    if users is not None and held[c.user_id].nunique() > users:
        drawn = np.random.default_rng(recipe.seed).permutation(held[c.user_id].unique())
        held = held[held[c.user_id].isin(drawn[:max(users, 1)])]
        queries = queries[queries[c.user_id].isin(held[c.user_id])]
        recipe._log(f"blend: the weights chosen on {max(users, 1):,} validation users "
                    "(the time left is short)")
    sources = Sources(model=trained.model, columns=c, factors=inputs.factors,
                      queries=queries, candidates=saved.candidates, known=known,
                      windows=inputs.windows, popularity=inputs.popularity)
    blend = choose(sources, held, metric=recipe.metric, seed=recipe.seed, deadline=deadline)
    for line in blend.reasons(recipe.metric):
        recipe._log(line)
    model = trained.model
    if blend.weight or blend.popularity:
        sample = spread_sample(saved.queries, recipe.seed, spread_users(len(saved.candidates)))
        model = blended(dataclasses.replace(
            sources, queries=sample, factors=inputs.factors if blend.weight else None), blend)
    model.factor_tables_ = inputs.factors  # where an update goes on, at any weight
    return dataclasses.replace(trained, model=model), blend
