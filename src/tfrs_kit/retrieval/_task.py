"""``tfrs.tasks.Retrieval`` with the same loss, computed with less work.

Two changes, both exact:

* TFRS builds ``tf.eye(batch, candidates)`` labels and a dense categorical
  cross-entropy on every step. The positive of query ``i`` is always candidate
  ``i``, so the loss is a sparse softmax cross-entropy instead.
* With ``unique_candidates=True`` and candidate ids, each distinct candidate of
  a batch is scored once and its logit raised by ``log(count)``: the softmax
  denominator ``sum_j exp(s_j)`` over a batch's columns equals
  ``sum_u count_u * exp(s_u)`` over its distinct candidates. A batch of 4,096
  MovieLens ratings holds about 1,200 distinct movies, so the score matrix
  shrinks about 3x. It equals TFRS's loss whenever rows with the same id have
  the same candidate embedding (candidate features that are item attributes).

Whenever metrics, a custom loss, hard-negative mining, a score mask or
multi-head queries are involved, the parent's code runs unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

__all__ = ["FastRetrieval"]

_MIN_FLOAT = np.finfo(np.float32).min / 100.0  # as tfrs.layers.loss


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class FastRetrieval(tfrs.tasks.Retrieval):
    """The retrieval task of TFRS, faster when no metric is computed.

    It takes the same arguments and returns the same loss (to float rounding).

    Args:
        unique_candidates: Score each distinct candidate id of a batch once (see
            the module's docstring); needs ``candidate_ids`` in ``call``.
        **kwargs: The arguments of ``tfrs.tasks.Retrieval``.

    Example:
        >>> query = tf.constant([[1.0, 0.0], [0.0, 1.0]])
        >>> fast = float(FastRetrieval()(query, query))
        >>> abs(fast - float(tfrs.tasks.Retrieval()(query, query))) < 1e-6
        True
    """

    def __init__(self, *, unique_candidates: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unique_candidates = bool(unique_candidates)

    def _fast_path(self, query_embeddings: tf.Tensor, score_mask: Any,
                   compute_metrics: bool) -> bool:
        default_loss = isinstance(self._loss, tf.keras.losses.CategoricalCrossentropy)
        metrics = bool(self._loss_metrics or self._batch_metrics) or (
            compute_metrics and bool(self._factorized_metrics))
        return (default_loss and not metrics and self._num_hard_negatives is None
                and score_mask is None and query_embeddings.shape.rank == 2)

    def call(
        self,
        query_embeddings: tf.Tensor,
        candidate_embeddings: tf.Tensor,
        sample_weight: tf.Tensor | None = None,
        candidate_sampling_probability: tf.Tensor | None = None,
        candidate_ids: tf.Tensor | None = None,
        compute_metrics: bool = True,
        compute_batch_metrics: bool = True,
        score_mask: tf.Tensor | None = None,
    ) -> tf.Tensor:
        if not self._fast_path(query_embeddings, score_mask, compute_metrics):
            return super().call(
                query_embeddings, candidate_embeddings, sample_weight=sample_weight,
                candidate_sampling_probability=candidate_sampling_probability,
                candidate_ids=candidate_ids, compute_metrics=compute_metrics,
                compute_batch_metrics=compute_batch_metrics, score_mask=score_mask,
            )
        if self.unique_candidates and candidate_ids is not None:
            return self._unique_loss(query_embeddings, candidate_embeddings, sample_weight,
                                     candidate_sampling_probability, candidate_ids)
        scores = tf.linalg.matmul(query_embeddings, candidate_embeddings, transpose_b=True)
        num_queries = tf.shape(scores)[0]
        if self._temperature is not None:
            scores = scores / self._temperature
        if candidate_sampling_probability is not None:
            scores = tfrs.layers.loss.SamplingProbablityCorrection()(
                scores, candidate_sampling_probability)
        positives = tf.range(num_queries)
        if self._remove_accidental_hits:
            if candidate_ids is None:
                raise ValueError(
                    "When accidental hit removal is enabled, candidate ids must be supplied.")
            duplicate = tf.equal(candidate_ids[:num_queries, None], candidate_ids[None, :])
            own = tf.one_hot(positives, tf.shape(scores)[1], on_value=True, off_value=False)
            scores = scores + tf.cast(duplicate & ~own, scores.dtype) * _MIN_FLOAT
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=scores)
        return _weighted_sum(loss, sample_weight)

    def _unique_loss(self, queries: tf.Tensor, candidates: tf.Tensor, sample_weight: Any,
                     probability: Any, ids: tf.Tensor) -> tf.Tensor:
        num_queries = tf.shape(queries)[0]
        unique, column = tf.unique(tf.reshape(ids, [-1]))
        num_unique = tf.shape(unique)[0]
        rows = tf.range(tf.shape(column)[0])
        first = tf.math.unsorted_segment_min(rows, column, num_unique)
        count = tf.math.unsorted_segment_sum(tf.ones_like(rows, tf.float32), column, num_unique)
        scores = tf.linalg.matmul(queries, tf.gather(candidates, first), transpose_b=True)
        if self._temperature is not None:
            scores = scores / self._temperature
        if probability is not None:
            scores = tfrs.layers.loss.SamplingProbablityCorrection()(
                scores, tf.gather(probability, first))
        log_count = tf.cast(tf.math.log(count), scores.dtype)
        positive = column[:num_queries]
        own = tf.gather(log_count, positive)  # the positive is one copy of its column
        scores = scores + log_count[None, :]
        if self._remove_accidental_hits:
            # The positive's other copies leave the denominator: its column counts once.
            scores = scores - tf.one_hot(positive, num_unique, dtype=scores.dtype) * own[:, None]
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positive, logits=scores)
        if not self._remove_accidental_hits:
            loss = loss + own
        return _weighted_sum(loss, sample_weight)

    def get_config(self) -> dict[str, Any]:
        # TFRS's task keeps its settings private and leaves them out of its config;
        # metrics and custom losses stay out here too (they hold objects).
        return {**super().get_config(), "unique_candidates": self.unique_candidates,
                "temperature": self._temperature,
                "remove_accidental_hits": self._remove_accidental_hits,
                "num_hard_negatives": self._num_hard_negatives}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FastRetrieval:
        # tfrs.tasks.Retrieval takes no `trainable` or `dtype`.
        return cls(**{k: v for k, v in config.items() if k not in ("trainable", "dtype")})


def _weighted_sum(loss: tf.Tensor, sample_weight: Any) -> tf.Tensor:
    if sample_weight is not None:
        loss = loss * tf.cast(tf.reshape(sample_weight, [-1]), loss.dtype)
    return tf.reduce_sum(loss)
