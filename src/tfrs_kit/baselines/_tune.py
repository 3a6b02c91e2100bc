"""Hyperparameter search on a validation slice of the training data, never the test set.

The slice is each user's latest interactions of ``train`` (P1's per-user temporal split,
applied once more inside ``train``). A grid point is fitted on the rest and scored on the
slice; the best one is refitted on all of ``train``. A numeric parameter whose best value
lies on the edge of its grid gets one more value beyond that edge per round, so a best
value outside the first grid is still found.
"""

from __future__ import annotations

import inspect
import itertools
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, unknown_name
from tfrs_kit._validation import check_bool, check_choice, check_fraction, check_int
from tfrs_kit.baselines._implicit import BPR, ImplicitALS, TrainingDiverged
from tfrs_kit.baselines._models import EASE, ItemKNN, Popularity, RP3beta, UserKNN
from tfrs_kit.data._schema import Schema, resolve_schema
from tfrs_kit.data._table import Table, TableLike, to_table
from tfrs_kit.evaluation import evaluate, per_user_temporal_split

__all__ = ["TuningResult", "default_grid", "tune"]

_RANKING_METRICS = ("recall", "precision", "ndcg", "map", "mrr", "hit_rate")
_METRIC = re.compile(r"^(?P<name>[a-z_]+)@(?P<k>[1-9][0-9]*)$")

# Ranges that hold the best value on MovieLens-sized data; edges extend when they do not.
# Popularity's window: all events first (it wins ties), then shares a ratio of about 3
# apart; 1.0 is the largest valid value, and below 0.03 the grid extends itself.
_DEFAULT_GRIDS: dict[type, dict[str, list[Any]]] = {
    Popularity: {"window": [1.0, 0.3, 0.1, 0.03]},
    ItemKNN: {"neighbors": [25, 50, 100, 200, 400], "shrinkage": [0.0, 10.0, 100.0]},
    UserKNN: {"neighbors": [10, 20, 50, 100, 200], "shrinkage": [0.0, 10.0, 100.0]},
    EASE: {"l2": [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]},
    RP3beta: {"alpha": [0.5, 0.75, 1.0, 1.25, 1.5], "beta": [0.0, 0.2, 0.4, 0.6, 0.8],
              "neighbors": [50, 100, 200]},
    ImplicitALS: {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0],
                  "alpha": [1.0, 4.0, 16.0]},
    BPR: {"factors": [32, 64, 128], "learning_rate": [0.01, 0.03, 0.1],
          "regularization": [0.001, 0.01, 0.1]},
}


@dataclass(frozen=True)
class TuningResult:
    """What :func:`tune` tried and chose.

    Attributes:
        scores: One row per grid point, in the order tried: a column per parameter, the
            validation metric, and ``round`` (0 for the first grid, then one per
            extension of an edge).
        best_params: The chosen grid point (the first of equal best scores).
        best_score: Its validation score.
        metric: The metric maximised, such as ``"ndcg@10"``.
        grid: The grid searched in the end, extensions included.
        at_edge: Parameters whose best value is still on an edge of the grid that could
            have been extended further (with ``extend_edges=False``, or out of rounds): a
            better value may lie beyond. Empty when every best value is interior or
            at a bound of the parameter's valid range.
    """

    scores: pd.DataFrame
    best_params: dict[str, Any]
    best_score: float
    metric: str
    grid: dict[str, list[Any]]
    at_edge: tuple[str, ...]


def default_grid(model_class: type) -> dict[str, list[Any]]:
    """The grid :func:`tune` searches for a baseline when none is given.

    Args:
        model_class: A baseline class of :mod:`tfrs_kit.baselines` (or a subclass).

    Returns:
        A new ``{parameter: [values]}`` dict. :class:`Popularity`'s ``window`` (the
        latest share of events counted) starts at all events, which wins a tie.

    Raises:
        ValueError: ``model_class`` has no default grid.

    Example:
        >>> from tfrs_kit.baselines import EASE
        >>> default_grid(EASE)
        {'l2': [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]}
    """
    for cls in getattr(model_class, "__mro__", ()):
        if cls in _DEFAULT_GRIDS:
            return {name: list(values) for name, values in _DEFAULT_GRIDS[cls].items()}
    raise invalid_argument(
        "model_class", "be a baseline with a default grid", model_class,
        hint=f"Pass grid= yourself. Baselines with one: "
             f"{', '.join(c.__name__ for c in _DEFAULT_GRIDS)}.",
    )


def _check_grid(model_class: type, grid: Any) -> dict[str, list[Any]]:
    if grid is None:
        return default_grid(model_class)
    if not isinstance(grid, Mapping):
        raise invalid_argument("grid", "be a dict of parameter name to a list of values", grid,
                               error=TypeError)
    signature = inspect.signature(model_class)
    known = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY
             or p.kind is p.POSITIONAL_OR_KEYWORD]
    checked = {}
    for name, values in grid.items():
        if name not in known:
            raise unknown_name("grid", name, known, what=f"parameter of {model_class.__name__}")
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise invalid_argument(f"grid[{name!r}]", "be a non-empty list of values", values)
        checked[name] = list(dict.fromkeys(values))
    return checked


def _check_metric(metric: Any) -> tuple[str, int]:
    match = _METRIC.match(metric) if isinstance(metric, str) else None
    if match is None:
        raise invalid_argument("metric", "be a ranking metric at a cut-off, such as 'ndcg@10'",
                               metric)
    check_choice("metric", match["name"], _RANKING_METRICS)
    return match["name"], int(match["k"])


def _is_numeric(values: list[Any]) -> bool:
    return len(values) >= 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    )


def _geometric(ordered: list[float]) -> bool:
    """Whether the values are spread more evenly on a log scale than on a linear one."""
    if len(ordered) < 2 or ordered[0] <= 0:
        return False

    def unevenness(steps: np.ndarray) -> float:
        return float(np.std(steps) / np.mean(steps))

    return unevenness(np.diff(np.log(ordered))) <= unevenness(np.diff(ordered))


def _beyond(values: list[Any], high: bool) -> list[Any]:
    """Values one step past an edge, best first: the grid's own step there (a ratio when
    the grid is geometric), and when that crosses zero, zero or half the edge.

    Upwards a leading zero (an "off" value, as in ``[0, 10, 100]``) does not make the
    grid arithmetic: its positive values decide.
    """
    ordered = sorted(values)
    edge, inner = (ordered[-1], ordered[-2]) if high else (ordered[0], ordered[1])
    spread = [v for v in ordered if v > 0] if high else ordered
    step = edge * edge / inner if _geometric(spread) else 2 * edge - inner
    candidates = [step] + ([0, edge / 2] if not high and edge > 0 >= step else [])
    if all(isinstance(v, numbers.Integral) for v in values):
        rounded = [round(float(c)) for c in candidates]
        candidates = [r if r != edge else edge + (1 if high else -1) for r in rounded]
    return [c for c in candidates if c not in values]


def _accepts(model_class: type, params: dict[str, Any]) -> bool:
    try:
        model_class(**params)
    except (ValueError, TypeError):
        return False
    return True


def _extensions(model_class: type, grid: dict[str, list[Any]],
                best: dict[str, Any]) -> dict[str, Any]:
    """For each numeric parameter whose best value is on an edge, the valid value beyond."""
    found = {}
    for name, values in grid.items():
        if not _is_numeric(values) or min(values) < best[name] < max(values):
            continue
        high = best[name] == max(values)
        for candidate in _beyond(values, high):
            if _accepts(model_class, {**best, name: candidate}):
                found[name] = candidate
                break
    return found


def _fit_columns(model_class: Any, schema: Schema) -> dict[str, Any]:
    """The column arguments of ``model_class.fit``: ``timestamp`` and ``schema`` only
    where it takes them."""
    columns: dict[str, Any] = {"user_id": schema.user_id, "item_id": schema.item_id}
    try:
        parameters = inspect.signature(model_class.fit).parameters
    except (AttributeError, TypeError, ValueError):
        return columns
    if "timestamp" in parameters:
        columns["timestamp"] = schema.timestamp
    if "schema" in parameters:
        columns["schema"] = schema
    return columns


def _validation_score(model_class: type, params: dict[str, Any], fit_on: Table,
                      validation: Table, metric: tuple[str, int],
                      columns: dict[str, Any]) -> float:
    model = model_class(**params).fit(fit_on, **columns)
    user_id, item_id = columns["user_id"], columns["item_id"]
    name, k = metric
    report = evaluate({"model": model}, validation, train=fit_on, k=k, metrics=[name],
                      user_id=user_id, item_id=item_id, verbose=False)
    return float(report["model"][f"{name}@{k}"])


def tune(
    model_class: type,
    train: TableLike,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    schema: Schema | None = None,
    user_id: str | None = None,
    item_id: str | None = None,
    timestamp: str | None = None,
    metric: str = "ndcg@10",
    validation_fraction: float = 0.2,
    extend_edges: bool = True,
    max_extensions: int = 3,
) -> tuple[Any, TuningResult]:
    """Picks hyperparameters on the latest interactions of ``train``, then refits on all of it.

    ``train`` is split per user by time (:func:`~tfrs_kit.evaluation.per_user_temporal_split`
    with ``test_fraction=validation_fraction`` and ``min_train=1``, the slice
    :class:`~tfrs_kit.Recipe` validates on): every point of ``grid`` is fitted on the
    earlier part and scored by ``metric`` on the latest part, training items masked, as
    :func:`~tfrs_kit.evaluation.evaluate` does. Nothing but ``train`` is read, so the test
    set stays unseen. When the best value of a numeric parameter (two or more numbers) is
    the smallest or largest on its grid and ``extend_edges`` is on, the grid gets one value
    beyond that edge (the grid's own ratio when its values are spread geometrically, else
    its step; never a value the model rejects) and the new points are tried, for up to
    ``max_extensions`` rounds or until every best value is interior. A point whose
    training diverges (:class:`BPR` at too high a ``learning_rate``) scores ``-inf``.

    Args:
        model_class: A baseline class, or any class built from keyword arguments with
            ``fit(train, *, user_id, item_id)`` that returns a
            :class:`~tfrs_kit.evaluation.Recommender`; a ``fit`` that also takes
            ``timestamp`` (as :class:`Popularity`'s) is given it.
        train: The training interactions (any accepted table), with ``timestamp``.
        grid: ``{parameter: [values]}``, every combination tried; default
            :func:`default_grid`. A parameter with one value is held fixed.
        schema: The :class:`~tfrs_kit.Schema` that names the columns; default the one
            ``train`` carries, else ``Schema()``. The model gets it as ``schema``
            where its ``fit`` takes one.
        user_id: The user id column; default the schema's.
        item_id: The item id column; default the schema's.
        timestamp: The timestamp column, which orders each user's interactions;
            default the schema's.
        metric: The ranking metric to maximise: ``"name@K"`` with a name among
            ``recall``, ``precision``, ``ndcg``, ``map``, ``mrr``, ``hit_rate``.
        validation_fraction: Each user's share of latest interactions held out, in (0, 1).
        extend_edges: Extend a grid whose best value is on its edge.
        max_extensions: The most rounds of extension.

    Returns:
        ``(model, result)``: the best model fitted on all of ``train``, and a
        :class:`TuningResult`.

    Raises:
        ValueError: An unknown parameter, an empty list of values, a bad ``metric``, or a
            ``train`` too small to split.
        TypeError: ``grid`` is not a dict, or ``extend_edges`` not a bool.

    Example:
        >>> from tfrs_kit.baselines import EASE
        >>> from tfrs_kit.datasets import synthetic
        >>> log = synthetic(3000, seed=0).interactions
        >>> model, result = tune(EASE, log, grid={"l2": [1.0, 10.0, 100.0]})
        >>> result.grid  # 100 was best, on the edge, so 1000 was tried too
        {'l2': [1.0, 10.0, 100.0, 1000.0]}
        >>> result.best_params, result.at_edge, model.l2
        ({'l2': 100.0}, (), 100.0)
    """
    grid_values = _check_grid(model_class, grid)
    chosen_metric = _check_metric(metric)
    fraction = check_fraction("validation_fraction", validation_fraction)
    rounds = check_int("max_extensions", max_extensions, minimum=0)
    check_bool("extend_edges", extend_edges)
    columns_schema = resolve_schema(train, schema=schema, user_id=user_id, item_id=item_id,
                                    timestamp=timestamp)
    user_id, item_id = columns_schema.user_id, columns_schema.item_id
    if columns_schema.timestamp is None:
        raise invalid_argument(
            "timestamp", "name a column, since the schema has no timestamp column", None,
            hint="tune validates on each user's latest interactions: pass timestamp=.",
        )
    timestamp = columns_schema.timestamp
    table = to_table(train, argument="train", columns=[user_id, item_id, timestamp])
    fit_on, validation = per_user_temporal_split(
        table, test_fraction=fraction, user_id=user_id, item_id=item_id, timestamp=timestamp,
        min_train=1)  # as tk.Recipe: a user's only interaction stays in the fit part

    columns = _fit_columns(model_class, columns_schema)

    def score(params: dict[str, Any]) -> float:
        try:
            return _validation_score(model_class, params, fit_on, validation, chosen_metric,
                                     columns)
        except TrainingDiverged:
            return float("-inf")  # ranks last; its row in the scores shows it

    tried, edges = _search(model_class, grid_values, score, rounds if extend_edges else 0)
    best_params, best_score, _ = max(tried, key=lambda entry: entry[1])
    rows = [{**params, metric: value, "round": round_} for params, value, round_ in tried]
    result = TuningResult(
        scores=pd.DataFrame(rows, columns=[*grid_values, metric, "round"]),
        best_params=dict(best_params), best_score=best_score, metric=metric,
        grid=grid_values, at_edge=tuple(edges),
    )
    return model_class(**best_params).fit(table, **columns), result


def _search(model_class: type, grid: dict[str, list[Any]], score: Any,
            rounds: int) -> tuple[list[tuple[dict[str, Any], float, int]], dict[str, Any]]:
    """Tries every point of ``grid`` (which grows in place) and extends its edges.

    Returns the (params, score, round) tried, in order, and the extensions left open.
    """
    tried: list[tuple[dict[str, Any], float, int]] = []
    seen: set[tuple[Any, ...]] = set()
    edges: dict[str, Any] = {}
    for round_ in range(rounds + 1):
        for name, value in edges.items():
            values = grid[name]
            grid[name] = [value, *values] if value < min(values) else [*values, value]
        for point in itertools.product(*grid.values()):
            if point not in seen:
                seen.add(point)
                params = dict(zip(grid, point, strict=True))
                tried.append((params, score(params), round_))
        edges = _extensions(model_class, grid, max(tried, key=lambda entry: entry[1])[0])
        if not edges:
            break
    return tried, edges
