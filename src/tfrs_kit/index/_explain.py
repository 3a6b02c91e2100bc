"""Why an item was recommended: the history items behind it and each component's share.

Computed from what the index itself serves with (its candidate embeddings and
its query tower), so the explanation is the model's own similarity, not a
second model's guess:

- each history item's contribution to a recommended item is the dot product of
  their candidate embeddings (the similarity the index searches by);
- a score that is a sum of parts gets each part's share of ``sum |part|``: a
  blended index (``Recipe``'s towers beside factor tables: the towers, the
  iALS factorisation and the popularity column) splits its dot product by
  columns; a cascade splits its blend ``retrieval_weight * z + ranker_weight *
  ranker`` into retrieval and ranker; a plain two-tower index has one part.

:func:`explanation_faithfulness` measures rather than assumes that the top
history item matters: removing it must lower the item's score more than
removing a random history item does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit.ranking._scoring import history_positions

__all__ = ["Explanation", "component_spans", "explain_results", "explanation_faithfulness",
           "history_feature_of"]

TOP_HISTORY = 3  # history items listed per recommended item


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why one item was recommended to one query.

    Attributes:
        history: Up to 3 of the query's history item ids, the largest
            contribution first.
        contributions: Their contributions: the dot product of each history
            item's candidate embedding with the recommended item's.
        shares: Each score component's share of the score (``|part| / sum
            |part|``, summing to 1): ``{"towers": 1.0}`` for a two-tower index;
            ``towers``, ``ials`` and ``popularity`` for a blended one;
            ``retrieval`` and ``ranker`` for a cascade.
    """

    history: np.ndarray
    contributions: np.ndarray
    shares: dict[str, float]


def history_feature_of(functions: Any, query_specs: dict[str, tf.TensorSpec],
                       id_dtype: tf.DType, explain: Any) -> str:
    """The query feature holding each query's history of candidate ids.

    ``explain`` names it, or is ``True``: the cascade ranker's history feature,
    else the one list feature of the id type.
    """
    lists = [name for name, spec in query_specs.items()
             if spec.shape.rank == 2 and spec.dtype == id_dtype]
    if isinstance(explain, str):
        if explain not in lists:
            raise invalid_argument(
                "explain", "be True or the name of a query feature holding item ids (a list "
                f"feature: {lists})", explain)
        return explain
    ranker_history = getattr(getattr(functions, "ranker", None), "history_feature", None)
    if isinstance(ranker_history, str):
        return ranker_history
    if len(lists) != 1:
        raise invalid_argument(
            "explain", "name the history feature when the index reads none or several",
            explain, hint=f"Pass explain='<feature>'; list features of item ids: {lists}."
            if lists else "The index's query features hold no list of item ids to explain by.")
    return lists[0]


def component_spans(functions: Any, dim: int) -> dict[str, slice]:
    """The candidate embedding's columns of each score component.

    A blend's towers (``recipe/_blend.py``'s ``JoinedTower``: the tower's
    output, then the factor table: iALS factors, then one popularity column);
    anything else is one component.
    """
    factors = getattr(getattr(functions, "query_tower", None), "factors", None)
    shape = getattr(factors, "shape", None)  # the factor table: restored with a loaded index
    if shape is None or len(shape) != 2 or not 0 < int(shape[1]) < dim:
        return {"towers": slice(0, dim)}
    towers = dim - int(shape[1])
    spans = {"towers": slice(0, towers)}
    if dim - towers > 1:
        spans["ials"] = slice(towers, dim - 1)
    spans["popularity"] = slice(dim - 1, dim)
    return spans


def _shares(parts: np.ndarray, names: list[str]) -> dict[str, float]:
    """``|part| / sum |part|`` per name; equal shares when every part is 0."""
    size = np.abs(parts)
    total = float(size.sum())
    if total <= 0 or not np.isfinite(total):
        return dict.fromkeys(names, 1.0 / len(names))
    return {name: float(value / total) for name, value in zip(names, size, strict=True)}


def _cascade_parts(ranker: Any, retrieve_k: int, queries: np.ndarray, embeddings: np.ndarray,
                   excluded: list[np.ndarray], positions: np.ndarray,
                   scores: np.ndarray) -> np.ndarray:
    """``[q, k, 2]``: each served cascade score's retrieval and ranker terms.

    ``z`` is the retrieval score standardised over the retrieved list (as
    ``Ranker.rerank`` does), so the retrieval term is ``retrieval_weight * z``
    and the ranker's is the rest of the served score.
    """
    retrieval = (queries @ embeddings.T).astype(np.float64)
    rows = np.repeat(np.arange(len(queries)), [len(e) for e in excluded])
    retrieval_masked = retrieval.copy()
    if len(rows):
        retrieval_masked[rows, np.concatenate(excluded).astype(np.int64)] = -np.inf
    n = retrieve_k
    top = np.sort(retrieval_masked, axis=1)[:, ::-1][:, :n]
    found = np.isfinite(top)
    count = np.maximum(found.sum(axis=1, keepdims=True), 1)
    mean = np.where(found, top, 0.0).sum(axis=1, keepdims=True) / count
    spread = np.sqrt((found * np.square(np.where(found, top, mean) - mean)).sum(
        axis=1, keepdims=True) / count)
    z = (np.take_along_axis(retrieval, np.maximum(positions, 0), axis=1) - mean) / np.maximum(
        spread, 1e-6)
    weight = float(ranker.retrieval_weight.numpy())
    return np.stack([weight * z, scores.astype(np.float64) - weight * z], axis=-1)


def explain_results(functions: Any, *, queries: Callable[[], np.ndarray], history: Any,
                    ids: pd.Index, positions: np.ndarray, scores: np.ndarray,
                    excluded: list[np.ndarray],
                    retrieve_k: int | None = None) -> list[list[Explanation | None]]:
    """One :class:`Explanation` per recommended slot (``None`` in an empty slot).

    Args:
        functions: The index's serving module (in memory or loaded).
        queries: Gives the ``[q, d]`` query tower's outputs (asked only for
            the shares of a score of several components).
        history: Each query's history item ids.
        ids: The index's candidate ids, in index order.
        positions: ``[q, k]`` index positions of the recommended items, ``-1`` empty.
        scores: ``[q, k]`` their served scores.
        excluded: Per query, the index positions left out of its retrieval.
        retrieve_k: A cascade's (``None``: a retrieval index).
    """
    embeddings = functions.embeddings.numpy()
    spans = component_spans(functions, embeddings.shape[1])
    similar = embeddings[:, spans["towers"]]
    held = history_positions(history, ids)
    if retrieve_k is not None:
        parts = _cascade_parts(functions.ranker, retrieve_k, queries(), embeddings, excluded,
                               positions, scores)
        names = ["retrieval", "ranker"]
    elif len(spans) == 1:  # one component: no query vectors needed (a loaded index too)
        parts = np.ones((*positions.shape, 1))
        names = list(spans)
    else:
        vectors = queries()
        parts = np.stack([np.einsum("qd,qkd->qk", vectors[:, span],
                                    embeddings[np.maximum(positions, 0)][:, :, span])
                          for span in spans.values()], axis=-1)
        names = list(spans)
    out: list[list[Explanation | None]] = []
    for row, slots in enumerate(positions):
        known = pd.unique(held[row][held[row] >= 0])  # an item seen twice is listed once
        contributions = similar[slots.clip(0)] @ similar[known].T  # [k, h]
        explained: list[Explanation | None] = []
        for slot, position in enumerate(slots):
            if position < 0:
                explained.append(None)
                continue
            order = np.argsort(-contributions[slot], kind="stable")[:TOP_HISTORY]
            explained.append(Explanation(
                history=np.asarray(ids[known[order]], dtype=object),
                contributions=contributions[slot][order].astype(np.float32),
                shares=_shares(parts[row, slot], names)))
        out.append(explained)
    return out


def _without(history: Any, item: Any) -> list[Any]:
    return [value for value in history if value != item]


def explanation_faithfulness(index: Any, queries: Any, *, explain: bool | str = True,
                             seed: int = 0) -> float:
    """The share of queries whose top explanation is faithful to the model.

    For each query with two or more distinct history items, the top
    recommended item is scored (the query tower's output · its candidate
    embedding) with the history as it is, without the explanation's top item,
    and without one other history item drawn at random. The explanation is
    faithful for that query when removing its top item lowers the score more.
    A retrieval index's scores; for a cascade, its retrieval stage's.

    Args:
        index: A retrieval :class:`~tfrs_kit.Index` whose query tower reads a history.
        queries: One row per query with the index's query features.
        explain: As in :meth:`Index.recommend <tfrs_kit.Index.recommend>`.
        seed: Seeds the random history items.

    Returns:
        The share, from 0 to 1 (0.5 is what a random explanation would get).

    Raises:
        ValueError: No query has two distinct history items.
    """
    table = pd.DataFrame(dict(queries) if not isinstance(queries, pd.DataFrame) else queries)
    table = table.reset_index(drop=True)
    recommended = index.recommend(table, k=1, explain=explain)
    feature = history_feature_of(index._functions, index._query_specs, index._id_dtype, explain)
    rng = np.random.default_rng(seed)
    keep, top_removed, other_removed, items = [], [], [], []
    for row, (explained, history) in enumerate(zip(recommended.explanations,
                                                   table[feature], strict=True)):
        distinct = list(dict.fromkeys(history))
        if explained[0] is None or len(distinct) < 2:
            continue
        top = explained[0].history[0]
        others = [value for value in distinct if value != top]
        keep.append(row)
        items.append(recommended.ids[row, 0])
        top_removed.append(_without(history, top))
        other_removed.append(_without(history, others[rng.integers(len(others))]))
    if not keep:
        raise invalid_argument("queries", "hold a query with two or more distinct history "
                               "items", f"{len(table)} queries")
    base = table.iloc[keep].reset_index(drop=True)
    vectors = index._functions.embeddings.numpy()[index._id_index.get_indexer(items)]
    scores = []
    for histories in (None, top_removed, other_removed):
        variant = base.copy()
        if histories is not None:
            variant[feature] = pd.Series(histories, dtype=object)
        scores.append(np.einsum("qd,qd->q", index._query_vectors(variant), vectors))
    return float(np.mean((scores[0] - scores[1]) > (scores[0] - scores[2])))
