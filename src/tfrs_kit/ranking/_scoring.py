"""The serving math of the cascade, shared by the in-memory cascade and the exported one.

``ranking/_cascade.py`` (retrieve, then rank, in memory), the ranker's list
training and ``index/_cascade.py`` (the same in one SavedModel) all compute the
history similarities and the retriever's scores here, so the three cannot drift
apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit.data._table import Table

__all__ = ["component_bounds", "component_scores", "history_positions", "history_similarity",
           "list_standardise", "retrieval_scores"]


def retrieval_scores(retriever: Any, queries: Table, query_rows: np.ndarray,
                     candidates: Table, candidate_rows: np.ndarray) -> np.ndarray:
    """The retriever's score (dot product) of each pair of a query row and a candidate row."""
    query_vectors = retriever.query_tower.embed(queries, verbose=False)
    candidate_vectors = retriever.candidate_tower.embed(candidates, verbose=False)
    return np.einsum("ij,ij->i", query_vectors[query_rows],
                     candidate_vectors[candidate_rows]).astype(np.float32)


def list_standardise(scores: tf.Tensor, found: tf.Tensor) -> tf.Tensor:
    """:func:`~tfrs_kit.ranking._sampling.list_standardise` in TensorFlow."""
    mask = tf.cast(found, tf.float32)
    count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    kept = tf.where(found, scores, tf.zeros_like(scores))
    mean = tf.reduce_sum(kept, axis=1, keepdims=True) / count
    spread = tf.sqrt(tf.reduce_sum(mask * tf.square(kept - mean), axis=1, keepdims=True) / count)
    return tf.where(found, (kept - mean) / tf.maximum(spread, 1e-6), tf.zeros_like(scores))


def component_scores(queries: tf.Tensor, candidates: tf.Tensor,
                     bounds: Sequence[int]) -> tf.Tensor:
    """``[batch, n, len(bounds) + 1]``: the retriever's score of each candidate, split by
    component (the dot product over the embedding's columns up to each bound, then the rest).

    Args:
        queries: ``[batch, d]`` the retriever's query embeddings.
        candidates: ``[batch, n, d]`` its embeddings of each query's candidates.
        bounds: The increasing columns where one component ends and the next begins
            (a blend's: the towers', then the factorisation's; see :func:`component_bounds`).

    Example:
        >>> component_scores(tf.constant([[1.0, 2.0, 3.0]]), tf.constant([[[1.0, 1.0, 2.0]]]),
        ...                  (1,)).numpy().tolist()
        [[[1.0, 8.0]]]
    """
    queries = tf.cast(queries, tf.float32)
    candidates = tf.cast(candidates, tf.float32)
    edges = [0, *bounds, None]
    return tf.stack([tf.einsum("bd,bnd->bn", queries[:, start:stop], candidates[:, :, start:stop])
                     for start, stop in itertools.pairwise(edges)], axis=-1)


def component_bounds(retriever: Any, dim: int) -> tuple[int, ...]:
    """The columns where a blended retriever's ``dim``-wide embedding splits by component.

    A blend (``recipe/_blend.py``'s ``JoinedTower``: the towers' output, then a factor
    table of iALS factors and one popularity column) splits into towers, iALS (when
    present) and popularity; anything else is one component (``()``).

    >>> class Joined:
    ...     factors = np.zeros((5, 9))
    >>> class Blend:
    ...     query_tower = Joined()
    >>> component_bounds(Blend(), 40), component_bounds(object(), 40)
    ((31, 39), ())
    """
    factors = getattr(getattr(retriever, "query_tower", None), "factors", None)
    shape = getattr(factors, "shape", None)
    if shape is None or len(shape) != 2 or not 0 < int(shape[1]) < dim:
        return ()
    towers = dim - int(shape[1])
    return (towers, dim - 1) if dim - towers > 1 else (towers,)


def history_similarity(history: tf.Tensor, valid: tf.Tensor, candidates: tf.Tensor,
                       recent: Sequence[int]) -> tf.Tensor:
    """``[batch, n, len(recent)]``: each candidate's cosine with the mean of the last ``L`` items.

    Args:
        history: ``[batch, h, d]`` retriever embeddings of each query's history,
            most recent last (padding anywhere after it).
        valid: ``[batch, h]`` which slots hold a known item.
        candidates: ``[batch, n, d]`` retriever embeddings of the candidates.
        recent: The lengths ``L``.

    The mean is of the normalised embeddings; 0 for an empty history.
    """
    mask = tf.cast(valid, tf.float32)
    from_end = tf.cumsum(mask, axis=1, reverse=True)  # 1 at the latest valid item
    lengths = tf.constant([float(length) for length in recent])
    weights = mask[..., None] * tf.cast(from_end[..., None] <= lengths, tf.float32)  # [b, h, R]
    weights = weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)
    items = tf.math.l2_normalize(tf.cast(history, tf.float32), axis=-1)
    targets = tf.math.l2_normalize(tf.cast(candidates, tf.float32), axis=-1)
    means = tf.einsum("bhr,bhd->brd", weights, items)  # one op for every L
    return tf.einsum("brd,bnd->bnr", means, targets)


def history_positions(history: Any, ids: pd.Index) -> np.ndarray:
    """``[rows, longest]`` positions in ``ids`` of each row's history items, ``-1`` padding."""
    rows = [np.asarray(row if row is not None else [], dtype=object) for row in history]
    width = max([*(len(row) for row in rows), 1])
    out = np.full((len(rows), width), -1, dtype=np.int64)
    flat = np.concatenate([*rows, np.zeros(0, dtype=object)])
    if len(flat):
        found = ids.get_indexer(pd.Index(flat))
        lengths = np.array([len(row) for row in rows])
        row_of = np.repeat(np.arange(len(rows)), lengths)
        column = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[row_of, column] = found
    return out
