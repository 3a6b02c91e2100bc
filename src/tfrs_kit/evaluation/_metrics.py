"""Ranking and beyond-accuracy metrics, vectorised over users.

Public functions take item *ids*: ``recommended`` is a 2-D array, one ranked list per
row (best first, no repeated item in a row), and ``relevant`` holds one collection of
relevant ids per row. The private ``_*_from_hits`` helpers work on a boolean hit matrix
and are what :func:`~tfrs_kit.evaluation.evaluate` uses on whole catalogues.

Definitions (``R_u`` the relevant items of user ``u``, ``hit_i`` whether the item at
rank ``i`` (1-based) is relevant, ``m = min(K, |R_u|)``):

* recall@K = hits in the top K / m (so a perfect ranking scores 1 even when
  ``|R_u| > K``);
* precision@K = hits in the top K / K;
* NDCG@K = sum(hit_i / log2(i + 1)) / sum over i <= m of 1 / log2(i + 1) (binary gains);
* AP@K = sum(precision@i * hit_i) / m, and MAP@K its mean over users;
* RR@K = 1 / (rank of the first hit), 0 without a hit in the top K; MRR@K its mean;
* hit rate@K = whether the top K holds at least one relevant item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_choice, check_int, check_same_kind
from tfrs_kit.data._table import TableLike, to_table

__all__ = [
    "average_precision_at_k",
    "catalogue_coverage",
    "hit_rate_at_k",
    "intra_list_diversity",
    "mean_popularity",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "top_k_categorical_accuracy",
]

_DISTANCES = ("jaccard", "cosine")
_TABLE_ELEMENTS = 1 << 22  # item-item distances precomputed up to ~2,000 items


# --------------------------------------------------------------------------- validation


def _check_k(k: Any, *, maximum: int | None = None, what: str = "the number of columns") -> int:
    k = check_int("k", k, minimum=1)
    if maximum is not None and k > maximum:
        raise invalid_argument(
            "k", f"be at most {what} ({maximum})", k, hint=f"Use k <= {maximum}."
        )
    return k


def _as_ranked_lists(recommended: Any, k: int | None) -> tuple[np.ndarray, int]:
    lists = np.asarray(recommended)
    if lists.ndim != 2 or lists.shape[0] == 0 or lists.shape[1] == 0:
        raise invalid_argument(
            "recommended",
            "be a non-empty 2-D array with one ranked list of item ids per row",
            f"an array of shape {lists.shape}",
        )
    k = lists.shape[1] if k is None else _check_k(k, maximum=lists.shape[1],
                                                   what="the length of the recommended lists")
    lists = lists[:, :k]
    codes = pd.factorize(lists.ravel())[0].reshape(lists.shape)
    ordered = np.sort(codes, axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        row = int(np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))[0])
        raise invalid_argument(
            "recommended", "not repeat an item within a row", f"row {row}: {lists[row]!r}"
        )
    return lists, k


def _hit_matrix(recommended: np.ndarray, relevant: Sequence[Iterable[Any]]) -> tuple[
    np.ndarray, np.ndarray
]:
    """Which recommended items are relevant, and how many distinct relevant items each row has."""
    n = recommended.shape[0]
    rule = f"hold one collection of relevant item ids per row of `recommended` ({n})"
    if isinstance(relevant, (str, bytes)) or not hasattr(relevant, "__len__"):
        raise invalid_argument("relevant", rule, relevant, error=TypeError)
    if len(relevant) != n:
        raise invalid_argument("relevant", rule, f"{len(relevant)} collections")
    per_row = [np.asarray(list(r) if not isinstance(r, np.ndarray) else r).ravel()
               for r in relevant]
    sizes = np.array([len(r) for r in per_row], dtype=np.int64)
    flat = np.concatenate(per_row) if sizes.sum() else np.array([], dtype=recommended.dtype)
    check_same_kind("relevant", flat, recommended, what="item ids",
                    reference_name="recommended")
    codes, uniques = pd.factorize(np.concatenate([recommended.ravel(), flat]))
    n_codes = max(len(uniques), 1)
    rec_keys = (np.repeat(np.arange(n), recommended.shape[1]) * n_codes
                + codes[: recommended.size]).reshape(recommended.shape)
    rel_keys = np.unique(np.repeat(np.arange(n), sizes) * n_codes + codes[recommended.size:])
    n_relevant = np.bincount(rel_keys // n_codes, minlength=n)
    if (n_relevant == 0).any():
        row = int(np.flatnonzero(n_relevant == 0)[0])
        raise invalid_argument(
            "relevant", "hold at least one item for every row", f"an empty collection at row {row}",
            hint="Leave users without relevant items out of the evaluation.",
        )
    return np.isin(rec_keys, rel_keys), n_relevant


# ------------------------------------------------------------------- from a hit matrix


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _ranking_from_hits(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user recall, precision, ndcg, map, mrr and hit_rate at ``k`` from a hit matrix.

    ``hits`` is ``[n_users, >= k]`` (rank order), ``n_relevant`` the number of distinct
    relevant items per user (at least 1; relevant items that could never be ranked count).
    """
    h = hits[:, :k].astype(np.float64)
    n_hits = h.sum(axis=1)
    ideal = np.minimum(k, n_relevant)
    discounts = _discounts(k)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    first = np.argmax(h, axis=1)
    return {
        "recall": n_hits / ideal,
        "precision": n_hits / k,
        "ndcg": (h @ discounts) / np.cumsum(discounts)[ideal - 1],
        "map": ((np.cumsum(h, axis=1) / ranks) * h).sum(axis=1) / ideal,
        "mrr": np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0),
        "hit_rate": (n_hits > 0).astype(np.float64),
    }


def _result(per_user: np.ndarray, want_per_user: bool) -> float | np.ndarray:
    return per_user if want_per_user else float(np.mean(per_user))


def _ranking_metric(name: str, recommended: Any, relevant: Any, k: int | None,
                    per_user: bool) -> float | np.ndarray:
    lists, k = _as_ranked_lists(recommended, k)
    hits, n_relevant = _hit_matrix(lists, relevant)
    return _result(_ranking_from_hits(hits, n_relevant, k)[name], per_user)


# --------------------------------------------------------------------- ranking metrics


def recall_at_k(
    recommended: Any, relevant: Sequence[Iterable[Any]], *, k: int | None = None,
    per_user: bool = False,
) -> float | np.ndarray:
    """Recall@K: hits in the top K divided by ``min(K, number of relevant items)``.

    Args:
        recommended: ``[n_users, L]`` item ids, each row ranked best first.
        relevant: One collection of relevant item ids per row (at least one each).
        k: The cut-off (at most ``L``); ``None`` uses all ``L`` columns.
        per_user: Return the per-row values instead of their mean.

    Returns:
        The mean over rows, or an array of per-row values.

    Example:
        >>> recall_at_k([["a", "b", "c"]], [{"c", "z"}], k=2)
        0.0
        >>> recall_at_k([["a", "b", "c"]], [{"c", "z"}], k=3)
        0.5
    """
    return _ranking_metric("recall", recommended, relevant, k, per_user)


def precision_at_k(
    recommended: Any, relevant: Sequence[Iterable[Any]], *, k: int | None = None,
    per_user: bool = False,
) -> float | np.ndarray:
    """Precision@K: hits in the top K divided by K. Arguments as :func:`recall_at_k`.

    Example:
        >>> precision_at_k([[1, 2, 3, 4]], [[2, 4]], k=4)
        0.5
    """
    return _ranking_metric("precision", recommended, relevant, k, per_user)


def ndcg_at_k(
    recommended: Any, relevant: Sequence[Iterable[Any]], *, k: int | None = None,
    per_user: bool = False,
) -> float | np.ndarray:
    """NDCG@K with binary gains; the ideal DCG has ``min(K, |relevant|)`` hits on top.

    Arguments as :func:`recall_at_k`.

    Example:
        >>> ndcg_at_k([[1, 2, 3]], [[1, 2]], k=3)
        1.0
        >>> round(ndcg_at_k([[3, 1, 2]], [[1]], k=3), 4)
        0.6309
    """
    return _ranking_metric("ndcg", recommended, relevant, k, per_user)


def average_precision_at_k(
    recommended: Any, relevant: Sequence[Iterable[Any]], *, k: int | None = None,
    per_user: bool = False,
) -> float | np.ndarray:
    """MAP@K: the mean of AP@K = ``sum(precision@i at each hit i) / min(K, |relevant|)``.

    Arguments as :func:`recall_at_k`.

    Example:
        >>> average_precision_at_k([[1, 9, 2]], [[1, 2]], k=3)  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    return _ranking_metric("map", recommended, relevant, k, per_user)


def reciprocal_rank_at_k(
    recommended: Any, relevant: Sequence[Iterable[Any]], *, k: int | None = None,
    per_user: bool = False,
) -> float | np.ndarray:
    """MRR@K: the mean of 1 / (rank of the first hit), 0 without a hit in the top K.

    Arguments as :func:`recall_at_k`.

    Example:
        >>> reciprocal_rank_at_k([[5, 6, 7], [7, 5, 6]], [[7], [7]], k=3)
        0.6666666666666666
    """
    return _ranking_metric("mrr", recommended, relevant, k, per_user)


def hit_rate_at_k(
    recommended: Any, relevant: Sequence[Iterable[Any]], *, k: int | None = None,
    per_user: bool = False,
) -> float | np.ndarray:
    """Hit rate@K: the share of rows with at least one relevant item in the top K.

    Arguments as :func:`recall_at_k`.

    Example:
        >>> hit_rate_at_k([[1, 2], [3, 4]], [[2], [5]], k=2)
        0.5
    """
    return _ranking_metric("hit_rate", recommended, relevant, k, per_user)


# ----------------------------------------------------------- beyond-accuracy metrics


def catalogue_coverage(recommended: Any, *, num_items: int, k: int | None = None) -> float:
    """The share of the catalogue that appears in at least one top-K list.

    Args:
        recommended: ``[n_users, L]`` item ids, each row ranked best first.
        num_items: The catalogue size.
        k: The cut-off; ``None`` uses all columns.

    Returns:
        Distinct recommended items / ``num_items``.

    Example:
        >>> catalogue_coverage([[1, 2], [2, 3]], num_items=10)
        0.3
    """
    lists, _ = _as_ranked_lists(recommended, k)
    num_items = check_int("num_items", num_items, minimum=1)
    distinct = len(pd.unique(lists.ravel()))
    if distinct > num_items:
        raise invalid_argument(
            "num_items", f"be at least the number of distinct recommended items ({distinct})",
            num_items,
        )
    return distinct / num_items


def _item_user_counts(
    train: TableLike, user_id: str, item_id: str
) -> tuple[pd.Series, int]:
    table = to_table(train, argument="train", columns=[user_id, item_id])
    pairs = pd.DataFrame({"u": table[user_id], "i": table[item_id]}).drop_duplicates()
    return pairs.groupby("i", sort=False).size(), int(pairs["u"].nunique())


def _self_information(counts: np.ndarray, num_users: int) -> np.ndarray:
    """-log2 p(item), p = distinct training users of the item / training users.

    Items never seen in training are treated as seen once, which caps their
    self-information at log2(num_users) instead of infinity.
    """
    return np.log2(num_users) - np.log2(np.maximum(counts, 1))


def _per_list_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    count = valid.sum(axis=1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)


def novelty(
    recommended: Any, *, train: TableLike, k: int | None = None, user_id: str = "user_id",
    item_id: str = "item_id", per_user: bool = False,
) -> float | np.ndarray:
    """Mean self-information ``-log2 p(item)`` of the recommended items.

    ``p(item)`` is the share of training users who interacted with the item; an item
    absent from ``train`` counts as seen by one user.

    Args:
        recommended: ``[n_users, L]`` item ids, each row ranked best first.
        train: The training interactions (any accepted table).
        k: The cut-off; ``None`` uses all columns.
        user_id: The user id column of ``train``.
        item_id: The item id column of ``train``.
        per_user: Return the per-row values instead of their mean.

    Returns:
        Bits per recommended item, averaged over lists, then over rows.

    Example:
        >>> train = {"user_id": [1, 2, 3, 4], "item_id": ["a", "a", "a", "b"]}
        >>> novelty([["b"]], train=train)  # p(b) = 1/4
        2.0
    """
    lists, _ = _as_ranked_lists(recommended, k)
    counts, num_users = _item_user_counts(train, user_id, item_id)
    looked_up = counts.reindex(lists.ravel()).fillna(0).to_numpy().reshape(lists.shape)
    info = _self_information(looked_up, num_users).mean(axis=1)
    return _result(info, per_user)


def mean_popularity(
    recommended: Any, *, train: TableLike, k: int | None = None, user_id: str = "user_id",
    item_id: str = "item_id", per_user: bool = False,
) -> float | np.ndarray:
    """Mean training popularity (distinct users) of the recommended items.

    Arguments as :func:`novelty`.

    Example:
        >>> train = {"user_id": [1, 2, 3], "item_id": ["a", "a", "b"]}
        >>> mean_popularity([["a", "b"]], train=train)
        1.5
    """
    lists, _ = _as_ranked_lists(recommended, k)
    counts, _ = _item_user_counts(train, user_id, item_id)
    looked_up = counts.reindex(lists.ravel()).fillna(0).to_numpy().reshape(lists.shape)
    return _result(looked_up.astype(np.float64).mean(axis=1), per_user)


def _pairwise_distances(vectors: np.ndarray, distance: str) -> np.ndarray:
    """``[b, L, L]`` distances between the rows of ``vectors`` (``[b, L, d]``)."""
    if distance == "cosine":
        norms = np.linalg.norm(vectors, axis=2, keepdims=True)
        unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        return 1.0 - np.einsum("bid,bjd->bij", unit, unit)
    member = (vectors != 0).astype(np.float32)
    inter = np.einsum("bid,bjd->bij", member, member)
    sizes = member.sum(axis=2)
    union = sizes[:, :, None] + sizes[:, None, :] - inter
    # Two items without any attribute are identical (distance 0), not undefined.
    return np.where(union > 0, 1.0 - inter / np.maximum(union, 1), 0.0)


def _ild_from_positions(
    positions: np.ndarray, item_vectors: np.ndarray, distance: str, ks: Sequence[int],
    *, batch_elements: int = 1 << 24,
) -> dict[int, np.ndarray]:
    """Per-user intra-list diversity at each ``k`` of ``ks``; ``positions`` < 0 are empty slots.

    Users with fewer than two recommended items get NaN.
    """
    n, width = positions.shape
    width = min(width, max(ks))
    dim = max(item_vectors.shape[1], 1)
    batch = max(1, batch_elements // (width * max(width, dim)))
    out = {k: np.empty(n, dtype=np.float64) for k in ks}
    n_items = item_vectors.shape[0]
    # A small catalogue's distances are computed once and looked up.
    table = (_pairwise_distances(item_vectors[None], distance)[0]
             if n_items * n_items <= _TABLE_ELEMENTS else None)
    for start in range(0, n, batch):
        idx = positions[start:start + batch, :width]
        valid = idx >= 0
        safe = np.where(valid, idx, 0)
        dist = (table[safe[:, :, None], safe[:, None, :]] if table is not None
                else _pairwise_distances(item_vectors[safe], distance))
        pair = valid[:, :, None] & valid[:, None, :]
        for k in ks:
            upper = np.triu(np.ones((k, k), dtype=bool), 1)
            mask = pair[:, :k, :k] & upper
            count = mask.sum(axis=(1, 2))
            total = np.where(mask, dist[:, :k, :k], 0.0).sum(axis=(1, 2))
            out[k][start:start + batch] = np.divide(
                total, count, out=np.full(len(count), np.nan), where=count > 0
            )
    return out


def intra_list_diversity(
    recommended: Any, *, item_ids: Any, item_vectors: Any, distance: str = "jaccard",
    k: int | None = None, per_user: bool = False,
) -> float | np.ndarray:
    """Mean pairwise distance between the items inside each top-K list.

    Args:
        recommended: ``[n_users, L]`` item ids, each row ranked best first (``L >= 2``).
        item_ids: The ids of the rows of ``item_vectors``.
        item_vectors: ``[n_items, d]``: a multi-hot attribute matrix (for example 19
            genre flags) for ``"jaccard"``, or embeddings for ``"cosine"``.
        distance: ``"jaccard"`` (1 - shared / combined non-zero attributes; two items
            without attributes have distance 0) or ``"cosine"`` (1 - cosine similarity).
        k: The cut-off (at least 2); ``None`` uses all columns.
        per_user: Return the per-row values instead of their mean.

    Returns:
        The mean over rows of the mean over the ``k (k - 1) / 2`` pairs of each list.

    Example:
        >>> genres = [[1, 0], [1, 1], [0, 1]]
        >>> intra_list_diversity([["x", "y", "z"]], item_ids=["x", "y", "z"],
        ...                      item_vectors=genres)  # pairs: 0.5, 1, 0.5
        0.6666666666666666
    """
    distance = check_choice("distance", distance, _DISTANCES)
    lists, k = _as_ranked_lists(recommended, k)
    if k < 2:
        raise invalid_argument("k", "be at least 2 for a pairwise diversity", k)
    ids = np.asarray(item_ids).ravel()
    vectors = np.asarray(item_vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise invalid_argument(
            "item_vectors", f"be a 2-D array with one row per item id ({len(ids)})",
            f"an array of shape {vectors.shape}",
        )
    positions = pd.Index(ids).get_indexer(lists.ravel()).reshape(lists.shape)
    if (positions < 0).any():
        missing = lists.ravel()[np.flatnonzero(positions.ravel() < 0)[0]]
        raise invalid_argument(
            "recommended", "hold only ids listed in `item_ids`", f"an item {missing!r}"
        )
    return _result(_ild_from_positions(positions, vectors, distance, [k])[k], per_user)


def top_k_categorical_accuracy(scores: Any, targets: Any, *, k: int) -> float:
    """TFRS's ``FactorizedTopK`` accuracy: is each target among the top K of its row?

    Ties count in the target's favour, as in ``tf.math.in_top_k``: the target is in the
    top K when fewer than K items score strictly higher. Nothing is masked.

    Args:
        scores: ``[n, n_items]`` scores, one row per test interaction.
        targets: ``[n]`` column index of each row's true item.
        k: The cut-off, at most ``n_items``.

    Returns:
        The share of rows whose target is in the top K.

    Example:
        >>> top_k_categorical_accuracy([[0.1, 0.9, 0.5], [0.8, 0.1, 0.3]], [2, 1], k=2)
        0.5
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise invalid_argument("scores", "be a non-empty 2-D array", f"shape {scores.shape}")
    k = _check_k(k, maximum=scores.shape[1], what="the number of items")
    rule = f"be {scores.shape[0]} column indices in [0, {scores.shape[1]})"
    if targets.dtype.kind not in "iu":
        raise invalid_argument("targets", rule, targets, error=TypeError)
    if targets.shape != (scores.shape[0],) or (
        (targets < 0) | (targets >= scores.shape[1])
    ).any():
        raise invalid_argument("targets", rule, targets)
    target_scores = scores[np.arange(len(targets)), targets]
    return float(np.mean((scores > target_scores[:, None]).sum(axis=1) < k))

