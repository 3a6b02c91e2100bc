"""In-batch negatives across ``tf.distribute`` replicas.

Under a strategy with several replicas each replica sees only its slice of the
global batch. :class:`CrossReplicaRetrieval` gathers the candidate embeddings
(and the candidate ids and sampling probabilities alike) from every replica, so
each query is scored against the whole global batch, as on one device.

The gathered candidates are rolled so that this replica's own rows come first:
the positive of local query ``i`` is then column ``i``, which is exactly the
identity-matrix labelling of ``tfrs.tasks.Retrieval``. Softmax cross-entropy is
invariant to the order of the negatives, so the loss, logQ correction,
accidental-hit removal, hard-negative mining and batch metrics of the parent
class apply unchanged. Uneven slices (the last, partial batch) are handled by
gathering each replica's size first.

Gradients: ``ReplicaContext.all_gather`` back-propagates by summing the
upstream gradients over replicas, and the optimizer sums the replicas'
gradients. With the summed loss of ``tfrs.tasks.Retrieval`` (one term per
query) the update therefore equals single-device training on the global batch.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit.retrieval._task import FastRetrieval

__all__ = ["CrossReplicaRetrieval", "cross_replica_concat", "num_replicas"]


def num_replicas() -> int:
    """The number of replicas in sync: 1 outside any ``tf.distribute`` strategy."""
    context = tf.distribute.get_replica_context()
    if context is not None:
        return int(context.num_replicas_in_sync)
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def cross_replica_concat(*tensors: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Concatenates tensors over all replicas along axis 0, this replica's rows first.

    Call it in a replica context (inside ``strategy.run`` or Keras ``fit``). All
    tensors must have the same number of rows on a replica; replicas may have
    different numbers of rows. With one replica (or none) the tensors are
    returned unchanged.

    Args:
        *tensors: Tensors of numeric dtype with the same first dimension.

    Returns:
        The gathered tensors, in the order: this replica's rows, then those of
        the following replicas, wrapping around.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    device = _replica_device(context)
    with tf.device(device):
        size = tf.shape(tensors[0])[:1]
        sizes = context.all_gather(tf.identity(size), axis=0)
        offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    return tuple(_gather(value, context, device, offset) for value in tensors)


def _replica_device(context: tf.distribute.ReplicaContext) -> str:
    """This replica's device: collectives need one, and MultiWorkerMirroredStrategy
    leaves the replica's ops unplaced (an empty device fails all_gather's gradient)."""
    devices = tf.distribute.get_strategy().extended.worker_devices
    replica = tf.get_static_value(context.replica_id_in_sync_group)
    return devices[int(replica or 0) % len(devices)]


def _gather(value: tf.Tensor, context: tf.distribute.ReplicaContext, device: str,
            offset: tf.Tensor) -> tf.Tensor:
    """All-gathers ``value`` rolled to put this replica's rows first; differentiable.

    The gradient of an all-gather is the sum of every replica's gradient for
    this replica's rows: an all-reduce, then this replica's slice (what
    ``ReplicaContext.all_gather``'s own gradient does, placed on a device).
    """
    if not value.dtype.is_floating:
        with tf.device(device):
            return tf.roll(context.all_gather(tf.identity(value), axis=0), -offset, axis=0)

    @tf.custom_gradient
    def gather(x: tf.Tensor) -> tuple[tf.Tensor, Any]:
        with tf.device(device):
            gathered = tf.roll(context.all_gather(tf.identity(x), axis=0), -offset, axis=0)

        def grad(upstream: tf.Tensor) -> tf.Tensor:
            with tf.device(device):
                # Back to the global row order (each replica rolled by its own
                # offset), summed over replicas, then this replica's rows.
                unrolled = tf.roll(upstream, offset, axis=0)
                total = context.all_reduce(tf.distribute.ReduceOp.SUM, unrolled)
                return total[offset : offset + tf.shape(x)[0]]

        return gathered, grad

    return gather(value)


def _comparable_ids(ids: tf.Tensor) -> tf.Tensor:
    """Ids as int64, the dtype collectives can gather (strings they cannot).

    Strings are fingerprinted into 2**63 - 1 buckets; two distinct ids collide
    with a negligible probability, and a collision only drops one negative.
    """
    ids = tf.convert_to_tensor(ids)
    if ids.shape.rank == 2 and ids.shape[-1] == 1:
        ids = tf.squeeze(ids, axis=-1)
    if ids.dtype == tf.string:
        return tf.strings.to_hash_bucket_fast(ids, tf.int64.max)
    return tf.cast(ids, tf.int64)


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class CrossReplicaRetrieval(FastRetrieval):
    """``tfrs.tasks.Retrieval`` whose negatives are the global batch of all replicas.

    It takes the same arguments and computes the same loss. With one replica
    (no strategy, or a strategy over one device) it *is* the parent task: the
    results are identical. With several, each replica scores its queries
    against the candidates of every replica; ``candidate_ids`` and
    ``candidate_sampling_probability`` are gathered alike, so accidental-hit
    removal and logQ correction see the global batch too.

    Example:
        >>> import tensorflow as tf
        >>> task = CrossReplicaRetrieval(temperature=0.5)
        >>> query = tf.constant([[1.0, 0.0], [0.0, 1.0]])
        >>> float(task(query, query)) > 0
        True
    """

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
        """Computes the loss over the global batch; see ``tfrs.tasks.Retrieval.call``."""
        kwargs: dict[str, Any] = {
            "sample_weight": sample_weight,
            "compute_batch_metrics": compute_batch_metrics,
            "score_mask": score_mask,
        }
        if num_replicas() == 1:
            return super().call(
                query_embeddings, candidate_embeddings,
                candidate_sampling_probability=candidate_sampling_probability,
                candidate_ids=candidate_ids, compute_metrics=compute_metrics, **kwargs,
            )
        if score_mask is not None:
            raise invalid_argument(
                "score_mask", "be None when negatives are gathered across replicas",
                "a tensor", hint="Pass cross_replica_negatives=False to mask scores per replica.",
            )
        update_ops = []
        if compute_metrics and query_embeddings.shape.rank == 2:
            # Top-k metrics score the catalogue with the local rows and raw ids.
            update_ops = [
                metric.update_state(query_embeddings, candidate_embeddings,
                                    true_candidate_ids=candidate_ids, sample_weight=sample_weight)
                for metric in self._factorized_metrics
            ]
        parts = [candidate_embeddings]
        if candidate_ids is not None:
            parts.append(_comparable_ids(candidate_ids))
        if candidate_sampling_probability is not None:
            parts.append(tf.cast(candidate_sampling_probability, candidate_embeddings.dtype))
        gathered = list(cross_replica_concat(*parts))
        candidates = gathered.pop(0)
        ids = gathered.pop(0) if candidate_ids is not None else None
        probability = gathered.pop(0) if candidate_sampling_probability is not None else None
        with tf.control_dependencies([op for op in update_ops if op is not None]):
            return super().call(
                query_embeddings, candidates, candidate_sampling_probability=probability,
                candidate_ids=ids, compute_metrics=False, **kwargs,
            )
