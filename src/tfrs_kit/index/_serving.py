"""What an index saves: one ``tf.Module`` with the query tower, the catalogue and its searcher.

Its three ``tf.function`` s are the index's serving signatures. :class:`~tfrs_kit.Index`
calls them in memory, and a loaded SavedModel exposes the same functions, so what
is tested before saving is what is served.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit.index._backends import Backend

__all__ = ["ServingModule"]


class ServingModule(tf.Module):
    """The query tower, candidate embeddings and ids, and the searcher, as saved.

    Args:
        query_tower: The tower that embeds raw query features.
        ids: ``[candidates]`` candidate ids, in index order.
        embeddings: ``[candidates, dim]`` float32 candidate embeddings.
        id_dtype: ``tf.string`` or ``tf.int64``.
        k_max: The ``k`` of the default signature.
        backend: The search engine.
        params: The backend's options, resolved for this catalogue.
    """

    def __init__(self, query_tower: Any, ids: np.ndarray, embeddings: np.ndarray,
                 id_dtype: tf.DType, k_max: int, backend: Backend,
                 params: dict[str, Any]) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.embeddings = tf.Variable(embeddings, trainable=False, name="candidate_embeddings")
        self.ids = tf.Variable(tf.constant(ids, dtype=id_dtype), trainable=False,
                               name="candidate_ids")
        self.positions = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids, dtype=id_dtype), tf.range(len(ids), dtype=tf.int64)
            ),
            default_value=-1,
        )
        self.searcher = backend.make_searcher(self.embeddings, params)
        self.k_max = k_max
        specs = dict(query_tower.input_signature())
        id_spec = tf.TensorSpec([None], id_dtype, name="item_ids")
        k_spec = tf.TensorSpec([], tf.int32, name="k")
        exclude_spec = tf.TensorSpec([None, None], id_dtype, name="exclude")
        # No autograph: the graphs hold no tensor-dependent Python control flow, and
        # converting them costs more than the rest of building a small index.
        self.serve = tf.function(self._serve, input_signature=[specs], autograph=False)
        self.recommend = tf.function(self._recommend, autograph=False,
                                     input_signature=[specs, k_spec, exclude_spec])
        self.similar_items = tf.function(self._similar_items, autograph=False,
                                         input_signature=[id_spec, k_spec])
        # Saved beside the signatures: a loaded query tower keeps only training's traces.
        self.embed_queries = tf.function(self._embed_queries, input_signature=[specs],
                                         autograph=False)

    def _top_k(self, queries: tf.Tensor, k: tf.Tensor, exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        k = tf.minimum(k, tf.shape(self.ids)[0])
        scores, positions = self.searcher.search(queries, k, self.positions.lookup(exclude))
        # Slots left empty by exclusions (score -inf) hold the padding id, never a
        # real (possibly excluded) candidate; a NaN score counts as empty too.
        found = scores > tf.constant(-np.inf, scores.dtype)
        pad = tf.fill(tf.shape(positions), tf.constant("" if self.ids.dtype == tf.string
                                                       else -1, self.ids.dtype))
        return {"ids": tf.where(found, tf.gather(self.ids, positions), pad),
                "scores": tf.where(found, scores, tf.constant(-np.inf, scores.dtype))}

    def _serve(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        queries = self.query_tower(features, training=False)
        empty = tf.zeros([tf.shape(queries)[0], 0], dtype=self.ids.dtype)
        return self._top_k(queries, tf.constant(self.k_max), empty)

    def _recommend(self, features: dict[str, tf.Tensor], k: tf.Tensor,
                   exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._top_k(self.query_tower(features, training=False), k, exclude)

    def _embed_queries(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.query_tower(features, training=False)

    def _similar_items(self, item_ids: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        positions = self.positions.lookup(item_ids)
        queries = tf.gather(self.embeddings, tf.maximum(positions, 0))
        return self._top_k(queries, k, item_ids[:, None])
