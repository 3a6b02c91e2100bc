"""The two-tower retrieval model, on ``tfrs.Model`` and ``tfrs.tasks.Retrieval``.

``fit`` reads its log in one of two ways, each in its own module: whole, into
memory (``_in_memory``), or streamed from files (``_streamed``); ``_fitting``
holds its checks and callbacks, ``towers/_model_base`` what the ranker shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import NotFittedError, invalid_argument, missing_column
from tfrs_kit._validation import (
    check_features,
    check_int,
    check_no_missing,
    check_number,
    check_verbose,
)
from tfrs_kit.data._stream import distinct_rows, file_dataset
from tfrs_kit.data._table import Table, TableLike, num_rows, to_table
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.retrieval._cross_replica import CrossReplicaRetrieval
from tfrs_kit.retrieval._fitting import StopOnNonFiniteLoss, check_fit_settings, early_stopping
from tfrs_kit.retrieval._in_memory import read_in_memory
from tfrs_kit.retrieval._negatives import NegativePool
from tfrs_kit.retrieval._pipeline import text_encodings, training_dataset
from tfrs_kit.retrieval._streamed import (
    SAMPLING_PROBABILITY,
    batch_preparation,
    scan_files,
    streaming_buffer,
)
from tfrs_kit.retrieval._task import FastRetrieval
from tfrs_kit.towers import Tower
from tfrs_kit.towers._model_base import (
    TwoTowerModel,
    check_tower,
    item_id_of,
    rows_by_key,
    user_positions,
)

__all__ = ["TwoTowerRetrieval"]

_LEARNING_RATE = 0.05  # Adagrad's, when fit compiles the model


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class TwoTowerRetrieval(TwoTowerModel):
    """A query tower and a candidate tower trained with in-batch softmax retrieval.

    The loss is ``tfrs.tasks.Retrieval``'s: every other candidate in a batch is a
    negative for a query. No top-k metric runs inside ``fit`` (it would score the
    whole catalogue at every step); evaluate with :func:`tfrs_kit.evaluate`.

    Args:
        query_tower: Encodes the query (user) features.
        candidate_tower: Encodes the candidate (item) features.
        item_id: The feature that identifies a candidate (an item); default:
            the candidate tower's first feature.
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
        candidate_id: Deprecated: the old name of ``item_id``.

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
        item_id: str | None = None,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        logq_correction: bool = True,
        num_hard_negatives: int | None = None,
        num_random_negatives: int = 0,
        share_embeddings: Mapping[str, str] | None = None,
        unique_candidates: bool = True,
        cross_replica_negatives: bool = True,
        name: str | None = None,
        candidate_id: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.query_tower = check_tower("query_tower", query_tower)
        self.candidate_tower = check_tower("candidate_tower", candidate_tower)
        self.item_id = item_id_of(candidate_tower, item_id, candidate_id)
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
            "item_id": self.item_id,
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

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature the model reads in training, in a stable order."""
        names = dict.fromkeys(
            [*self.query_tower.features, *self.candidate_tower.features, self.item_id]
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
        ids = features[self.item_id]
        probability = features[SAMPLING_PROBABILITY] if self.logq_correction else None
        if self._negatives is not None and training:
            drawn, drawn_probability = self._negatives.draw(self.num_random_negatives)
            candidate = tf.concat(
                [candidate, self.candidate_tower(drawn, training=training)], axis=0)
            ids = tf.concat([ids, drawn[self.item_id]], axis=0)
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
                memory, or streamed with ``shuffle_buffer``), or ``tk.data.Shards``
                (always streamed).
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
                instead of reading them into memory (``tk.data.Shards`` stream
                by default, with a buffer of 65,536 rows; paths are read into
                memory unless this is given). Each pass reads them in a new
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
        keras_verbose = check_fit_settings(
            compiled=self.optimizer is not None, epochs=epochs, batch_size=batch_size,
            seed=seed, learning_rate=learning_rate, learning_rate_schedule=learning_rate_schedule,
            validation_data=validation_data, validation_fraction=validation_fraction,
            early_stopping_patience=early_stopping_patience, verbose=verbose,
        )
        if (shuffle_buffer := streaming_buffer(x, shuffle_buffer)) is None:
            train, validation_data = read_in_memory(self, x, validation_data,
                                                    validation_fraction, seed=seed)
            rows = num_rows(train)
        else:
            paths, rows_per_file = scan_files(self, x, shuffle_buffer, validation_fraction)
            rows = sum(rows_per_file)
        validation = self._validation_dataset(validation_data, batch_size=batch_size)
        callbacks = [*(callbacks or []), *early_stopping(early_stopping_patience),
                     StopOnNonFiniteLoss()]
        if self.num_random_negatives:
            pool = candidates if candidates is not None else x
            self._negatives = self._negative_pool(
                distinct_rows(paths, self.item_id, self.candidate_tower.features)
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
                shuffle_buffer=shuffle_buffer, prepare=batch_preparation(self, rows),
                rows_per_file=rows_per_file, strategy=self.distribute_strategy)
            shuffle_callbacks = []
            if steps is not None:
                kwargs.setdefault("steps_per_epoch", steps)
        callbacks += shuffle_callbacks  # after the user's: BackupAndRestore restores first
        return super().fit(
            dataset, epochs=epochs, validation_data=validation, callbacks=callbacks,
            verbose=keras_verbose, **kwargs,
        )

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
        return NegativePool.build(data, item_id=self.item_id,
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
        return self.features + ((SAMPLING_PROBABILITY,) if self.logq_correction else ())

    def _read(self, data: TableLike, argument: str) -> Table:
        """The features the model reads, checked: every column there, no missing id."""
        table = to_table(data, argument=argument)
        missing = [f for f in self.features if f not in table]
        if missing:
            raise missing_column(argument, missing[0], table, role="a feature the towers read")
        table = {f: table[f] for f in self.features}
        check_no_missing(f"{argument}[{self.item_id!r}]", table[self.item_id])
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
        ids = pd.Series(table[self.item_id])
        probability = ids.map(self.candidate_frequencies_).fillna(floor).to_numpy(np.float32)
        return {**table, SAMPLING_PROBABILITY: probability}

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
        item_id = item_id or self.item_id
        items_table = rows_by_key(items if items is not None else train, item_id,
                                  self.candidate_tower.features, "items")
        users_table = rows_by_key(users if users is not None else train, user_id,
                                  self.query_tower.features, "users")
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
        positions = user_positions(self._user_index, user_ids)
        return self._user_embeddings[positions] @ self.item_embeddings.T


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
