"""Retrieve, then rank, in memory: the :class:`Cascade` and the recommender ``evaluate`` scores.

The exported artifact does the same in one SavedModel (``index/_cascade.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int
from tfrs_kit.data._table import Table, TableLike, to_table
from tfrs_kit.ranking._protocol import LOG_FEATURES, fit_cascade, with_popularity
from tfrs_kit.ranking._scoring import component_scores, history_positions
from tfrs_kit.towers._model_base import rows_by_key, user_positions

__all__ = ["Cascade", "is_ranker"]


def is_ranker(value: Any) -> bool:
    """Whether ``value`` is a :class:`~tfrs_kit.Ranker` (by what the cascade calls on it).

    Checked by behaviour, not by class: a cascade accepts any model that
    re-ranks like one.
    """
    return all(hasattr(value, name) for name in ("rerank", "query_tower", "candidate_tower",
                                                 "history_feature", "item_id"))


class Cascade:
    """A retriever's top ``retrieve_k`` candidates, re-ranked by a :class:`~tfrs_kit.Ranker`.

    Train one in one call with :meth:`Cascade.fit` (from a fitted retriever and
    its log), or wrap a ranker trained by hand with :meth:`Ranker.cascade
    <tfrs_kit.Ranker.cascade>`. It is what :func:`tfrs_kit.evaluate` scores
    (through :meth:`as_recommender`); serve it as one artifact with
    ``IndexBuilder(...).build(cascade, items)``, which records ``retrieve_k``.

    Args:
        retriever: A trained :class:`~tfrs_kit.TwoTowerRetrieval`.
        ranker: A trained :class:`~tfrs_kit.Ranker`.
        retrieve_k: Candidates retrieved per query, then re-ranked.

    Example:
        >>> import tfrs_kit as tk
        >>> log = {"user_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "y", "z"]}
        >>> vocabs = tk.VocabularyBuilder().fit(log)
        >>> def towers():
        ...     return (tk.Tower(vocabs, features=["user_id"], output_dim=4),
        ...             tk.Tower(vocabs, features=["item_id"], output_dim=4))
        >>> retriever, ranker = tk.TwoTowerRetrieval(*towers()), tk.Ranker(*towers())
        >>> cascade = ranker.cascade(retriever, retrieve_k=2)
        >>> tk.evaluate(cascade, {"user_id": ["b"], "item_id": ["x"]}, train=log,
        ...             k=1, metrics=["recall"]).to_dict().keys()
        dict_keys(['Cascade'])
    """

    def __init__(self, retriever: Any, ranker: Any, *, retrieve_k: int = 100) -> None:
        if not all(hasattr(retriever, name) for name in ("query_tower", "candidate_tower")):
            raise invalid_argument(
                "retriever", "be a TwoTowerRetrieval (with query_tower and candidate_tower)",
                type(retriever).__name__, error=TypeError)
        if not is_ranker(ranker):
            raise invalid_argument("ranker", "be a tfrs_kit Ranker", type(ranker).__name__,
                                   error=TypeError)
        self.retriever = retriever
        self.ranker = ranker
        self.retrieve_k = check_int("retrieve_k", retrieve_k, minimum=1)
        self.items_: pd.DataFrame | None = None  # set by fit: the catalogue, with popularity
        self.users_: pd.DataFrame | None = None  # ... and each user's latest query row
        self.helper_: Any = None  # ... and the retriever trained without the ranker's rows

    #: The item features :meth:`fit` derives from the log (log of 1 + the item's events,
    #: of 1 + its events in the latest 10% of the rows, the share of the rows since its
    #: first), which :meth:`with_features` adds to a catalogue.
    LOG_FEATURES: ClassVar[tuple[str, ...]] = LOG_FEATURES

    fit: Any = classmethod(fit_cascade)  # its docstring and signature are fit_cascade's

    def count_items(self, items: TableLike, log: TableLike) -> Cascade:
        """Records ``items`` with :data:`LOG_FEATURES` counted in ``log`` as ``items_``.

        What :meth:`fit` does with its whole log; call it to serve a cascade over a
        retriever retrained on a longer log (the popularity as of that log).
        Returns ``self``.

        Args:
            items: One row per item (the retriever's item id column).
            log: The interactions whose events are counted.
        """
        item_id = self.retriever.item_id
        frame = pd.DataFrame(dict(to_table(items, argument="items")))
        events = pd.DataFrame({item_id: to_table(log, argument="log")[item_id]})
        self.items_ = with_popularity(frame, events, item_id)
        return self

    def rerank_scores(self, scores: np.ndarray, users: TableLike, items: TableLike, *,
                      batch_size: int = 8192) -> np.ndarray:
        """First-stage ``scores`` with each row's top ``retrieve_k`` re-ranked.

        The cascade's own first stage is skipped: ``scores`` (``[users, items]``,
        excluded items at ``-inf``) may come from the retriever or from a blend
        that serves in its place. Each row's top ``retrieve_k`` get the ranker's
        scores, above every other item, as :meth:`as_recommender` orders them.

        Args:
            scores: ``[len(users), len(items)]`` first-stage scores.
            users: One row per score row, with the ranker's query features (and
                its history column, if it reads one).
            items: One row per score column, with both stages' candidate features
                (:meth:`with_features` adds those :meth:`fit` derived).
            batch_size: Pairs scored by the ranker's head at once.

        Returns:
            ``[len(users), len(items)]`` float64 scores.
        """
        table = self.with_features(items)
        users_table = to_table(users, argument="users")
        item_ids = np.asarray(table[self.ranker.item_id])
        scores = np.asarray(scores, np.float64)
        if scores.shape != (len(next(iter(users_table.values()))), len(item_ids)):
            raise invalid_argument("scores", "be [len(users), len(items)]", scores.shape)
        positions = np.arange(len(scores))
        recommender = _CascadeRecommender(
            self, item_ids=item_ids, items=table, user_ids=positions,
            users={str(k): np.asarray(v) for k, v in users_table.items()},
            seen=(positions[:0], item_ids[:0]), batch_size=batch_size, retrieve=False)
        return recommender._rerank(scores, positions)

    def with_features(self, items: TableLike) -> Table:
        """``items`` with the item features :meth:`fit` derived from the log (popularity).

        What ``IndexBuilder(...).build(cascade, items)`` stores; ``items`` as it is
        for a cascade built by hand.
        """
        read = [f for f in self.LOG_FEATURES if f in self.ranker.candidate_tower.features]
        if self.items_ is None or not read:
            return to_table(items, argument="items")
        table = pd.DataFrame(dict(to_table(items, argument="items")))
        item_id = self.retriever.item_id
        known = self.items_.set_index(item_id)
        for name in read:
            table[name] = table[item_id].map(known[name]).fillna(0.0).astype(np.float32)
        return to_table(table, argument="items")

    def __repr__(self) -> str:
        return f"Cascade(retrieve_k={self.retrieve_k})"

    def as_recommender(
        self,
        train: TableLike,
        *,
        user_id: str = "user_id",
        item_id: str | None = None,
        users: TableLike | None = None,
        items: TableLike | None = None,
        batch_size: int = 8192,
    ) -> _CascadeRecommender:
        """Adapts the cascade to the :class:`tfrs_kit.evaluation.Recommender` protocol.

        Each user's training items (in ``train``) are excluded before
        retrieval, as the served index excludes the ids it is given. The top
        ``retrieve_k`` are ordered by the ranker; the rest of the catalogue
        follows in the retriever's order, so any ``k`` can be evaluated
        (beyond ``retrieve_k`` it measures retrieval alone).

        Args:
            train: The training log: the users' seen items, and by default
                their query features (last row) and the items' features.
            user_id: The user id column.
            item_id: The item id column (default: the ranker's ``item_id``).
            users: One row per user with the query features of both stages.
            items: One row per item with the candidate features of both stages.
            batch_size: Pairs scored by the ranker's head at once.

        Raises:
            ValueError: ``retrieve_k`` larger than the catalogue, or a missing column.
        """
        item_id = item_id or self.ranker.item_id
        train_table = to_table(train, argument="train")
        items_table = rows_by_key(items if items is not None else train_table, item_id,
                                  [*self.retriever.candidate_tower.features,
                                   *self.ranker.candidate_tower.features], "items")
        history = [self.ranker.history_feature] if self.ranker.history_feature else []
        users_table = rows_by_key(users if users is not None else train_table, user_id,
                                  [*self.retriever.query_tower.features,
                                   *self.ranker.query_tower.features, *history], "users")
        n_items = len(items_table[item_id])
        if self.retrieve_k > n_items:
            raise invalid_argument(
                "retrieve_k", f"be at most the catalogue size ({n_items} items)",
                self.retrieve_k, hint="Retrieve fewer candidates, or pass a larger items= table.")
        return _CascadeRecommender(
            self, item_ids=items_table[item_id], items=items_table,
            user_ids=users_table[user_id], users=users_table,
            seen=(train_table[user_id], train_table[item_id]), batch_size=batch_size)


class _CascadeRecommender:
    """Scores users over a fixed catalogue: retrieval scores, the top re-ranked above the rest."""

    def __init__(self, cascade: Cascade, *, item_ids: np.ndarray, items: Table,
                 user_ids: np.ndarray, users: Table, seen: tuple[np.ndarray, np.ndarray],
                 batch_size: int, retrieve: bool = True) -> None:
        self.item_ids = item_ids
        self._cascade = cascade
        self._user_index = pd.Index(user_ids)
        self._batch_size = check_int("batch_size", batch_size, minimum=1)
        retriever, ranker = cascade.retriever, cascade.ranker
        # retrieve=False: the first stage's scores are given (Cascade.rerank_scores).
        self._user_embeddings = (retriever.query_tower.embed(users, verbose=False)
                                 if retrieve else None)
        self._item_embeddings = retriever.candidate_tower.embed(items, verbose=False)
        # The ranker's towers, once per user and item; only its head runs per pair.
        self._ranker_users = ranker.query_tower.embed(users, verbose=False)
        self._ranker_items = ranker.candidate_tower.embed(items, verbose=False)
        self._history = (history_positions(users[ranker.history_feature], pd.Index(item_ids))
                         if ranker.history_feature else None)
        self._next_items = ranker.next_item_positions(item_ids)
        self._query_vectors = None  # the retriever's, for the score's components
        if getattr(ranker, "components", ()):
            self._query_vectors = (self._user_embeddings if retrieve else
                                   retriever.query_tower.embed(users, verbose=False))
        codes = self._user_index.get_indexer(seen[0])
        positions = pd.Index(item_ids).get_indexer(seen[1])
        known = (codes >= 0) & (positions >= 0)
        order = np.argsort(codes[known], kind="stable")
        self._seen_items = positions[known][order]
        self._seen_bounds = np.searchsorted(codes[known][order], np.arange(len(user_ids) + 1))

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        positions = user_positions(self._user_index, user_ids)
        assert self._user_embeddings is not None  # built with retrieve=True
        scores = (self._user_embeddings[positions] @ self._item_embeddings.T).astype(np.float64)
        starts, stops = self._seen_bounds[positions], self._seen_bounds[positions + 1]
        rows = np.repeat(np.arange(len(positions)), stops - starts)
        seen = np.concatenate([self._seen_items[a:b] for a, b in zip(starts, stops, strict=True)]
                              or [np.zeros(0, np.int64)])
        scores[rows, seen] = -np.inf
        return self._rerank(scores, positions)

    def _rerank(self, scores: np.ndarray, users: np.ndarray) -> np.ndarray:
        """``scores`` with each row's top ``retrieve_k`` set to ranker scores above the rest."""
        n = self._cascade.retrieve_k
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        retrieval = np.take_along_axis(scores, top, axis=1)
        valid = retrieval > -np.inf
        retrieval = np.where(valid, retrieval, 0.0).astype(np.float32)  # seen items are not kept
        listed = np.where(valid, top, -1)  # the similarities' empty slots
        ranker = self._cascade.ranker
        step = max(1, self._batch_size // n)
        ranked = np.concatenate([np.zeros((0, n))] + [
            ranker.rerank(tf.constant(self._ranker_users[users[i:i + step]], tf.float32),
                          tf.constant(self._ranker_items[top[i:i + step]], tf.float32),
                          tf.constant(retrieval[i:i + step]), tf.constant(valid[i:i + step]),
                          self._similarity(users[i:i + step], listed[i:i + step]),
                          self._components(users[i:i + step], top[i:i + step]),
                          training=False).numpy() for i in range(0, len(users), step)])
        ranked = ranked.astype(np.float64)
        finite = np.where(np.isfinite(scores), scores, -np.inf).max(axis=1, keepdims=True)
        floor = np.where(valid, ranked, np.inf).min(axis=1, keepdims=True)
        base = np.where(np.isfinite(finite), finite, 0.0) + 1.0
        lifted = np.where(valid, base + ranked - np.where(np.isfinite(floor), floor, 0.0),
                          -np.inf)
        out = scores.copy()
        np.put_along_axis(out, top, lifted, axis=1)
        return out

    def _similarity(self, users: np.ndarray, top: np.ndarray) -> tf.Tensor | None:
        """The ranker's history similarities of ``top`` (``-1``: an empty slot; ``None``
        without ``history``)."""
        if self._history is None:
            return None
        history, ranker = self._history[users], self._cascade.ranker
        return ranker.history_similarity(self._item_embeddings[np.maximum(history, 0)],
                                         history >= 0, self._item_embeddings[np.maximum(top, 0)],
                                         (history, top, self._next_items))

    def _components(self, users: np.ndarray, top: np.ndarray) -> tf.Tensor | None:
        """The retriever's scores of ``top`` split by component (``None`` without)."""
        if self._query_vectors is None:
            return None
        return component_scores(self._query_vectors[users], self._item_embeddings[top],
                                self._cascade.ranker.components)
