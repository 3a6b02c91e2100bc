"""The ranker's training set: logged positives, each with negatives hard and random.

Hard negatives come from the retrieval stage's own candidates: the retriever's top
``retrieve_k`` items for the user, the user's positives left out, as the cascade
will hand them to the ranker. Random negatives are drawn uniformly from the
catalogue, again never one of the user's positives. Everything is vectorised
over rows; only the rare draws that keep landing on positives are redone one by one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit.data._table import Table, last_rows, num_rows, select

__all__ = ["COMPONENT", "KIND", "LABEL", "OFFSET", "RETRIEVAL_SCORE", "SIMILARITY", "WEIGHT",
           "Examples", "catalogue_table", "check_label", "check_weights", "hard_pools",
           "list_examples", "list_standardise", "sample_examples"]

# No leading underscore: TensorFlow turns feature names into graph node names.
LABEL = "tfrs_kit_label"
WEIGHT = "tfrs_kit_weight"
KIND = "tfrs_kit_kind"  # 0 positive, 1 hard negative, 2 random negative
RETRIEVAL_SCORE = "tfrs_kit_retrieval_score"  # the retriever's score of a pair
SIMILARITY = "tfrs_kit_similarity"  # + "_L": a candidate's cosine with the last L history items
COMPONENT = "tfrs_kit_component"  # + "_i": the i-th component of the retriever's score
OFFSET = "tfrs_kit_offset"  # added to the ranker's logit in the loss (lists: z or -1e9 padding)
_PADDING = -1e9
_REJECTION_ROUNDS = 30
_SCORED_AT_ONCE = 1 << 22  # users x items scored per block when finding hard pools


@dataclasses.dataclass(frozen=True)
class Examples:
    """Groups of one positive and its negatives, group-major (positive first).

    ``train_rows`` and ``item_rows`` say, for each row of ``table``, which row of
    the log its query features and which catalogue row its candidate come from.
    """

    table: Table
    group_size: int
    train_rows: np.ndarray
    item_rows: np.ndarray


def hard_pools(query_embeddings: np.ndarray, item_embeddings: np.ndarray,
               positives: list[np.ndarray], retrieve_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``retrieve_k`` best-scored items that are not among their positives.

    Args:
        query_embeddings: ``[users, dim]`` retriever query embeddings.
        item_embeddings: ``[items, dim]`` retriever candidate embeddings.
        positives: Per user, the catalogue positions of their positives.
        retrieve_k: Items kept per user.

    Returns:
        ``[users, retrieve_k]`` item positions, best first, ``-1`` where the
        user has fewer than ``retrieve_k`` other items; and each user's count.
    """
    n_users, n_items = len(query_embeddings), len(item_embeddings)
    width = min(retrieve_k, n_items)
    pools = np.full((n_users, retrieve_k), -1, dtype=np.int64)
    counts = np.zeros(n_users, dtype=np.int64)
    step = max(1, _SCORED_AT_ONCE // max(n_items, 1))
    for start in range(0, n_users, step):
        stop = min(start + step, n_users)
        scores = query_embeddings[start:stop] @ item_embeddings.T
        rows = np.repeat(np.arange(stop - start), [len(positives[u]) for u in range(start, stop)])
        if len(rows):
            scores[rows, np.concatenate(positives[start:stop])] = -np.inf
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        valid = np.take_along_axis(top_scores, order, axis=1) > -np.inf
        pools[start:stop, :width] = np.where(valid, top, -1)
        counts[start:stop] = valid.sum(axis=1)
    return pools, counts


def sample_examples(
    train: Table,
    catalogue: Table,
    *,
    user_id: str,
    item_id: str,
    query_features: tuple[str, ...],
    candidate_features: tuple[str, ...],
    negatives: int,
    num_hard: int,
    pools: tuple[np.ndarray, np.ndarray] | None,
    user_index: pd.Index,
    excluded: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    weights: np.ndarray,
    seed: int | None,
) -> Examples:
    """Each row of ``train`` as a group: the row, ``num_hard`` hard and the rest random negatives.

    No negative of a user is among their ``excluded`` pairs (user code, catalogue
    position), which hold at least the user's rows of ``train``.

    Negatives get label 0 and the weight of their positive, so a row's weight
    scales its whole group. Query features are the positive row's; candidate
    features come from ``catalogue`` (one row per item), as at serving.
    """
    rng = np.random.default_rng(seed)
    item_index = pd.Index(catalogue[item_id])
    users = user_index.get_indexer(pd.Index(train[user_id]))
    items = item_index.get_indexer(pd.Index(train[item_id]))
    codes, positions = excluded  # the pairs never drawn: the log's own, and `seen`
    positive_keys = np.unique(codes.astype(np.int64) * len(item_index) + positions)
    drawn = np.empty((len(users), negatives), dtype=np.int64)
    kinds = np.full((len(users), negatives), 2, dtype=np.int8)
    if num_hard and pools is not None:
        pool, counts = pools
        has_pool = counts[users] > 0
        picks = (rng.random((len(users), num_hard)) * counts[users][:, None]).astype(np.int64)
        hard = pool[users[:, None], picks]
        drawn[:, :num_hard] = np.where(has_pool[:, None], hard, -1)
        kinds[:, :num_hard] = np.where(has_pool[:, None], 1, 2)
    else:
        num_hard = 0
        drawn[:] = -1
    drawn[:, num_hard:] = -1
    _fill_random(drawn, users, positive_keys, len(item_index), rng)
    return _assemble(train, catalogue, items=items, drawn=drawn, kinds=kinds,
                     labels=labels, weights=weights, query_features=query_features,
                     candidate_features=candidate_features)


def _fill_random(drawn: np.ndarray, users: np.ndarray, positive_keys: np.ndarray,
                 n_items: int, rng: np.random.Generator) -> None:
    """Fills the ``-1`` slots of ``drawn`` with uniform items that are not the user's positives."""
    for _ in range(_REJECTION_ROUNDS):
        rows, cols = np.nonzero(drawn < 0)
        if not len(rows):
            return
        candidates = rng.integers(0, n_items, size=len(rows))
        taken = np.isin(users[rows].astype(np.int64) * n_items + candidates, positive_keys)
        drawn[rows[~taken], cols[~taken]] = candidates[~taken]
    for row, col in zip(*np.nonzero(drawn < 0), strict=True):
        own = positive_keys[(positive_keys >= users[row] * n_items)
                            & (positive_keys < (users[row] + 1) * n_items)] - users[row] * n_items
        free = np.setdiff1d(np.arange(n_items), own)
        if not len(free):
            raise invalid_argument(
                "x", "leave every user at least one catalogue item they did not interact "
                "with (a negative)", f"a user with all {n_items} items",
                hint="Pass a larger catalogue with candidates=, or drop that user.")
        drawn[row, col] = rng.choice(free)


def _assemble(train: Table, catalogue: Table, *, items: np.ndarray,
              drawn: np.ndarray, kinds: np.ndarray, labels: np.ndarray, weights: np.ndarray,
              query_features: tuple[str, ...],
              candidate_features: tuple[str, ...]) -> Examples:
    """The flat, group-major table: row ``g * (1 + negatives)`` is group ``g``'s positive."""
    n, negatives = drawn.shape
    group = 1 + negatives
    item_rows = np.concatenate([items[:, None], drawn], axis=1).ravel()
    train_rows = np.repeat(np.arange(n), group)
    table: Table = {name: train[name][train_rows] for name in query_features}
    for name in candidate_features:
        table[name] = catalogue[name][item_rows]
    is_positive = np.tile(np.arange(group) == 0, n)
    table[LABEL] = np.where(is_positive, labels[train_rows], 0.0).astype(np.float32)
    table[WEIGHT] = weights[train_rows].astype(np.float32)
    table[KIND] = np.concatenate([np.zeros((n, 1), np.int8), kinds], axis=1).ravel()
    return Examples(table=table, group_size=group, train_rows=train_rows, item_rows=item_rows)


def list_standardise(scores: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Each row's scores minus their mean over ``found``, over their deviation; 0 elsewhere.

    >>> list_standardise(np.array([[1.0, 3.0, 9.0]]), np.array([[True, True, False]])).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    count = np.maximum(found.sum(axis=1, keepdims=True), 1)
    mean = np.where(found, scores, 0.0).sum(axis=1, keepdims=True) / count
    spread = np.sqrt(np.where(found, (scores - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count)
    return np.where(found, (scores - mean) / np.maximum(spread, 1e-6), 0.0)


def list_examples(queries: Table, catalogue: Table, *, pools: np.ndarray, scores: np.ndarray,
                  relevant: np.ndarray, query_features: tuple[str, ...],
                  candidate_features: tuple[str, ...], residual: bool) -> Examples:
    """One group per query: its retrieved list, in the retriever's order.

    Args:
        queries: One row per query (list), with the query features.
        catalogue: One row per candidate, with the candidate features.
        pools: ``[queries, n]`` catalogue positions, ``-1`` for an empty slot.
        scores: ``[queries, n]`` the retriever's scores of ``pools``.
        relevant: ``[queries, n]`` whether each candidate is a positive (label 1).
        query_features: Columns taken from ``queries``.
        candidate_features: Columns taken from ``catalogue``.
        residual: The loss adds the list-standardised retrieval score to the logit.

    The ranker reads the list-standardised score (``RETRIEVAL_SCORE``); empty
    slots get an offset of -1e9, so the softmax never puts weight on them.
    """
    n_lists, width = pools.shape
    found = pools >= 0
    standard = list_standardise(scores.astype(np.float64), found)
    train_rows = np.repeat(np.arange(n_lists), width)
    item_rows = np.where(found, pools, 0).ravel()
    table: Table = {name: queries[name][train_rows] for name in query_features}
    for name in candidate_features:
        table[name] = catalogue[name][item_rows]
    table[RETRIEVAL_SCORE] = standard.ravel().astype(np.float32)
    offset = standard if residual else np.zeros_like(standard)
    table[OFFSET] = np.where(found, offset, _PADDING).ravel().astype(np.float32)
    table[LABEL] = (relevant & found).ravel().astype(np.float32)
    table[WEIGHT] = np.ones(n_lists * width, np.float32)
    table[KIND] = np.where(relevant, 0, 1).ravel().astype(np.int8)
    return Examples(table=table, group_size=width, train_rows=train_rows, item_rows=item_rows)


def catalogue_table(data: Table, item_id: str, features: tuple[str, ...],
                    argument: str) -> Table:
    """One row per item (its last) with the candidate features, for negatives and serving."""
    columns = list(dict.fromkeys([item_id, *features]))
    return last_rows(select(data, columns, argument=argument), item_id)


def check_label(table: Table, column: str, argument: str) -> np.ndarray:
    """The label column as float64: numbers, none missing, not all the same."""
    values = _numbers(table, column, argument, "label")
    shown = f"{argument}[{column!r}]"
    if np.isnan(values).any():
        missing = np.isnan(values)
        raise invalid_argument(
            shown, "hold a label for every row (no NaN or None)",
            f"{int(missing.sum())} missing, the first at row {int(np.flatnonzero(missing)[0])}",
            hint="Drop or fill those rows first.")
    if not np.isfinite(values).all():
        raise invalid_argument(shown, "hold finite labels", values[~np.isfinite(values)][:3])
    if num_rows(table) and np.all(values == values[0]):
        raise invalid_argument(
            shown, "vary (a constant label teaches the ranker nothing)",
            f"every row {values[0]!r}",
            hint="Leave label=None to learn the log's positives against sampled negatives.")
    return values


def check_weights(table: Table, column: str, argument: str) -> np.ndarray:
    """The sample-weight column as float64: finite, >= 0, not all zero."""
    values = _numbers(table, column, argument, "sample_weight")
    shown = f"{argument}[{column!r}]"
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise invalid_argument(shown, "hold finite weights >= 0",
                               f"{values[bad][0]!r} at row {int(np.flatnonzero(bad)[0])}")
    if not values.any():
        raise invalid_argument(shown, "hold at least one weight > 0", "all 0")
    return values


def _numbers(table: Table, column: str, argument: str, setting: str) -> np.ndarray:
    if column not in table:
        raise missing_column(argument, column, table, setting=setting)
    values: Any = table[column]
    try:
        return np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise invalid_argument(f"{argument}[{column!r}]", "hold numbers",
                               list(values[:3]), error=TypeError) from error
