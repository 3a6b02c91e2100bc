"""Popularity, item- and user-based nearest neighbours, and EASE."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_fraction, check_int, check_no_missing, check_number
from tfrs_kit.baselines._base import (
    _MAX_SCORES,
    InteractionRecommender,
    _item_neighbors,
    _keep_top,
)
from tfrs_kit.data._schema import UNSET, Schema, resolve_schema
from tfrs_kit.data._table import Table, TableLike, to_table

__all__ = ["EASE", "ItemKNN", "Popularity", "RP3beta", "UserKNN"]


class Popularity(InteractionRecommender):
    """Recommends the items most users interacted with, the same list for everyone.

    With ``window`` below 1, only the latest events count: the ``ceil(window * n)``
    latest of the ``n`` rows of ``train`` by ``timestamp``, and every other row at the
    time of the earliest of them (so the window does not depend on row order). Where what
    everyone takes changes over time (trends, new releases), recent popularity predicts
    a temporal split far better than all-time popularity; :func:`tune` chooses the
    window on a validation slice.

    Scores: with ``window=1.0``, each item's number of distinct users. With a window,
    items are ordered by their distinct users in the window, and items tied there (items
    nobody took in the window too) by their distinct users over all of ``train``; the
    score is the item's place in that order, 1 for the last, equal for items tied on
    both counts. Every user, seen in ``fit`` or not, gets the same scores.

    Args:
        window: The latest share of the events that counts, in (0, 1]; 1.0 counts all.

    Example:
        >>> log = {"user_id": [1, 2, 3, 4, 4, 5], "item_id": ["a", "a", "a", "b", "c", "c"],
        ...        "timestamp": [1, 2, 3, 4, 5, 6]}
        >>> Popularity().fit(log).score([1]).tolist()  # distinct users: a 3, b 1, c 2
        [[3.0, 1.0, 2.0]]
        >>> Popularity(window=0.5).fit(log).score([1]).tolist()  # latest 3: a 0, b 1, c 2
        [[1.0, 2.0, 3.0]]
        >>> # latest 2: c 2; a and b 0 there, so a (3 users overall) before b (1)
        >>> Popularity(window=0.2).fit(log).score([1]).tolist()
        [[2.0, 1.0, 3.0]]
    """

    def __init__(self, *, window: float = 1.0) -> None:
        self.window = check_fraction("window", window, allow_one=True)

    def _params(self) -> dict[str, object]:
        return {"window": self.window}

    def fit(
        self, train: TableLike, *, user_id: str | None = None, item_id: str | None = None,
        timestamp: Any = UNSET, schema: Schema | None = None,
    ) -> Popularity:
        """Counts each item's distinct users among the latest ``window`` share of events.

        Args:
            train: The interactions (any accepted table).
            user_id: The user id column; default the schema's.
            item_id: The item id column; default the schema's.
            timestamp: The column that orders the events in time (numbers, datetimes or
                sortable strings), or ``None`` for none; read only when ``window`` is
                below 1. Default the schema's.
            schema: The :class:`~tfrs_kit.Schema` that names the columns; default the
                one ``train`` carries, else ``Schema()``. Kept as ``schema_``.

        Returns:
            ``self``.

        Raises:
            ValueError: ``window`` is below 1 and ``train`` has no ``timestamp`` column,
                or one with missing values.
        """
        columns = resolve_schema(train, schema=schema, user_id=user_id, item_id=item_id,
                                 timestamp=timestamp)
        if timestamp is None:  # given as None: no time column
            columns = columns.replace(timestamp=None)
        if self.window == 1.0:
            super().fit(train, schema=columns)
            self.scores_ = self.item_popularity_
            return self
        user_id, item_id = columns.user_id, columns.item_id
        table = self._timed_table(train, user_id, item_id, columns.timestamp)
        super().fit(table, schema=columns)
        timestamp = columns.timestamp
        recent = _latest_events(table[str(timestamp)], self.window)
        n_items = len(self.item_ids_)
        users = self._user_index.get_indexer(table[user_id][recent]).astype(np.int64)
        items = pd.Index(self.item_ids_).get_indexer(table[item_id][recent])
        pairs = np.unique(users * n_items + items)  # a repeated (user, item) counts once
        in_window = np.bincount(pairs % n_items, minlength=n_items).astype(np.int64)
        overall = self.item_popularity_.astype(np.int64)
        key = in_window * (int(overall.max()) + 1) + overall
        place = np.unique(key, return_inverse=True)[1].ravel()
        self.scores_ = (place + 1).astype(np.float32)
        return self

    def _timed_table(self, train: TableLike, user_id: str, item_id: str,
                     timestamp: str | None) -> Table:
        """``train``'s id and time columns; without a time column, an error on ``window``."""
        rule = "be 1.0 (all events) unless `train` has a timestamp column to order them by"
        if timestamp is None:
            raise invalid_argument("window", rule, self.window, hint=(
                "Received timestamp=None. Pass timestamp= the name of your time column, "
                "or window=1.0 to count all events."))
        try:
            table = to_table(train, argument="train", columns=[user_id, item_id, timestamp],
                             settings={user_id: "user_id", item_id: "item_id",
                                       timestamp: "timestamp"})
        except ValueError as error:
            if f"must have a column {timestamp!r}" not in str(error):
                raise
            raise invalid_argument("window", rule, self.window, hint=(
                f"{error} Or pass window=1.0 to count all events.")) from None
        check_no_missing(f"train[{timestamp!r}]", table[timestamp], what="timestamps")
        return table

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        pass

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(rows), len(self.scores_)))

    def _unseen_user_scores(self) -> np.ndarray:
        return self.scores_


def _latest_events(times: np.ndarray, window: float) -> np.ndarray:
    """A mask of the ``ceil(window * n)`` latest of ``n`` events, and every other event
    at the time of the earliest of them."""
    order = pd.factorize(times, sort=True)[0]  # codes that sort like the times
    # round: 0.07 * 100 is 7.000000000000001 in floating point, and its ceiling 8.
    kept = max(1, math.ceil(round(window * len(order), 9)))
    cut = np.partition(order, len(order) - kept)[len(order) - kept]
    return order >= cut


def _cosine_block(
    left: sp.csr_matrix, right: sp.csr_matrix, left_norms: np.ndarray, right_norms: np.ndarray,
    shrinkage: float,
) -> np.ndarray:
    """Dense cosine similarities ``left @ right.T``, shrunk: ``dot / (|a||b| + shrinkage)``."""
    dot = (left @ right.T).toarray()
    return dot / (left_norms[:, None] * right_norms[None, :] + shrinkage)


class ItemKNN(InteractionRecommender):
    """Item-based collaborative filtering with cosine similarity.

    ``score(u, j) = sum of sim(i, j)`` over the items ``i`` of user ``u`` for which ``j`` is
    among the ``neighbors`` most similar items. ``sim(i, j) = |U_i ∩ U_j| /
    (sqrt(|U_i| |U_j|) + shrinkage)``, where ``U_i`` are the users of item ``i``.

    Args:
        neighbors: The neighbourhood size kept per item.
        shrinkage: Added to the denominator; damps similarities of rare items.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]}
        >>> model = ItemKNN(neighbors=5).fit(log)
        >>> model.score([3]).astype(float).round(2).tolist()  # user 3 saw "a": "b" comes next
        [[0.0, 0.82]]
    """

    def __init__(self, *, neighbors: int = 100, shrinkage: float = 0.0) -> None:
        self.neighbors = check_int("neighbors", neighbors, minimum=1)
        self.shrinkage = check_number("shrinkage", shrinkage, minimum=0)

    def _params(self) -> dict[str, object]:
        return {"neighbors": self.neighbors, "shrinkage": self.shrinkage}

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        by_item = interactions.T.tocsr()
        norms = np.sqrt(self.item_popularity_.astype(np.float64))

        def rows(start: int, stop: int) -> sp.coo_matrix:
            # Sparse: items that share no user have similarity 0 and are never kept.
            dot = (by_item[start:stop] @ by_item.T).tocoo()
            dot.data = dot.data / (norms[start:stop][dot.row] * norms[dot.col]
                                   + self.shrinkage)
            return dot

        self.similarity_ = _item_neighbors(by_item.shape[0], self.neighbors, rows)

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return (self.interactions_[rows] @ self.similarity_).toarray()


class UserKNN(InteractionRecommender):
    """User-based collaborative filtering with cosine similarity.

    ``score(u, j) = sum of sim(u, v)`` over the ``neighbors`` users ``v`` most similar to
    ``u`` who interacted with ``j``; similarities as in :class:`ItemKNN`, between users.
    Neighbourhoods are computed when scoring.

    Args:
        neighbors: The number of similar users consulted.
        shrinkage: Added to the denominator; damps similarities of light users.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "c", "a"]}
        >>> UserKNN(neighbors=2).fit(log).score([1]).astype(float).round(2).tolist()
        [[1.21, 0.0, 0.5]]
    """

    def __init__(self, *, neighbors: int = 50, shrinkage: float = 0.0) -> None:
        self.neighbors = check_int("neighbors", neighbors, minimum=1)
        self.shrinkage = check_number("shrinkage", shrinkage, minimum=0)

    def _params(self) -> dict[str, object]:
        return {"neighbors": self.neighbors, "shrinkage": self.shrinkage}

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        self._user_norms = np.sqrt(np.asarray(interactions.sum(axis=1), dtype=np.float64).ravel())

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        matrix = self.interactions_
        block = max(1, _MAX_SCORES // matrix.shape[0])
        out = np.empty((len(rows), matrix.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), block):
            chunk = rows[start:start + block]
            sims = _cosine_block(matrix[chunk], matrix, self._user_norms[chunk],
                                 self._user_norms, self.shrinkage)
            sims[np.arange(len(chunk)), chunk] = 0.0
            out[start:start + len(chunk)] = (_keep_top(sims, self.neighbors) @ matrix).toarray()
        return out


class EASE(InteractionRecommender):
    """EASE (Steck, 2019): a linear item-item model solved in closed form.

    ``B = argmin ||X - X B||² + l2 ||B||²`` with ``diag(B) = 0``, which is
    ``B = I - P / diag(P)`` for ``P = (XᵀX + l2 I)⁻¹``; ``score(u) = X_u B``. Time is
    cubic and memory quadratic in the number of items (about 25k items per 5 GB).

    Args:
        l2: The L2 regularisation weight (> 0); a few hundred suits MovieLens.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]}
        >>> scores = EASE(l2=1.0).fit(log).score([3])
        >>> bool(scores[0, 1] > scores[0, 0])
        True
    """

    def __init__(self, *, l2: float = 500.0) -> None:
        self.l2 = check_number("l2", l2, minimum=0, low_open=True)

    def _params(self) -> dict[str, object]:
        return {"l2": self.l2}

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        gram = (interactions.T @ interactions).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        weights = precision / -np.diag(precision)
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights_ = weights.astype(np.float32)

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.interactions_[rows] @ self.weights_)


def _powered(matrix: sp.spmatrix, exponent: float) -> sp.csr_matrix:
    """The stored entries raised to ``exponent``; with 0 they become 1 and the rest stay 0."""
    out = sp.csr_matrix(matrix, dtype=np.float64)
    out.data = out.data**exponent
    return out


class RP3beta(InteractionRecommender):
    """RP3beta (Paudel et al., 2017; Dacrema et al., 2019): a popularity-damped random walk.

    A three-step walk item → user → item on the interaction graph, with each step's
    transition probabilities raised to ``alpha``:
    ``W = (P_iu ** alpha) @ (P_ui ** alpha)``, where ``P_ui`` is the user-item matrix and
    ``P_iu`` the item-user matrix, each normalised to sum to one per row. Column ``j`` is
    then divided by ``popularity(j) ** beta`` (distinct users of ``j``), which lowers the
    weight of popular items. The diagonal is dropped, each item keeps its ``neighbors``
    largest weights, and ``score(u) = X_u W``.

    Args:
        alpha: The exponent of the transition probabilities (>= 0); 1 is a plain walk.
        beta: The popularity penalty (>= 0); 0 is none.
        neighbors: The neighbourhood size kept per item.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "c", "a"]}
        >>> model = RP3beta(alpha=1.0, beta=0.0).fit(log)
        >>> model.score([3]).astype(float).round(3).tolist()  # "b" and "c" tie after "a"
        [[0.0, 0.167, 0.167]]
    """

    def __init__(self, *, alpha: float = 1.0, beta: float = 0.5, neighbors: int = 100) -> None:
        self.alpha = check_number("alpha", alpha, minimum=0)
        self.beta = check_number("beta", beta, minimum=0)
        self.neighbors = check_int("neighbors", neighbors, minimum=1)

    def _params(self) -> dict[str, object]:
        return {"alpha": self.alpha, "beta": self.beta, "neighbors": self.neighbors}

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        popularity = self.item_popularity_.astype(np.float64)
        activity = np.asarray(interactions.sum(axis=1), dtype=np.float64).ravel()
        user_to_item = _powered(sp.diags(1.0 / activity) @ interactions, self.alpha)
        item_to_user = _powered(sp.diags(1.0 / popularity) @ interactions.T, self.alpha)
        penalty = popularity ** -self.beta

        def rows(start: int, stop: int) -> sp.csr_matrix:
            return (item_to_user[start:stop] @ user_to_item) @ sp.diags(penalty)

        self.similarity_ = _item_neighbors(len(popularity), self.neighbors, rows)

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return (self.interactions_[rows] @ self.similarity_).toarray()
