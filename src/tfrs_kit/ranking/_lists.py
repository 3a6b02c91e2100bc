"""List training: the retriever's own top-N lists as :meth:`Ranker.fit_lists`'s groups.

Each user's list is the retriever's top ``retrieve_k`` (their seen items left out),
each candidate labelled by whether it is among the user's positives; after
training, the blend of retrieval's order and the ranker's is chosen by the
evaluation package's ndcg on held-out users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_int
from tfrs_kit.data._table import Table, TableLike, last_rows, num_rows, to_table
from tfrs_kit.evaluation import ndcg_at_k
from tfrs_kit.ranking._checks import check_hard_fraction
from tfrs_kit.ranking._pairs import catalogue_for, user_items
from tfrs_kit.ranking._sampling import (
    LABEL,
    OFFSET,
    RETRIEVAL_SCORE,
    Examples,
    hard_pools,
    list_examples,
    list_standardise,
)
from tfrs_kit.ranking._scoring import component_scores, history_positions

__all__ = ["blend_ndcg", "build_lists", "choose_blend", "take_groups"]

VALIDATION_K = 10  # fit_lists chooses the blend by ndcg at this cut-off
_SIMILARITY_BATCH = 256  # lists whose history similarities are computed at once


def build_lists(ranker: Any, queries: TableLike, positives: TableLike, *, retriever: Any,
                candidates: TableLike | None, user_id: str, retrieve_k: Any,
                seen: TableLike | None, residual: bool) -> tuple[Examples, np.ndarray]:
    """The lists of ``fit_lists`` (users with a positive in theirs) and each's positives.

    The lists' ``train_rows`` index the queries' last rows (one per user);
    the second array counts each list's user's positives, in the list or
    not (the ideal ndcg's).
    """
    retrieve_k = check_int("retrieve_k", retrieve_k, minimum=1)
    check_hard_fraction(None, retriever)
    if retriever is None:
        raise invalid_argument("retriever", "be given to fit_lists (its lists are the "
                               "training data)", None)
    log = to_table(positives, argument="positives")
    table = to_table(queries, argument="queries")
    for argument, source in (("queries", table), ("positives", log)):
        if user_id not in source:
            raise missing_column(argument, user_id, source, setting="user_id")
    ranker._check_columns(log, "positives", (ranker.item_id,))
    wanted_history = [ranker.history_feature] if ranker.history_feature else []
    ranker._check_columns(table, "queries", (*ranker.query_tower.features,
                                              *retriever.query_tower.features, *wanted_history))
    catalogue = catalogue_for(ranker, log, candidates, retriever)
    rows = last_rows(table, user_id)
    users = pd.Index(rows[user_id])
    n_items = num_rows(catalogue)
    excluded = (user_items(to_table(seen, argument="seen"), None, users, catalogue,
                           user_id=user_id, item_id=ranker.item_id, argument="seen")
                if seen is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    pools, scores, vectors, query_vectors = _lists_of(retriever, rows, catalogue, excluded,
                                                      retrieve_k)
    wanted = user_items(log, None, users, catalogue, user_id=user_id, item_id=ranker.item_id,
                        argument="positives")
    keys = np.setdiff1d(wanted[0].astype(np.int64) * n_items + wanted[1],
                        excluded[0].astype(np.int64) * n_items + excluded[1])
    codes = np.arange(len(users))[:, None].astype(np.int64)
    relevant = (pools >= 0) & np.isin(codes * n_items + pools, keys)
    kept = relevant.any(axis=1)
    if not kept.any():
        raise invalid_argument(
            "positives", "hold, for some user, an item of their retrieved list", "none",
            hint="Retrieve more (retrieve_k), or check that positives and queries name "
            "the same users.")
    lists = list_examples(
        {name: column[kept] for name, column in rows.items()}, catalogue,
        pools=pools[kept], scores=scores[kept], relevant=relevant[kept],
        query_features=tuple(ranker.query_tower.features),
        candidate_features=tuple(dict.fromkeys([ranker.item_id,
                                                *ranker.candidate_tower.features])),
        residual=residual)
    lists = dataclasses.replace(lists, train_rows=np.flatnonzero(kept)[lists.train_rows])
    if ranker.history_feature:
        _add_similarities(ranker, lists, rows[ranker.history_feature][kept],
                          pd.Index(catalogue[ranker.item_id]), vectors, pools[kept])
    if ranker.components:
        _add_components(ranker, lists, query_vectors[kept], vectors, pools[kept])
    return lists, np.bincount(keys // n_items, minlength=len(users))[kept]


def _add_similarities(ranker: Any, lists: Examples, history: Any, ids: pd.Index,
                      vectors: np.ndarray, pools: np.ndarray) -> None:
    """The ranker's history similarity columns of ``lists``, from the retriever's vectors."""
    positions = history_positions(history, ids)
    step, mapping = _SIMILARITY_BATCH, ranker.next_item_positions(ids)
    width = len(ranker._similarity_columns)
    similarity = np.concatenate([np.zeros((0, pools.shape[1], width))] + [
        ranker.history_similarity(vectors[np.maximum(positions[i:i + step], 0)],
                                  positions[i:i + step] >= 0,
                                  vectors[np.maximum(pools[i:i + step], 0)],
                                  (positions[i:i + step], pools[i:i + step], mapping)).numpy()
        for i in range(0, len(positions), step)])
    for column, values in zip(ranker._similarity_columns, np.moveaxis(similarity, 2, 0),
                              strict=True):
        lists.table[column] = values.ravel().astype(np.float32)


def _add_components(ranker: Any, lists: Examples, queries: np.ndarray, vectors: np.ndarray,
                    pools: np.ndarray) -> None:
    """The ranker's component columns of ``lists``: the retriever's score of each listed
    candidate split at ``ranker.components``, standardised within each list."""
    step, found = _SIMILARITY_BATCH, pools >= 0
    parts = np.concatenate([np.zeros((0, pools.shape[1], len(ranker.components) + 1))] + [
        component_scores(queries[i:i + step], vectors[np.maximum(pools[i:i + step], 0)],
                         ranker.components).numpy() for i in range(0, len(pools), step)])
    for column, values in zip(ranker._component_columns, np.moveaxis(parts, 2, 0), strict=True):
        standard = list_standardise(values.astype(np.float64), found)
        lists.table[column] = standard.ravel().astype(np.float32)


def _lists_of(retriever: Any, queries: Table, catalogue: Table,
              excluded: tuple[np.ndarray, np.ndarray],
              retrieve_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each query row's top ``retrieve_k`` positions (``-1`` if none), their scores, the items'.

    The third array is the retriever's embedding of every catalogue item, the fourth
    of every query row.
    """
    query_vectors = retriever.query_tower.embed(queries, verbose=False)
    item_vectors = retriever.candidate_tower.embed(catalogue, verbose=False)
    codes, positions = excluded
    by_user = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_user], np.arange(len(query_vectors) + 1))
    own = [positions[by_user[bounds[u]:bounds[u + 1]]] for u in range(len(query_vectors))]
    pools, _ = hard_pools(query_vectors, item_vectors, own, retrieve_k)
    scores = np.einsum("ud,ukd->uk", query_vectors, item_vectors[np.maximum(pools, 0)])
    return pools, np.where(pools >= 0, scores, -np.inf), item_vectors, query_vectors


def take_groups(examples: Examples, mask: np.ndarray) -> Examples:
    """The groups of ``examples`` where ``mask`` holds, in order."""
    group = examples.group_size
    rows = (np.flatnonzero(mask)[:, None] * group + np.arange(group)).ravel()
    return Examples(table={name: column[rows] for name, column in examples.table.items()},
                    group_size=group, train_rows=examples.train_rows[rows],
                    item_rows=examples.item_rows[rows])


def choose_blend(ranker: Any, lists: Examples, relevant: np.ndarray, held: np.ndarray, *,
                 weights: Sequence[float], residual: bool) -> None:
    """Sets the ranker's blend weights: the best ndcg on the ``held`` lists (first on ties)."""
    blends = [(1.0, w) for w in weights] + [(0.0, 1.0)]
    if held.any():
        validation = take_groups(lists, held)
        ranked = ranker.score_pairs(validation.table).reshape(-1, lists.group_size)
        ranker.blend_ndcg_ = blend_ndcg(validation, ranked, relevant[held], blends)
        chosen = max(blends, key=lambda blend: ranker.blend_ndcg_[blend])
    else:
        ranker.blend_ndcg_, chosen = {}, (1.0, 1.0) if residual else (0.0, 1.0)
    ranker.retrieval_weight.assign(chosen[0])
    ranker.ranker_weight.assign(chosen[1])


def blend_ndcg(lists: Examples, ranked: np.ndarray, relevant: np.ndarray,
               blends: Sequence[tuple[float, float]]) -> dict[tuple[float, float], float]:
    """Mean ndcg@10 of the lists ordered by each ``(retrieval, ranker)`` weight pair.

    The metric is :func:`tfrs_kit.evaluation.ndcg_at_k` over positions in the
    list; a user's ``relevant`` count includes positives the list missed, which
    stand in as ids no list holds (they lower the score as in ``evaluate``).
    """
    group = lists.group_size
    standard = lists.table[RETRIEVAL_SCORE].reshape(-1, group).astype(np.float64)
    found = lists.table[OFFSET].reshape(-1, group) > -1e8
    labels = lists.table[LABEL].reshape(-1, group) > 0
    k = min(VALIDATION_K, group)
    wanted = [np.concatenate([np.flatnonzero(row), -1 - np.arange(count - row.sum())])
              for row, count in zip(labels, relevant, strict=True)]
    out = {}
    for retrieval, ranker in blends:
        scores = np.where(found, retrieval * standard + ranker * ranked, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out[(retrieval, ranker)] = float(ndcg_at_k(order, wanted, k=k))
    return out
