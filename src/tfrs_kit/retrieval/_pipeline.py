"""The training input pipeline: ``fit``'s dataset, shuffled reproducibly per epoch.

Ids are looked up in the towers, at every step; text is tokenised once, before the
loop (see :func:`text_encodings`), and histories are gathered per batch from one
shared item array (see :class:`tfrs_kit.data._tensors.Spans`). Shards streamed from
files are read by :mod:`tfrs_kit.data._stream`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit.data._stream import num_workers
from tfrs_kit.data._table import Table, num_rows
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.towers import Tower
from tfrs_kit.towers._encoders import TextEncoder

__all__ = ["EpochShuffle", "text_encodings", "training_dataset"]


def text_encodings(towers: Iterable[Any]) -> dict[str, Callable[[tf.Tensor], Any]]:
    """The text features that training may feed tokenised, each with its tokeniser.

    A text feature qualifies when every tower that reads it is a :class:`Tower`
    with the built-in ``encode`` and ``call`` (a custom one may read the raw
    strings) whose encoder of it is a :class:`TextEncoder` over the same tokens:
    such an encoder gives the same embedding for the tokens as for the string.
    """
    readers: dict[str, list[Any]] = {}
    for tower in towers:
        for name in getattr(tower, "features", ()):
            builtin = (isinstance(tower, Tower) and type(tower).encode is Tower.encode
                       and type(tower).call is Tower.call)
            readers.setdefault(name, []).append(tower.encoders.get(name) if builtin else None)
    encodings = {}
    for name, encoders in readers.items():
        first = encoders[0]
        if all(isinstance(e, TextEncoder) and e.vocabulary == first.vocabulary
               for e in encoders):
            encodings[name] = first.tokenize
    return encodings


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
    encode_once: Mapping[str, Callable[[tf.Tensor], Any]] | None = None,
) -> tuple[tf.data.Dataset, list[tf.keras.callbacks.Callback]]:
    """The training dataset of ``fit`` and the callbacks that must go with it.

    With a ``seed`` the shuffle is keyed on the epoch (see :class:`EpochShuffle`),
    so training resumed from a checkpoint sees the same batches as an
    uninterrupted run. Several workers must shuffle alike, so they need a seed.
    ``encode_once`` is :func:`make_dataset`'s (text tokenised before the loop).
    """
    workers = num_workers(strategy)
    if shuffle and seed is None and workers > 1:
        raise invalid_argument(
            "seed", "be set when shuffling under a multi-worker strategy", seed,
            hint=f"Every one of the {workers} workers must draw the same order; "
            "pass the same seed=... on each, or shuffle=False.",
        )
    if not shuffle or seed is None:
        return make_dataset(table, columns, batch_size=batch_size, shuffle=shuffle,
                            seed=seed, encode_once=encode_once), []
    epoch = EpochShuffle(-(-num_rows(table) // batch_size))
    dataset = make_dataset(table, columns, batch_size=batch_size, shuffle=True, seed=seed,
                           epoch=epoch, encode_once=encode_once)
    return dataset, [epoch]


