"""The two-tower retrieval model, on ``tfrs.Model`` and ``tfrs.tasks.Retrieval``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._data import Table, TableLike, num_rows, to_table
from tfrs_kit._errors import NotFittedError, invalid_argument, missing_column
from tfrs_kit._pipeline import make_dataset
from tfrs_kit.towers import Tower

__all__ = ["TwoTowerRetrieval"]

_SAMPLING_PROBABILITY = "__tfrs_kit_sampling_probability__"


class TwoTowerRetrieval(tfrs.Model):
    """A query tower and a candidate tower trained with in-batch softmax retrieval.

    The loss is ``tfrs.tasks.Retrieval``'s: every other candidate in a batch is a
    negative for a query. No top-k metric runs inside ``fit`` (it would score the
    whole catalogue at every step); evaluate with :func:`tfrs_kit.evaluate`.

    Args:
        query_tower: Encodes the query (user) features.
        candidate_tower: Encodes the candidate (item) features.
        candidate_id: The feature that identifies a candidate; default: the
            candidate tower's first feature.
        temperature: Divides the logits; lower values sharpen the softmax.
        remove_accidental_hits: Do not count a batch's other copies of the
            positive candidate as negatives.
        logq_correction: Subtract the log of each candidate's sampling
            probability (its frequency in the training data) from its logit,
            which corrects in-batch negatives' bias towards popular items.
        name: The Keras name of the model.

    Example:
        >>> import tfrs_kit as tk
        >>> log = {"user_id": ["a", "b", "a", "c"], "item_id": ["x", "y", "y", "x"]}
        >>> vocabs = tk.VocabularyBuilder().fit(log)
        >>> model = tk.TwoTowerRetrieval(
        ...     tk.Tower(vocabs, features=["user_id"], output_dim=8),
        ...     tk.Tower(vocabs, features=["item_id"], output_dim=8))
        >>> history = model.fit(log, epochs=2, batch_size=2, verbose=0)
        >>> len(history.history["loss"])
        2
    """

    def __init__(
        self,
        query_tower: Tower,
        candidate_tower: Tower,
        *,
        candidate_id: str | None = None,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        logq_correction: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        for argument, tower in (("query_tower", query_tower), ("candidate_tower", candidate_tower)):
            if not isinstance(tower, tf.keras.layers.Layer) or not hasattr(tower, "features"):
                raise invalid_argument(
                    argument, "be a tfrs_kit Tower (a Keras layer with `features`)",
                    type(tower).__name__, error=TypeError,
                )
        if temperature is not None and not temperature > 0:
            raise invalid_argument("temperature", "be a positive number or None", temperature)
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.candidate_id = candidate_id or candidate_tower.features[0]
        self.temperature = temperature
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.logq_correction = bool(logq_correction)
        self.task = tfrs.tasks.Retrieval(
            temperature=temperature, remove_accidental_hits=self.remove_accidental_hits
        )

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature the model reads in training, in a stable order."""
        names = dict.fromkeys(
            [*self.query_tower.features, *self.candidate_tower.features, self.candidate_id]
        )
        return tuple(names)

    def call(self, features: Mapping[str, Any], training: bool | None = None) -> tuple[Any, Any]:
        """Returns the query and candidate embeddings of a batch."""
        return (
            self.query_tower(features, training=training),
            self.candidate_tower(features, training=training),
        )

    def compute_loss(self, features: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        query, candidate = self(features, training=training)
        kwargs: dict[str, Any] = {}
        if self.remove_accidental_hits:
            kwargs["candidate_ids"] = features[self.candidate_id]
        if self.logq_correction:
            kwargs["candidate_sampling_probability"] = features[_SAMPLING_PROBABILITY]
        return self.task(query, candidate, compute_metrics=not training, **kwargs)

    def fit(  # type: ignore[override]
        self,
        x: TableLike,
        *,
        epochs: int = 1,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int | None = None,
        validation_data: TableLike | None = None,
        callbacks: Sequence[Any] | None = None,
        verbose: Any = "auto",
        **kwargs: Any,
    ) -> Any:
        """Trains on an interaction table; returns the Keras ``History``.

        Args:
            x: One row per (query, candidate) interaction holding every feature
                of both towers: a DataFrame, a dict of arrays or a
                ``tf.data.Dataset`` of feature dicts (read into memory once).
            epochs: Passes over the data.
            batch_size: Rows per step; also the number of in-batch negatives.
            shuffle: Reshuffle the rows every epoch.
            seed: Seed of the shuffle.
            validation_data: A table like ``x``; its loss is reported per epoch.
            callbacks: Keras callbacks (early stopping, checkpoints, ...).
            verbose: Keras verbosity: 0 silent, 1 progress bar, 2 a line per epoch.
            **kwargs: Passed on to ``tf.keras.Model.fit``.

        If the model is not compiled yet, it is compiled with Adagrad (learning
        rate 0.05); call ``compile`` first to choose another optimizer.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid_argument("batch_size", "be a positive integer", batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise invalid_argument("epochs", "be a positive integer", epochs)
        train = self._prepare(x, "x", fit_probabilities=True)
        validation = None
        if validation_data is not None:
            validation = make_dataset(
                self._prepare(validation_data, "validation_data"), self._columns,
                batch_size=batch_size,
            )
        if self.optimizer is None:
            self.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.05))
        dataset = make_dataset(train, self._columns, batch_size=batch_size, shuffle=shuffle,
                               seed=seed)
        return super().fit(
            dataset, epochs=epochs, validation_data=validation, callbacks=callbacks,
            verbose=verbose, **kwargs,
        )

    @property
    def _columns(self) -> tuple[str, ...]:
        return self.features + ((_SAMPLING_PROBABILITY,) if self.logq_correction else ())

    def _prepare(self, data: TableLike, argument: str, *, fit_probabilities: bool = False) -> Table:
        table = to_table(data, argument=argument)
        missing = [f for f in self.features if f not in table]
        if missing:
            raise missing_column(argument, missing[0], table, role="a feature the towers read")
        table = {f: table[f] for f in self.features}
        _check_no_missing_ids(table, self.candidate_id, argument)
        if self.logq_correction:
            ids = pd.Series(table[self.candidate_id])
            if fit_probabilities:
                self._frequencies = ids.value_counts(normalize=True)
            elif not hasattr(self, "_frequencies"):
                raise NotFittedError("Call `fit` before evaluating a model with logq_correction.")
            floor = 1.0 / max(num_rows(table), 1)
            table[_SAMPLING_PROBABILITY] = (
                ids.map(self._frequencies).fillna(floor).to_numpy(np.float32)
            )
        return table

    def query_embeddings(self, data: TableLike, *, batch_size: int = 8192) -> np.ndarray:
        """The query tower's embeddings of each row of ``data``, as a NumPy array."""
        return _embed(self.query_tower, data, "data", batch_size)

    def candidate_embeddings(self, data: TableLike, *, batch_size: int = 8192) -> np.ndarray:
        """The candidate tower's embeddings of each row of ``data``, as a NumPy array."""
        return _embed(self.candidate_tower, data, "data", batch_size)

    def as_recommender(
        self,
        train: TableLike,
        *,
        user_id: str = "user_id",
        item_id: str | None = None,
        users: TableLike | None = None,
        items: TableLike | None = None,
        batch_size: int = 8192,
    ) -> _TwoTowerRecommender:
        """Adapts the model to the :class:`tfrs_kit.evaluation.Recommender` protocol.

        Each user's query features are taken from their last row in ``users``
        (default: ``train``), each item's candidate features from its last row in
        ``items`` (default: ``train``); the catalogue is every item found there.
        """
        item_id = item_id or self.candidate_id
        items_table = _last_rows(to_table(items if items is not None else train, argument="items"),
                                 item_id, self.candidate_tower.features, "items")
        users_table = _last_rows(to_table(users if users is not None else train, argument="users"),
                                 user_id, self.query_tower.features, "users")
        return _TwoTowerRecommender(
            item_ids=items_table[item_id],
            item_embeddings=_embed(self.candidate_tower, items_table, "items", batch_size),
            user_ids=users_table[user_id],
            user_embeddings=_embed(self.query_tower, users_table, "users", batch_size),
        )


class _TwoTowerRecommender:
    """Scores users over a fixed catalogue from precomputed embeddings."""

    def __init__(self, *, item_ids: np.ndarray, item_embeddings: np.ndarray,
                 user_ids: np.ndarray, user_embeddings: np.ndarray) -> None:
        self.item_ids = item_ids
        self.item_embeddings = item_embeddings
        self._user_index = pd.Index(user_ids)
        self._user_embeddings = user_embeddings

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        positions = self._user_index.get_indexer(np.asarray(user_ids))
        if np.any(positions < 0):
            unknown = np.asarray(user_ids)[positions < 0][:5].tolist()
            raise invalid_argument(
                "user_ids", "name users whose query features are known", unknown,
                hint="Pass their rows with as_recommender(..., users=table).",
            )
        return self._user_embeddings[positions] @ self.item_embeddings.T


def _last_rows(table: Table, key: str, features: Sequence[str], argument: str) -> Table:
    columns = list(dict.fromkeys([key, *features]))
    missing = [c for c in columns if c not in table]
    if missing:
        raise missing_column(argument, missing[0], table)
    keep = ~pd.Series(table[key]).duplicated(keep="last").to_numpy()
    return {c: table[c][keep] for c in columns}


def _embed(tower: Tower, data: TableLike, argument: str, batch_size: int) -> np.ndarray:
    table = to_table(data, argument=argument)
    missing = [f for f in tower.features if f not in table]
    if missing:
        raise missing_column(argument, missing[0], table, role="a feature the tower reads")
    dataset = make_dataset(table, tower.features, batch_size=batch_size)
    predict = tf.function(lambda batch: tower(batch, training=False), reduce_retracing=True)
    return np.concatenate([predict(batch).numpy() for batch in dataset], axis=0)


def _check_no_missing_ids(table: Table, column: str, argument: str) -> None:
    values = table[column]
    if values.dtype == object or values.dtype.kind == "f":
        missing = pd.isna(values)
        if np.any(missing):
            raise invalid_argument(
                f"{argument}[{column!r}]", "hold no missing (None or NaN) ids",
                f"{int(missing.sum())} missing, the first at row {int(np.flatnonzero(missing)[0])}",
                hint="Drop those rows first.",
            )
