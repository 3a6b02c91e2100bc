"""Why an item was recommended: the history items behind it and each component's share.

Computed from what the index itself serves with (its candidate embeddings and
its query tower), so the explanation is the model's own similarity, not a
second model's guess:

- each history item's contribution to a recommended item is how much the
  item's retrieval score drops when that history item is left out of the query
  (:func:`leave_one_out`: the query tower run again on the history less that
  item, so the top explanation is faithful by construction); a loaded query
  tower that cannot be called alone falls back to the dot product of their
  candidate embeddings (the similarity the index searches by);
- a score that is a sum of parts gets each part's share of ``sum |part|``: a
  blended index (``Recipe``'s towers beside factor tables: the towers, the
  iALS factorisation and the popularity column) splits its dot product by
  columns; a cascade splits its blend ``retrieval_weight * z + ranker_weight *
  ranker`` into retrieval (split by component over a blend, each centred on its
  mean over the retrieved list) and ranker; a plain two-tower index has one part.

:func:`explanation_faithfulness` measures rather than assumes that the top
history item matters: removing it must lower the item's score more than
removing a random history item does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit.ranking._scoring import history_positions

__all__ = ["Explanation", "component_spans", "explain_results", "explained",
           "explanation_faithfulness", "history_feature_of", "leave_one_out"]

TOP_HISTORY = 3  # history items listed per recommended item


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why one item was recommended to one query.

    Attributes:
        history: Up to 3 of the query's history item ids, the largest
            contribution first.
        contributions: Their contributions: how much the recommended item's
            retrieval score drops when that history item is left out of the
            query (the dot product of candidate embeddings for a loaded query
            tower that cannot be called alone).
        shares: Each score component's share of the score (``|part| / sum
            |part|``, summing to 1): ``{"towers": 1.0}`` for a two-tower index;
            ``towers``, ``ials`` and ``popularity`` for a blended one;
            ``retrieval`` and ``ranker`` for a cascade (the blend's
            components and ``ranker`` for a cascade over a blend).
    """

    history: np.ndarray
    contributions: np.ndarray
    shares: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values, as JSON holds them (what the server answers).

        Example:
            >>> Explanation(np.array(["a"], object), np.array([0.5], np.float32),
            ...             {"towers": 1.0}).to_dict()
            {'history': ['a'], 'contributions': [0.5], 'shares': {'towers': 1.0}}
        """
        return {"history": [_plain(v) for v in np.asarray(self.history).tolist()],
                "contributions": [float(c) for c in self.contributions],
                "shares": {name: float(share) for name, share in self.shares.items()}}


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
                   excluded: list[np.ndarray], positions: np.ndarray, scores: np.ndarray,
                   spans: dict[str, slice]) -> np.ndarray:
    """``[q, k, len(spans) + 1]``: each served cascade score's retrieval terms (one per
    component), then the ranker's term.

    ``z`` is the retrieval score standardised over the retrieved list (as
    ``Ranker.rerank`` does), so the retrieval term is ``retrieval_weight * z``,
    split by component (each centred on its mean over that list), and the
    ranker's is the rest of the served score.
    """
    retrieval = (queries @ embeddings.T).astype(np.float64)
    rows = np.repeat(np.arange(len(queries)), [len(e) for e in excluded])
    retrieval_masked = retrieval.copy()
    if len(rows):
        retrieval_masked[rows, np.concatenate(excluded).astype(np.int64)] = -np.inf
    n = min(retrieve_k, retrieval.shape[1])
    listed = np.argsort(-retrieval_masked, axis=1, kind="stable")[:, :n]
    top = np.take_along_axis(retrieval_masked, listed, axis=1)
    found = np.isfinite(top)
    count = np.maximum(found.sum(axis=1, keepdims=True), 1)
    mean = np.where(found, top, 0.0).sum(axis=1, keepdims=True) / count
    spread = np.maximum(np.sqrt((found * np.square(np.where(found, top, mean) - mean)).sum(
        axis=1, keepdims=True) / count), 1e-6)
    weight = float(ranker.retrieval_weight.numpy())
    served = embeddings[np.maximum(positions, 0)]  # [q, k, d]
    terms = []
    for span in spans.values():
        part = np.einsum("qd,qkd->qk", queries[:, span], served[:, :, span])
        in_list = np.einsum("qd,qnd->qn", queries[:, span], embeddings[listed][:, :, span])
        part_mean = np.where(found, in_list, 0.0).sum(axis=1, keepdims=True) / count
        terms.append(weight * (part - part_mean) / spread)
    retrieval_term = np.sum(terms, axis=0)
    return np.stack([*terms, scores.astype(np.float64) - retrieval_term], axis=-1)


def leave_one_out(histories: Sequence[Any], scores_with: Callable[[np.ndarray, list[Any]],
                                                                  np.ndarray], *,
                  padding: Any = None, chunk: int = 4096) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: its distinct history items and how much leaving each out lowers each score.

    The score of a query's recommended items is computed by ``scores_with``
    (the model's own query computation) with the history as it is and with
    each distinct history item left out (every occurrence of it), so the item
    whose removal lowers a score most *is* the one that contributed most to it.

    Args:
        histories: Each query's history item ids.
        scores_with: ``(owners, histories) -> [m, k]``: the scores of query
            ``owners[i]``'s recommended items when its history is ``histories[i]``.
        padding: The padding id, never a history item.
        chunk: Variants scored per call of ``scores_with``.

    Returns:
        Per query, ``(items, drops)``: ``[h]`` distinct history items (first
        occurrence order) and ``[k, h]`` score drops (full history minus without).

    Example:
        >>> weights = {"a": 2.0, "b": 0.5}  # a score that sums its history's weights
        >>> items, drops = leave_one_out(
        ...     [["a", "b"]], lambda owners, h: np.array([[sum(weights[i] for i in v)]
        ...                                                for v in h]))[0]
        >>> list(items), drops.tolist()
        (['a', 'b'], [[2.0, 0.5]])
    """
    owners: list[int] = []
    variants: list[Any] = []
    distinct: list[np.ndarray] = []
    for row, history in enumerate(histories):
        values = [v for v in _plain_list(history) if v != padding]
        items = np.asarray(list(dict.fromkeys(values)), dtype=object)
        distinct.append(items)
        owners += [row] * (len(items) + 1)  # the full history, then each item left out
        variants += [values] + [[v for v in values if v != item] for item in items]
    if not owners:
        return []
    owner = np.asarray(owners)
    scores = np.concatenate([np.asarray(scores_with(owner[i:i + chunk], variants[i:i + chunk]),
                                        np.float64) for i in range(0, len(owner), chunk)])
    out, start = [], 0
    for items in distinct:
        block = scores[start:start + len(items) + 1]
        out.append((items, (block[0][None, :] - block[1:]).T))
        start += len(items) + 1
    return out


def _plain(value: Any) -> Any:
    """A NumPy scalar as a Python value, bytes decoded."""
    value = value.item() if isinstance(value, np.generic) else value
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _plain_list(history: Any) -> list[Any]:
    """A history's ids as plain Python values (bytes decoded)."""
    if history is None or (np.ndim(history) == 0 and pd.isna(history)):
        return []
    values = history.tolist() if isinstance(history, np.ndarray) else list(history)
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


def explained(attributions: list[tuple[np.ndarray, np.ndarray]], positions: np.ndarray,
              parts: np.ndarray, names: list[str]) -> list[list[Explanation | None]]:
    """:class:`Explanation` s from :func:`leave_one_out`'s drops and the score parts
    (``[q, k, len(names)]``); ``None`` where ``positions`` is ``-1``."""
    out: list[list[Explanation | None]] = []
    for row, slots in enumerate(positions):
        items, drops = attributions[row]
        explained_row: list[Explanation | None] = []
        for slot, position in enumerate(slots):
            if position < 0:
                explained_row.append(None)
                continue
            order = np.argsort(-drops[slot], kind="stable")[:TOP_HISTORY]
            explained_row.append(Explanation(
                history=items[order], contributions=drops[slot][order].astype(np.float32),
                shares=_shares(parts[row, slot], names)))
        out.append(explained_row)
    return out


def explain_results(functions: Any, *, queries: Callable[[], np.ndarray], history: Any,
                    ids: pd.Index, positions: np.ndarray, scores: np.ndarray,
                    excluded: list[np.ndarray], retrieve_k: int | None = None,
                    scores_with: Callable[[np.ndarray, list[Any]], np.ndarray] | None = None,
                    padding: Any = None) -> list[list[Explanation | None]]:
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
        scores_with: As in :func:`leave_one_out`: the history items are ranked
            by how much leaving each out lowers the item's (retrieval) score.
            ``None``: by the dot product of candidate embeddings (a loaded
            query tower that cannot be called alone).
        padding: The padding id of the history.
    """
    embeddings = functions.embeddings.numpy()
    spans = component_spans(functions, embeddings.shape[1])
    if retrieve_k is not None:
        parts = _cascade_parts(functions.ranker, retrieve_k, queries(), embeddings, excluded,
                               positions, scores, spans)
        # One retriever's score is "retrieval"; a blend's splits into its components.
        names = ["retrieval" if len(spans) == 1 else name for name in spans] + ["ranker"]
    elif len(spans) == 1:  # one component: no query vectors needed (a loaded index too)
        parts = np.ones((*positions.shape, 1))
        names = list(spans)
    else:
        vectors = queries()
        parts = np.stack([np.einsum("qd,qkd->qk", vectors[:, span],
                                    embeddings[np.maximum(positions, 0)][:, :, span])
                          for span in spans.values()], axis=-1)
        names = list(spans)
    if scores_with is not None:
        attributions = leave_one_out(list(history), scores_with, padding=padding)
    else:
        attributions = _similarities(embeddings[:, spans["towers"]], history, ids, positions)
    return explained(attributions, positions, parts, names)


def _similarities(similar: np.ndarray, history: Any, ids: pd.Index,
                  positions: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: its history items in the index and their ``[k, h]`` dot products with
    the recommended items' candidate embeddings."""
    held = history_positions(history, ids)
    out = []
    for row, slots in enumerate(positions):
        known = pd.unique(held[row][held[row] >= 0])  # an item seen twice is listed once
        out.append((np.asarray(ids[known], dtype=object),
                    similar[slots.clip(0)] @ similar[known].T))
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
