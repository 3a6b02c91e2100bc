"""Negative sampling beyond the batch: random candidates drawn from the catalogue.

In-batch negatives are drawn in proportion to popularity, so rarely seen items
seldom serve as negatives. :class:`NegativePool` keeps the catalogue in memory and
draws candidates uniformly at random at every training step (mixed negative
sampling); :meth:`NegativePool.mixed_probability` is the logQ correction that
matches the mixture of in-batch and uniform draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit.data._table import TableLike
from tfrs_kit.data._tensors import to_tensors
from tfrs_kit.towers._model_base import rows_by_key

__all__ = ["NegativePool"]


class NegativePool:
    """The catalogue that random negatives are drawn from, as in-memory tensors.

    Args:
        features: Each catalogue column as a tensor, one row per candidate.
        probability: Each candidate's share of the training rows (0 for
            candidates never seen in training).

    Example:
        >>> pool = NegativePool.build(
        ...     {"item_id": ["x", "y", "x"]}, item_id="item_id", features=["item_id"],
        ...     frequencies=pd.Series({"x": 0.75, "y": 0.25}))
        >>> pool.size
        2
        >>> drawn, probability = pool.draw(5)
        >>> drawn["item_id"].shape, probability.shape
        (TensorShape([5]), TensorShape([5]))
    """

    def __init__(self, features: dict[str, Any], probability: tf.Tensor) -> None:
        self.features = features
        self.probability = probability
        self.size = int(probability.shape[0])

    @classmethod
    def build(cls, data: TableLike, *, item_id: str, features: Sequence[str],
              frequencies: Mapping[Any, float] | pd.Series | None) -> NegativePool:
        """The pool of the distinct candidates of ``data`` (each one's last row).

        Args:
            data: Rows holding ``item_id`` and the candidate tower's
                ``features`` (the ``candidates`` argument of ``fit``).
            item_id: The column that identifies a candidate.
            features: The columns the candidate tower reads.
            frequencies: Each candidate id's share of the training rows, or
                ``None`` when no logQ correction needs them.
        """
        table = rows_by_key(data, item_id, features, "candidates")
        ids = pd.Series(table[item_id])
        probability = (ids.map(frequencies).fillna(0.0).to_numpy(np.float32)
                       if frequencies is not None else np.zeros(len(ids), np.float32))
        return cls(to_tensors(table, list(table)), tf.constant(probability))

    def draw(self, count: int) -> tuple[dict[str, Any], tf.Tensor]:
        """``count`` candidates drawn uniformly, with replacement.

        Returns:
            Their features (every column of the pool) and their training
            frequencies.
        """
        rows = tf.random.uniform([count], 0, self.size, dtype=tf.int64)
        drawn = {name: tf.gather(column, rows) for name, column in self.features.items()}
        return drawn, tf.gather(self.probability, rows)

    def mixed_probability(self, in_batch: tf.Tensor, drawn: tf.Tensor,
                          num_queries: tf.Tensor) -> tf.Tensor:
        """The logQ sampling probability of every column of a batch with random negatives.

        A column's candidate appears among a step's negatives through the
        batch's draws, which follow popularity (``num_queries`` times its
        frequency), and through the uniform draws (their number over the
        catalogue's size): the correction subtracts the log of that sum.
        It is returned divided by the number of draws (queries plus random
        negatives), a probability per draw: the softmax is the same (a
        constant per query), and TFRS's correction clips probabilities to
        ``[1e-6, 1]``, so an expected count above 1 (any popular item in a
        large batch) would otherwise lose its correction.

        Args:
            in_batch: The training frequencies of the batch's own candidates.
            drawn: Those of the random negatives, from :meth:`draw`.
            num_queries: The number of queries (rows) in the batch.
        """
        count = tf.cast(tf.shape(drawn)[0], tf.float32)
        batch = tf.cast(num_queries, tf.float32)
        expected = batch * tf.concat([in_batch, drawn], axis=0) + count / self.size
        return expected / (batch + count)
