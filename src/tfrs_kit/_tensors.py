"""In-memory tables to TensorFlow tensors and batched ``tf.data`` pipelines.

The whole table becomes one tensor per column; each batch is a single
``tf.gather`` of (optionally shuffled) row indices, so no Python runs per example.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._data import Table, is_multivalued, num_rows
from tfrs_kit._errors import invalid_argument

__all__ = ["is_vector", "make_dataset", "to_tensors"]


def _column_tensor(name: str, column: np.ndarray) -> tf.Tensor | tf.RaggedTensor:
    if is_vector(column):
        return tf.constant(np.stack(list(column)).astype(np.float32))
    if is_multivalued(column):
        lengths = np.fromiter((len(v) for v in column), dtype=np.int64, count=len(column))
        non_empty = [np.asarray(v) for v in column if len(v)]
        values = np.concatenate(non_empty) if non_empty else np.array([], dtype=object)
        if values.dtype.kind in "iu":
            values = values.astype(np.int64)
        elif values.dtype.kind in "OUS":
            values = values.astype(str)
        return tf.RaggedTensor.from_row_lengths(tf.constant(values), lengths)
    if column.dtype == object:
        try:
            return tf.constant(column.astype(str) if len(column) else column, dtype=tf.string)
        except (TypeError, ValueError) as error:
            raise invalid_argument(
                f"data[{name!r}]", "hold strings, numbers or lists of them",
                column[:3].tolist(),
            ) from error
    if column.dtype.kind == "b":
        return tf.constant(column.astype(np.int64))
    if column.dtype.kind == "f":
        return tf.constant(column.astype(np.float32))
    return tf.constant(column)


def is_vector(column: np.ndarray) -> bool:
    """Whether a column holds one float vector per row, all of one length.

    Such a column (a pretrained embedding, a DataFrame column of fixed-length
    arrays) becomes a dense ``[rows, length]`` float32 tensor; lists of ids or
    strings, and lists of varying length, stay ragged.

    >>> rows = np.empty(2, dtype=object)
    >>> rows[:] = [np.zeros(3), np.ones(3)]
    >>> is_vector(rows)
    True
    >>> rows[:] = [np.zeros(3), np.ones(2)]
    >>> is_vector(rows)
    False
    """
    if not is_multivalued(column):
        return False
    first = column[0]
    length = len(first)
    return length > 0 and all(
        isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.ndim == 1 and len(v) == length
        for v in column)


def to_tensors(table: Table, columns: Iterable[str]) -> dict[str, Any]:
    """The named columns as tensors: lists of ids ragged, float vectors of one length dense."""
    return {name: _column_tensor(name, table[name]) for name in columns}


def make_dataset(
    table: Table,
    columns: Iterable[str],
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    epoch: Any = None,
) -> tf.data.Dataset:
    """A batched, optionally reshuffled-each-epoch dataset of the named columns.

    Args:
        table: The in-memory table.
        columns: The columns to read.
        batch_size: Rows per batch (the global batch under a strategy).
        shuffle: Reshuffle the rows at every pass.
        seed: Seed of the shuffle.
        epoch: An object whose ``epoch`` is an int64 ``tf.Variable`` (the
            training loop's ``EpochShuffle``): each pass's order is keyed on
            ``(seed, epoch.epoch)`` instead of ``tf.data``'s internal state,
            so a restarted process, or every worker of a cluster, draws the
            same order for the same epoch.

    Returns:
        A dataset of ``{column: batch}`` dicts. Under ``tf.distribute`` it is
        sharded by data (each worker keeps its share of every global batch).
    """
    tensors = to_tensors(table, columns)
    n = num_rows(table)
    if shuffle and epoch is not None:
        base = tf.constant(seed or 0, tf.int64)
        counter = epoch.epoch
        indices = tf.data.Dataset.from_tensors(tf.constant(n, tf.int64)).map(
            lambda size: tf.random.experimental.stateless_shuffle(
                tf.range(size), seed=tf.stack([base, counter.read_value()]))
        ).unbatch()
    else:
        indices = tf.data.Dataset.range(n)
        if shuffle:
            indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size)
    dataset = batches.map(
        lambda idx: {name: tf.gather(t, idx) for name, t in tensors.items()},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    options = tf.data.Options()
    # In-memory tensors have no files to shard: say so (AUTO warns, then does this).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
