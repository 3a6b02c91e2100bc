"""The Recipe's model as a :class:`~tfrs_kit.evaluation.Recommender`, new users included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RecipeRecommender"]


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
