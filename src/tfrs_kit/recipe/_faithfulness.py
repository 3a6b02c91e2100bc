"""How faithful the Recipe's explanations are: measured, not assumed.

Removing the top explaining item from a user's history must lower the
recommended item's score more than removing a random history item does;
:func:`explanation_faithfulness` is the share of users where it does.
``benchmarks/ranking.py`` reports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit.recipe._serve import _history_rows, _item_embeddings

__all__ = ["explanation_faithfulness"]


def explanation_faithfulness(recipe: Any, users: Any = None, *, seed: int = 0,
                             max_users: int = 1000) -> float:
    """The share of users whose top explanation is faithful to the Recipe's model.

    For each user with two or more distinct history items, the top item
    ``recipe.recommend(users, k=1, explain=True)`` returns is scored by the
    blend (its query tower on the user's query row, the first stage's score when
    a ranking stage is kept) with the history as it is, without the
    explanation's top history item, and without one other history item drawn at
    random. The explanation is faithful for that user when removing its top item
    lowers the score more (a tie is not). The scores are computed here, apart
    from the explanation: the rows as ``recommend(history=...)`` builds them.

    Args:
        recipe: A fitted :class:`~tfrs_kit.Recipe` whose query tower reads a history.
        users: User ids of the training log (default: every user, up to ``max_users``).
        seed: Seeds the users drawn and the random history items.
        max_users: The most users measured (drawn at random).

    Returns:
        The share, from 0 to 1 (about 0.5 for a random explanation).

    Raises:
        ValueError: No user has two distinct history items.

    Example:
        >>> share = explanation_faithfulness(recipe)  # doctest: +SKIP
    """
    c = recipe.columns
    queries = recipe.queries()
    rng = np.random.default_rng(seed)
    if users is None:
        users = queries[c.user_id].to_numpy()
        if len(users) > max_users:
            users = users[np.sort(rng.permutation(len(users))[:max_users])]
    users = np.asarray(users)
    rows = queries.iloc[pd.Index(queries[c.user_id]).get_indexer(users)]
    reads = recipe.settings.history != "none" and c.history in rows
    histories = list(rows[c.history]) if reads else [[] for _ in users]
    keep = [i for i, h in enumerate(histories) if len(set(np.asarray(h).tolist())) >= 2]
    if not keep:
        raise invalid_argument("users", "hold a user with two or more distinct history items",
                               f"{len(users)} users")
    recommended = recipe.recommend(list(users[keep]), k=1, explain=True)
    found = [row for row, slots in enumerate(recommended.explanations) if slots[0] is not None]
    if not found:  # every item seen: nothing recommended
        raise invalid_argument("users", "hold a user with an item left to recommend",
                               f"{len(keep)} users")
    users, keep = users[keep][found], [keep[row] for row in found]
    variants: list[list[Any]] = [[], [], []]  # as it is, less the top item, less another
    for row in range(len(users)):
        history = list(np.asarray(histories[keep[row]]).tolist())
        top = recommended.explanations[found[row]][0].history[0]
        others = [v for v in dict.fromkeys(history) if v != top]
        other = others[rng.integers(len(others))]
        variants[0].append(history)
        variants[1].append([v for v in history if v != top])
        variants[2].append([v for v in history if v != other])
    candidates = recipe.candidates()
    item_ids = candidates[c.item_id].to_numpy()
    embeddings = _item_embeddings(recipe, recipe.model, candidates)
    vectors = embeddings[pd.Index(item_ids).get_indexer(recommended.ids[found, 0])]
    positions = pd.Index(queries[c.user_id]).get_indexer(users)
    scores = []
    for histories_variant in variants:
        table = _history_rows(recipe, queries, users, positions,
                              [np.asarray(h, dtype=item_ids.dtype) for h in histories_variant],
                              item_ids.dtype)
        query = np.asarray(recipe.model.query_tower.embed(table, verbose=False))
        scores.append(np.einsum("qd,qd->q", query, vectors).astype(np.float64))
    return float(np.mean((scores[0] - scores[1]) > (scores[0] - scores[2])))
