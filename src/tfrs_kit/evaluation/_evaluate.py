"""Full-catalogue evaluation of any recommender through one small protocol."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit._errors import invalid_argument, unknown_name
from tfrs_kit._progress import Progress
from tfrs_kit._validation import (
    check_choice,
    check_int,
    check_same_kind,
    check_verbose,
)
from tfrs_kit.data._schema import Schema, resolve_schema
from tfrs_kit.data._table import TableLike, is_multivalued, to_table
from tfrs_kit.evaluation._interactions import Interactions
from tfrs_kit.evaluation._metrics import (
    _ild_from_positions,
    _per_list_mean,
    _ranking_from_hits,
    _self_information,
)
from tfrs_kit.evaluation._report import Report

__all__ = ["METRICS", "Recommender", "evaluate"]

_RANKING = ("recall", "precision", "ndcg", "map", "mrr", "hit_rate")
METRICS: tuple[str, ...] = (
    *_RANKING, "coverage", "novelty", "popularity", "ild", "top_k_accuracy",
)
"""Every metric name :func:`evaluate` accepts, in report order."""

_DEFAULT_METRICS = (*_RANKING, "coverage", "novelty", "popularity")
_BATCH_ELEMENTS = 1 << 23  # scores held at once: 8M floats (32 MiB in float32)


@runtime_checkable
class Recommender(Protocol):
    """What :func:`evaluate` needs from a model: a catalogue and a batched scorer.

    Attributes:
        item_ids: The catalogue, a 1-D array of distinct item ids in score-column order.

    ``score(user_ids)`` returns a float array ``[len(user_ids), len(item_ids)]`` (higher
    is better) for a 1-D array of user ids, including ids never seen in training (the
    recommender decides how to score those). It should return a fresh array:
    :func:`evaluate` overwrites it in place to mask training items.

    Every :mod:`tfrs_kit.baselines` model is a Recommender. A model that is not one, but
    has ``as_recommender(train, *, user_id, item_id)``, is converted by :func:`evaluate`
    with that method.

    Example:
        >>> import numpy as np
        >>> class MostRecent:
        ...     item_ids = np.array([10, 20, 30])
        ...     def score(self, user_ids):
        ...         return np.tile([0.0, 1.0, 2.0], (len(user_ids), 1))
        >>> isinstance(MostRecent(), Recommender)
        True
    """

    item_ids: np.ndarray

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Scores every catalogue item for each user: ``[len(user_ids), len(item_ids)]``."""
        ...


class _NaNScores(ValueError):
    """Raised by :func:`_top_k` for scores that contain NaN."""


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row, best first, ties to the lower column.

    Exact, and equal to a stable ``argsort(-scores)[:, :k]``, but several times faster
    than ``np.argpartition`` on wide rows: the row is cut into about ``10 * k`` blocks,
    and the top k items all lie in the k blocks with the highest maxima (each block that
    holds one of them has a maximum at least the k-th best score, and there are at most
    k such blocks). Only those blocks are searched. Rows where ties make that argument
    fail (more than k blocks reach the k-th best score) are redone on the whole row.

    Raises:
        _NaNScores: If ``scores`` contains NaN.
    """
    n_rows, n_cols = scores.shape
    block = n_cols // (10 * k)
    if block < 4:
        if np.isnan(scores).any():
            raise _NaNScores
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(scores, order, axis=1)
    block_max = np.maximum.reduceat(scores, np.arange(0, n_cols, block), axis=1)
    if np.isnan(block_max).any():
        raise _NaNScores
    best_blocks = np.sort(np.argpartition(-block_max, k - 1, axis=1)[:, :k], axis=1)
    cols = (best_blocks[:, :, None] * block + np.arange(block)).reshape(n_rows, -1)
    inside = cols < n_cols  # the last block may be short
    cols = np.minimum(cols, n_cols - 1)
    values = np.where(inside, np.take_along_axis(scores, cols, axis=1), -np.inf)
    floor = np.take_along_axis(block_max, best_blocks, axis=1).min(axis=1)
    top_cols, top_values = _select_sorted(cols, values, floor, k)
    ambiguous = (block_max >= top_values[:, k - 1:k]).sum(axis=1) > k
    if ambiguous.any():
        rows = np.flatnonzero(ambiguous)
        full = scores[rows]
        floor = np.partition(full, n_cols - k, axis=1)[:, n_cols - k]
        columns = np.broadcast_to(np.arange(n_cols), full.shape)
        top_cols[rows], top_values[rows] = _select_sorted(columns, full, floor, k)
    return top_cols, top_values


def _select_sorted(
    cols: np.ndarray, values: np.ndarray, floor: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row among the entries at or above ``floor`` (at least k per row),
    by value then column."""
    rows, where = np.nonzero(values >= floor[:, None])
    picked, columns = values[rows, where], cols[rows, where]
    order = np.lexsort((columns, -picked, rows))
    starts = np.searchsorted(rows[order], np.arange(len(floor)))
    take = order[starts[:, None] + np.arange(k)]
    return columns[take], picked[take]


def _check_ks(k: Any) -> tuple[int, ...]:
    """One cut-off or a non-empty sequence of them, sorted and without repeats."""
    if isinstance(k, (numbers.Integral, str, bytes)) or not isinstance(k, Iterable):
        return (check_int("k", k, minimum=1),)
    values = [check_int("k", value, minimum=1) for value in k]
    if not values:
        raise invalid_argument("k", "be an integer >= 1 or a non-empty sequence of them", k,
                               hint="For example k=(10, 100).")
    return tuple(sorted(set(values)))


def _check_metrics(metrics: Iterable[str] | None, ild_possible: bool) -> tuple[str, ...]:
    if metrics is None:
        return (*_DEFAULT_METRICS, "ild") if ild_possible else _DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Iterable):
        raise invalid_argument("metrics", "be a metric name or a sequence of them", metrics,
                               error=TypeError, hint=f"For example metrics={list(_RANKING[:2])}.")
    chosen = [check_choice("metrics", name, METRICS, what="metric") for name in metrics]
    if "ild" in chosen and not ild_possible:
        raise invalid_argument(
            "item_features", "be given for the 'ild' metric", None,
            hint="Pass item_features= (a table of items) and diversity_feature= (a column).",
        )
    return tuple(m for m in METRICS if m in chosen)


def _as_recommender(model: Any, name: str, train: TableLike, user_id: str,
                    item_id: str) -> Recommender:
    if not (callable(getattr(model, "score", None)) and hasattr(model, "item_ids")):
        convert = getattr(model, "as_recommender", None)
        if not callable(convert):
            raise invalid_argument(
                f"models[{name!r}]",
                "be a Recommender (with `item_ids` and `score(user_ids)`) or have "
                "`as_recommender(train, *, user_id, item_id)`",
                type(model).__name__, error=TypeError,
            )
        model = convert(train, user_id=user_id, item_id=item_id)
        if not (callable(getattr(model, "score", None)) and hasattr(model, "item_ids")):
            raise invalid_argument(
                f"models[{name!r}].as_recommender(...)", "return a Recommender",
                type(model).__name__, error=TypeError,
            )
    return model


def _diversity_vectors(
    item_features: TableLike, feature: str | None, item_id: str, catalogue: pd.Index
) -> tuple[np.ndarray, str]:
    """Item attributes aligned with the catalogue, and the distance that fits them.

    Sequences of numbers that are not integers are embeddings (cosine); anything else is
    a set of attributes (Jaccard): a multi-valued column, or one category per item.
    Catalogue items missing from ``item_features`` have no attributes.
    """
    columns = to_table(item_features, argument="item_features")
    if feature is None:
        others = [c for c in columns if c != item_id]
        if len(others) != 1:
            raise invalid_argument(
                "diversity_feature", "name the item_features column to measure diversity by",
                None, hint=f"Columns: {sorted(others)}.",
            )
        feature = others[0]
    for column in (item_id, feature):
        if column not in columns:
            raise unknown_name("item_features", column, list(columns), what="column")
    ids, values = columns[item_id], columns[feature]
    if not pd.Index(ids).is_unique:
        raise invalid_argument(f"item_features[{item_id!r}]", "hold each item once", ids)
    rows = pd.Index(ids).get_indexer(catalogue)
    known = rows >= 0
    if is_multivalued(values) and all(v.dtype.kind == "f" for v in values[:100]):
        vectors = np.zeros((len(catalogue), len(values[0])), dtype=np.float32)
        vectors[known] = np.stack(list(values[rows[known]]))
        return vectors, "cosine"
    if values.dtype.kind == "f":
        raise invalid_argument(
            "diversity_feature", "name a categorical, multi-valued or embedding column",
            f"{feature!r} (a float column)",
        )
    per_item = list(values) if is_multivalued(values) else [np.asarray([v]) for v in values]
    sizes = np.array([len(v) for v in per_item])
    codes: Any = np.array([], dtype=np.int64)
    uniques: Any = []
    if sizes.sum():
        codes, uniques = pd.factorize(np.concatenate(per_item))
    member = np.zeros((len(ids), max(len(uniques), 1)), dtype=np.float32)
    member[np.repeat(np.arange(len(ids)), sizes), codes] = 1.0
    vectors = np.zeros((len(catalogue), member.shape[1]), dtype=np.float32)
    vectors[known] = member[rows[known]]
    return vectors, "jaccard"


def _batch_keys(matrix: sp.csr_matrix, start: int, stop: int) -> np.ndarray:
    """Sorted keys ``row * n_cols + col`` of the non-zeros of rows ``start:stop``."""
    indptr = matrix.indptr[start:stop + 1]
    rows = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(indptr))
    return rows * matrix.shape[1] + matrix.indices[indptr[0]:indptr[-1]]


def _score_batch(model: Recommender, name: str, users: np.ndarray, n_items: int) -> np.ndarray:
    scores = np.asarray(model.score(users))
    if scores.shape != (len(users), n_items):
        raise invalid_argument(
            f"models[{name!r}].score(user_ids)",
            f"return an array of shape (len(user_ids), len(item_ids)) = ({len(users)}, {n_items})",
            f"an array of shape {scores.shape}",
        )
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    elif not (scores.flags.writeable and scores.flags.owndata):
        scores = scores.copy()
    return scores


def _checked_top_k(scores: np.ndarray, k: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        return _top_k(scores, k)
    except _NaNScores:
        raise invalid_argument(
            f"models[{name!r}].score(user_ids)", "return no NaN", "scores with NaN"
        ) from None


@dataclasses.dataclass
class _Ranked:
    """What the ranking loop leaves for the metrics, one row per test user.

    Attributes:
        positions: ``[n_users, max(k)]`` catalogue columns, best first; -1 marks an empty
            slot (the user had fewer unmasked items).
        hits: ``[n_users, max(k)]`` whether each slot holds one of the user's test items.
        accuracy_hits: Per K, the test interactions whose item is in the unmasked top K
            (counted only when ``top_k_accuracy`` is asked for).
    """

    positions: np.ndarray
    hits: np.ndarray
    accuracy_hits: dict[int, int]


class _Targets:
    """Each batch's test interactions, for TFRS's ``FactorizedTopK`` accuracy."""

    def __init__(self, data: Interactions, catalogue: pd.Index) -> None:
        self.order = np.argsort(data.user_codes, kind="stable")
        self.bounds = np.searchsorted(data.user_codes[self.order],
                                      np.arange(len(data.users) + 1))
        self.user_codes = data.user_codes
        self.cols = data.test_columns(catalogue)[self.order]

    def count(self, scores: np.ndarray, start: int, stop: int, ks: tuple[int, ...],
              name: str) -> dict[int, int]:
        """Per K, the batch's test interactions whose item scores at least the K-th best.

        Nothing is masked and ties count in the target's favour, like
        ``tf.math.in_top_k``; ``scores`` are the raw scores of users ``start:stop``.
        """
        _, best = _checked_top_k(scores, ks[-1], name)
        lo, hi = self.bounds[start], self.bounds[stop]
        rows = self.user_codes[self.order[lo:hi]] - start
        cols = self.cols[lo:hi]
        target = np.where(cols >= 0, scores[rows, np.maximum(cols, 0)], -np.inf)
        return {k: int(((cols >= 0) & (target >= best[rows, k - 1])).sum()) for k in ks}


def _catalogue(model: Recommender, name: str, data: Interactions, k_max: int) -> pd.Index:
    """The model's checked catalogue: distinct ids of the test's kind, at least ``k_max``."""
    catalogue_ids = np.asarray(model.item_ids)
    catalogue = pd.Index(catalogue_ids)
    if catalogue_ids.ndim != 1 or len(catalogue) == 0 or not catalogue.is_unique:
        raise invalid_argument(
            f"models[{name!r}].item_ids", "be a non-empty 1-D array of distinct item ids",
            catalogue_ids,
        )
    check_same_kind(f"test[{data.item_id!r}]", data.test_item_ids, catalogue_ids,
                    what="item ids", reference_name=f"models[{name!r}].item_ids")
    if k_max > len(catalogue):
        raise invalid_argument(
            "k", f"be at most the catalogue size of model {name!r} ({len(catalogue)})", k_max
        )
    return catalogue


def _rank(model: Recommender, name: str, data: Interactions, catalogue: pd.Index,
          ks: tuple[int, ...], *, accuracy: bool, batch_size: int | None,
          verbose: Any = "auto") -> _Ranked:
    """Scores the whole catalogue for every test user, batch by batch, and keeps the top.

    Each user's training items are set to ``-inf`` before the top ``max(ks)`` are taken;
    ``accuracy`` also counts ``top_k_accuracy`` hits on the raw scores.
    """
    n_users, n_items, k_max = len(data.users), len(catalogue), ks[-1]
    relevant, seen = data.relevant(catalogue), data.seen(catalogue)
    batch = batch_size or max(1, min(n_users, _BATCH_ELEMENTS // n_items))
    ranked = _Ranked(np.empty((n_users, k_max), dtype=np.int64),
                     np.empty((n_users, k_max), dtype=bool), {k: 0 for k in ks})
    targets = _Targets(data, catalogue) if accuracy else None
    progress = Progress(n_users, description=f"Evaluating {name}", verbose=verbose,
                        size=n_users * n_items // 100)
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        progress.update(stop - start)
        scores = _score_batch(model, name, data.users[start:stop], n_items)
        if targets is not None:
            for k, count in targets.count(scores, start, stop, ks, name).items():
                ranked.accuracy_hits[k] += count
        indptr = seen.indptr[start:stop + 1]
        scores[np.repeat(np.arange(stop - start), np.diff(indptr)),
               seen.indices[indptr[0]:indptr[-1]]] = -np.inf
        cols, values = _checked_top_k(scores, k_max, name)
        valid = values > -np.inf
        keys = np.arange(stop - start, dtype=np.int64)[:, None] * n_items + cols
        ranked.hits[start:stop] = np.isin(keys, _batch_keys(relevant, start, stop)) & valid
        ranked.positions[start:stop] = np.where(valid, cols, -1)
    progress.close()
    return ranked


def _metric_totals(ranked: _Ranked, data: Interactions, catalogue: pd.Index,
                   ks: tuple[int, ...], metrics: tuple[str, ...],
                   diversity: tuple[TableLike, str | None] | None) -> dict[str, float]:
    """Every ``metric@k`` averaged over test users, from what :func:`_rank` kept."""
    # Distinct users per item (a sort of the training log): only what needs them pays.
    counts = (data.user_counts(catalogue) if {"novelty", "popularity"} & set(metrics)
              else np.zeros(len(catalogue)))
    info = (_self_information(counts, max(data.num_train_users, 1))
            if "novelty" in metrics else counts)
    ild = {}
    if "ild" in metrics and diversity is not None:
        vectors, distance = _diversity_vectors(diversity[0], diversity[1], data.item_id, catalogue)
        ild = _ild_from_positions(ranked.positions, vectors, distance, ks)
    results: dict[str, float] = {}
    for k in ks:
        ranking = _ranking_from_hits(ranked.hits, data.n_relevant, k)
        chosen = ranked.positions[:, :k]
        valid = chosen >= 0
        safe = np.where(valid, chosen, 0)
        for metric in metrics:
            key = f"{metric}@{k}"
            if metric in ranking:
                results[key] = float(ranking[metric].mean())
            elif metric == "coverage":
                results[key] = len(np.unique(chosen[valid])) / len(catalogue)
            elif metric == "novelty":
                results[key] = _mean_defined(_per_list_mean(info[safe], valid))
            elif metric == "popularity":
                results[key] = _mean_defined(_per_list_mean(counts[safe], valid))
            elif metric == "ild":
                results[key] = _mean_defined(ild[k]) if k > 1 else float("nan")
            elif metric == "top_k_accuracy":
                results[key] = ranked.accuracy_hits[k] / data.num_test_interactions
    return results


def _evaluate_one(
    model: Recommender, name: str, data: Interactions, ks: tuple[int, ...],
    metrics: tuple[str, ...], diversity: tuple[TableLike, str | None] | None,
    batch_size: int | None, verbose: Any = "auto",
) -> dict[str, float]:
    catalogue = _catalogue(model, name, data, ks[-1])
    ranked = _rank(model, name, data, catalogue, ks, accuracy="top_k_accuracy" in metrics,
                   batch_size=batch_size, verbose=verbose)
    return _metric_totals(ranked, data, catalogue, ks, metrics, diversity)


def _mean_defined(values: np.ndarray) -> float:
    """The mean over users for whom the value is defined (NaN if there are none)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def evaluate(
    models: Any,
    test: TableLike,
    *,
    train: TableLike,
    k: int | Sequence[int] = (10, 100),
    schema: Schema | None = None,
    user_id: str | None = None,
    item_id: str | None = None,
    metrics: Iterable[str] | None = None,
    item_features: TableLike | None = None,
    diversity_feature: str | None = None,
    batch_size: int | None = None,
    verbose: Any = "auto",
) -> Report:
    """Ranks the whole catalogue for every test user and scores one or several models.

    For each batch of test users the model scores every catalogue item, the user's
    training items are set to ``-inf``, and the top ``max(k)`` items are compared with the
    user's test items. No Python loop runs over users.

    Metrics (names for ``metrics=``; reported as ``"name@K"``, averaged over test users):
    ``recall``, ``precision``, ``ndcg``, ``map``, ``mrr``, ``hit_rate`` (see
    :mod:`tfrs_kit.evaluation` for definitions), ``coverage`` (distinct recommended items /
    catalogue), ``novelty`` (mean ``-log2 p(item)``, ``p`` = share of training users who
    interacted with it), ``popularity`` (mean distinct training users of recommended
    items), ``ild`` (intra-list diversity by ``diversity_feature``, default when
    ``item_features`` is given) and ``top_k_accuracy`` (TFRS's ``FactorizedTopK``: per test
    interaction, nothing masked; on request).

    Edge cases, by design:

    * A test item missing from a model's catalogue (``item_ids``) stays relevant but can
      never be hit, so it lowers recall instead of silently vanishing.
    * A test item that is also one of the user's training items is masked like every
      training item, so it cannot be hit either.
    * A test user unknown to ``train`` is scored by the model (baselines fall back to
      popularity) with nothing masked.
    * If a user has fewer than K unmasked items, the list is shorter (empty slots are
      neither hits nor recommended items).

    Args:
        models: A :class:`Recommender`, an object with ``as_recommender(train, *, user_id,
            item_id)`` (called with the ``train`` given here, unconverted), or a mapping of
            display names to either. A single model is named after its class (or
            its ``display_name`` attribute, which a wrapper such as
            ``as_recommender()``'s sets to the model it wraps).
        test: The test interactions (any accepted table); each distinct (user, item)
            pair is one relevant item.
        train: The training interactions: their items are masked per user, and they
            define popularity and novelty.
        k: One cut-off or several, each between 1 and the catalogue size.
        schema: The :class:`~tfrs_kit.Schema` that names the id columns; default the
            one ``test`` or ``train`` carries (a split's output, a data set's table),
            else the fitted model's (``schema_``, set by ``fit`` of a baseline or a
            :class:`~tfrs_kit.Recipe`), else ``Schema()``.
        user_id: The user id column of ``train`` and ``test``; default the schema's.
        item_id: The item id column of ``train``, ``test`` and ``item_features``;
            default the schema's.
        metrics: Metric names, default all but ``top_k_accuracy`` (and ``ild`` without
            ``item_features``).
        item_features: A table of items with attribute columns, for ``ild``.
        diversity_feature: The ``item_features`` column: a multi-valued column (genres;
            Jaccard distance), one category per item (0/1 distance), or float vectors
            (cosine distance). Optional when ``item_features`` has one other column.
        batch_size: Users scored at once; default keeps about 8M scores in memory.
        verbose: Show progress: ``"auto"`` (for 100M scores or more), ``True`` or
            ``False``.

    Returns:
        A :class:`Report` with one row of metrics per model.

    Raises:
        ValueError: Bad ``k``, ``metrics``, an empty table, or a model whose scores have
            the wrong shape or contain NaN.
        TypeError: User or item ids of ``test`` differ in kind (int vs str) from
            ``train`` or from a model's catalogue, or an id column mixes both kinds.

    Example:
        >>> from tfrs_kit.baselines import Popularity
        >>> train = {"user_id": [1, 1, 2, 3], "item_id": ["a", "b", "a", "a"]}
        >>> test = {"user_id": [2, 3], "item_id": ["b", "c"]}
        >>> report = evaluate(Popularity().fit(train), test, train=train, k=1,
        ...                   metrics=["recall"])
        >>> report.to_dict()
        {'Popularity': {'recall@1': 0.5}}
    """
    ks = _check_ks(k)
    chosen = _check_metrics(metrics, item_features is not None)
    batch_size = check_int("batch_size", batch_size, minimum=1, allow_none=True)
    verbose = check_verbose("verbose", verbose)
    named = _name_models(models)
    columns = resolve_schema(test, train, schema=schema, model=named, user_id=user_id,
                             item_id=item_id)
    user_id, item_id = columns.user_id, columns.item_id
    settings = {user_id: "user_id", item_id: "item_id"}  # a missing one's error names them
    data = Interactions.read(train, test, user_id, item_id, settings=settings)
    diversity = (item_features, diversity_feature) if item_features is not None else None
    results = {}
    for name, model in named.items():
        recommender = _as_recommender(model, name, train, user_id, item_id)
        results[name] = _evaluate_one(recommender, name, data, ks, chosen, diversity, batch_size,
                                      verbose)
    return Report(
        results,
        metadata={"k": ks, "num_test_users": len(data.users),
                  "num_test_interactions": data.num_test_interactions},
    )


def _name_models(models: Any) -> dict[str, Any]:
    if isinstance(models, Mapping):
        if not models:
            raise invalid_argument("models", "hold at least one model", models)
        return {str(name): model for name, model in models.items()}
    return {str(getattr(models, "display_name", type(models).__name__)): models}

