"""The cascade as one artifact: retrieve ``retrieve_k`` candidates, re-rank them, return the top k.

:class:`CascadeServingModule` is a :class:`~tfrs_kit.index._serving.ServingModule`
whose ``serving_default`` and ``recommend`` functions also hold the ranker and its
candidate tower's output for every candidate (computed once, at build time), so the
exported SavedModel serves both stages with TensorFlow alone: per request only the
ranker's query tower and its head run. For one query the ranker's work after retrieval
is one XLA program (``score``): hundreds of small operations (the next-item model's
attention blocks above all) cost more in dispatch than in arithmetic on one query. XLA
compiles one program per input shape: the history's slots the ranker reads are packed
into one static width before it (:meth:`CascadeServingModule._latest`), so one program,
compiled by the first single query (the server's warm-up), serves any history; a batch
of queries runs the same function as a graph. ``similar_items`` stays the retriever's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_features, check_int, padding_value
from tfrs_kit.data._table import Table
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.index._backends import Backend, get_backend
from tfrs_kit.index._index import Index
from tfrs_kit.index._serving import ServingModule
from tfrs_kit.ranking import Cascade, Ranker
from tfrs_kit.ranking._scoring import component_scores
from tfrs_kit.ranking._sequence import pack

__all__ = ["CascadeServingModule", "build_cascade", "check_cascade", "unwrap_cascade"]


class CascadeServingModule(ServingModule):
    """The retrieval module plus the ranker and each candidate's ranker features.

    Args:
        query_tower: The retriever's query tower.
        ids: ``[candidates]`` candidate ids, in index order.
        embeddings: ``[candidates, dim]`` retriever candidate embeddings.
        id_dtype: ``tf.string`` or ``tf.int64``.
        k_max: The ``k`` of the default signature.
        backend: The search engine.
        params: The backend's options.
        ranker: The trained ranker.
        ranker_embeddings: ``[candidates, d]`` the ranker's candidate tower
            outputs, in index order: computed once, only the ranker's query
            tower and its head run per request.
        retrieve_k: Candidates retrieved per query and re-ranked.
        specs: The signature's query features: both stages' query towers'.
    """

    def __init__(self, query_tower: Any, ids: np.ndarray, embeddings: np.ndarray,
                 id_dtype: tf.DType, k_max: int, backend: Backend, params: dict[str, Any], *,
                 ranker: Ranker, ranker_embeddings: np.ndarray, retrieve_k: int,
                 specs: dict[str, tf.TensorSpec]) -> None:
        super().__init__(query_tower, ids, embeddings, id_dtype, k_max, backend, params)
        self.ranker = ranker
        self.retrieve_k = retrieve_k
        self.ranker_embeddings = tf.Variable(ranker_embeddings, trainable=False,
                                             name="ranker_candidate_embeddings")
        # Each index position's in the ranker's next-item model (-1: unknown to it).
        self.next_items = tf.constant(ranker.next_item_positions(ids), tf.int64)
        k_spec = tf.TensorSpec([], tf.int32, name="k")
        exclude_spec = tf.TensorSpec([None, None], id_dtype, name="exclude")
        self.score = tf.function(self._score, autograph=False, jit_compile=True)
        self.serve = tf.function(self._serve, input_signature=[specs], autograph=False)
        self.recommend = tf.function(self._recommend, autograph=False,
                                     input_signature=[specs, k_spec, exclude_spec])

    def _serve(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = tf.shape(next(iter(features.values())))[0]
        empty = tf.zeros([rows, 0], dtype=self.ids.dtype)
        return self._rerank(features, tf.constant(self.k_max), empty)

    def _recommend(self, features: dict[str, tf.Tensor], k: tf.Tensor,
                   exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._rerank(features, k, exclude)

    def _rerank(self, features: dict[str, tf.Tensor], k: tf.Tensor,
                exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        """Retrieves ``retrieve_k`` (exclusions left out), scores them with the ranker, keeps k."""
        n = self.retrieve_k
        queries = self.query_tower(features, training=False)
        scores, positions = self.searcher.search(queries, tf.constant(n),
                                                 self.positions.lookup(exclude))
        history = None
        if self.ranker.history_feature:
            history = self._latest(self.positions.lookup(features[self.ranker.history_feature]))
        inputs = (queries, self.ranker.query_tower(features, training=False), scores, positions,
                  history)
        ranked = tf.cond(tf.shape(scores)[0] == 1, lambda: self.score(*inputs),
                         lambda: self._score(*inputs))
        top, order = tf.math.top_k(ranked, k=tf.minimum(k, n))
        chosen = tf.gather(positions, order, batch_dims=1)
        kept = top > tf.constant(-np.inf, top.dtype)
        pad = tf.fill(tf.shape(chosen), tf.constant(
            padding_value("string" if self.ids.dtype == tf.string else "int64"), self.ids.dtype))
        return {"ids": tf.where(kept, tf.gather(self.ids, chosen), pad),
                "scores": tf.where(kept, top, tf.constant(-np.inf, top.dtype))}

    def _latest(self, history: tf.Tensor) -> tf.Tensor:
        """``[batch, width]``: the ``[batch, h]`` history's slots the ranker reads (the
        latest ``max(recent)`` known items, and its next-item model's latest ``max_length``),
        in order from slot 0, ``-1`` after them: one static width, whatever ``h``."""
        valid = history >= 0
        keep = tf.cumsum(tf.cast(valid, tf.int32), axis=1, reverse=True) <= max(self.ranker.recent)
        width = max(self.ranker.recent)
        if self.ranker.next_items is not None:
            known = valid & (tf.gather(self.next_items, tf.maximum(history, 0)) >= 0)
            latest = tf.cumsum(tf.cast(known, tf.int32), axis=1, reverse=True)
            keep |= known & (latest <= self.ranker.next_items.max_length)
            width += self.ranker.next_items.max_length
        return tf.cast(pack(tf.where(valid & keep, history, -1), width), tf.int64) - 1

    def _score(self, queries: tf.Tensor, query: tf.Tensor, scores: tf.Tensor,
               positions: tf.Tensor, history: tf.Tensor | None) -> tf.Tensor:
        """The ranker's ``[batch, retrieve_k]`` scores of the retrieved ``positions`` (``-inf``
        in empty slots), ``history`` packed by :meth:`_latest`: from static shapes,
        ``score`` compiles it with XLA for one query (one fused program, not hundreds of
        small operations); a batch runs it as a graph (no program per batch size to
        compile, and its operations are shared by its rows)."""
        found = scores > tf.constant(-np.inf, scores.dtype)
        retrieved = tf.gather(self.embeddings, tf.maximum(positions, 0))
        similarity = None
        if history is not None:  # from the index's own candidate embeddings
            similarity = self.ranker.history_similarity(
                tf.gather(self.embeddings, tf.maximum(history, 0)), history >= 0, retrieved,
                (history, tf.where(found, positions, -1), self.next_items))
        components = None
        if self.ranker.components:  # the searcher's score split by the blend's columns
            components = component_scores(queries, retrieved, self.ranker.components)
        return self.ranker.rerank(  # the searcher's scores; empty slots masked
            query, tf.gather(self.ranker_embeddings, tf.maximum(positions, 0)),
            tf.where(found, scores, tf.zeros_like(scores)), found, similarity, components,
            training=False)


class _NoRefresh:
    """The builder of a cascade index: ``with_candidates`` would drop the ranker, so it refuses."""

    def _refresh(self, *args: Any, **kwargs: Any) -> Index:
        raise invalid_argument(
            "self", "be a retrieval-only index to get new candidates", "a cascade index",
            hint="Rebuild it: IndexBuilder(...).build(model, candidates, ranker=ranker, "
            "retrieve_k=N) with the whole new catalogue.")


def unwrap_cascade(model: Any, candidates: Any, ranker: Any,
                   retrieve_k: Any) -> tuple[Any, Any, Any, Any]:
    """A :class:`~tfrs_kit.Cascade` given as ``model``: its retriever, ranker and ``retrieve_k``.

    Its catalogue gets the item features the cascade derived from its log
    (see :meth:`Cascade.with_features <tfrs_kit.Cascade.with_features>`).
    Anything else passes through unchanged.
    """
    if not isinstance(model, Cascade):
        return model, candidates, ranker, retrieve_k
    if ranker is not None or (retrieve_k is not None and retrieve_k != model.retrieve_k):
        raise invalid_argument(
            "ranker" if ranker is not None else "retrieve_k",
            "be left out when building from a Cascade (it holds its ranker and retrieve_k)",
            ranker if ranker is not None else retrieve_k,
            hint="Pass the cascade alone, or its retriever with ranker= and retrieve_k=.")
    return model.retriever, model.with_features(candidates), model.ranker, model.retrieve_k


def check_cascade(ranker: Any, retrieve_k: Any, *, model: Any, candidates: Table,
                  num_candidates: int, k_max: int) -> dict[str, tf.TensorSpec]:
    """Checks a cascade before any work; returns the signature's query feature specs.

    Raises:
        TypeError: ``ranker`` is not a Ranker, or ``retrieve_k`` not an integer.
        ValueError: ``retrieve_k`` below ``k_max`` or above the catalogue size, a
            ranker candidate feature missing from ``candidates`` (the artifact
            could not provide it at serving), or a query feature both stages
            read with different types.
    """
    if not isinstance(ranker, Ranker):
        raise invalid_argument("ranker", "be a tfrs_kit Ranker", type(ranker).__name__,
                               error=TypeError)
    if retrieve_k is None:
        raise invalid_argument("retrieve_k", "be given with a ranker (the candidates "
                               "retrieved per query and re-ranked)", None)
    if not k_max <= check_int("retrieve_k", retrieve_k) <= num_candidates:
        raise invalid_argument(
            "retrieve_k", f"be from k_max ({k_max}) to the catalogue size ({num_candidates})",
            retrieve_k, hint="The cascade returns up to k_max of the retrieve_k candidates it "
            "re-ranks: build with a smaller k_max, or retrieve more.")
    for name in ranker.candidate_tower.features:
        if name not in candidates:
            raise invalid_argument(
                "ranker", "read only candidate features the index can serve (columns of "
                "`candidates`, stored in the artifact)", name,
                hint=f"Add the column {name!r} to the candidates table, or train the ranker "
                "without it.")
    check_features("candidates", candidates, getattr(ranker.candidate_tower, "vocabularies", {}),
                   ranker.candidate_tower.features)
    specs = dict(model.query_tower.input_signature())
    if ranker.history_feature and ranker.history_feature not in specs:
        raise invalid_argument(
            "ranker", "read a history the retriever's query tower reads (the request carries "
            "only the two stages' query features)", ranker.history_feature,
            hint=f"Add {ranker.history_feature!r} to the retriever's query features, or train the "
            "ranker without history_feature=.")
    for name, spec in ranker.query_tower.input_signature().items():
        other = specs.setdefault(name, spec)
        if other.dtype != spec.dtype or other.shape.rank != spec.shape.rank:
            raise invalid_argument(
                "ranker", "read each query feature with the retriever's type", name,
                hint=f"The retriever reads it as {other.dtype.name} {other.shape}, the ranker "
                f"as {spec.dtype.name} {spec.shape}.")
    return specs


def build_cascade(builder: Any, model: Any, ranker: Ranker, candidates: Table, ids: np.ndarray,
                  embeddings: np.ndarray, id_dtype: tf.DType, *, retrieve_k: Any,
                  specs: dict[str, tf.TensorSpec]) -> Index:
    """The cascade :class:`Index` over ``candidates`` (already checked by :func:`check_cascade`)."""
    retrieve_k = int(retrieve_k)
    if ranker.components and ranker.components[-1] >= embeddings.shape[1]:
        raise invalid_argument(
            "ranker", f"split the retriever's {embeddings.shape[1]}-wide embedding into "
            "components (its bounds within it)", f"components={list(ranker.components)}",
            hint="Serve the ranker with the retriever (or blend) it was trained with.")
    backend = get_backend(builder.backend, builder.backend_options, len(ids))
    params = backend.resolve(len(ids), embeddings.shape[1], retrieve_k)
    vocabularies = _vocabularies(model.query_tower) | _vocabularies(ranker.query_tower)
    ranker_embeddings = ranker.candidate_tower.embed(candidates, batch_size=builder.batch_size,
                                                     verbose=False).astype(np.float32)
    module = CascadeServingModule(
        model.query_tower, ids, embeddings, id_dtype, builder.k_max, backend, params,
        ranker=ranker, ranker_embeddings=ranker_embeddings, retrieve_k=retrieve_k,
        specs=specs)
    return Index(module, ids=ids, k_max=builder.k_max, backend=backend.name,
                 backend_options=params, query_specs=specs, id_dtype=id_dtype,
                 builder=_NoRefresh(), vocabularies=vocabularies, retrieve_k=retrieve_k)


def _vocabularies(tower: Any) -> Vocabularies:
    vocabularies = getattr(tower, "vocabularies", None)
    return vocabularies if isinstance(vocabularies, Vocabularies) else Vocabularies()
