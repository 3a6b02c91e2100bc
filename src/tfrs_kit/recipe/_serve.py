"""``Recipe.recommend``: top-k candidates for users by id or by a history of item ids."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_bool, check_int, padding_value
from tfrs_kit.ranking._scoring import history_positions
from tfrs_kit.recipe._explain import explain_recommended
from tfrs_kit.recipe._rerank import rerank_scores, serving_cascade

__all__ = ["recommend"]


def recommend(recipe: Any, users: Any, *, history: Any, k: int, exclude_seen: bool,
              explain: bool = False) -> Any:
    """See :meth:`tfrs_kit.Recipe.recommend`."""
    from tfrs_kit.index import Recommendations

    check_bool("exclude_seen", exclude_seen)
    check_bool("explain", explain)
    c = recipe.columns
    candidates = recipe.candidates()
    item_ids = candidates[c.item_id].to_numpy()
    k = check_int("k", k, minimum=1)
    if k > len(item_ids):
        raise invalid_argument("k", f"be at most {len(item_ids)}, the number of candidates", k)
    queries = recipe.queries()
    user_ids, histories = _requests(users, history, queries[c.user_id])
    positions = pd.Index(queries[c.user_id]).get_indexer(user_ids)
    if histories is None:
        unknown = user_ids[positions < 0]
        if len(unknown):
            examples = ", ".join(repr(u) for u in queries[c.user_id].head(5).tolist())
            raise invalid_argument(
                "users", "be user ids of the training log, or come with a history", unknown[0],
                hint=f"Known users include {examples}; for a new user pass history=[...].")
        rows = queries.iloc[positions].reset_index(drop=True)
    else:
        _warn_unknown_histories(histories, positions, item_ids)
        rows = _history_rows(recipe, queries, user_ids, positions, histories, item_ids.dtype)
    model = recipe.model
    embeddings = _item_embeddings(recipe, model, candidates)
    scores = retrieval = model.query_tower.embed(rows, verbose=False) @ embeddings.T
    if exclude_seen:
        _mask(scores, recipe, user_ids, positions, histories, item_ids)
    cascade = serving_cascade(recipe)
    if cascade is not None:  # the kept ranker re-orders the top retrieve_k
        scores = rerank_scores(cascade, rows, candidates, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    ids = item_ids[order]
    ids = np.where(np.isneginf(top), padding_value(
        "int64" if item_ids.dtype.kind in "iu" else "string"), ids)
    if not explain:
        return Recommendations(ids=ids, scores=top)
    return Recommendations(ids=ids, scores=top, explanations=explain_recommended(
        recipe, rows, embeddings, np.where(np.isneginf(top), -1, order), retrieval, cascade))


def _requests(users: Any, history: Any,
              known: pd.Series) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """The user ids (the padding id for anonymous ones) and the histories, if any."""
    single_history = history is not None and _is_flat(history)
    histories = None if history is None else (
        [np.asarray(history)] if single_history else [np.asarray(h) for h in history])
    if users is None:
        if histories is None:
            raise invalid_argument("users", "name users, or history= give their items", None)
        integer = known.dtype.kind in "iu"
        return (np.full(len(histories), padding_value("int64" if integer else "string"),
                        dtype=np.int64 if integer else object), histories)
    single = np.ndim(users) == 0
    ids = np.asarray([users] if single else list(users))
    if histories is not None and len(histories) != len(ids):
        raise invalid_argument("history", f"hold one list per user ({len(ids)})",
                               f"{len(histories)} lists")
    return ids, histories


def _warn_unknown_histories(histories: Sequence[np.ndarray], positions: np.ndarray,
                            item_ids: np.ndarray) -> None:
    """Warns when a user the model never saw comes with items none of which it knows:
    scored from the unknown-item embedding alone, whatever the items (the HTTP server
    refuses such a query)."""
    new = [h for h, p in zip(histories, positions, strict=True) if p < 0 and len(h)]
    found = (history_positions(new, pd.Index(item_ids)) >= 0).any(axis=1)  # one lookup
    blind = [new[row] for row in np.flatnonzero(~found)]
    if blind:
        more = f" (and {len(blind) - 1} more such histories)" if len(blind) > 1 else ""
        warnings.warn(
            f"history: none of {np.asarray(blind[0])[:5].tolist()}{more} is a candidate of "
            "the model, and the user is new: scored from the unknown-item embedding alone, "
            "as any other unknown items would be. Check the ids' type and spelling "
            "(candidates such as "
            f"{item_ids[:3].tolist()}).", UserWarning, stacklevel=4)


def _is_flat(history: Any) -> bool:
    """Whether ``history`` is one list of item ids (not a list of lists)."""
    if isinstance(history, np.ndarray):
        return history.dtype != object and history.ndim == 1
    values = list(history)
    return not values or all(np.ndim(v) == 0 for v in values)


def _history_rows(recipe: Any, queries: pd.DataFrame, user_ids: np.ndarray,
                  positions: np.ndarray, histories: Sequence[np.ndarray],
                  item_dtype: np.dtype) -> pd.DataFrame:
    """Query rows built from given histories (the last ``max_history`` items each); user
    features from the known users' rows, else the most common value."""
    c, settings = recipe.columns, recipe.settings
    rows: dict[str, Any] = {c.user_id: user_ids}
    if settings.history != "none":
        column = np.empty(len(histories), dtype=object)
        column[:] = [np.asarray(h, dtype=item_dtype)[-recipe.max_history:] if len(h)
                     else np.asarray([], dtype=item_dtype) for h in histories]
        rows[c.history] = column
    for name in settings.user_features:
        values = queries[name].to_numpy()
        common = queries[name].mode(dropna=True).iloc[0]
        rows[name] = np.array([values[p] if p >= 0 else common for p in positions],
                              dtype=values.dtype)
    return pd.DataFrame(rows)


def _item_embeddings(recipe: Any, model: Any, candidates: pd.DataFrame) -> np.ndarray:
    """The candidates' embeddings, computed once per model."""
    cached = recipe._item_embeddings
    if cached is None or cached[0] is not model:
        cached = (model, np.asarray(model.candidate_tower.embed(candidates, verbose=False)))
        recipe._item_embeddings = cached
    return cached[1]


def _mask(scores: np.ndarray, recipe: Any, user_ids: np.ndarray, positions: np.ndarray,
          histories: Sequence[np.ndarray] | None, item_ids: np.ndarray) -> None:
    """Sets to ``-inf`` the scores of each user's seen items and history items."""
    c = recipe.columns
    items = pd.Index(item_ids)
    seen = recipe._seen()
    known = seen[seen[c.user_id].isin(user_ids[positions >= 0])]
    by_user = known.groupby(c.user_id)[c.item_id].agg(list).to_dict() if len(known) else {}
    for row, user in enumerate(user_ids):
        excluded = list(by_user.get(user, [])) if positions[row] >= 0 else []
        if histories is not None:
            excluded += list(histories[row])
        columns = items.get_indexer(excluded)
        scores[row, columns[columns >= 0]] = -np.inf
