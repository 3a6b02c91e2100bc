"""The training pairs of :meth:`Ranker.fit <tfrs_kit.Ranker.fit>`, and what list training shares.

From a log and a catalogue: which (user, item) pairs are never negatives, the
retriever's hard pools, the checked groups of one positive and its negatives
(drawn by ``_sampling``), and the ``tf.data`` batches of whole groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_int
from tfrs_kit.data._table import Table, TableLike, last_rows, num_rows, select, to_table
from tfrs_kit.data._tensors import to_tensors
from tfrs_kit.ranking._checks import check_hard_fraction, check_known_items, check_loss_settings
from tfrs_kit.ranking._sampling import (
    RETRIEVAL_SCORE,
    Examples,
    catalogue_table,
    check_label,
    check_weights,
    hard_pools,
    sample_examples,
)
from tfrs_kit.ranking._scoring import retrieval_scores

__all__ = ["catalogue_for", "group_dataset", "pair_examples", "user_items"]


def pair_examples(ranker: Any, table: Table, *, retriever: Any, candidates: TableLike | None,
                  user_id: str, negatives: Any, hard_fraction: Any, retrieve_k: Any,
                  label: str | None, sample_weight: str | None, seed: int | None,
                  seen: TableLike | None = None) -> Examples:
    """The checked training groups of ``ranker.fit``; sets its retrieval standardisation."""
    negatives = check_int("negatives", negatives, minimum=0)
    retrieve_k = check_int("retrieve_k", retrieve_k, minimum=1)
    hard_fraction = check_hard_fraction(hard_fraction, retriever)
    check_loss_settings(ranker.ranking_loss, negatives=negatives, label=label)
    if ranker.retrieval_score and retriever is None:
        raise invalid_argument("retriever", "be given to a ranker with retrieval_score=True",
                               None, hint="Pass retriever= (the trained retrieval model).")
    if user_id not in table:
        raise missing_column("x", user_id, table, setting="user_id")
    ranker._check_columns(table, "x", (
        ranker.item_id, *ranker.query_tower.features,
        *(retriever.query_tower.features if retriever is not None else ())))
    catalogue = catalogue_for(ranker, table, candidates, retriever)
    labels = (check_label(table, label, "x") if label is not None
              else np.ones(num_rows(table)))
    weights = (check_weights(table, sample_weight, "x") if sample_weight is not None
               else np.ones(num_rows(table)))
    users = pd.Index(pd.unique(table[user_id]))
    excluded = user_items(table, seen, users, catalogue, user_id=user_id, item_id=ranker.item_id)
    num_hard = round(negatives * hard_fraction)
    pools = None
    if num_hard:
        pools = _retriever_pools(retriever, table, catalogue, user_id=user_id, users=users,
                                 excluded=excluded, retrieve_k=retrieve_k)
    examples = sample_examples(
        table, catalogue, user_id=user_id, item_id=ranker.item_id,
        query_features=tuple(ranker.query_tower.features),
        candidate_features=tuple(dict.fromkeys([ranker.item_id,
                                                *ranker.candidate_tower.features])),
        negatives=negatives, num_hard=num_hard, pools=pools, user_index=users,
        excluded=excluded, labels=labels, weights=weights, seed=seed)
    if ranker.retrieval_score:
        scores = retrieval_scores(retriever, table, examples.train_rows, catalogue,
                                  examples.item_rows)
        examples.table[RETRIEVAL_SCORE] = scores
        ranker.retrieval_shift.assign(float(scores.mean()))
        ranker.retrieval_scale.assign(max(float(scores.std()), 1e-6))
    return examples


def catalogue_for(ranker: Any, table: Table, candidates: TableLike | None,
                  retriever: Any) -> Table:
    """One row per candidate with both stages' candidate features; every item of ``table``."""
    features = tuple(dict.fromkeys([
        *ranker.candidate_tower.features,
        *(retriever.candidate_tower.features if retriever is not None else ())]))
    source = to_table(candidates, argument="candidates") if candidates is not None else table
    ranker._check_columns(source, "candidates" if candidates is not None else "x",
                          (ranker.item_id, *features))
    catalogue = catalogue_table(source, ranker.item_id, features, "candidates")
    check_known_items(table[ranker.item_id], catalogue[ranker.item_id], ranker.item_id)
    return catalogue


def user_items(table: Table, seen: TableLike | None, users: pd.Index, catalogue: Table, *,
               user_id: str, item_id: str, argument: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """(user code, catalogue position) of every pair never to be drawn as a negative.

    The pairs of ``table`` and of ``seen``; users of ``seen`` not in ``table`` and
    items outside the catalogue are left out (they cannot be drawn).
    """
    for column in (user_id, item_id):
        if column not in table:
            raise missing_column(argument, column, table, role="a column of the interactions")
    codes = [users.get_indexer(pd.Index(table[user_id]))]
    items = pd.Index(catalogue[item_id])
    positions = [items.get_indexer(pd.Index(table[item_id]))]
    if seen is not None:
        extra = to_table(seen, argument="seen")
        for column, setting in ((user_id, "user_id"), (item_id, None)):
            if column not in extra:
                raise missing_column("seen", column, extra, setting=setting,
                                     role="" if setting else "the candidate id")
        codes.append(users.get_indexer(pd.Index(extra[user_id])))
        positions.append(items.get_indexer(pd.Index(extra[item_id])))
    code, position = np.concatenate(codes), np.concatenate(positions)
    known = (code >= 0) & (position >= 0)
    return code[known], position[known]


def _retriever_pools(retriever: Any, table: Table, catalogue: Table, *, user_id: str,
                     users: pd.Index, excluded: tuple[np.ndarray, np.ndarray],
                     retrieve_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's top ``retrieve_k`` catalogue items under the retriever, ``excluded`` left out."""
    query_columns = list(dict.fromkeys([user_id, *retriever.query_tower.features]))
    user_rows = last_rows(select(table, query_columns, argument="x"), user_id)
    order = pd.Index(user_rows[user_id]).get_indexer(users)
    user_rows = {name: column[order] for name, column in user_rows.items()}
    queries = retriever.query_tower.embed(user_rows, verbose=False)
    items = retriever.candidate_tower.embed(catalogue, verbose=False)
    codes, positions = excluded
    by_user = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_user], np.arange(len(users) + 1))
    positives = [np.unique(positions[by_user[bounds[u]:bounds[u + 1]]])
                 for u in range(len(users))]
    return hard_pools(queries, items, positives, retrieve_k)


def group_dataset(examples: Examples, columns: Sequence[str], *, batch_size: int,
                  shuffle: bool, seed: int | None) -> tf.data.Dataset:
    """Batches of ``batch_size`` whole groups (rows stay group-major), reshuffled per epoch."""
    tensors = to_tensors(examples.table, columns)
    group = examples.group_size
    n_groups = num_rows(examples.table) // group
    groups = tf.data.Dataset.range(n_groups)
    if shuffle:
        groups = groups.shuffle(n_groups, seed=seed, reshuffle_each_iteration=True)
    offsets = tf.range(group, dtype=tf.int64)

    # Not converted: no control flow to convert, and AutoGraph reads the source file at
    # trace time (a file edited since import gave "could not transform" warnings).
    @tf.autograph.experimental.do_not_convert
    def gather(ids: tf.Tensor) -> dict[str, Any]:
        rows = tf.reshape(ids[:, None] * group + offsets, [-1])
        return {name: tf.gather(t, rows) for name, t in tensors.items()}

    return groups.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)
