"""Multitask: one two-tower model trained on retrieval and on an explicit rating at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_int, check_number, renamed_argument
from tfrs_kit.data._table import Table, TableLike, num_rows, to_table
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.ranking._checks import check_dims
from tfrs_kit.ranking._sampling import check_label
from tfrs_kit.retrieval import TwoTowerRetrieval
from tfrs_kit.towers import Tower

__all__ = ["Multitask"]


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class Multitask(TwoTowerRetrieval):
    """A :class:`~tfrs_kit.TwoTowerRetrieval` that also learns to predict a rating.

    TFRS's multitask recipe: the towers are shared; the loss is
    ``retrieval_weight`` times the in-batch softmax retrieval loss plus
    ``rating_weight`` times the squared error of a small MLP over the two
    embeddings (``tfrs.tasks.Ranking``), trained in one ``fit``. It is a
    retrieval model in every other way (``as_recommender``, ``IndexBuilder``).

    When it helps: the explicit signal (ratings, dwell time) is a second view of
    the same tastes, so it regularises towers trained on few interactions, and
    the model can order a user's candidates by predicted rating
    (:meth:`predict_ratings`). With plenty of interactions a retrieval-only
    model is usually as good at retrieval; a large ``rating_weight`` trades
    retrieval quality for rating accuracy. Compare both with
    :func:`tfrs_kit.evaluate` on your own data.

    Args:
        query_tower: Encodes the query (user) features.
        candidate_tower: Encodes the candidate (item) features.
        label: The column of explicit labels, present in every training row.
        retrieval_weight: The retrieval loss's weight (>= 0).
        rating_weight: The rating loss's weight (>= 0; not both 0).
        rating_hidden_dims: Dense ReLU layers of the rating head.
        **kwargs: The other :class:`~tfrs_kit.TwoTowerRetrieval` arguments.

    Example:
        >>> import tfrs_kit as tk
        >>> from tfrs_kit.ranking import Multitask
        >>> log = {"user_id": ["a", "b", "a", "c"], "item_id": ["x", "y", "y", "x"],
        ...        "rating": [5.0, 3.0, 4.0, 1.0]}
        >>> vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"])
        >>> model = Multitask(tk.Tower(vocabs, features=["user_id"], output_dim=4),
        ...                   tk.Tower(vocabs, features=["item_id"], output_dim=4),
        ...                   label="rating", rating_weight=0.5)
        >>> _ = model.fit(log, epochs=2, batch_size=2, verbose=False)
        >>> model.predict_ratings(log).shape
        (4,)
    """

    def __init__(self, query_tower: Tower, candidate_tower: Tower, *, label: str = "rating",
                 retrieval_weight: float = 1.0, rating_weight: float = 1.0,
                 rating_hidden_dims: Sequence[int] = (64, 32), **kwargs: Any) -> None:
        if "candidate_id" in kwargs:  # warn here, where the caller's line is one frame up
            kwargs["item_id"] = renamed_argument("item_id", kwargs.pop("item_id", None),
                                                 old="candidate_id",
                                                 old_value=kwargs.pop("candidate_id"))
        super().__init__(query_tower, candidate_tower, **kwargs)
        if not isinstance(label, str):
            raise invalid_argument("label", "be a column name", label, error=TypeError)
        self.label = label
        self.retrieval_weight = check_number("retrieval_weight", retrieval_weight, minimum=0)
        self.rating_weight = check_number("rating_weight", rating_weight, minimum=0)
        if not self.retrieval_weight and not self.rating_weight:
            raise invalid_argument("rating_weight", "be > 0 when retrieval_weight is 0",
                                   rating_weight, hint="One of the two tasks must count.")
        self.rating_hidden_dims = check_dims(rating_hidden_dims, "rating_hidden_dims")
        self.rating_head = tf.keras.Sequential(
            [tf.keras.layers.Dense(d, activation="relu") for d in self.rating_hidden_dims]
            + [tf.keras.layers.Dense(1)], name="rating_head")
        self.rating_task = tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError())

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label": self.label,
                "retrieval_weight": self.retrieval_weight, "rating_weight": self.rating_weight,
                "rating_hidden_dims": list(self.rating_hidden_dims)}

    @property
    def features(self) -> tuple[str, ...]:
        """The columns the model reads in training (the towers' features and ``label``)."""
        return (*super().features, self.label)

    def _read(self, data: TableLike, argument: str) -> Table:
        table = super()._read(data, argument)
        check_label(table, self.label, argument)
        return table

    def _rating(self, features: Mapping[str, Any], training: bool) -> tf.Tensor:
        query, candidate = self(features, training=training)
        return self.rating_head(tf.concat([query, candidate], axis=1), training=training)

    def compute_loss(self, features: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        loss = tf.constant(0.0)
        if self.retrieval_weight:
            loss += self.retrieval_weight * super().compute_loss(features, training=training)
        if self.rating_weight:
            labels = tf.cast(features[self.label], tf.float32)[:, None]
            rating = self.rating_task(labels=labels,
                                      predictions=self._rating(features, training),
                                      compute_metrics=False)
            loss += self.rating_weight * rating
        return loss

    def predict_ratings(self, data: TableLike, *, batch_size: int = 8192) -> np.ndarray:
        """The predicted label of each row of ``data`` (both towers' features): ``[rows]``."""
        table = to_table(data, argument="data")
        batch_size = check_int("batch_size", batch_size, minimum=1)
        columns = tuple(dict.fromkeys([*self.query_tower.features,
                                       *self.candidate_tower.features]))
        for column in columns:
            if column not in table:
                raise missing_column("data", column, table, role="a feature the towers read")
        if not num_rows(table):
            return np.zeros(0, np.float32)
        dataset = make_dataset(table, columns, batch_size=batch_size)
        return np.concatenate([self._rating(batch, False).numpy()[:, 0] for batch in dataset])
