"""In-memory tables to TensorFlow tensors and fast ``tf.data`` pipelines.

The whole table becomes one tensor per column; each batch is a single
``tf.gather`` of shuffled row indices, so no Python runs per example.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._data import Table, is_multivalued, num_rows
from tfrs_kit._errors import invalid_argument

__all__ = ["make_dataset", "to_tensors"]


def _column_tensor(name: str, column: np.ndarray) -> tf.Tensor | tf.RaggedTensor:
    if is_multivalued(column):
        lengths = np.fromiter((len(v) for v in column), dtype=np.int64, count=len(column))
        non_empty = [np.asarray(v) for v in column if len(v)]
        if non_empty:
            values = np.concatenate(non_empty)
        else:
            values = np.array([], dtype=object)
        if values.dtype.kind in "iu":
            values = values.astype(np.int64)
        elif values.dtype.kind in "OUS":
            values = values.astype(object).astype(str).astype(object)
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


def to_tensors(table: Table, columns: Iterable[str]) -> dict[str, Any]:
    """The named columns as tensors (multi-valued ones ragged)."""
    return {name: _column_tensor(name, table[name]) for name in columns}


def make_dataset(
    table: Table,
    columns: Iterable[str],
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A batched, optionally reshuffled-each-epoch dataset of the named columns."""
    tensors = to_tensors(table, columns)
    n = num_rows(table)
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size)
    dataset = batches.map(
        lambda idx: {name: tf.gather(t, idx) for name, t in tensors.items()},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
