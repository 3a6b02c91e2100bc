"""The shared part of every baseline: ids to a sparse user-item matrix, and scoring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit._errors import NotFittedError, invalid_argument
from tfrs_kit._validation import id_kind
from tfrs_kit.data._schema import Schema, resolve_schema
from tfrs_kit.data._table import TableLike, to_table

_MAX_SCORES = 1 << 24  # dense intermediate elements per block


class InteractionRecommender:
    """Base of the baselines: fits on an interaction log, scores the whole catalogue.

    Subclasses implement ``_fit_matrix(interactions)`` and ``_score_rows(rows)`` on the
    binary user-item matrix; users unseen in ``fit`` are scored by item popularity.
    """

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def fit(
        self, train: TableLike, *, user_id: str | None = None, item_id: str | None = None,
        schema: Schema | None = None,
    ) -> InteractionRecommender:
        """Learns from interactions; repeated (user, item) pairs count once.

        Args:
            train: The interactions (any accepted table).
            user_id: The user id column; default the schema's.
            item_id: The item id column; default the schema's.
            schema: The :class:`~tfrs_kit.Schema` that names the columns; default the
                one ``train`` carries, else ``Schema()``. Kept as ``schema_``, which
                :func:`~tfrs_kit.evaluation.evaluate` reads.

        Returns:
            ``self``.
        """
        self.schema_ = resolve_schema(train, schema=schema, user_id=user_id, item_id=item_id)
        user_id, item_id = self.schema_.user_id, self.schema_.item_id
        table = to_table(train, argument="train", columns=[user_id, item_id],
                         settings={user_id: "user_id", item_id: "item_id"})
        user_codes, users = pd.factorize(table[user_id], sort=True)
        item_codes, items = pd.factorize(table[item_id], sort=True)
        matrix = sp.csr_matrix(
            (np.ones(len(user_codes), dtype=np.float32), (user_codes, item_codes)),
            shape=(len(users), len(items)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        self.user_ids_ = np.asarray(users)
        self.item_ids_ = np.asarray(items)
        self.interactions_ = matrix
        self.item_popularity_ = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
        self._user_index = pd.Index(self.user_ids_)
        self._fit_matrix(matrix)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. Call "
                f"`fit(train)` before using it."
            )

    @property
    def item_ids(self) -> np.ndarray:
        """The catalogue (the items seen in ``fit``), in score-column order."""
        self._check_fitted()
        return self.item_ids_

    def score(self, user_ids: Any) -> np.ndarray:
        """Scores every catalogue item for each user: ``[len(user_ids), len(item_ids)]``.

        Users not seen in ``fit`` get the item popularity (distinct users per item).

        Args:
            user_ids: A 1-D array of user ids, of the same kind (int or str) as in ``fit``.

        Returns:
            A float32 array; higher is better.
        """
        self._check_fitted()
        ids = np.asarray(user_ids)
        if ids.ndim != 1:
            raise invalid_argument("user_ids", "be a 1-D array of user ids", ids)
        if len(ids) and id_kind(ids) != id_kind(self.user_ids_):
            raise invalid_argument(
                "user_ids", f"hold {id_kind(self.user_ids_)} ids, as in fit", ids,
                error=TypeError, hint="Convert the ids to the type used for training.",
            )
        rows = self._user_index.get_indexer(ids)
        scores = np.empty((len(ids), len(self.item_ids_)), dtype=np.float32)
        known = rows >= 0
        if known.any():
            scores[known] = self._score_rows(rows[known])
        scores[~known] = self._unseen_user_scores()
        return scores

    def _unseen_user_scores(self) -> np.ndarray:
        return self.item_popularity_

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _keep_top(similarity: np.ndarray, neighbors: int) -> sp.csr_matrix:
    """Each row's ``neighbors`` largest positive entries (ties: lower column first), sparse."""
    n_cols = similarity.shape[1]
    if neighbors < n_cols:
        kth = np.partition(similarity, n_cols - neighbors, axis=1)[:, n_cols - neighbors]
        above = similarity > kth[:, None]
        tied = similarity == kth[:, None]
        room = neighbors - above.sum(axis=1)
        keep = above | (tied & (np.cumsum(tied, axis=1) <= room[:, None]))
        similarity[~keep] = 0.0
    similarity[similarity < 0] = 0.0
    return sp.csr_matrix(similarity)


def _item_neighbors(
    n_items: int, neighbors: int, rows: Callable[[int, int], Any]
) -> sp.csr_matrix:
    """An item-item matrix built in row blocks ``rows(start, stop)`` (dense or sparse),
    without its diagonal, each row pruned to its ``neighbors`` largest positive entries."""
    block = max(1, _MAX_SCORES // n_items)
    parts = []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        weights = rows(start, stop)
        if sp.issparse(weights):
            parts.append(_keep_top_sparse(weights.tocoo(), neighbors, start))
            continue
        weights[np.arange(stop - start), np.arange(start, stop)] = 0.0
        parts.append(_keep_top(weights, neighbors))
    return sp.vstack(parts).tocsr().astype(np.float32)


def _keep_top_sparse(block: sp.coo_matrix, neighbors: int, offset: int) -> sp.csr_matrix:
    """:func:`_keep_top` of a sparse block whose row ``r`` is item ``offset + r``, its
    diagonal dropped: the same entries, without a dense row per item (a large
    catalogue's co-occurrences are mostly zero)."""
    keep = (block.data > 0) & (block.col != block.row + offset)
    row, col, value = block.row[keep], block.col[keep], block.data[keep]
    order = np.lexsort((col, -value, row))  # per row: largest first, ties by column
    row, col, value = row[order], col[order], value[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    kept = rank < neighbors
    return sp.csr_matrix((value[kept], (row[kept], col[kept])), shape=block.shape)
