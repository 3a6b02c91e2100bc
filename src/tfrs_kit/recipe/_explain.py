"""``Recipe.recommend(..., explain=True)``: why each item was recommended, and how faithfully.

Each recommended item gets an :class:`~tfrs_kit.index.Explanation`:

- the history items whose removal lowers its score most, computed by leave-one-out
  through the Recipe's own query tower (:func:`~tfrs_kit.index._explain.leave_one_out`):
  the blend's score (the towers', and iALS's and the popularity's, whose user side
  reads the user id and does not move with the history) with the history as it is
  and without each of its items;
- each component's share of its score (``|part| / sum |part|``): ``towers``, and
  for a blend ``ials`` and ``popularity`` (the blend's dot product split by
  columns); with a kept ranking stage, the served score ``retrieval_weight * z +
  ranker`` where ``z`` (the blend's score standardised over the retrieved list) is
  split the same way, each component centred on its mean over that list, and
  ``ranker`` is the rest.

``recipe/_faithfulness.py``'s ``explanation_faithfulness`` measures, rather than
assumes, that the top explanation matters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit.index._explain import Explanation, component_spans, explained, leave_one_out

__all__ = ["explain_recommended"]


def explain_recommended(recipe: Any, rows: pd.DataFrame, embeddings: np.ndarray,
                        positions: np.ndarray, retrieval: np.ndarray,
                        cascade: Any = None) -> list[list[Explanation | None]]:
    """One :class:`Explanation` per recommended slot (``None`` in an empty slot).

    Args:
        recipe: The fitted Recipe.
        rows: One query row per user, as scored.
        embeddings: ``[items, d]`` the candidates' embeddings (the blend's).
        positions: ``[users, k]`` the recommended items' candidate positions, ``-1`` empty.
        retrieval: ``[users, items]`` the blend's scores, seen items at ``-inf``
            (before a ranking stage).
        cascade: The kept ranking stage, if any.
    """
    model, history = recipe.model, recipe.columns.history
    queries = np.asarray(model.query_tower.embed(rows, verbose=False))
    spans = component_spans(model, embeddings.shape[1])
    parts = np.stack([np.einsum("qd,qkd->qk", queries[:, span],
                                embeddings[positions.clip(0)][:, :, span])
                      for span in spans.values()], axis=-1)
    names = list(spans)
    if cascade is not None:
        parts = _cascade_parts(cascade, rows, recipe.candidates(), retrieval, positions,
                               queries, embeddings, spans)
        names.append("ranker")
    reads_history = history in rows and recipe.settings.history != "none"
    histories = list(rows[history]) if reads_history else [[] for _ in range(len(rows))]
    item_dtype = recipe.candidates()[recipe.columns.item_id].to_numpy().dtype

    def scores_with(owners: np.ndarray, variants: list[Any]) -> np.ndarray:
        table = rows.iloc[owners].reset_index(drop=True)
        column = np.empty(len(variants), dtype=object)
        column[:] = [np.asarray(v, dtype=item_dtype) for v in variants]
        table[history] = column
        vectors = np.asarray(model.query_tower.embed(table, verbose=False))
        return np.einsum("md,mkd->mk", vectors, embeddings[positions[owners].clip(0)])

    attributions = (leave_one_out(histories, scores_with) if reads_history else
                    [(np.asarray([], dtype=object), np.zeros((positions.shape[1], 0)))
                     for _ in histories])
    return explained(attributions, positions, parts, names)


def _cascade_parts(cascade: Any, rows: pd.DataFrame, candidates: pd.DataFrame,
                   retrieval: np.ndarray, positions: np.ndarray, queries: np.ndarray,
                   embeddings: np.ndarray, spans: dict[str, slice]) -> np.ndarray:
    """``[users, k, components + 1]``: each served score's retrieval term split by
    component, then the ranker's term (0 for an item below the re-ranked list)."""
    import tensorflow as tf

    from tfrs_kit.ranking._cascade import _CascadeRecommender

    table = cascade.with_features(candidates)
    item_ids = np.asarray(table[cascade.ranker.item_id])
    users = np.arange(len(rows))
    scorer = _CascadeRecommender(  # as recipe/_rerank.py's rerank_scores builds it
        cascade, item_ids=item_ids, items=table, user_ids=users,
        users={str(k): np.asarray(v) for k, v in rows.items()},
        seen=(users[:0], item_ids[:0]), batch_size=8192)
    n, ranker = cascade.retrieve_k, cascade.ranker
    top = np.argpartition(-retrieval, n - 1, axis=1)[:, :n]
    listed = np.take_along_axis(retrieval, top, axis=1)
    found = listed > -np.inf
    blended = ranker.rerank(
        tf.constant(scorer._ranker_users, tf.float32),
        tf.constant(scorer._ranker_items[top], tf.float32),
        tf.constant(np.where(found, listed, 0.0).astype(np.float32)), tf.constant(found),
        scorer._similarity(users, np.where(found, top, -1)), scorer._components(users, top),
        training=False).numpy().astype(np.float64)
    weight = float(ranker.retrieval_weight.numpy())
    count = np.maximum(found.sum(axis=1), 1)
    spread = np.maximum(np.sqrt(np.array([np.var(row[ok]) if ok.any() else 0.0
                                          for row, ok in zip(listed, found, strict=True)])),
                        1e-6)
    components = len(spans)
    parts = np.zeros((*positions.shape, components + 1))
    for row, slots in enumerate(positions):
        by_position = {int(p): i for i, p in enumerate(top[row]) if found[row, i]}
        kept = top[row][found[row]]
        for slot, position in enumerate(slots):
            for c, span in enumerate(spans.values()):
                part = queries[row, span] @ embeddings[max(position, 0), span]
                if position in by_position:  # re-ranked: its share of weight * z
                    mean = (embeddings[kept][:, span] @ queries[row, span]).sum() / count[row]
                    part = weight * (part - mean) / spread[row]
                parts[row, slot, c] = part
            if position in by_position:
                parts[row, slot, -1] = (blended[row, by_position[position]]
                                        - parts[row, slot, :components].sum())
    return parts
