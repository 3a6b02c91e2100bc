"""The ranker: one (query, candidate) pair in, one score out, on ``tfrs.tasks.Ranking``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import (
    check_choice,
    check_features,
    check_fraction,
    check_int,
    check_number,
    check_verbose,
)
from tfrs_kit.data._table import Table, TableLike, last_rows, num_rows, select, to_table
from tfrs_kit.data._tensors import make_dataset, to_tensors
from tfrs_kit.ranking._sampling import (
    LABEL,
    OFFSET,
    RETRIEVAL_SCORE,
    SIMILARITY,
    WEIGHT,
    Examples,
    catalogue_table,
    check_label,
    check_weights,
    hard_pools,
    list_examples,
    sample_examples,
)
from tfrs_kit.retrieval._model import LossLogs
from tfrs_kit.towers import Tower

if TYPE_CHECKING:
    from tfrs_kit.ranking._cascade import Cascade

__all__ = ["Ranker"]

_LOSSES = ("pointwise", "listwise")
_LEARNING_RATE = 0.01  # Adam's, when fit compiles the model
_VALIDATION_K = 10  # fit_lists chooses the blend by ndcg at this cut-off


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class Ranker(LossLogs):
    """Scores (query, candidate) pairs: the second stage of retrieve-then-rank.

    The query tower and the candidate tower (the kit's :class:`~tfrs_kit.Tower`,
    built from the same vocabularies as a retriever's, possibly with more
    features) encode each side; their outputs are concatenated into ``x0``, go
    through ``cross_layers`` DCN-v2 cross layers (``tfrs.layers.dcn.Cross``:
    ``x_{l+1} = x0 * (W x_l + b) + x_l``, explicit query-candidate feature
    crosses), then dense ReLU layers, to one score. The loss is
    ``tfrs.tasks.Ranking``'s:

    - ``"pointwise"``: each pair on its own, sigmoid cross-entropy on the log's
      positives (label 1) against sampled negatives (label 0), or the mean
      squared error on an explicit ``label`` column such as a rating (negatives
      then count as label 0; pass ``negatives=0`` to fit the ratings alone);
    - ``"listwise"``: a softmax over each positive and its ``negatives``
      sampled negatives, which is what re-ranking a retrieved list needs.

    :meth:`fit_lists` trains on the retriever's own top-N lists (the way
    that lifts retrieval on MovieLens, see ``benchmarks/ranking.py``) and
    blends the ranker with retrieval's order; :meth:`fit` builds a training
    set from the retrieval stage's own candidates instead: every logged row
    is a positive, with negatives drawn from the retriever's top
    ``retrieve_k`` for that user (hard: what the ranker will actually be
    asked to sort) and at random from the catalogue, never one of
    the user's positives.

    Args:
        query_tower: Encodes the query (user and context) features.
        candidate_tower: Encodes the candidate (item) features.
        candidate_id: The feature that identifies a candidate; default: the
            candidate tower's first feature.
        loss: ``"pointwise"`` or ``"listwise"``.
        cross_layers: The number of stacked cross layers; 0 for none (a plain
            MLP over the two towers' outputs).
        projection_dim: Low-rank cross layers: each weight factored through
            this inner size; default full rank.
        hidden_dims: Sizes of the dense ReLU layers after the crosses.
        retrieval_score: Also read the retriever's score of each pair (its dot
            product), as an input of the crosses and, linearly, of the output:
            the ranker then starts from retrieval's order and learns what to
            change. ``fit`` and :meth:`score` then need the ``retriever``, and
            the cascade must use the retriever the ranker was trained with.
        history_feature: A query feature holding the ids of the user's latest
            candidates, most recent last (as ``tk.HistoryBuilder`` writes it).
            The ranker then also reads, for each ``L`` of ``recent``, the
            cosine between the candidate's retriever embedding and the mean of
            the (normalised) retriever embeddings of the last ``L`` history
            items: what the user did last, which a bag-of-history query tower
            blurs. Trained with :meth:`fit_lists` only; served from the
            index's own candidate embeddings.
        recent: The history lengths ``L`` (see ``history_feature``).
        name: The Keras name of the model.

    Attributes:
        ranking_loss: The ``loss`` given (Keras's ``compile`` owns ``self.loss``).
        label_: The label column of the last ``fit`` (``None``: implicit).
        group_size_: 1 + the negatives per positive in the last ``fit`` (the list
            length after :meth:`fit_lists`).
        blend_ndcg_: After :meth:`fit_lists`: the held-out ndcg@10 of each
            ``(retrieval_weight, ranker_weight)`` blend tried.

    Example:
        >>> import tfrs_kit as tk
        >>> data = tk.datasets.synthetic(400, num_items=60, seed=0)
        >>> log = data.interactions
        >>> vocabs = tk.VocabularyBuilder().fit(log[["user_id", "item_id", "item_year"]])
        >>> retriever = tk.TwoTowerRetrieval(
        ...     tk.Tower(vocabs, features=["user_id"], output_dim=8),
        ...     tk.Tower(vocabs, features=["item_id"], output_dim=8))
        >>> _ = retriever.fit(log, epochs=1, verbose=False)
        >>> ranker = tk.Ranker(tk.Tower(vocabs, features=["user_id"], output_dim=8),
        ...                    tk.Tower(vocabs, features=["item_id", "item_year"], output_dim=8),
        ...                    loss="listwise", cross_layers=1, hidden_dims=[16])
        >>> history = ranker.fit(log, retriever=retriever, negatives=3, epochs=2, verbose=False)
        >>> len(history.history["loss"]), ranker.group_size_
        (2, 4)
        >>> ranker.score(data.users[:2], data.items[:5]).shape
        (2, 5)
    """

    def __init__(
        self,
        query_tower: Tower,
        candidate_tower: Tower,
        *,
        candidate_id: str | None = None,
        loss: str = "pointwise",
        cross_layers: int = 2,
        projection_dim: int | None = None,
        hidden_dims: Sequence[int] = (64, 32),
        retrieval_score: bool = False,
        history_feature: str | None = None,
        recent: Sequence[int] = (1, 5, 20),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.query_tower = _check_tower("query_tower", query_tower)
        self.candidate_tower = _check_tower("candidate_tower", candidate_tower)
        self.candidate_id = candidate_id or candidate_tower.features[0]
        # Not `self.loss`: Keras's compile() owns that attribute.
        self.ranking_loss = check_choice("loss", loss, _LOSSES, what="ranking loss")
        self.cross_layers = check_int("cross_layers", cross_layers, minimum=0)
        self.projection_dim = check_int("projection_dim", projection_dim, minimum=1,
                                        allow_none=True)
        self.hidden_dims = _check_dims(hidden_dims)
        self.retrieval_score = bool(retrieval_score)
        if history_feature is not None and not isinstance(history_feature, str):
            raise invalid_argument("history_feature", "be a query feature name or None",
                                   history_feature, error=TypeError)
        self.history_feature = history_feature
        self.recent = _check_recent(recent)
        # The retriever's scores standardised by their mean and deviation over fit's pairs:
        # dot products of any scale then enter the crosses near unit size.
        self.retrieval_shift = tf.Variable(0.0, trainable=False, name="retrieval_shift")
        self.retrieval_scale = tf.Variable(1.0, trainable=False, name="retrieval_scale")
        # How a cascade orders a retrieved list (see rerank): fit leaves the ranker's order;
        # fit_lists standardises retrieval within each list and blends it with the ranker.
        self.per_list = tf.Variable(0.0, trainable=False, name="per_list")
        self.retrieval_weight = tf.Variable(0.0, trainable=False, name="retrieval_weight")
        self.ranker_weight = tf.Variable(1.0, trainable=False, name="ranker_weight")
        self.crosses = [tfrs.layers.dcn.Cross(projection_dim=self.projection_dim,
                                              kernel_initializer="glorot_uniform",
                                              name=f"cross_{i}")
                        for i in range(self.cross_layers)]
        self.hidden = [tf.keras.layers.Dense(d, activation="relu") for d in self.hidden_dims]
        self.output_layer = tf.keras.layers.Dense(1, name="score")
        self.task = _ranking_task(self.ranking_loss, explicit=False)
        self.label_: str | None = None
        self.group_size_: int | None = None
        self.blend_ndcg_: dict[tuple[float, float], float] = {}

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument as plain values; the towers as Keras configs."""
        return {
            "query_tower": tf.keras.utils.serialize_keras_object(self.query_tower),
            "candidate_tower": tf.keras.utils.serialize_keras_object(self.candidate_tower),
            "candidate_id": self.candidate_id,
            "loss": self.ranking_loss,
            "cross_layers": self.cross_layers,
            "projection_dim": self.projection_dim,
            "hidden_dims": list(self.hidden_dims),
            "retrieval_score": self.retrieval_score,
            "history_feature": self.history_feature,
            "recent": list(self.recent),
            "name": self.name,
        }

    def get_build_config(self) -> None:
        return None  # as the towers': built on first call, never on float placeholders

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    custom_objects: Mapping[str, Any] | None = None) -> Ranker:
        """A new, untrained ranker from :meth:`get_config`'s output."""
        settings = dict(config)
        towers = {key: tf.keras.utils.deserialize_keras_object(settings.pop(key),
                                                               custom_objects=custom_objects)
                  for key in ("query_tower", "candidate_tower")}
        return cls(**towers, **settings)

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature the ranker reads, query side first."""
        return tuple(dict.fromkeys([*self.query_tower.features,
                                    *self.candidate_tower.features]))

    @property
    def _inputs(self) -> tuple[str, ...]:
        """The columns a batch of pairs holds: the features, and the retrieval score."""
        extra = (RETRIEVAL_SCORE,) if self.retrieval_score else ()
        return (*self.features, *extra, *self._similarity_columns)

    @property
    def _similarity_columns(self) -> tuple[str, ...]:
        """The columns of the history similarities (none without ``history_feature``)."""
        if not self.history_feature:
            return ()
        return tuple(f"{SIMILARITY}_{length}" for length in self.recent)

    def call(self, features: Mapping[str, Any], training: bool | None = None) -> tf.Tensor:
        """The ``[batch]`` scores of a batch of (query, candidate) pairs."""
        retrieval = features[RETRIEVAL_SCORE] if self.retrieval_score else None
        similarity = None
        if self.history_feature:
            similarity = tf.stack([tf.cast(features[name], tf.float32)
                                   for name in self._similarity_columns], axis=1)
        return self.score_embeddings(self.query_tower(features, training=training),
                                     self.candidate_tower(features, training=training),
                                     retrieval, similarity, training=training)

    def score_embeddings(self, query: tf.Tensor, candidate: tf.Tensor,
                         retrieval_score: tf.Tensor | None = None,
                         similarity: tf.Tensor | None = None, *,
                         training: bool | None = None) -> tf.Tensor:
        """The ``[batch]`` scores of pairs from the two towers' outputs.

        The candidate tower does not depend on the query, so a server embeds
        the catalogue once and calls this on the query tower's output repeated
        for each retrieved candidate (as the exported cascade does).

        Args:
            query: ``[batch, d]`` query tower outputs.
            candidate: ``[batch, d]`` candidate tower outputs.
            retrieval_score: ``[batch]`` retriever scores, with ``retrieval_score=True``.
            similarity: ``[batch, len(recent)]`` history similarities, with
                ``history_feature``.
            training: Keras's training flag.
        """
        parts, linear = [query, candidate], []
        if self.retrieval_score:
            if retrieval_score is None:
                raise invalid_argument("retrieval_score", "be given to a ranker with "
                                       "retrieval_score=True", None)
            standard = (tf.cast(retrieval_score, tf.float32) - self.retrieval_shift) / (
                self.retrieval_scale)
            parts.append(standard[:, None])
            linear.append(standard[:, None])
        if self.history_feature:
            if similarity is None:
                raise invalid_argument("similarity", "be given to a ranker with a history_feature",
                                       None)
            parts.append(tf.cast(similarity, tf.float32))
            linear.append(parts[-1])
        x0 = tf.concat(parts, axis=1)
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        for layer in self.hidden:
            x = layer(x, training=training)
        if linear:  # a linear path: the ranker can keep retrieval's order
            x = tf.concat([x, *linear], axis=1)
        return tf.squeeze(self.output_layer(x), axis=1)

    def rerank(self, query: tf.Tensor, candidates: tf.Tensor, retrieval: tf.Tensor,
               found: tf.Tensor, similarity: tf.Tensor | None = None, *,
               training: bool | None = None) -> tf.Tensor:
        """The cascade's ``[batch, n]`` scores of retrieved lists; ``-inf`` where not ``found``.

        ``retrieval_weight * z + ranker_weight * ranker``, where ``z`` is the
        retriever's score standardised within its list and ``ranker`` this
        model's score. After :meth:`fit` the weights are 0 and 1 (the ranker's
        order); :meth:`fit_lists` sets them (weight 0 on the ranker: retrieval's
        order exactly).

        Args:
            query: ``[batch, d]`` the query tower's outputs, one per list.
            candidates: ``[batch, n, d]`` the candidate tower's outputs.
            retrieval: ``[batch, n]`` the retriever's scores of the candidates.
            found: ``[batch, n]`` which slots hold a candidate.
            similarity: ``[batch, n, len(recent)]`` history similarities,
                with ``history_feature``.
            training: Keras's training flag.
        """
        n = tf.shape(candidates)[1]
        retrieval = tf.cast(retrieval, tf.float32)
        standard = _list_standardise(retrieval, found)
        given = None
        if self.retrieval_score:  # fit_lists trains on z, fit on the raw score
            given = tf.reshape(tf.where(self.per_list > 0.5, standard, retrieval), [-1])
        if similarity is not None:
            similarity = tf.reshape(similarity, [-1, len(self.recent)])
        ranked = self.score_embeddings(
            tf.repeat(query, n, axis=0), tf.reshape(candidates, [-1, tf.shape(candidates)[2]]),
            given, similarity, training=training)
        ranked = tf.reshape(tf.cast(ranked, tf.float32), tf.shape(retrieval))
        blended = self.retrieval_weight * standard + self.ranker_weight * ranked
        return tf.where(found, blended, tf.constant(-np.inf, tf.float32))

    def compute_loss(self, features: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        scores = self(features, training=training)
        if OFFSET in features:  # fit_lists: the residual's retrieval score, or padding
            scores = scores + features[OFFSET]
        labels, weights = features[LABEL], features[WEIGHT]
        if self.ranking_loss == "listwise":
            group = self.group_size_ or 1
            scores = tf.reshape(scores, [-1, group])
            labels = tf.reshape(labels, [-1, group])
            labels = labels / tf.maximum(tf.reduce_sum(labels, axis=1, keepdims=True), 1e-12)
            weights = tf.reshape(weights, [-1, group])[:, 0]
        else:
            scores, labels = scores[:, None], labels[:, None]
        return self.task(labels=labels, predictions=scores, sample_weight=weights,
                         compute_metrics=False)

    def fit(  # type: ignore[override]
        self,
        x: TableLike,
        *,
        retriever: Any = None,
        candidates: TableLike | None = None,
        user_id: str = "user_id",
        negatives: int = 4,
        hard_fraction: float | None = None,
        retrieve_k: int = 100,
        label: str | None = None,
        sample_weight: str | None = None,
        seen: TableLike | None = None,
        epochs: int = 1,
        batch_size: int = 256,
        shuffle: bool = True,
        seed: int | None = None,
        learning_rate: float | None = None,
        callbacks: Sequence[Any] | None = None,
        verbose: bool | str | int = "auto",
        **kwargs: Any,
    ) -> Any:
        """Trains on the log's positives and sampled negatives; returns the Keras ``History``.

        Negatives are drawn once per call of ``fit``. If the ranker is not
        compiled yet, ``fit`` compiles it with Adam at ``learning_rate``.

        A retriever scores the rows it was trained on higher than it will score
        tomorrow's positives. A ranker that reads ``retrieval_score`` learns
        best from rows the retriever did not see: train the retriever on each
        user's earlier interactions, fit the ranker on the later ones with
        ``seen=`` the earlier ones, then serve with a retriever trained on all.

        Args:
            x: One row per logged (query, candidate) interaction, with
                ``user_id`` and every feature of both towers (and of the
                retriever's query tower).
            retriever: The retrieval stage (a :class:`~tfrs_kit.TwoTowerRetrieval`)
                whose top ``retrieve_k`` items per user supply the hard negatives.
            candidates: The catalogue (one row per candidate with the
                candidate features); default: the distinct candidates of ``x``.
            user_id: The column that identifies a user (whose positives are
                never drawn as their negatives).
            negatives: Negatives per positive (at least 1 unless an explicit
                ``label`` is fitted pointwise).
            hard_fraction: The share of ``negatives`` drawn from the
                retriever's top ``retrieve_k`` (rounded); the rest are uniform
                over the catalogue. Default 0.5 with a retriever, else 0.
            retrieve_k: How many of the retriever's best items per user the
                hard negatives come from; use the cascade's ``retrieve_k``.
            label: A column of explicit labels (a rating, dwell time): the
                pointwise loss is then the squared error, negatives count 0.
            sample_weight: A column of weights of each row (and its negatives).
            seen: Other (``user_id``, candidate id) interactions that are no
                negatives either, such as the log the retriever was trained on
                when the ranker learns from later rows (see below).
            epochs: Passes over the data.
            batch_size: Positives per step (each with its negatives).
            shuffle: Reshuffle the groups every epoch.
            seed: Seed of the negatives and the shuffle.
            learning_rate: Adam's learning rate when ``fit`` compiles (0.01).
            callbacks: Keras callbacks.
            verbose: ``"auto"``/``True`` one line per epoch, ``False`` silent,
                or Keras's 0, 1, 2.
            **kwargs: Passed on to ``tf.keras.Model.fit``.

        Raises:
            ValueError: A missing column or feature, a ``label`` column with
                NaN or a single value, ``hard_fraction`` without a retriever,
                a ``label`` with the listwise loss.
            TypeError: A setting of the wrong type.
        """
        keras_verbose = _check_fit_settings(epochs=epochs, batch_size=batch_size, seed=seed,
                                            learning_rate=learning_rate, verbose=verbose)
        if self.optimizer is not None and learning_rate is not None:
            raise invalid_argument(
                "learning_rate", "be None when the ranker is already compiled", learning_rate,
                hint="fit keeps the optimizer of `compile` (or of an earlier fit).")
        self._check_no_history("fit")
        for name in ("validation_data", "validation_split"):
            if name in kwargs:
                raise invalid_argument(
                    name, "be left out (fit draws negatives for x only)", kwargs[name],
                    hint="Score the cascade on held-out data with tk.evaluate instead.")
        examples = self._examples(
            to_table(x, argument="x"), retriever=retriever, candidates=candidates,
            user_id=user_id, negatives=negatives, hard_fraction=hard_fraction,
            retrieve_k=retrieve_k, label=label, sample_weight=sample_weight, seed=seed,
            seen=seen)
        if self.label_ != label or self.group_size_ != examples.group_size:
            self.train_function = self.test_function = None  # traced for the old task
        self.task = _ranking_task(self.ranking_loss, explicit=label is not None)
        self.label_, self.group_size_ = label, examples.group_size
        if self.optimizer is None:
            self.compile(optimizer=tf.keras.optimizers.Adam(
                learning_rate=_LEARNING_RATE if learning_rate is None else learning_rate))
        dataset = _group_dataset(examples, (*self._inputs, LABEL, WEIGHT),
                                 batch_size=batch_size, shuffle=shuffle, seed=seed)
        return super().fit(dataset, epochs=epochs, callbacks=list(callbacks or []),
                           verbose=keras_verbose, **kwargs)

    def _examples(self, table: Table, *, retriever: Any, candidates: TableLike | None,
                  user_id: str, negatives: Any, hard_fraction: Any, retrieve_k: Any,
                  label: str | None, sample_weight: str | None, seed: int | None,
                  seen: TableLike | None = None) -> Examples:
        """The checked training groups of :meth:`fit` (tests read them too)."""
        negatives = check_int("negatives", negatives, minimum=0)
        retrieve_k = check_int("retrieve_k", retrieve_k, minimum=1)
        hard_fraction = _check_hard_fraction(hard_fraction, retriever)
        self._check_loss_settings(negatives=negatives, label=label)
        if self.retrieval_score and retriever is None:
            raise invalid_argument("retriever", "be given to a ranker with retrieval_score=True",
                                   None, hint="Pass retriever= (the trained retrieval model).")
        if user_id not in table:
            raise missing_column("x", user_id, table, setting="user_id")
        self._check_columns(table, "x", (
            self.candidate_id, *self.query_tower.features,
            *(retriever.query_tower.features if retriever is not None else ())))
        catalogue = self._catalogue(table, candidates, retriever)
        labels = (check_label(table, label, "x") if label is not None
                  else np.ones(num_rows(table)))
        weights = (check_weights(table, sample_weight, "x") if sample_weight is not None
                   else np.ones(num_rows(table)))
        users = pd.Index(pd.unique(table[user_id]))
        excluded = _user_items(table, seen, users, catalogue, user_id=user_id,
                               item_id=self.candidate_id)
        num_hard = round(negatives * hard_fraction)
        pools = None
        if num_hard:
            pools = _retriever_pools(retriever, table, catalogue, user_id=user_id, users=users,
                                     excluded=excluded, retrieve_k=retrieve_k)
        examples = sample_examples(
            table, catalogue, user_id=user_id, item_id=self.candidate_id,
            query_features=tuple(self.query_tower.features),
            candidate_features=tuple(dict.fromkeys([self.candidate_id,
                                                    *self.candidate_tower.features])),
            negatives=negatives, num_hard=num_hard, pools=pools, user_index=users,
            excluded=excluded, labels=labels, weights=weights, seed=seed)
        if self.retrieval_score:
            scores = retrieval_scores(retriever, table, examples.train_rows, catalogue,
                                      examples.item_rows)
            examples.table[RETRIEVAL_SCORE] = scores
            self.retrieval_shift.assign(float(scores.mean()))
            self.retrieval_scale.assign(max(float(scores.std()), 1e-6))
        return examples

    def fit_lists(
        self,
        queries: TableLike,
        positives: TableLike,
        *,
        retriever: Any,
        candidates: TableLike | None = None,
        user_id: str = "user_id",
        retrieve_k: int = 100,
        seen: TableLike | None = None,
        residual: bool = True,
        validation_fraction: float = 0.2,
        ranker_weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        learning_rate: float | None = None,
        callbacks: Sequence[Any] | None = None,
        verbose: bool | str | int = "auto",
        **kwargs: Any,
    ) -> Any:
        """Trains on the retriever's own lists, what the cascade will ask it to re-order.

        Each query (one row per user, with the query features as of the time
        the ``positives`` happened) is one group: the retriever's top
        ``retrieve_k`` (its ``seen`` items left out), each labelled 1 if it is
        among the user's ``positives``, and the loss is over the whole list.
        The usual way to get such data from one log: hold out each user's
        latest interactions as ``positives``, train a retriever on the rest,
        pass the rest as ``seen`` (and its users' features as ``queries``),
        then serve with a retriever trained on the whole log.

        With ``residual`` the ranker learns a correction: the loss scores each
        candidate ``z + ranker``, ``z`` the retriever's score standardised
        within its list, so a ranker that learns nothing keeps retrieval's
        order. Then ``validation_fraction`` of the users are held out and the
        cascade's blend ``z + w * ranker`` takes the ``w`` of ``ranker_weights``
        with the best ndcg@10 on them (the smallest on a tie; ``w = 0`` is
        retrieval alone), or ``ranker`` alone (weights ``(0, 1)``) if that is
        better; ``blend_ndcg_`` holds every choice's ndcg.

        Args:
            queries: One row per user (its last is used) with ``user_id`` and
                the query features of both the ranker and the retriever.
            positives: The (``user_id``, candidate id) interactions to put first.
            retriever: The :class:`~tfrs_kit.TwoTowerRetrieval` whose lists are re-ranked.
            candidates: The catalogue, with both stages' candidate features;
                default: the distinct candidates of ``positives``.
            user_id: The column that identifies a user.
            retrieve_k: The list length: the cascade's ``retrieve_k``.
            seen: (``user_id``, candidate id) interactions the retriever was
                trained on: excluded from the lists, as the cascade excludes them.
            residual: Learn a correction to retrieval's order (see above).
            validation_fraction: The share of users held out to choose the
                blend (0: no choice, the weights are ``(1, 1)`` with
                ``residual``, else ``(0, 1)``).
            ranker_weights: The blend weights ``w`` tried.
            epochs: Passes over the lists.
            batch_size: Lists per step.
            shuffle: Reshuffle the lists every epoch.
            seed: Seed of the validation users and the shuffle.
            learning_rate: Adam's learning rate when ``fit_lists`` compiles (0.01).
            callbacks: Keras callbacks.
            verbose: As in :meth:`fit`.
            **kwargs: Passed on to ``tf.keras.Model.fit``.

        Returns:
            The Keras ``History``.

        Raises:
            ValueError: A missing column or feature, no user with a positive in
                their list, a bad fraction or weight.
            TypeError: A setting of the wrong type.
        """
        keras_verbose = _check_fit_settings(epochs=epochs, batch_size=batch_size, seed=seed,
                                            learning_rate=learning_rate, verbose=verbose)
        fraction = check_fraction("validation_fraction", validation_fraction, allow_zero=True)
        weights = _check_weights(ranker_weights)
        lists, relevant = self._lists(queries, positives, retriever=retriever,
                                      candidates=candidates, user_id=user_id,
                                      retrieve_k=retrieve_k, seen=seen, residual=residual)
        held = np.random.default_rng(seed).random(len(relevant)) < fraction
        if held.all():
            held[0] = False
        self._prepare_lists(lists.group_size, learning_rate)
        dataset = _group_dataset(_take_groups(lists, ~held), (*self._inputs, OFFSET, LABEL,
                                 WEIGHT), batch_size=batch_size, shuffle=shuffle, seed=seed)
        history = super().fit(dataset, epochs=epochs, callbacks=list(callbacks or []),
                              verbose=keras_verbose, **kwargs)
        blends = [(1.0, w) for w in weights] + [(0.0, 1.0)]
        if held.any():
            validation = _take_groups(lists, held)
            ranked = self.score_pairs(validation.table).reshape(-1, lists.group_size)
            self.blend_ndcg_ = _blend_ndcg(validation, ranked, relevant[held], blends)
            chosen = max(blends, key=lambda blend: self.blend_ndcg_[blend])  # first on ties
        else:
            self.blend_ndcg_, chosen = {}, (1.0, 1.0) if residual else (0.0, 1.0)
        self.retrieval_weight.assign(chosen[0])
        self.ranker_weight.assign(chosen[1])
        return history

    def _check_no_history(self, method: str) -> None:
        if self.history_feature:
            raise invalid_argument(
                "self", f"be a ranker without history_feature to {method}",
                f"history_feature={self.history_feature!r}",
                hint="Train it with fit_lists and score it through ranker.cascade(...) or the "
                "exported cascade, which provide the history similarities.")

    def _prepare_lists(self, group_size: int, learning_rate: float | None) -> None:
        """Task, group size, list standardisation and optimizer for :meth:`fit_lists`."""
        if self.optimizer is not None and learning_rate is not None:
            raise invalid_argument(
                "learning_rate", "be None when the ranker is already compiled", learning_rate,
                hint="fit_lists keeps the optimizer of `compile` (or of an earlier fit).")
        if self.label_ is not None or self.group_size_ != group_size:
            self.train_function = self.test_function = None  # traced for the old task
        self.task = _ranking_task(self.ranking_loss, explicit=False)
        self.label_, self.group_size_ = None, group_size
        self.per_list.assign(1.0)
        self.retrieval_shift.assign(0.0)
        self.retrieval_scale.assign(1.0)
        if self.optimizer is None:
            self.compile(optimizer=tf.keras.optimizers.Adam(
                learning_rate=_LEARNING_RATE if learning_rate is None else learning_rate))

    def _lists(self, queries: TableLike, positives: TableLike, *, retriever: Any,
               candidates: TableLike | None, user_id: str, retrieve_k: Any,
               seen: TableLike | None, residual: bool) -> tuple[Examples, np.ndarray]:
        """The lists of :meth:`fit_lists` (users with a positive in theirs) and each's positives.

        The lists' ``train_rows`` index the queries' last rows (one per user);
        the second array counts each list's user's positives, in the list or
        not (the ideal ndcg's).
        """
        retrieve_k = check_int("retrieve_k", retrieve_k, minimum=1)
        _check_hard_fraction(None, retriever)
        if retriever is None:
            raise invalid_argument("retriever", "be given to fit_lists (its lists are the "
                                   "training data)", None)
        log = to_table(positives, argument="positives")
        table = to_table(queries, argument="queries")
        for argument, source in (("queries", table), ("positives", log)):
            if user_id not in source:
                raise missing_column(argument, user_id, source, setting="user_id")
        self._check_columns(log, "positives", (self.candidate_id,))
        wanted_history = [self.history_feature] if self.history_feature else []
        self._check_columns(table, "queries", (*self.query_tower.features,
                                                *retriever.query_tower.features,
                                                *wanted_history))
        catalogue = self._catalogue(log, candidates, retriever)
        rows = last_rows(table, user_id)
        users = pd.Index(rows[user_id])
        n_items = num_rows(catalogue)
        excluded = (_user_items(to_table(seen, argument="seen"), None, users, catalogue,
                                user_id=user_id, item_id=self.candidate_id, argument="seen")
                    if seen is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        pools, scores, vectors = _lists_of(retriever, rows, catalogue, excluded, retrieve_k)
        wanted = _user_items(log, None, users, catalogue, user_id=user_id,
                             item_id=self.candidate_id, argument="positives")
        keys = np.setdiff1d(wanted[0].astype(np.int64) * n_items + wanted[1],
                            excluded[0].astype(np.int64) * n_items + excluded[1])
        codes = np.arange(len(users))[:, None].astype(np.int64)
        relevant = (pools >= 0) & np.isin(codes * n_items + pools, keys)
        kept = relevant.any(axis=1)
        if not kept.any():
            raise invalid_argument(
                "positives", "hold, for some user, an item of their retrieved list", "none",
                hint="Retrieve more (retrieve_k), or check that positives and queries name "
                "the same users.")
        lists = list_examples(
            {name: column[kept] for name, column in rows.items()}, catalogue,
            pools=pools[kept], scores=scores[kept], relevant=relevant[kept],
            query_features=tuple(self.query_tower.features),
            candidate_features=tuple(dict.fromkeys([self.candidate_id,
                                                    *self.candidate_tower.features])),
            residual=residual)
        lists = dataclasses.replace(lists, train_rows=np.flatnonzero(kept)[lists.train_rows])
        if self.history_feature:
            history = history_positions(rows[self.history_feature][kept], pd.Index(catalogue[
                self.candidate_id]))
            similarity = np.concatenate([np.zeros((0, pools.shape[1], len(self.recent)))] + [
                history_similarity(vectors[np.maximum(history[i:i + 256], 0)],
                                   history[i:i + 256] >= 0,
                                   vectors[np.maximum(pools[kept][i:i + 256], 0)],
                                   self.recent).numpy() for i in range(0, len(history), 256)])
            for column, values in zip(self._similarity_columns, np.moveaxis(similarity, 2, 0),
                                      strict=True):
                lists.table[column] = values.ravel().astype(np.float32)
        return lists, np.bincount(keys // n_items, minlength=len(users))[kept]

    def _catalogue(self, table: Table, candidates: TableLike | None, retriever: Any) -> Table:
        """One row per candidate with both stages' candidate features; every item of ``table``."""
        features = tuple(dict.fromkeys([
            *self.candidate_tower.features,
            *(retriever.candidate_tower.features if retriever is not None else ())]))
        source = to_table(candidates, argument="candidates") if candidates is not None else table
        self._check_columns(source, "candidates" if candidates is not None else "x",
                            (self.candidate_id, *features))
        catalogue = catalogue_table(source, self.candidate_id, features, "candidates")
        _check_known_items(table[self.candidate_id], catalogue[self.candidate_id],
                           self.candidate_id)
        return catalogue

    def _check_loss_settings(self, *, negatives: int, label: str | None) -> None:
        if self.ranking_loss == "listwise" and label is not None:
            raise invalid_argument(
                "label", "be None with loss='listwise' (a softmax over one positive and its "
                "negatives)", label, hint="Pass the column as sample_weight= instead, or use "
                "loss='pointwise' to fit it.")
        if negatives == 0 and label is None:
            raise invalid_argument(
                "negatives", "be >= 1 without an explicit label (every row is a positive)",
                negatives, hint="Draw negatives, or pass label= with a column to fit.")

    def _check_columns(self, table: Table, argument: str, columns: Sequence[str]) -> None:
        for column in dict.fromkeys(columns):
            if column not in table:
                raise missing_column(argument, column, table, role="a feature the ranker reads")
        for tower in (self.query_tower, self.candidate_tower):
            check_features(argument, table, getattr(tower, "vocabularies", {}),
                           [f for f in tower.features if f in table])

    def score(self, queries: TableLike, candidates: TableLike, *, retriever: Any = None,
              batch_size: int = 8192) -> np.ndarray:
        """The score of every (query, candidate) pair: ``[len(queries), len(candidates)]``.

        Args:
            queries: One row per query with the query tower's features (and the
                retriever's, with ``retrieval_score``).
            candidates: One row per candidate with the candidate tower's
                features (and the retriever's, with ``retrieval_score``).
            retriever: The retriever whose scores the ranker reads; needed
                with ``retrieval_score=True`` only.
            batch_size: Pairs scored at once.

        Returns:
            A float32 array; higher is better (logits for the implicit
            pointwise and the listwise loss, the predicted label otherwise).
        """
        self._check_no_history("score")
        query_table = to_table(queries, argument="queries")
        candidate_table = to_table(candidates, argument="candidates")
        self._check_columns(query_table, "queries", self.query_tower.features)
        self._check_columns(candidate_table, "candidates", self.candidate_tower.features)
        if self.retrieval_score and retriever is None:
            raise invalid_argument("retriever", "be given to score with retrieval_score=True",
                                   None, hint="Pass retriever= (the ranker's retriever).")
        n, m = num_rows(query_table), num_rows(candidate_table)
        query_rows, candidate_rows = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
        retrieval = None
        if self.retrieval_score:
            retrieval = retrieval_scores(retriever, query_table, query_rows, candidate_table,
                                         candidate_rows)
        queries_out = self.query_tower.embed(query_table, verbose=False)
        candidates_out = self.candidate_tower.embed(candidate_table, verbose=False)
        return self.score_vectors(queries_out[query_rows], candidates_out[candidate_rows],
                                  retrieval, batch_size=batch_size).reshape(n, m)

    def score_vectors(self, query: np.ndarray, candidate: np.ndarray,
                      retrieval_score: np.ndarray | None = None, *,
                      batch_size: int = 8192) -> np.ndarray:
        """:meth:`score_embeddings` over NumPy rows, in batches: ``[rows]`` float32 scores."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        out = [np.zeros(0, np.float32)]
        for start in range(0, len(query), batch_size):
            stop = start + batch_size
            retrieval = None if retrieval_score is None else retrieval_score[start:stop]
            out.append(self.score_embeddings(
                tf.constant(query[start:stop], tf.float32),
                tf.constant(candidate[start:stop], tf.float32),
                None if retrieval is None else tf.constant(retrieval, tf.float32),
                training=False).numpy())
        return np.concatenate(out)

    def score_pairs(self, pairs: TableLike, *, batch_size: int = 8192) -> np.ndarray:
        """The ``[rows]`` scores of a table of (query, candidate) pairs, one per row.

        With ``retrieval_score=True`` the table also holds the retriever's
        score of each pair in the column ``"tfrs_kit_retrieval_score"``.
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        table = to_table(pairs, argument="pairs")
        self._check_columns(table, "pairs", self._inputs)
        if not num_rows(table):
            return np.zeros(0, np.float32)
        dataset = make_dataset(table, self._inputs, batch_size=batch_size)
        return np.concatenate([self(batch, training=False).numpy() for batch in dataset])

    def cascade(self, retriever: Any, *, retrieve_k: int = 100) -> Cascade:
        """Retrieve ``retrieve_k`` candidates with ``retriever``, re-rank them with this ranker.

        Args:
            retriever: A trained :class:`~tfrs_kit.TwoTowerRetrieval`.
            retrieve_k: Candidates retrieved per query, re-ranked.

        Returns:
            A :class:`~tfrs_kit.ranking.Cascade`, which :func:`tfrs_kit.evaluate`
            scores like any recommender.
        """
        from tfrs_kit.ranking._cascade import Cascade  # _cascade imports this module

        return Cascade(retriever, self, retrieve_k=retrieve_k)


def _ranking_task(loss: str, *, explicit: bool) -> tfrs.tasks.Ranking:
    if loss == "listwise":
        objective: Any = tf.keras.losses.CategoricalCrossentropy(from_logits=True)
    elif explicit:
        objective = tf.keras.losses.MeanSquaredError()
    else:
        objective = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    return tfrs.tasks.Ranking(loss=objective)


def _group_dataset(examples: Examples, columns: Sequence[str], *, batch_size: int,
                   shuffle: bool, seed: int | None) -> tf.data.Dataset:
    """Batches of ``batch_size`` whole groups (rows stay group-major), reshuffled per epoch."""
    tensors = to_tensors(examples.table, columns)
    group = examples.group_size
    n_groups = num_rows(examples.table) // group
    groups = tf.data.Dataset.range(n_groups)
    if shuffle:
        groups = groups.shuffle(n_groups, seed=seed, reshuffle_each_iteration=True)
    offsets = tf.range(group, dtype=tf.int64)

    def gather(ids: tf.Tensor) -> dict[str, Any]:
        rows = tf.reshape(ids[:, None] * group + offsets, [-1])
        return {name: tf.gather(t, rows) for name, t in tensors.items()}

    return groups.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


def _user_items(table: Table, seen: TableLike | None, users: pd.Index, catalogue: Table, *,
                user_id: str, item_id: str, argument: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """(user code, catalogue position) of every pair never to be drawn as a negative.

    The pairs of ``table`` and of ``seen``; users of ``seen`` not in ``table`` and
    items outside the catalogue are left out (they cannot be drawn).
    """
    for column in (user_id, item_id):
        if column not in table:
            raise missing_column(argument, column, table, role="a column of the interactions")
    codes = [users.get_indexer(pd.Index(table[user_id]))]
    items = pd.Index(catalogue[item_id])
    positions = [items.get_indexer(pd.Index(table[item_id]))]
    if seen is not None:
        extra = to_table(seen, argument="seen")
        for column, setting in ((user_id, "user_id"), (item_id, None)):
            if column not in extra:
                raise missing_column("seen", column, extra, setting=setting,
                                     role="" if setting else "the candidate id")
        codes.append(users.get_indexer(pd.Index(extra[user_id])))
        positions.append(items.get_indexer(pd.Index(extra[item_id])))
    code, position = np.concatenate(codes), np.concatenate(positions)
    known = (code >= 0) & (position >= 0)
    return code[known], position[known]


def _lists_of(retriever: Any, queries: Table, catalogue: Table,
              excluded: tuple[np.ndarray, np.ndarray],
              retrieve_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query row's top ``retrieve_k`` positions (``-1`` if none), their scores, the items'.

    The third array is the retriever's embedding of every catalogue item.
    """
    query_vectors = retriever.query_tower.embed(queries, verbose=False)
    item_vectors = retriever.candidate_tower.embed(catalogue, verbose=False)
    codes, positions = excluded
    by_user = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_user], np.arange(len(query_vectors) + 1))
    own = [positions[by_user[bounds[u]:bounds[u + 1]]] for u in range(len(query_vectors))]
    pools, _ = hard_pools(query_vectors, item_vectors, own, retrieve_k)
    scores = np.einsum("ud,ukd->uk", query_vectors, item_vectors[np.maximum(pools, 0)])
    return pools, np.where(pools >= 0, scores, -np.inf), item_vectors


def _take_groups(examples: Examples, mask: np.ndarray) -> Examples:
    """The groups of ``examples`` where ``mask`` holds, in order."""
    group = examples.group_size
    rows = (np.flatnonzero(mask)[:, None] * group + np.arange(group)).ravel()
    return Examples(table={name: column[rows] for name, column in examples.table.items()},
                    group_size=group, train_rows=examples.train_rows[rows],
                    item_rows=examples.item_rows[rows])


def _blend_ndcg(lists: Examples, ranked: np.ndarray, relevant: np.ndarray,
                blends: Sequence[tuple[float, float]]) -> dict[tuple[float, float], float]:
    """Mean ndcg@10 of the lists ordered by each ``(retrieval, ranker)`` weight pair."""
    group = lists.group_size
    standard = lists.table[RETRIEVAL_SCORE].reshape(-1, group).astype(np.float64)
    found = lists.table[OFFSET].reshape(-1, group) > -1e8
    labels = lists.table[LABEL].reshape(-1, group)
    k = min(_VALIDATION_K, group)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.clip(relevant, 1, k) - 1]
    out = {}
    for retrieval, ranker in blends:
        scores = np.where(found, retrieval * standard + ranker * ranked, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        gains = np.take_along_axis(labels, order, axis=1) @ discounts
        out[(retrieval, ranker)] = float(np.mean(gains / ideal))
    return out


def _retriever_pools(retriever: Any, table: Table, catalogue: Table, *, user_id: str,
                     users: pd.Index, excluded: tuple[np.ndarray, np.ndarray],
                     retrieve_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's top ``retrieve_k`` catalogue items under the retriever, ``excluded`` left out."""
    query_columns = list(dict.fromkeys([user_id, *retriever.query_tower.features]))
    user_rows = last_rows(select(table, query_columns, argument="x"), user_id)
    order = pd.Index(user_rows[user_id]).get_indexer(users)
    user_rows = {name: column[order] for name, column in user_rows.items()}
    queries = retriever.query_tower.embed(user_rows, verbose=False)
    items = retriever.candidate_tower.embed(catalogue, verbose=False)
    codes, positions = excluded
    by_user = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_user], np.arange(len(users) + 1))
    positives = [np.unique(positions[by_user[bounds[u]:bounds[u + 1]]])
                 for u in range(len(users))]
    return hard_pools(queries, items, positives, retrieve_k)


def _check_known_items(items: np.ndarray, catalogue: np.ndarray, column: str) -> None:
    unknown = pd.Index(catalogue).get_indexer(items) < 0
    if unknown.any():
        raise invalid_argument(
            f"x[{column!r}]", "hold candidates of the catalogue", list(items[unknown][:3]),
            hint="Pass a candidates= table that holds every item of x.")


def retrieval_scores(retriever: Any, queries: Table, query_rows: np.ndarray,
                     candidates: Table, candidate_rows: np.ndarray) -> np.ndarray:
    """The retriever's score (dot product) of each pair of a query row and a candidate row."""
    query_vectors = retriever.query_tower.embed(queries, verbose=False)
    candidate_vectors = retriever.candidate_tower.embed(candidates, verbose=False)
    return np.einsum("ij,ij->i", query_vectors[query_rows],
                     candidate_vectors[candidate_rows]).astype(np.float32)


def _list_standardise(scores: tf.Tensor, found: tf.Tensor) -> tf.Tensor:
    """:func:`~tfrs_kit.ranking._sampling.list_standardise` in TensorFlow."""
    mask = tf.cast(found, tf.float32)
    count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    kept = tf.where(found, scores, tf.zeros_like(scores))
    mean = tf.reduce_sum(kept, axis=1, keepdims=True) / count
    spread = tf.sqrt(tf.reduce_sum(mask * tf.square(kept - mean), axis=1, keepdims=True) / count)
    return tf.where(found, (kept - mean) / tf.maximum(spread, 1e-6), tf.zeros_like(scores))


def _check_weights(weights: Any) -> tuple[float, ...]:
    if isinstance(weights, str) or not isinstance(weights, Sequence) or not weights:
        raise invalid_argument("ranker_weights", "be a non-empty list of numbers", weights,
                               error=TypeError)
    return tuple(sorted(float(check_number(f"ranker_weights[{i}]", w, minimum=0))
                        for i, w in enumerate(weights)))


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


def _check_recent(recent: Any) -> tuple[int, ...]:
    if isinstance(recent, str) or not isinstance(recent, Sequence) or not recent:
        raise invalid_argument("recent", "be a non-empty list of history lengths", recent,
                               error=TypeError)
    return tuple(check_int(f"recent[{i}]", length, minimum=1)
                 for i, length in enumerate(recent))


def _check_hard_fraction(value: Any, retriever: Any) -> float:
    if value is None:
        return 0.5 if retriever is not None else 0.0
    fraction = check_fraction("hard_fraction", value, allow_zero=True, allow_one=True)
    if fraction and retriever is None:
        raise invalid_argument("hard_fraction", "be 0 or None without a retriever", value,
                               hint="Pass retriever= (the trained retrieval model).")
    if retriever is not None and not hasattr(retriever, "query_tower"):
        raise invalid_argument("retriever", "be a TwoTowerRetrieval (with query_tower and "
                               "candidate_tower)", type(retriever).__name__, error=TypeError)
    return fraction


def _check_fit_settings(*, epochs: Any, batch_size: Any, seed: Any, learning_rate: Any,
                        verbose: Any) -> int:
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0, allow_none=True)
    check_number("learning_rate", learning_rate, minimum=0, low_open=True, allow_none=True)
    value = check_verbose("verbose", verbose, keras=True)
    if isinstance(value, (bool, str)):
        return 2 if value else 0
    return int(value)


def _check_tower(argument: str, tower: Any) -> Tower:
    if not isinstance(tower, tf.keras.layers.Layer) or not hasattr(tower, "features"):
        raise invalid_argument(argument, "be a tfrs_kit Tower (a Keras layer with `features`)",
                               type(tower).__name__, error=TypeError)
    return tower


def _check_dims(dims: Any) -> tuple[int, ...]:
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        raise invalid_argument("hidden_dims", "be a list of layer sizes", dims, error=TypeError)
    return tuple(check_int(f"hidden_dims[{i}]", d, minimum=1) for i, d in enumerate(dims))
