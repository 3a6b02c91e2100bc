"""The Recipe's model as a :class:`~tfrs_kit.evaluation.Recommender`, new users included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit.evaluation._evaluate import _top_k
from tfrs_kit.evaluation._metrics import _ranking_from_hits

__all__ = ["RecipeRecommender", "per_user_scores"]

_SCORED_AT_ONCE = 20_000_000  # users x items scored at once


class RecipeRecommender:
    """Scores users over the catalogue from the query tower's embeddings.

    A user of the training log is scored from their query features at its end.
    A user the log never saw has no trained id and no history: they are scored
    as the average known user (the mean query embedding), which ranks what most
    users like first, as the baselines' popularity fallback does.

    Args:
        model: The trained two-tower model.
        queries: One row per known user: the query tower's features.
        items: One row per candidate: the candidate tower's features.
        user_id: The user id column.
        item_id: The item id column.
    """

    display_name = "Recipe"  # the name tk.evaluate reports it under

    def __init__(self, model: Any, *, queries: pd.DataFrame, items: pd.DataFrame,
                 user_id: str, item_id: str) -> None:
        self._set(queries[user_id], model.query_tower.embed(queries, verbose=False),
                  items[item_id].to_numpy(), model.candidate_tower.embed(items, verbose=False))

    @classmethod
    def from_embeddings(cls, user_ids: Any, query_embeddings: np.ndarray, item_ids: Any,
                        item_embeddings: np.ndarray) -> RecipeRecommender:
        """The recommender of embeddings computed before (one row per user and per item)."""
        recommender = cls.__new__(cls)
        recommender._set(user_ids, query_embeddings, item_ids, item_embeddings)
        return recommender

    def _set(self, user_ids: Any, query_embeddings: np.ndarray, item_ids: Any,
             item_embeddings: np.ndarray) -> None:
        self._known = pd.Index(user_ids)
        self.query_embeddings = np.asarray(query_embeddings)
        self._average = self.query_embeddings.mean(axis=0)
        self.item_ids = np.asarray(item_ids)
        self.item_embeddings = np.asarray(item_embeddings)

    def with_query_scale(self, scale: np.ndarray) -> RecipeRecommender:
        """A copy whose query embeddings are multiplied by ``scale`` (one factor per
        dimension), e.g. to weigh the parts of a joined embedding."""
        return self.from_embeddings(self._known, self.query_embeddings * scale, self.item_ids,
                                    self.item_embeddings)

    def with_item_embeddings(self, item_embeddings: np.ndarray) -> RecipeRecommender:
        """A copy that scores the same items from other embeddings (one row per item)."""
        return self.from_embeddings(self._known, self.query_embeddings, self.item_ids,
                                    item_embeddings)

    def score(self, user_ids: Any) -> np.ndarray:
        """``[users, items]`` scores, rows in the order of ``user_ids``."""
        positions = self._known.get_indexer(np.asarray(user_ids))
        queries = np.where((positions >= 0)[:, None], self.query_embeddings[positions],
                           self._average[None, :])
        return queries @ self.item_embeddings.T


def per_user_scores(recommender: Any, known: pd.DataFrame, holdout: pd.DataFrame, c: Any,
                    metric: str) -> np.ndarray:
    """``metric`` (``"ndcg@10"``...) of each of ``holdout``'s users (in order of first
    appearance), as ``tk.evaluate`` scores them: every candidate of ``recommender``
    ranked, the user's ``known`` items masked, each distinct held-out item relevant.

    What the Recipe's paired choices compare, user by user (the ranking stage's keep or
    drop, an update's weights and guard); ``c`` names the columns (``user_id``,
    ``item_id``). Users are scored :data:`_SCORED_AT_ONCE` scores at a time.
    """
    name, k = metric.split("@")
    items = pd.Index(recommender.item_ids)
    user_rows, user_ids = pd.factorize(holdout[c.user_id])
    pairs = pd.DataFrame({"user": user_rows, "item": items.get_indexer(holdout[c.item_id]),
                          "id": holdout[c.item_id].to_numpy()}).drop_duplicates(["user", "id"])
    relevant_count = np.bincount(pairs["user"], minlength=len(user_ids))
    pairs = pairs[pairs["item"] >= 0]  # an item not in the catalogue: relevant, never hit
    relevant = sp.csr_matrix((np.ones(len(pairs)), (pairs["user"], pairs["item"])),
                             shape=(len(user_ids), len(items)))
    seen = known[known[c.user_id].isin(user_ids)]
    seen_rows = pd.Index(user_ids).get_indexer(seen[c.user_id])
    seen_items = items.get_indexer(seen[c.item_id])
    found = seen_items >= 0  # sorted by user: each block's rows are one slice
    order = np.argsort(seen_rows[found], kind="stable")
    seen_rows, seen_items = seen_rows[found][order], seen_items[found][order]
    step = max(1, _SCORED_AT_ONCE // max(len(items), 1))
    hits = [np.zeros((0, min(int(k), len(items))), bool)]
    for start in range(0, len(user_ids), step):
        scores = np.asarray(recommender.score(np.asarray(user_ids[start:start + step])),
                            np.float64)
        lo, hi = np.searchsorted(seen_rows, [start, start + len(scores)])
        scores[seen_rows[lo:hi] - start, seen_items[lo:hi]] = -np.inf
        scores[np.isnan(scores)] = -np.inf  # a broken model's NaN: never a hit
        top, values = _top_k(scores, min(int(k), len(items)))  # a stable argsort's, faster
        rows = np.arange(start, start + len(scores))[:, None]
        hits.append((relevant[rows, top].toarray() > 0) & np.isfinite(values))
    return _ranking_from_hits(np.concatenate(hits), relevant_count, int(k))[name]
