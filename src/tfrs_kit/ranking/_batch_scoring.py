"""The ranker's checks of its inputs and its scoring of tables and arrays, in batches.

:class:`RankerScoring` is the base of :class:`~tfrs_kit.Ranker`: what turns
tables or embeddings into scores through the ranker's own ``call`` and
``score_embeddings``, apart from its layers and its training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_features, check_int
from tfrs_kit.data._table import Table, TableLike, num_rows, to_table
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.ranking._scoring import history_similarity, list_standardise, retrieval_scores
from tfrs_kit.towers._model_base import TwoTowerModel

__all__ = ["RankerScoring"]


class RankerScoring(TwoTowerModel):
    """Scores of tables (``score``, ``score_pairs``), of tower outputs (``score_vectors``)
    and of retrieved lists (``rerank``).

    The subclass provides the towers, ``_inputs``, ``retrieval_score``,
    ``history_feature``, ``recent``, ``components``, the blend weights and
    ``score_embeddings``.
    """

    def _check_no_history(self, method: str) -> None:
        if self.components:
            raise invalid_argument(
                "self", f"be a ranker without components to {method}",
                f"components={self.components!r}",
                hint="Train it with fit_lists and score it through ranker.cascade(...) or the "
                "exported cascade, which provide the retrieval score's components.")
        if self.history_feature:
            raise invalid_argument(
                "self", f"be a ranker without history_feature to {method}",
                f"history_feature={self.history_feature!r}",
                hint="Train it with fit_lists and score it through ranker.cascade(...) or the "
                "exported cascade, which provide the history similarities.")

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

    def history_similarity(self, history: tf.Tensor, valid: tf.Tensor, candidates: tf.Tensor,
                           positions: tuple[Any, Any, Any] | None = None) -> tf.Tensor:
        """:meth:`rerank`'s ``similarity``: ``[batch, n, len(recent)]`` cosines of each of the
        ``[batch, n, d]`` candidates with the mean of the last ``recent`` items of the
        ``[batch, h, d]`` history (retriever embeddings; ``valid`` ``[batch, h]`` marks them).

        With ``next_items``, its two columns follow (``[batch, n, len(recent) + 2]``), from
        ``positions``: the history's and the candidates' positions in the caller's
        catalogue (``-1``: none, or an empty slot of the list) and
        :meth:`next_item_positions` of that catalogue.
        """
        similarity = history_similarity(history, valid, candidates, self.recent)
        if self.next_items is None:
            return similarity
        if positions is None:
            raise invalid_argument("positions", "be given to a ranker with next_items", None)
        history_at, candidates_at, mapping = (tf.cast(p, tf.int64) for p in positions)

        def known(at: tf.Tensor) -> tf.Tensor:  # the catalogue's positions -> the model's
            return tf.where(at >= 0, tf.gather(mapping, tf.maximum(at, 0)), -1)

        return tf.concat([similarity, self.next_items.features(
            known(history_at), known(candidates_at), candidates_at >= 0)], axis=2)

    def next_item_positions(self, ids: Any) -> np.ndarray:
        """Each of ``ids``' position in the ``next_items`` model (``-1``: unknown to it)."""
        if self.next_items is None:
            return np.zeros(0, np.int64)
        return self.next_items.index.get_indexer(pd.Index(ids))

    def rerank(self, query: tf.Tensor, candidates: tf.Tensor, retrieval: tf.Tensor,
               found: tf.Tensor, similarity: tf.Tensor | None = None,
               components: tf.Tensor | None = None, *,
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
            similarity: ``[batch, n, len(recent)]`` history similarities (and the
                next-item columns: :meth:`history_similarity`), with ``history_feature``.
            components: ``[batch, n, len(components) + 1]`` the retriever's score of
                each candidate split by component (``component_scores``), with
                ``components``; standardised here within each list.
            training: Keras's training flag.
        """
        n = tf.shape(candidates)[1]
        retrieval = tf.cast(retrieval, tf.float32)
        standard = list_standardise(retrieval, found)
        given = None
        if self.retrieval_score:  # fit_lists trains on z, fit on the raw score
            given = tf.reshape(tf.where(self.per_list > 0.5, standard, retrieval), [-1])
        if similarity is not None:
            similarity = tf.reshape(similarity, [-1, len(self._similarity_columns)])
        if components is not None and self.components:
            components = tf.reshape(tf.stack(
                [list_standardise(part, found) for part in tf.unstack(
                    tf.cast(components, tf.float32), num=len(self.components) + 1, axis=2)],
                axis=2), [-1, len(self.components) + 1])
        ranked = self.score_embeddings(
            tf.repeat(query, n, axis=0), tf.reshape(candidates, [-1, tf.shape(candidates)[2]]),
            given, similarity, components, training=training)
        ranked = tf.reshape(tf.cast(ranked, tf.float32), tf.shape(retrieval))
        blended = self.retrieval_weight * standard + self.ranker_weight * ranked
        return tf.where(found, blended, tf.constant(-np.inf, tf.float32))
