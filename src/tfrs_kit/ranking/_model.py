"""The ranker: one (query, candidate) pair in, one score out, on ``tfrs.tasks.Ranking``.

The Keras model alone; what it trains on and serves with lives beside it:
``_pairs`` (``fit``'s groups) and ``_sampling`` (their negatives), ``_streamed``
(``fit``'s labelled rows streamed from shards), ``_lists``
(``fit_lists``), ``_scoring`` (the serving math shared with ``index``),
``_checks`` (its argument checks) and ``_cascade`` (retrieve, then rank).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import (
    check_choice,
    check_fraction,
    check_int,
)
from tfrs_kit.data._table import Table, TableLike, to_table
from tfrs_kit.ranking._batch_scoring import RankerScoring
from tfrs_kit.ranking._checks import (
    check_components,
    check_dims,
    check_next_items,
    check_ranker_weights,
    check_recent,
)
from tfrs_kit.ranking._lists import build_lists, choose_blend, take_groups
from tfrs_kit.ranking._pairs import group_dataset, pair_examples
from tfrs_kit.ranking._sampling import (
    COMPONENT,
    LABEL,
    OFFSET,
    RETRIEVAL_SCORE,
    SIMILARITY,
    WEIGHT,
    Examples,
)
from tfrs_kit.ranking._streamed import pair_buffer, streamed_pairs
from tfrs_kit.towers import Tower
from tfrs_kit.towers._model_base import check_fit_settings, check_tower, item_id_of

if TYPE_CHECKING:
    from tfrs_kit.ranking import Cascade

__all__ = ["Ranker"]

_LOSSES = ("pointwise", "listwise")
_LEARNING_RATE = 0.01  # Adam's, when fit compiles the model


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class Ranker(RankerScoring):
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
        item_id: The feature that identifies a candidate (an item); default:
            the candidate tower's first feature.
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
        components: The columns where the retriever's embedding splits into
            score components (a blend's towers, factorisation and popularity:
            :func:`~tfrs_kit.ranking._scoring.component_bounds`). The ranker
            then also reads each component's share of the retrieval score (its
            partial dot product, standardised within the list), and so learns
            how much each matters in its context. Trained with
            :meth:`fit_lists` only; served from the index's own embeddings.
        next_items: A trained :class:`~tfrs_kit.ranking.NextItemModel` (with ``history_feature``):
            the ranker then also reads its log-probability that each candidate comes next
            after the history, in order (raw and standardised within the list).
        name: The Keras name of the model.
        candidate_id: Deprecated: the old name of ``item_id``.

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
        item_id: str | None = None,
        loss: str = "pointwise",
        cross_layers: int = 2,
        projection_dim: int | None = None,
        hidden_dims: Sequence[int] = (64, 32),
        retrieval_score: bool = False,
        history_feature: str | None = None,
        recent: Sequence[int] = (1, 5, 20),
        components: Sequence[int] = (),
        next_items: Any = None,
        name: str | None = None,
        candidate_id: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.query_tower = check_tower("query_tower", query_tower)
        self.candidate_tower = check_tower("candidate_tower", candidate_tower)
        self.item_id = item_id_of(candidate_tower, item_id, candidate_id)
        # Not `self.loss`: Keras's compile() owns that attribute.
        self.ranking_loss = check_choice("loss", loss, _LOSSES, what="ranking loss")
        self.cross_layers = check_int("cross_layers", cross_layers, minimum=0)
        self.projection_dim = check_int("projection_dim", projection_dim, minimum=1,
                                        allow_none=True)
        self.hidden_dims = check_dims(hidden_dims)
        self.retrieval_score = bool(retrieval_score)
        if history_feature is not None and not isinstance(history_feature, str):
            raise invalid_argument("history_feature", "be a query feature name or None",
                                   history_feature, error=TypeError)
        self.history_feature = history_feature
        self.recent = check_recent(recent)
        self.components = check_components(components)
        self.next_items = check_next_items(next_items, history_feature)
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
            "item_id": self.item_id,
            "loss": self.ranking_loss,
            "cross_layers": self.cross_layers,
            "projection_dim": self.projection_dim,
            "hidden_dims": list(self.hidden_dims),
            "retrieval_score": self.retrieval_score,
            "history_feature": self.history_feature,
            "recent": list(self.recent),
            "components": list(self.components),
            "next_items": (None if self.next_items is None else
                           tf.keras.utils.serialize_keras_object(self.next_items)),
            "name": self.name,
        }

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature the ranker reads, query side first."""
        return tuple(dict.fromkeys([*self.query_tower.features,
                                    *self.candidate_tower.features]))

    @property
    def _inputs(self) -> tuple[str, ...]:
        """The columns a batch of pairs holds: the features, and the retrieval score."""
        extra = (RETRIEVAL_SCORE,) if self.retrieval_score else ()
        return (*self.features, *extra, *self._similarity_columns, *self._component_columns)

    @property
    def _component_columns(self) -> tuple[str, ...]:
        """The columns of the retrieval score's components (none without ``components``)."""
        if not self.components:
            return ()
        return tuple(f"{COMPONENT}_{i}" for i in range(len(self.components) + 1))

    @property
    def _similarity_columns(self) -> tuple[str, ...]:
        """The columns of the history similarities (none without ``history_feature``)."""
        if not self.history_feature:
            return ()
        nexts = (f"{SIMILARITY}_next", f"{SIMILARITY}_next_list") if self.next_items else ()
        return (*(f"{SIMILARITY}_{length}" for length in self.recent), *nexts)

    def call(self, features: Mapping[str, Any], training: bool | None = None) -> tf.Tensor:
        """The ``[batch]`` scores of a batch of (query, candidate) pairs."""
        retrieval = features[RETRIEVAL_SCORE] if self.retrieval_score else None
        similarity = None
        if self.history_feature:
            similarity = tf.stack([tf.cast(features[name], tf.float32)
                                   for name in self._similarity_columns], axis=1)
        components = None
        if self.components:
            components = tf.stack([tf.cast(features[name], tf.float32)
                                   for name in self._component_columns], axis=1)
        return self.score_embeddings(self.query_tower(features, training=training),
                                     self.candidate_tower(features, training=training),
                                     retrieval, similarity, components, training=training)

    def score_embeddings(self, query: tf.Tensor, candidate: tf.Tensor,
                         retrieval_score: tf.Tensor | None = None,
                         similarity: tf.Tensor | None = None,
                         components: tf.Tensor | None = None, *,
                         training: bool | None = None) -> tf.Tensor:
        """The ``[batch]`` scores of pairs from the two towers' outputs.

        The candidate tower does not depend on the query, so a server embeds
        the catalogue once and calls this on the query tower's output repeated
        for each retrieved candidate (as the exported cascade does).

        Args:
            query: ``[batch, d]`` query tower outputs.
            candidate: ``[batch, d]`` candidate tower outputs.
            retrieval_score: ``[batch]`` retriever scores, with ``retrieval_score=True``.
            similarity: ``[batch, len(recent)]`` history similarities (and the
                next-item columns), with ``history_feature``.
            components: ``[batch, len(components) + 1]`` the retrieval score's
                components, each standardised within its list, with ``components``.
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
        if self.components:
            if components is None:
                raise invalid_argument("components", "be given to a ranker with components",
                                       None)
            parts.append(tf.cast(components, tf.float32))
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
        shuffle_buffer: int | None = None,
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
                retriever's query tower): a table, or files (read into memory,
                or streamed: see ``shuffle_buffer``).
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
            shuffle_buffer: Stream the files of ``x`` instead of reading them
                into memory, rows shuffled within windows of this many (default
                65,536 for ``tk.data.Shards``; paths stream only when it is given).
                Only rows with an explicit ``label`` fitted with ``negatives=0``
                (and no ``retrieval_score``) stream: sampled negatives need every
                user's positives, so ``Shards`` are then read whole, with a warning.
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
        keras_verbose = check_fit_settings(epochs=epochs, batch_size=batch_size, seed=seed,
                                           learning_rate=learning_rate, verbose=verbose)
        self._check_learning_rate(learning_rate, "fit")
        self._check_no_history("fit")
        for name in ("validation_data", "validation_split"):
            if name in kwargs:
                raise invalid_argument(
                    name, "be left out (fit draws negatives for x only)", kwargs[name],
                    hint="Score the cascade on held-out data with tk.evaluate instead.")
        buffer = pair_buffer(x, shuffle_buffer, negatives=negatives, label=label,
                             loss=self.ranking_loss, retrieval_score=self.retrieval_score)
        if buffer is not None and label is not None:  # see ranking._streamed
            check_int("retrieve_k", retrieve_k, minimum=1)
            dataset, steps = streamed_pairs(
                self, x, shuffle_buffer=buffer, retriever=retriever, candidates=candidates,
                user_id=user_id, hard_fraction=hard_fraction, label=label,
                sample_weight=sample_weight, batch_size=batch_size, shuffle=shuffle, seed=seed)
            if steps is not None:  # several workers: each repeats its own shards
                kwargs.setdefault("steps_per_epoch", steps)
            self._prepare_training(label, 1, learning_rate)
        else:
            examples = self._examples(
                to_table(x, argument="x"), retriever=retriever, candidates=candidates,
                user_id=user_id, negatives=negatives, hard_fraction=hard_fraction,
                retrieve_k=retrieve_k, label=label, sample_weight=sample_weight, seed=seed,
                seen=seen)
            self._prepare_training(label, examples.group_size, learning_rate)
            dataset = group_dataset(examples, (*self._inputs, LABEL, WEIGHT),
                                    batch_size=batch_size, shuffle=shuffle, seed=seed)
        return super().fit(dataset, epochs=epochs, callbacks=list(callbacks or []),
                           verbose=keras_verbose, **kwargs)

    def _examples(self, table: Table, **settings: Any) -> Examples:
        """The checked training groups of :meth:`fit` (tests read them too)."""
        return pair_examples(self, table, **settings)

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
        keras_verbose = check_fit_settings(epochs=epochs, batch_size=batch_size, seed=seed,
                                           learning_rate=learning_rate, verbose=verbose)
        fraction = check_fraction("validation_fraction", validation_fraction, allow_zero=True)
        weights = check_ranker_weights(ranker_weights)
        lists, relevant = self._lists(queries, positives, retriever=retriever,
                                      candidates=candidates, user_id=user_id,
                                      retrieve_k=retrieve_k, seen=seen, residual=residual)
        held = np.random.default_rng(seed).random(len(relevant)) < fraction
        if held.all():
            held[0] = False
        self._check_learning_rate(learning_rate, "fit_lists")
        self._prepare_training(None, lists.group_size, learning_rate)
        self.per_list.assign(1.0)  # see rerank
        self.retrieval_shift.assign(0.0)
        self.retrieval_scale.assign(1.0)
        dataset = group_dataset(take_groups(lists, ~held), (*self._inputs, OFFSET, LABEL,
                                WEIGHT), batch_size=batch_size, shuffle=shuffle, seed=seed)
        history = super().fit(dataset, epochs=epochs, callbacks=list(callbacks or []),
                              verbose=keras_verbose, **kwargs)
        choose_blend(self, lists, relevant, held, weights=weights, residual=residual)
        return history

    def _lists(self, queries: TableLike, positives: TableLike,
               **settings: Any) -> tuple[Examples, np.ndarray]:
        """The lists of :meth:`fit_lists` and each's positives (tests read them too)."""
        return build_lists(self, queries, positives, **settings)

    def _check_learning_rate(self, learning_rate: float | None, method: str) -> None:
        if self.optimizer is not None and learning_rate is not None:
            raise invalid_argument(
                "learning_rate", "be None when the ranker is already compiled", learning_rate,
                hint=f"{method} keeps the optimizer of `compile` (or of an earlier fit).")

    def _prepare_training(self, label: str | None, group_size: int,
                          learning_rate: float | None) -> None:
        """The task of ``label`` and the group size; compiles with Adam if not compiled yet."""
        if self.label_ != label or self.group_size_ != group_size:
            self.train_function = self.test_function = None  # traced for the old task
        self.task = _ranking_task(self.ranking_loss, explicit=label is not None)
        self.label_, self.group_size_ = label, group_size
        if self.optimizer is None:
            self.compile(optimizer=tf.keras.optimizers.Adam(
                learning_rate=_LEARNING_RATE if learning_rate is None else learning_rate))

    def cascade(self, retriever: Any, *, retrieve_k: int = 100) -> Cascade:
        """Retrieve ``retrieve_k`` candidates with ``retriever``, re-rank them with this ranker.

        Args:
            retriever: A trained :class:`~tfrs_kit.TwoTowerRetrieval`.
            retrieve_k: Candidates retrieved per query, re-ranked.

        Returns:
            A :class:`~tfrs_kit.Cascade`, which :func:`tfrs_kit.evaluate`
            scores like any recommender.
        """
        # From the package, imported in full by now: the Cascade (which can also fit a
        # Ranker, see Cascade.fit) sits above the Ranker, not below it.
        from tfrs_kit.ranking import Cascade

        return Cascade(retriever, self, retrieve_k=retrieve_k)


def _ranking_task(loss: str, *, explicit: bool) -> tfrs.tasks.Ranking:
    if loss == "listwise":
        objective: Any = tf.keras.losses.CategoricalCrossentropy(from_logits=True)
    elif explicit:
        objective = tf.keras.losses.MeanSquaredError()
    else:
        objective = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    return tfrs.tasks.Ranking(loss=objective)
