"""The two-tower retrieval model, on ``tfrs.Model`` and ``tfrs.tasks.Retrieval``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._errors import NotFittedError, invalid_argument, missing_column
from tfrs_kit._validation import (
    check_choice,
    check_features,
    check_fraction,
    check_int,
    check_number,
    check_verbose,
)
from tfrs_kit.data._files import is_files, iter_tables, resolve
from tfrs_kit.data._stream import count_values, distinct_rows, file_dataset, id_tensor
from tfrs_kit.data._table import Table, TableLike, last_rows, num_rows, select, to_table
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.retrieval._cross_replica import CrossReplicaRetrieval
from tfrs_kit.retrieval._negatives import NegativePool
from tfrs_kit.retrieval._pipeline import text_encodings, training_dataset
from tfrs_kit.retrieval._task import FastRetrieval
from tfrs_kit.towers import Tower

__all__ = ["TwoTowerRetrieval"]

# No leading underscore: TensorFlow turns feature names into graph node names.
_SAMPLING_PROBABILITY = "tfrs_kit_sampling_probability"
_SCHEDULES = ("constant", "cosine")
_LEARNING_RATE = 0.05  # Adagrad's, when fit compiles the model


class LossLogs(tfrs.Model):
    """A TFRS model whose ``fit`` lines show ``loss`` alone when nothing is regularised.

    TFRS logs ``regularization_loss`` (0) and ``total_loss`` (the loss again) at
    every step; the towers are built by the time a step returns, so
    ``self.losses`` holds their regularisers, if any.
    """

    def train_step(self, inputs: Any) -> dict[str, Any]:
        return self._loss_only(super().train_step(inputs))

    def test_step(self, inputs: Any) -> dict[str, Any]:
        return self._loss_only(super().test_step(inputs))

    def _loss_only(self, logs: dict[str, Any]) -> dict[str, Any]:
        if not self.losses:
            logs.pop("regularization_loss", None)
            logs.pop("total_loss", None)
        return logs


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class TwoTowerRetrieval(LossLogs):
    """A query tower and a candidate tower trained with in-batch softmax retrieval.

    The loss is ``tfrs.tasks.Retrieval``'s: every other candidate in a batch is a
    negative for a query. No top-k metric runs inside ``fit`` (it would score the
    whole catalogue at every step); evaluate with :func:`tfrs_kit.evaluate`.

    Args:
        query_tower: Encodes the query (user) features.
        candidate_tower: Encodes the candidate (item) features.
        candidate_id: The feature that identifies a candidate; default: the
            candidate tower's first feature.
        temperature: Divides the logits; lower values sharpen the softmax
            (useful with normalised towers, e.g. 0.05-0.2).
        remove_accidental_hits: Do not count a batch's other copies of the
            positive candidate as negatives.
        logq_correction: Subtract the log of each candidate's sampling
            probability (its frequency in the training data) from its logit.
            In-batch negatives are drawn in proportion to popularity, so without
            it the model learns to demote popular items; on by default.
        num_hard_negatives: Keep only this many highest-scoring negatives per
            query in the loss (hard negative mining); ``None`` keeps all.
        num_random_negatives: Add this many candidates drawn uniformly from the
            catalogue to every batch (mixed negative sampling), which helps
            rarely-seen items get negatives; the catalogue is the training
            data's distinct candidates unless ``fit(candidates=...)`` is given.
        share_embeddings: Query features that reuse a candidate feature's
            lookup and embedding, e.g. ``{"history": "item_id"}``: a history of
            item ids then lives in the same space as the items. Both features
            need the same tokens (see :meth:`~tfrs_kit.Vocabularies.alias`).
        cross_replica_negatives: Under a ``tf.distribute`` strategy, score each
            query against the candidates of every replica (the global batch),
            as on one device; ``False`` keeps each replica's own slice only.
            No effect with one replica. See ``docs/distributed.md``.
        unique_candidates: Score each distinct candidate of a batch once, its
            logit raised by the log of its count: the same loss as scoring
            every copy (exactly, when a candidate's features are the same in
            every row, as item attributes are), with a smaller score matrix. A
            batch of 4,096 MovieLens ratings holds about 1,200 distinct movies.
            Turn it off if candidate features vary per interaction.
        name: The Keras name of the model.

    Attributes:
        candidate_frequencies_: Each candidate id's share of the rows of ``x`` in
            the last ``fit`` (a ``pandas.Series`` indexed by id): the sampling
            probabilities that ``logq_correction`` subtracts, also for the random
            negatives; ``None`` before ``fit``.

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
        >>> sorted(model.candidate_frequencies_.items())
        [('x', 0.5), ('y', 0.5)]

        Its settings (towers included) round-trip through the Keras config:

        >>> clone = tk.TwoTowerRetrieval.from_config(model.get_config())
        >>> clone.get_config() == model.get_config()
        True
    """

    def __init__(
        self,
        query_tower: Tower,
        candidate_tower: Tower,
        *,
        candidate_id: str | None = None,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        logq_correction: bool = True,
        num_hard_negatives: int | None = None,
        num_random_negatives: int = 0,
        share_embeddings: Mapping[str, str] | None = None,
        unique_candidates: bool = True,
        cross_replica_negatives: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.query_tower = _check_tower("query_tower", query_tower)
        self.candidate_tower = _check_tower("candidate_tower", candidate_tower)
        self.candidate_id = candidate_id or candidate_tower.features[0]
        self.temperature = check_number("temperature", temperature, minimum=0, low_open=True,
                                        allow_none=True)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.logq_correction = bool(logq_correction)
        self.num_hard_negatives = check_int("num_hard_negatives", num_hard_negatives, minimum=1,
                                            allow_none=True)
        self.num_random_negatives = check_int("num_random_negatives", num_random_negatives,
                                              minimum=0)
        self.share_embeddings = dict(share_embeddings or {})
        for query_feature, candidate_feature in self.share_embeddings.items():
            _share_embedding(query_tower, query_feature, candidate_tower, candidate_feature)
        self.unique_candidates = bool(unique_candidates)
        self.cross_replica_negatives = bool(cross_replica_negatives)
        task = CrossReplicaRetrieval if self.cross_replica_negatives else FastRetrieval
        self.task = task(
            temperature=self.temperature,
            remove_accidental_hits=self.remove_accidental_hits,
            num_hard_negatives=self.num_hard_negatives,
            unique_candidates=self.unique_candidates,
        )
        self._negatives: NegativePool | None = None
        self.candidate_frequencies_: pd.Series | None = None

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument as plain values; the towers as Keras configs.

        Weights and what ``fit`` learned are not part of the config: copy them
        with ``get_weights``/``set_weights`` once the rebuilt model is built.
        """
        return {
            "query_tower": tf.keras.utils.serialize_keras_object(self.query_tower),
            "candidate_tower": tf.keras.utils.serialize_keras_object(self.candidate_tower),
            "candidate_id": self.candidate_id,
            "temperature": self.temperature,
            "remove_accidental_hits": self.remove_accidental_hits,
            "logq_correction": self.logq_correction,
            "num_hard_negatives": self.num_hard_negatives,
            "num_random_negatives": self.num_random_negatives,
            "share_embeddings": dict(self.share_embeddings),
            "unique_candidates": self.unique_candidates,
            "cross_replica_negatives": self.cross_replica_negatives,
            "name": self.name,
        }

    def get_build_config(self) -> None:
        # As the towers': Keras would build a deserialised model on float
        # placeholders, which string and list features reject; it builds on first call.
        return None

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    custom_objects: Mapping[str, Any] | None = None) -> TwoTowerRetrieval:
        """A new, untrained model from :meth:`get_config`'s output.

        Custom tower classes must be registered for Keras serialisation (see
        :func:`tfrs_kit.towers.register_tower`) or given in ``custom_objects``.
        """
        settings = dict(config)
        towers = {
            key: tf.keras.utils.deserialize_keras_object(settings.pop(key),
                                                         custom_objects=custom_objects)
            for key in ("query_tower", "candidate_tower")
        }
        return cls(**towers, **settings)

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
        ids = features[self.candidate_id]
        probability = features[_SAMPLING_PROBABILITY] if self.logq_correction else None
        if self._negatives is not None and training:
            drawn, drawn_probability = self._negatives.draw(self.num_random_negatives)
            candidate = tf.concat(
                [candidate, self.candidate_tower(drawn, training=training)], axis=0)
            ids = tf.concat([ids, drawn[self.candidate_id]], axis=0)
            if probability is not None:
                probability = self._negatives.mixed_probability(
                    probability, drawn_probability, tf.shape(query)[0])
        kwargs: dict[str, Any] = {}
        if self.remove_accidental_hits or self.unique_candidates:
            kwargs["candidate_ids"] = ids
        if probability is not None:
            kwargs["candidate_sampling_probability"] = probability
        return self.task(query, candidate, compute_metrics=not training, **kwargs)

    def fit(  # type: ignore[override]
        self,
        x: TableLike,
        *,
        epochs: int = 1,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int | None = None,
        learning_rate: float | None = None,
        learning_rate_schedule: str | None = None,
        validation_data: TableLike | None = None,
        validation_fraction: float | None = None,
        early_stopping_patience: int | None = None,
        candidates: TableLike | None = None,
        callbacks: Sequence[Any] | None = None,
        verbose: bool | str | int = "auto",
        shuffle_buffer: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Trains on an interaction table; returns the Keras ``History``.

        If the model is not compiled yet, ``fit`` compiles it with Adagrad at
        ``learning_rate``. To choose another optimizer, call ``compile`` first:
        ``fit`` then keeps it (also in later calls of ``fit``), and passing
        ``learning_rate`` or ``learning_rate_schedule`` is a ``ValueError``
        rather than a setting that would be silently ignored.

        Args:
            x: One row per (query, candidate) interaction holding every feature
                of both towers: a DataFrame, a dict of arrays, a
                ``tf.data.Dataset`` of feature dicts (read into memory once), or
                a path, glob or list of Parquet, CSV or TFRecord shards (read into
                memory, or streamed with ``shuffle_buffer``).
            epochs: Passes over the data.
            batch_size: Rows per step; also the number of in-batch negatives.
            shuffle: Reshuffle the rows every epoch.
            seed: Seed of the shuffle (and of ``validation_fraction``'s split).
                Initial weights follow TensorFlow's global seed: call
                ``tf.keras.utils.set_random_seed`` before building the towers.
            learning_rate: Adagrad's learning rate when ``fit`` compiles the
                model; default 0.05. Only for a model that is not compiled yet.
            learning_rate_schedule: ``"constant"`` (the default) or ``"cosine"``
                decay to zero over all epochs, when ``fit`` compiles the model.
                Only for a model that is not compiled yet.
            validation_data: A table like ``x``; its loss is reported per epoch.
            validation_fraction: Instead, hold out this random share of ``x``.
            early_stopping_patience: Stop when the validation loss has not
                improved for this many epochs, and keep the best weights.
            candidates: The catalogue for ``num_random_negatives`` (one row per
                candidate with the candidate tower's features); default: the
                distinct candidates of ``x``.
            callbacks: Keras callbacks (checkpoints, backup and restore, ...).
            verbose: ``"auto"`` or ``True``: one line per epoch with its losses;
                ``False``: silent. Keras's integers work too: 0 silent, 1 a
                progress bar per step, 2 one line per epoch.
            shuffle_buffer: Only for ``x`` given as files: stream the shards
                instead of reading them into memory. Each pass reads them in a new
                order, four at a time, and shuffles their rows within windows
                of this many rows (memory: the window and a chunk per shard read;
                one pass first counts the candidate ids). The order then differs
                from the in-memory shuffle's, and a run resumed from a checkpoint
                does not replay the same batches. ``validation_data`` is read into
                memory; ``validation_fraction`` is not available.
            **kwargs: Passed on to ``tf.keras.Model.fit``.

        Returns:
            The Keras ``History``: ``loss`` (and ``val_loss``) per epoch, as
            TFRS reports it for the epoch's last step.

        Raises:
            TypeError: A setting of the wrong type (``epochs=2.0``).
            ValueError: A setting out of range or not one of its choices;
                ``learning_rate`` or ``learning_rate_schedule`` on a compiled
                model; ``x`` without a feature the towers read.

        Example:
            >>> import tensorflow as tf
            >>> import tfrs_kit as tk
            >>> log = {"user_id": ["a", "b"], "item_id": ["x", "y"]}
            >>> vocabs = tk.VocabularyBuilder().fit(log)
            >>> model = tk.TwoTowerRetrieval(
            ...     tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...     tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
            >>> model.fit(log, learning_rate=0.1, verbose=0)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ValueError: `learning_rate` must be None when the model is already compiled. ...
        """
        keras_verbose = _check_fit_settings(
            compiled=self.optimizer is not None, epochs=epochs, batch_size=batch_size,
            seed=seed, learning_rate=learning_rate, learning_rate_schedule=learning_rate_schedule,
            validation_data=validation_data, validation_fraction=validation_fraction,
            early_stopping_patience=early_stopping_patience, verbose=verbose,
        )
        if shuffle_buffer is None:
            train, validation_data = self._in_memory(x, validation_data, validation_fraction,
                                                     seed=seed)
            rows = num_rows(train)
        else:
            paths, rows_per_file = self._scan_files(x, shuffle_buffer, validation_fraction)
            rows = sum(rows_per_file)
        validation = self._validation_dataset(validation_data, batch_size=batch_size)
        callbacks = [*(callbacks or []), *_early_stopping(early_stopping_patience),
                     _StopOnNonFiniteLoss()]
        if self.num_random_negatives:
            pool = candidates if candidates is not None else x
            self._negatives = self._negative_pool(
                distinct_rows(paths, self.candidate_id, self.candidate_tower.features)
                if shuffle_buffer is not None and candidates is None else pool)
        if self.optimizer is None:
            self._compile_default(learning_rate, learning_rate_schedule,
                                  steps=epochs * -(-rows // batch_size))
        if shuffle_buffer is None:
            dataset, shuffle_callbacks = training_dataset(
                train, self._columns, batch_size=batch_size, shuffle=shuffle, seed=seed,
                strategy=self.distribute_strategy, encode_once=self._encode_once())
        else:
            dataset, steps = file_dataset(
                paths, self.features, batch_size=batch_size, shuffle=shuffle, seed=seed,
                shuffle_buffer=shuffle_buffer, prepare=self._batch_preparation(rows),
                rows_per_file=rows_per_file, strategy=self.distribute_strategy)
            shuffle_callbacks = []
            if steps is not None:
                kwargs.setdefault("steps_per_epoch", steps)
        callbacks += shuffle_callbacks  # after the user's: BackupAndRestore restores first
        return super().fit(
            dataset, epochs=epochs, validation_data=validation, callbacks=callbacks,
            verbose=keras_verbose, **kwargs,
        )

    def _in_memory(self, x: TableLike, validation_data: TableLike | None,
                   validation_fraction: float | None, *,
                   seed: int | None) -> tuple[Table, TableLike | None]:
        """``fit``'s training table (read, with the logQ probabilities) and validation data."""
        table = self._read(x, "x")
        self.candidate_frequencies_ = pd.Series(table[self.candidate_id]).value_counts(
            normalize=True)
        if validation_fraction is not None:
            table, validation_data = _hold_out(table, validation_fraction, seed=seed)
        return self._prepare(table), validation_data

    def _scan_files(self, x: TableLike, shuffle_buffer: int,
                    validation_fraction: float | None) -> tuple[list[str], list[int]]:
        """The shards of a streamed ``x`` and their rows; learns the candidate frequencies.

        One pass over the candidate id column; the first chunk of every feature
        is checked as ``_read`` checks a table.
        """
        check_int("shuffle_buffer", shuffle_buffer, minimum=1)
        if not is_files(x):
            raise invalid_argument("shuffle_buffer", "be None unless x names files",
                                   shuffle_buffer, hint="Streaming reads Parquet, CSV or "
                                   "TFRecord shards; a table in memory is shuffled whole.")
        if validation_fraction is not None:
            raise invalid_argument("validation_fraction", "be None when streaming files",
                                   validation_fraction, hint="Pass validation_data=... "
                                   "(a table or files, read into memory).")
        paths = resolve(x, argument="x")
        first = next(iter_tables(paths, argument="x", columns=self.features,
                                 rows_per_chunk=1024))
        self._read(first, "x")  # the features' kinds and missing ids, on a sample
        counts, rows = count_values(paths, self.candidate_id)
        self.candidate_frequencies_ = counts / sum(rows)
        return paths, rows

    def _batch_preparation(self, rows: int) -> Any:
        """What ``_prepare`` and ``_encode_once`` do to a table, done to a streamed batch."""
        encodings = self._encode_once()
        probability = None
        frequencies = self.candidate_frequencies_
        if self.logq_correction and frequencies is not None:
            probability = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                id_tensor(frequencies.index),
                tf.constant(frequencies.to_numpy(np.float32))), default_value=1.0 / rows)

        def prepare(batch: dict[str, Any]) -> dict[str, Any]:
            batch = {name: encodings[name](value) if name in encodings else value
                     for name, value in batch.items()}
            if probability is not None:
                batch[_SAMPLING_PROBABILITY] = probability.lookup(batch[self.candidate_id])
            return batch

        return prepare

    def _validation_dataset(self, data: TableLike | None, *,
                            batch_size: int) -> tf.data.Dataset | None:
        """The batches of ``fit``'s validation table, if there is one."""
        if data is None:
            return None
        return make_dataset(self._prepare(self._read(data, "validation_data")), self._columns,
                            batch_size=batch_size, encode_once=self._encode_once())

    def _encode_once(self) -> dict[str, Any]:
        """The features ``fit`` feeds encoded before the loop: text, tokenised once."""
        return text_encodings([self.query_tower, self.candidate_tower])

    def _negative_pool(self, data: TableLike) -> NegativePool:
        """The catalogue of ``data``'s distinct candidates, for ``num_random_negatives``."""
        return NegativePool.build(data, candidate_id=self.candidate_id,
                                  features=self.candidate_tower.features,
                                  frequencies=self.candidate_frequencies_)

    def _compile_default(self, learning_rate: float | None, schedule: str | None, *,
                         steps: int) -> None:
        """Compiles with Adagrad, its rate constant or in cosine decay to zero over ``steps``."""
        rate: Any = _LEARNING_RATE if learning_rate is None else learning_rate
        if schedule == "cosine":
            rate = tf.keras.optimizers.schedules.CosineDecay(rate, steps)
        self.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=rate))

    @property
    def _columns(self) -> tuple[str, ...]:
        return self.features + ((_SAMPLING_PROBABILITY,) if self.logq_correction else ())

    def _read(self, data: TableLike, argument: str) -> Table:
        """The features the model reads, checked: every column there, no missing id."""
        table = to_table(data, argument=argument)
        missing = [f for f in self.features if f not in table]
        if missing:
            raise missing_column(argument, missing[0], table, role="a feature the towers read")
        table = {f: table[f] for f in self.features}
        _check_no_missing_ids(table, self.candidate_id, argument)
        for tower in (self.query_tower, self.candidate_tower):
            check_features(argument, table, getattr(tower, "vocabularies", {}), tower.features)
        return table

    def _prepare(self, table: Table) -> Table:
        """``table`` with the logQ sampling probabilities, when the model corrects for them.

        Ids never seen in ``fit`` count as seen once among the table's rows.
        """
        if not self.logq_correction:
            return table
        if self.candidate_frequencies_ is None:
            raise NotFittedError("Call `fit` before evaluating a model with logq_correction.")
        floor = 1.0 / max(num_rows(table), 1)
        ids = pd.Series(table[self.candidate_id])
        probability = ids.map(self.candidate_frequencies_).fillna(floor).to_numpy(np.float32)
        return {**table, _SAMPLING_PROBABILITY: probability}

    def query_embeddings(self, data: TableLike, *, batch_size: int = 8192,
                         verbose: bool | str = "auto") -> np.ndarray:
        """The query tower's embeddings of each row of ``data``, as a NumPy array.

        Args:
            data: One row per query with every feature the query tower reads.
            batch_size: Rows encoded at once.
            verbose: Show progress: ``"auto"`` (a million rows or more),
                ``True`` or ``False``.

        Returns:
            A ``[rows, output_dim]`` float32 array, in the rows' order.

        Example:
            >>> import tfrs_kit as tk
            >>> log = {"user_id": ["a", "b"], "item_id": ["x", "y"]}
            >>> vocabs = tk.VocabularyBuilder().fit(log)
            >>> model = tk.TwoTowerRetrieval(
            ...     tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...     tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> model.query_embeddings(log, verbose=False).shape
            (2, 4)
            >>> model.query_embeddings(log, verbose=0)
            Traceback (most recent call last):
            TypeError: `verbose` must be 'auto', True or False. Received: verbose=0.
        """
        return self.query_tower.embed(data, batch_size=batch_size,
                                      verbose=check_verbose("verbose", verbose))

    def candidate_embeddings(self, data: TableLike, *, batch_size: int = 8192,
                             verbose: bool | str = "auto") -> np.ndarray:
        """The candidate tower's embeddings of each row of ``data``, as a NumPy array.

        Args:
            data: One row per candidate with every feature the candidate tower
                reads.
            batch_size: Rows encoded at once.
            verbose: Show progress: ``"auto"`` (a million rows or more),
                ``True`` or ``False``.

        Returns:
            A ``[rows, output_dim]`` float32 array, in the rows' order.
        """
        return self.candidate_tower.embed(data, batch_size=batch_size,
                                          verbose=check_verbose("verbose", verbose))

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
            item_embeddings=self.candidate_tower.embed(items_table, batch_size=batch_size),
            user_ids=users_table[user_id],
            user_embeddings=self.query_tower.embed(users_table, batch_size=batch_size),
        )


class _TwoTowerRecommender:
    """Scores users over a fixed catalogue from precomputed embeddings."""

    display_name = "TwoTowerRetrieval"  # the name tk.evaluate reports it under

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


def _check_tower(argument: str, tower: Any) -> Tower:
    if not isinstance(tower, tf.keras.layers.Layer) or not hasattr(tower, "features"):
        raise invalid_argument(argument, "be a tfrs_kit Tower (a Keras layer with `features`)",
                               type(tower).__name__, error=TypeError)
    return tower


def _share_embedding(query_tower: Tower, query_feature: str, candidate_tower: Tower,
                     candidate_feature: str) -> None:
    encoders = []
    for argument, tower, feature in (("share_embeddings", query_tower, query_feature),
                                     ("share_embeddings", candidate_tower, candidate_feature)):
        encoder = getattr(tower, "encoders", {}).get(feature)
        if encoder is None or not hasattr(encoder, "embedding"):
            raise invalid_argument(
                argument, f"name features with built-in embeddings in {tower.name!r}",
                f"{query_feature!r}: {candidate_feature!r}",
            )
        encoders.append(encoder)
    query_encoder, candidate_encoder = encoders
    if query_encoder.vocabulary.tokens != candidate_encoder.vocabulary.tokens or (
        query_encoder.dim != candidate_encoder.dim
    ):
        raise invalid_argument(
            "share_embeddings", "pair features with the same tokens and embedding size",
            f"{query_feature!r}: {candidate_feature!r}",
            hint=f"Build one from the other: vocabularies.alias({query_feature!r}, "
            f"{candidate_feature!r}, kind='multi').",
        )
    query_encoder.lookup = candidate_encoder.lookup
    query_encoder.embedding = candidate_encoder.embedding


def _last_rows(table: Table, key: str, features: Sequence[str], argument: str) -> Table:
    columns = list(dict.fromkeys([key, *features]))
    return last_rows(select(table, columns, argument=argument), key)


def _check_fit_settings(
    *,
    compiled: bool,
    epochs: Any,
    batch_size: Any,
    seed: Any,
    learning_rate: Any,
    learning_rate_schedule: Any,
    validation_data: Any,
    validation_fraction: Any,
    early_stopping_patience: Any,
    verbose: Any,
) -> int:
    """Checks ``fit``'s settings before it does any work; returns Keras's verbosity."""
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0, allow_none=True)
    if compiled:
        _check_not_compiled(learning_rate=learning_rate,
                            learning_rate_schedule=learning_rate_schedule)
    check_number("learning_rate", learning_rate, minimum=0, low_open=True, allow_none=True)
    if learning_rate_schedule is not None:
        check_choice("learning_rate_schedule", learning_rate_schedule, _SCHEDULES)
    check_fraction("validation_fraction", validation_fraction, allow_none=True)
    if validation_fraction is not None and validation_data is not None:
        raise invalid_argument("validation_fraction", "be None when validation_data is given",
                               validation_fraction)
    check_int("early_stopping_patience", early_stopping_patience, minimum=0, allow_none=True)
    if early_stopping_patience is not None and validation_data is None and (
            validation_fraction is None):
        raise invalid_argument(
            "early_stopping_patience", "come with validation_data or validation_fraction",
            early_stopping_patience,
        )
    return _keras_verbosity(check_verbose("verbose", verbose, keras=True))


def _hold_out(table: Table, fraction: float, *, seed: int | None) -> tuple[Table, Table]:
    """``table`` split at random into the rows to train on and ``fraction`` of them held out.

    >>> train, held_out = _hold_out({"row": np.arange(1000)}, 0.2, seed=0)
    >>> len(train["row"]) + len(held_out["row"]), len(held_out["row"])
    (1000, 193)
    """
    held_out = np.random.default_rng(seed).random(num_rows(table)) < fraction
    return ({name: column[~held_out] for name, column in table.items()},
            {name: column[held_out] for name, column in table.items()})


def _early_stopping(patience: int | None) -> list[tf.keras.callbacks.Callback]:
    """Stops when the validation loss has not improved for ``patience`` epochs; keeps the best."""
    if patience is None:
        return []
    return [tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                             restore_best_weights=True)]


class _StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stops ``fit`` with an error at the first step whose loss is NaN or infinite.

    Keras would go on training on NaN weights and report ``loss: nan``; every
    later answer of the model would be silently wrong.
    """

    def __init__(self) -> None:
        super().__init__()
        self._supports_tf_logs = True  # reads the loss only: Keras need not convert all logs
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True
            raise FloatingPointError(
                f"fit stopped: the training loss became {float(loss)} at epoch "
                f"{self._epoch + 1}, step {batch + 1}; the weights now hold non-finite values. "
                "Rebuild the model and train with a lower learning_rate (or a larger "
                "temperature), and check the features for extreme values.")


def _keras_verbosity(verbose: bool | str | int) -> int:
    """Keras's verbosity for fit's: ``"auto"`` and ``True`` are one line per epoch (2)."""
    if isinstance(verbose, (bool, str)):
        return 2 if verbose else 0
    return verbose


def _check_not_compiled(**settings: Any) -> None:
    """Refuses optimizer settings that ``fit`` would ignore: the model has its optimizer."""
    for argument, value in settings.items():
        if value is not None:
            raise invalid_argument(
                argument, "be None when the model is already compiled", value,
                hint="fit keeps the optimizer of `compile` (or of an earlier fit): pass the "
                "optimizer with its learning rate to `compile` instead, or do not compile "
                "and let fit compile with Adagrad.",
            )


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
