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

__all__ = ["EpochShuffle", "make_dataset", "to_tensors", "training_dataset"]


def _column_tensor(name: str, column: np.ndarray) -> tf.Tensor | tf.RaggedTensor:
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
    epoch: EpochShuffle | None = None,
) -> tf.data.Dataset:
    """A batched, optionally reshuffled-each-epoch dataset of the named columns.

    Args:
        table: The in-memory table.
        columns: The columns to read.
        batch_size: Rows per batch (the global batch under a strategy).
        shuffle: Reshuffle the rows at every pass.
        seed: Seed of the shuffle.
        epoch: Key each pass's order on ``(seed, epoch.epoch)`` instead of
            ``tf.data``'s internal state, so that a restarted process, or
            every worker of a cluster, draws the same order for the same epoch.
            Pass the same object to Keras ``fit`` as a callback.

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


class EpochShuffle(tf.keras.callbacks.Callback):
    """Keeps :func:`make_dataset`'s shuffle keyed on the epoch being trained.

    The epoch is the optimizer's step count divided by the steps per epoch, so
    it survives a restart from a checkpoint (``BackupAndRestore`` restores the
    step count) and continues across several ``fit`` calls.

    Args:
        steps_per_epoch: Optimizer steps in one pass over the data.
    """

    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        with tf.init_scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="shuffle_epoch")

    def _sync(self) -> None:
        steps = int(self.model.optimizer.iterations.numpy())
        self.epoch.assign(steps // self.steps_per_epoch)

    def on_train_begin(self, logs: Any = None) -> None:
        self._sync()  # after BackupAndRestore (an earlier callback) has restored the steps

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._sync()  # before Keras creates the next epoch's iterator


def training_dataset(
    table: Table,
    columns: Iterable[str],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[tf.data.Dataset, list[tf.keras.callbacks.Callback]]:
    """The training dataset of ``fit`` and the callbacks that must go with it.

    With a ``seed`` the shuffle is keyed on the epoch (see :class:`EpochShuffle`),
    so training resumed from a checkpoint sees the same batches as an
    uninterrupted run. Several workers must shuffle alike, so they need a seed.
    """
    workers = _num_workers(strategy)
    if shuffle and seed is None and workers > 1:
        raise invalid_argument(
            "seed", "be set when shuffling under a multi-worker strategy", seed,
            hint=f"Every one of the {workers} workers must draw the same order; "
            "pass the same seed=... on each, or shuffle=False.",
        )
    if not shuffle or seed is None:
        return make_dataset(table, columns, batch_size=batch_size, shuffle=shuffle,
                            seed=seed), []
    epoch = EpochShuffle(-(-num_rows(table) // batch_size))
    dataset = make_dataset(table, columns, batch_size=batch_size, shuffle=True, seed=seed,
                           epoch=epoch)
    return dataset, [epoch]


def _num_workers(strategy: tf.distribute.Strategy | None) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("chief", [])) + len(spec.get("worker", [])))
