"""The cascade in one call: :func:`fit_cascade`, the split protocol ``Cascade.fit`` runs.

By hand it takes a dozen calls (``docs/tutorials/ranking.md``): hold out each
user's latest rows, train a helper retriever (the served one's settings) on the
rest, train the ranker on the helper's lists of the held-out rows
(:meth:`Ranker.fit_lists <tfrs_kit.Ranker.fit_lists>`, which chooses the blend
on held-out users), then serve with the retriever trained on the whole log. A
retriever scores the rows it learned from above tomorrow's positives, which is
why the ranker must learn from a retriever that never saw its rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_fraction, check_int
from tfrs_kit.data._table import TableLike
from tfrs_kit.evaluation import per_user_temporal_split
from tfrs_kit.features import VocabularyBuilder
from tfrs_kit.ranking._model import Ranker
from tfrs_kit.ranking._scoring import component_bounds
from tfrs_kit.ranking._sequence import NextItemModel, next_items_for, refit_next_items
from tfrs_kit.towers import Tower

__all__ = ["AGE", "LOG_FEATURES", "MIN_RANKING_USERS", "POPULARITY", "RECENT", "fit_cascade",
           "fit_ranker", "with_popularity"]

#: The numeric item feature the default ranker reads: log(1 + the item's events).
POPULARITY = "item_log_count"
#: ... log(1 + its events among the latest :data:`RECENT_SHARE` of the log's rows) ...
RECENT = "item_log_recent"
#: ... and the share of the log's rows since its first event (1: at the start; 0: new).
AGE = "item_age"
#: The item features derived from the log, in the order they are stored.
LOG_FEATURES = (POPULARITY, RECENT, AGE)
RECENT_SHARE = 0.1
#: The fewest users with held-out rows the ranking slice needs (the blend is chosen
#: on a share of them).
MIN_RANKING_USERS = 10


def _frame(data: TableLike, argument: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    try:
        return pd.DataFrame(dict(data))  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise invalid_argument(argument, "be a DataFrame or a dict of columns",
                               type(data).__name__, error=TypeError) from error


def with_popularity(items: pd.DataFrame, log: pd.DataFrame, item_id: str) -> pd.DataFrame:
    """``items`` with :data:`LOG_FEATURES` counted in ``log``, its rows in time order (0 for
    an item without events)."""
    ids = log[item_id].reset_index(drop=True)
    recent = ids.iloc[len(ids) - math.ceil(RECENT_SHARE * len(ids)):]
    first = pd.Series(np.arange(len(ids)), index=ids.to_numpy()).groupby(level=0).min()
    out = items.copy()
    for name, counts in ((POPULARITY, ids.value_counts()), (RECENT, recent.value_counts())):
        out[name] = np.log1p(out[item_id].map(counts).fillna(0.0)).astype(np.float32)
    since = (len(ids) - out[item_id].map(first)) / max(len(ids), 1)
    out[AGE] = since.fillna(0.0).astype(np.float32)
    return out


def _catalogue(log: pd.DataFrame, items: TableLike | None, item_id: str,
               retrieve_k: int) -> pd.DataFrame:
    """One row per item; every logged item must have one, and ``retrieve_k`` fit in it."""
    if items is None:
        table = log.drop_duplicates(item_id, keep="last")
    else:
        table = _frame(items, "items")
        if item_id not in table:
            raise missing_column("items", item_id, list(table.columns))
        table = table.drop_duplicates(item_id, keep="last")
        missing = pd.Index(log[item_id].unique()).difference(pd.Index(table[item_id]))
        if len(missing):
            raise invalid_argument(
                "items", "hold one row (with its features) for every item of the log",
                f"{len(missing)} logged items missing, such as {list(missing[:5])}",
                hint="Add their rows to `items`, or drop their events from the log.")
    if retrieve_k > len(table):
        raise invalid_argument(
            "retrieve_k", f"be at most the catalogue size ({len(table)} items)", retrieve_k,
            hint="Retrieve fewer candidates, or pass the whole catalogue as items=.")
    return table.reset_index(drop=True)


def _split(log: pd.DataFrame, fraction: float, user_id: str,
           item_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's earlier rows (the helper's) and latest ``fraction`` (the ranker's)."""
    earlier, later = per_user_temporal_split(log, test_fraction=fraction, user_id=user_id,
                                             item_id=item_id, min_train=1)
    earlier, later = pd.DataFrame(earlier), pd.DataFrame(later)
    users = np.intersect1d(earlier[user_id].unique(), later[user_id].unique())
    if len(users) < MIN_RANKING_USERS:
        raise invalid_argument(
            "log", f"hold at least {MIN_RANKING_USERS} users with two or more rows (the "
            "ranking slice: each user's latest rows, re-ranked from a retriever trained on "
            "the earlier ones)", f"{len(log)} rows, {len(users)} such users",
            hint="Pass a longer log, or a larger ranking_fraction=.")
    return earlier, later[later[user_id].isin(users)]


def _query_rows(rows: pd.DataFrame, users: pd.DataFrame | None, history: Any,
                user_id: str) -> pd.DataFrame:
    """One row per user as of ``rows``: its last row (its latest history), user features."""
    if history is not None:
        table = pd.DataFrame(history.for_users(rows))
    else:
        table = rows.drop_duplicates(user_id, keep="last")
    if users is not None:
        extra = [c for c in users.columns if c == user_id or c not in table]
        table = table.merge(users[extra], on=user_id, how="left")
    return table.reset_index(drop=True)


def _default_ranker(rows: pd.DataFrame, items: pd.DataFrame,
                    users: pd.DataFrame | None, *, user_id: str, item_id: str,
                    history_feature: str | None, dim: int, stage: Any = None,
                    next_items: bool | NextItemModel = False, next_log: pd.DataFrame | None = None,
                    seed: int = 0) -> Ranker:
    """A listwise ranker on the users' and items' features, popularity and history (and
    ``stage``'s score components; with ``next_items`` and a history, a next-item model:
    ``next_items`` itself, or one trained on ``next_log``'s sequences).

    Not on the item ids: the first stage already scores each item, and ids learned
    on one slice of time remember what was in demand then (on a log whose tastes
    drift, validation right after that slice praised them, later test rows did not).
    """
    user_features = ([c for c in users.columns if c != user_id]
                     if users is not None else []) or [user_id]
    item_features = [c for c in items.columns if c != item_id and c not in LOG_FEATURES]
    vocabularies = (VocabularyBuilder().fit(rows, features=user_features)
                    | VocabularyBuilder().fit(items, features=item_features or [item_id])
                    | VocabularyBuilder().fit(items, features=dict.fromkeys(LOG_FEATURES,
                                                                            "numeric")))
    width = 0 if stage is None else stage.candidate_tower.embed(
        items.iloc[:1], verbose=False).shape[1]
    model = None
    if history_feature and isinstance(next_items, NextItemModel):
        model = next_items
    elif history_feature and next_items and next_log is not None:
        model = next_items_for(next_log, items[item_id], user_id=user_id, item_id=item_id,
                               seed=seed)
    return Ranker(
        Tower(vocabularies, features=user_features, output_dim=dim),
        Tower(vocabularies, features=[*item_features, *LOG_FEATURES], output_dim=dim),
        item_id=item_id, loss="listwise", cross_layers=0, hidden_dims=[],
        retrieval_score=True, history_feature=history_feature, recent=(1, 2, 3, 5, 10, 20),
        components=component_bounds(stage, width) if stage is not None else (),
        next_items=model)


def _history_feature(retriever: Any, history: Any) -> str | None:
    """The history column both stages read: the builder's, if the retriever reads it."""
    name = getattr(history, "name", None)
    return name if name is not None and name in retriever.query_tower.features else None


def _helper(retriever: Any, rows: pd.DataFrame, **fit: Any) -> Any:
    """A retriever of ``retriever``'s settings (fresh weights) trained on ``rows``."""
    helper = type(retriever).from_config(retriever.get_config())
    helper.fit(rows, **fit)
    return helper


def _check_retriever(retriever: Any) -> None:
    if not all(hasattr(retriever, name) for name in ("query_tower", "candidate_tower",
                                                      "get_config")):
        raise invalid_argument(
            "retriever", "be a fitted TwoTowerRetrieval (with query_tower and candidate_tower)",
            type(retriever).__name__, error=TypeError)
    if not retriever.built:
        raise invalid_argument("retriever", "be fitted on the log first", "an unfitted model",
                               hint="Call retriever.fit(log) before Cascade.fit.")


def fit_cascade(
    cascade_class: type,
    retriever: Any,
    log: TableLike,
    *,
    served_log: TableLike | None = None,
    items: TableLike | None = None,
    users: TableLike | None = None,
    history: Any = None,
    ranker: Ranker | None = None,
    first_stage: Callable[[Any, pd.DataFrame], Any] | None = None,
    components: bool = True,
    next_items: bool = False,
    retrieve_k: int = 50,
    ranking_fraction: float = 0.2,
    user_id: str = "user_id",
    epochs: int = 5,
    retriever_epochs: int | None = None,
    batch_size: int = 256,
    ranker_weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    dim: int = 16,
    seed: int = 0,
    verbose: bool | str | int = False,
) -> Any:
    """Trains the ranker of a retrieve-then-rank cascade in one call; returns the Cascade.

    The split protocol runs inside: each user's latest ``ranking_fraction`` of
    ``log`` is the ranking slice; a helper retriever of ``retriever``'s settings
    (fresh weights) learns from the earlier rows; the ranker learns to re-order
    the helper's top ``retrieve_k`` for each user (their earlier items left
    out, hard negatives by construction) with the listwise loss, as a
    correction to retrieval's order, and the blend with retrieval is chosen by
    ndcg@10 on held-out users (:meth:`Ranker.fit_lists
    <tfrs_kit.Ranker.fit_lists>`). The cascade serves with ``retriever``, which
    should have been trained on the whole ``log`` (or ``served_log``).

    The default ranker (a linear head) reads the users' features (``users``'
    columns), the items' (``items``' columns), their popularity, recent
    popularity and age (:attr:`Cascade.LOG_FEATURES <tfrs_kit.Cascade.LOG_FEATURES>`,
    counted in the log's rows, which should be in time order: in the earlier rows
    in training, in the whole log when served), the retrieval score, and with
    ``history`` the similarity of each candidate to the user's last 1, 2, 3, 5,
    10 and 20 items (recency).

    Args:
        retriever: A :class:`~tfrs_kit.TwoTowerRetrieval` trained on ``log``.
        log: The interactions (a DataFrame or dict of columns) with the user
            and item ids, a timestamp if there is one, and every feature the
            retriever reads (``history`` adds its history column).
        served_log: The log the cascade serves after, when it is longer than ``log``
            (``log`` with later rows; the retriever trained on it): the ranker learns
            from ``log`` and is served as of ``served_log`` (the items' popularity, the
            users' latest rows, the next-item model retrained on it). Default: ``log``.
        items: One row per item with the item features; default: the log's
            distinct items. Every logged item needs a row.
        users: One row per user with the user features (the ranker's query
            side; the request carries them too).
        history: The :class:`~tfrs_kit.HistoryBuilder` whose column the
            retriever's query tower reads, if it reads one.
        ranker: An untrained :class:`~tfrs_kit.Ranker` to use instead of the default.
        first_stage: ``first_stage(helper, earlier_rows)`` returns the first stage the
            ranker learns to re-rank, when the served one is more than ``retriever``
            (a blend of its scores with another model's, fitted on ``earlier_rows``
            only): the ranker then learns from the candidates and scores it will
            serve with. Default: the helper retriever itself.
        components: The default ranker also reads each component of the first
            stage's score when it is a blend (the towers', the factorisation's and
            the popularity's, each standardised within the list): how much each
            matters is then learned per list, not fixed by the blend's weights.
        next_items: The default ranker also reads what a next-item model (a small
            self-attention model over each user's history in order, trained on the
            earlier rows, then served after the whole log) says of each candidate
            coming next (with ``history`` only): the order of the history, which the
            two-tower query blurs.
        retrieve_k: Candidates retrieved per query, then re-ranked.
        ranking_fraction: Each user's latest share of ``log`` the ranker learns from.
        user_id: The user id column.
        epochs: Passes of the ranker (and the helper retriever) over their data.
        retriever_epochs: The helper retriever's passes, if not ``epochs``.
        batch_size: The helper retriever's batch size.
        ranker_weights: The blend weights tried (0: retrieval's order).
        dim: The default ranker's tower and hidden sizes.
        seed: Seeds the weights, the split of validation users and shuffles.
        verbose: Keras's progress output.

    Returns:
        A :class:`~tfrs_kit.Cascade`, with ``items_`` (the catalogue
        and its popularity), ``users_`` (each user's latest query row) and
        ``helper_`` (the first stage the ranker learned from: the helper
        retriever, or what ``first_stage`` made of it).

    Raises:
        ValueError: ``retrieve_k`` larger than the catalogue, a log with too
            few users for the ranking slice, logged items missing from
            ``items``, a missing column.
        TypeError: ``retriever`` is not a two-tower retrieval model.

    Example:
        >>> import tfrs_kit as tk
        >>> data = tk.datasets.synthetic(600, num_users=40, num_items=30, seed=0)
        >>> vocabs = tk.VocabularyBuilder().fit(data.interactions, features=["user_id", "item_id"])
        >>> retriever = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=8),
        ...                                  tk.Tower(vocabs, features=["item_id"], output_dim=8))
        >>> _ = retriever.fit(data.interactions, epochs=1, verbose=0)
        >>> cascade = tk.Cascade.fit(retriever, data.interactions, items=data.items,
        ...                          retrieve_k=10, epochs=1)
        >>> cascade
        Cascade(retrieve_k=10)
    """
    _check_retriever(retriever)
    retrieve_k = check_int("retrieve_k", retrieve_k, minimum=1)
    fraction = check_fraction("ranking_fraction", ranking_fraction)
    item_id = retriever.item_id
    frame = _frame(log, "log")
    served = frame if served_log is None else _frame(served_log, "served_log")
    for argument, table in (("log", frame), ("served_log", served)):
        for column in (user_id, item_id):
            if column not in table:
                raise missing_column(argument, column, list(table.columns))
    last = [table.drop_duplicates(item_id, keep="last")  # each item's last row (served_log's)
            for table in ((frame,) if served is frame else (frame, served))]
    catalogue = _catalogue(pd.concat(last, ignore_index=True), items, item_id, retrieve_k)
    user_table = None if users is None else _frame(users, "users")
    earlier, later = _split(frame, fraction, user_id, item_id)
    rows = history.transform(earlier) if history is not None else earlier
    tf.keras.utils.set_random_seed(seed)
    helper = _helper(retriever, pd.DataFrame(rows), epochs=retriever_epochs or epochs,
                     batch_size=batch_size, seed=seed, verbose=verbose)
    stage = helper if first_stage is None else first_stage(helper, earlier)
    ranker = fit_ranker(stage, earlier, later, items=catalogue, users=user_table,
                        history_feature=_history_feature(retriever, history), history=history,
                        ranker=ranker, components=components, next_items=next_items,
                        retrieve_k=retrieve_k, user_id=user_id, item_id=item_id, epochs=epochs,
                        ranker_weights=ranker_weights, dim=dim, seed=seed, verbose=verbose)
    if ranker.next_items is not None:  # served after the whole log, as the retriever is
        refit_next_items(ranker.next_items, served, user_id=user_id, item_id=item_id, seed=seed)
    fitted = cascade_class(retriever, ranker, retrieve_k=retrieve_k)
    fitted.items_ = with_popularity(catalogue, served, item_id)
    fitted.users_ = _query_rows(served, user_table, history, user_id)
    fitted.helper_ = stage
    return fitted


def fit_ranker(stage: Any, earlier: pd.DataFrame, later: pd.DataFrame, *, items: pd.DataFrame,
               users: pd.DataFrame | None, history_feature: str | None, history: Any = None,
               ranker: Ranker | None = None, components: bool = True,
               next_items: bool | NextItemModel = False, retrieve_k: int = 50,
               user_id: str = "user_id", item_id: str = "item_id", epochs: int = 5,
               ranker_weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
               dim: int = 16, seed: int = 0, verbose: bool | str | int = False) -> Ranker:
    """:func:`fit_cascade`'s ranker (the default one unless ``ranker``), learning to
    re-order the first ``stage``'s top ``retrieve_k`` for ``later``'s rows, as of
    ``earlier``'s (the users' histories, the items' :data:`LOG_FEATURES`, the
    next-item model's sequences): for a caller that holds its split and a first stage
    trained on ``earlier`` already. ``next_items``: a default ranker's next-item model,
    ``True`` (one trained on ``earlier``) or one trained already (shared, not copied)."""
    queries = _query_rows(earlier, users, history, user_id)
    train_items = with_popularity(items, earlier, item_id)  # as of the first stage's rows
    if ranker is None:
        ranker = _default_ranker(queries, train_items, users, user_id=user_id,
                                 item_id=item_id, dim=dim, seed=seed,
                                 history_feature=history_feature,
                                 stage=stage if components else None,
                                 next_items=next_items, next_log=earlier)
    ranker.fit_lists(queries, later, retriever=stage, user_id=user_id, candidates=train_items,
                     seen=earlier[[user_id, item_id]], retrieve_k=retrieve_k, epochs=epochs,
                     ranker_weights=ranker_weights, seed=seed, verbose=verbose)
    return ranker
