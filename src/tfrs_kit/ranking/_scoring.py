"""The serving math of the cascade, shared by the in-memory cascade and the exported one.

``ranking/_cascade.py`` (retrieve, then rank, in memory), the ranker's list
training and ``index/_cascade.py`` (the same in one SavedModel) all compute the
history similarities and the retriever's scores here, so the three cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit.data._table import Table

__all__ = ["history_positions", "history_similarity", "list_standardise", "retrieval_scores"]


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
