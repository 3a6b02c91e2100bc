"""Seeded train/test splits of interaction logs.

Every split takes any accepted table and returns ``(train, test)`` of the same kind: a
DataFrame gives two DataFrames (rows keep their original index and order), a mapping
gives two dicts of NumPy arrays; a ``tf.data.Dataset`` gives two dicts of NumPy arrays
(wrap them with ``tf.data.Dataset.from_tensor_slices`` if needed). An
:class:`~tfrs_kit.datasets.InteractionDataset` splits its ``interactions`` (two
DataFrames). The columns come from a :class:`~tfrs_kit.Schema`: ``schema=``, else the
one the data carries (an InteractionDataset's, or ``DataFrame.attrs["tfrs_kit.schema"]``),
else the defaults; a column argument (``item_id=``) overrides its field. Output
DataFrames carry that schema, so the next call needs no column names. A split that
would leave the train or the test side empty raises ``ValueError``.

Counts derived from a fraction are rounded up exactly: ``ceil(0.2 * 35)`` is 7, although
``0.2 * 35`` is ``7.000000000000001`` in floating point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_fraction, check_int, check_no_missing
from tfrs_kit.data._schema import Schema, carried_schema, resolve_schema, with_schema
from tfrs_kit.data._table import Table, TableLike, num_rows, select, take, to_table

__all__ = [
    "cold_start_item_split",
    "cold_start_user_split",
    "leave_last_one_out",
    "per_user_temporal_split",
    "random_split",
    "temporal_split",
]


def _log(data: Any) -> TableLike:
    """The interactions to split: an InteractionDataset's, or ``data`` itself."""
    # Recognised by its fields: datasets sits beside evaluation on the layer map, so
    # InteractionDataset cannot be imported here.
    interactions = getattr(data, "interactions", None)
    return interactions if isinstance(interactions, pd.DataFrame) else data


class _Roles:
    """The split's schema, and whether its output frames carry it.

    They do when the input carried one, or ``schema=`` or a column argument was given:
    what was named once then flows on to the next call.
    """

    def __init__(self, data: Any, schema: Schema | None, **columns: str | None) -> None:
        self.schema = resolve_schema(data, schema=schema, **columns)
        self.carried = (schema is not None or carried_schema(data) is not None
                        or any(c is not None for c in columns.values()))
        self.name = getattr(data, "name", None) if _log(data) is not data else None

    def __getitem__(self, role: str) -> str:
        """The column for ``role``; an error naming ``role`` when the schema has none.

        >>> _Roles({"user_id": [1]}, None)["user_id"], _Roles({"u": [1]}, None, user_id="u")["user_id"]
        ('user_id', 'u')
        """  # noqa: E501
        column = getattr(self.schema, role)
        if column is None:
            what = f"the data set {self.name!r}" if self.name else "the schema"
            raise invalid_argument(
                role, f"name a column, since {what} has no {role} column", None,
                hint=f"Pass {role}= with the name of the column to use.",
            )
        return str(column)

    def stamp(self, sides: tuple[Any, Any]) -> tuple[Any, Any]:
        if self.carried:
            for side in sides:
                if isinstance(side, pd.DataFrame):
                    with_schema(side, self.schema)
        return sides


def _ceil_fraction(fraction: float, counts: Any) -> np.ndarray:
    """``ceil(fraction * counts)`` without floating-point overshoot."""
    return np.ceil(np.round(fraction * np.asarray(counts, dtype=np.float64), 9)).astype(np.int64)


def _columns(data: TableLike, roles: dict[str, str]) -> tuple[Table | None, Table]:
    """The columns of ``roles`` (argument to column), and the whole table unless
    ``data`` is a DataFrame. A missing column's error names the argument that
    sets it (``item_id='movie_id'``)."""
    names = list(roles.values())
    settings = {column: role for role, column in roles.items()}
    if type(data).__name__ == "DataFrame" and hasattr(data, "iloc"):
        table, columns = None, to_table(data, argument="data", columns=names, settings=settings)
    else:
        table = to_table(data, argument="data")
        columns = select(table, names, argument="data", settings=settings)
    for role, column in roles.items():  # a missing id or time would sort with other rows
        what = {"user_id": "user ids", "item_id": "item ids"}.get(role, "timestamps")
        check_no_missing(f"data[{column!r}]", columns[column], what=what)
    return table, columns


def _split(data: TableLike, table: Table | None, test_mask: np.ndarray,
           roles: _Roles) -> tuple[Any, Any]:
    n_test = int(test_mask.sum())
    if n_test == 0 or n_test == len(test_mask):
        side = "test" if n_test == 0 else "train"
        raise invalid_argument(
            "data", f"leave at least one row on each side of the split (the {side} side is empty)",
            f"a table of {len(test_mask)} rows",
            hint="Use more data, or a larger or smaller test share.",
        )
    train_rows, test_rows = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    if table is None:  # a DataFrame: keep its type, columns and index (and its schema)
        frame: Any = data
        return roles.stamp((frame.iloc[train_rows], frame.iloc[test_rows]))
    return take(table, train_rows), take(table, test_rows)


def _codes(values: np.ndarray) -> np.ndarray:
    """Integer codes that sort like ``values``."""
    return pd.factorize(values, sort=True)[0]


_WHOLE_NUMBER = r"0|[1-9][0-9]{0,17}"


def _natural_codes(values: np.ndarray) -> np.ndarray:
    """Codes that sort like ``values``, string ids that are whole numbers by their number.

    MovieLens ids are strings such as ``"9"`` and ``"10"``: as strings ``"10"``
    comes first; as numbers (what the same log with integer ids gives) ``"9"``
    does. Either way a log gives the same split.

    >>> _natural_codes(np.array(["10", "9", "100"], dtype=object)).tolist()
    [1, 0, 2]
    >>> _natural_codes(np.array(["b10", "b9"], dtype=object)).tolist()  # not numbers
    [0, 1]
    """
    if values.dtype == object and len(values):
        text = pd.Series(values, dtype=object)
        if text.str.fullmatch(_WHOLE_NUMBER).eq(True).all():  # non-strings give NaN
            return _codes(text.astype(np.int64).to_numpy())
    return _codes(values)


def random_split(data: TableLike, *, test_fraction: float = 0.2, seed: int = 0,
                 schema: Schema | None = None) -> tuple[Any, Any]:
    """Puts a random ``ceil(test_fraction * n)`` of the interactions in the test set.

    Args:
        data: The interactions (any accepted table, or an InteractionDataset).
        test_fraction: The test share, in (0, 1).
        seed: Seeds the shuffle; the same seed gives the same split.
        schema: The :class:`~tfrs_kit.Schema` the output DataFrames carry; default the
            one ``data`` carries.

    Returns:
        ``(train, test)``.

    Example:
        >>> train, test = random_split({"user_id": [1, 2, 3, 4, 5]}, test_fraction=0.4)
        >>> len(train["user_id"]), len(test["user_id"])
        (3, 2)
    """
    fraction = check_fraction("test_fraction", test_fraction)
    seed = check_int("seed", seed, minimum=0)
    roles = _Roles(data, schema)
    data = _log(data)
    table = None if type(data).__name__ == "DataFrame" else to_table(data, argument="data")
    n = len(data) if table is None else num_rows(table)  # type: ignore[arg-type]
    if n == 0:
        raise invalid_argument("data", "have at least one row", "an empty DataFrame")
    chosen = np.random.default_rng(seed).permutation(n)[: int(_ceil_fraction(fraction, n))]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return _split(data, table, mask, roles)


def temporal_split(
    data: TableLike, *, test_fraction: float = 0.2, timestamp: str | None = None,
    schema: Schema | None = None,
) -> tuple[Any, Any]:
    """Global temporal split: the latest ``ceil(test_fraction * n)`` interactions are test.

    Equal timestamps are ordered by row, so no test interaction is older than any
    train interaction.

    Args:
        data: The interactions (any accepted table, or an InteractionDataset).
        test_fraction: The test share, in (0, 1).
        timestamp: The timestamp column (numbers, datetimes or sortable strings);
            default the schema's.
        schema: The :class:`~tfrs_kit.Schema` that names the columns; default the one
            ``data`` carries (an InteractionDataset's, or a DataFrame's), else
            ``Schema()``. Output DataFrames carry it.

    Returns:
        ``(train, test)``.

    Example:
        >>> train, test = temporal_split({"timestamp": [5, 1, 4, 2]}, test_fraction=0.5)
        >>> test["timestamp"].tolist()
        [5, 4]
    """
    fraction = check_fraction("test_fraction", test_fraction)
    roles = _Roles(data, schema, timestamp=timestamp)
    timestamp = roles["timestamp"]
    data = _log(data)
    table, columns = _columns(data, {"timestamp": timestamp})
    n = len(columns[timestamp])
    order = np.argsort(_codes(columns[timestamp]), kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[n - int(_ceil_fraction(fraction, n)):]] = True
    return _split(data, table, mask, roles)


def per_user_temporal_split(
    data: TableLike, *, test_fraction: float | None = None, last_n: int | None = None,
    user_id: str | None = None, item_id: str | None = None, timestamp: str | None = None,
    min_train: int = 0, schema: Schema | None = None,
) -> tuple[Any, Any]:
    """Per-user temporal holdout (protocol P1): each user's latest interactions are test.

    Each user's interactions are sorted by (timestamp, item id, row); string item ids
    that are whole numbers (MovieLens's ``"9"``, ``"10"``) sort as numbers, so the split
    is the same whether the ids are read as strings or integers. The last
    ``ceil(test_fraction * n_user)`` (or ``min(last_n, n_user)``) go to test, the rest to
    train. No user is dropped, so by default a user with a single interaction has it in
    test and nothing in train; ``min_train=1`` keeps it in train instead (what a
    validation slice carved from training data wants: a held-out interaction is only
    scored against something that came before it).

    Args:
        data: The interactions (any accepted table, or an InteractionDataset).
        test_fraction: The per-user test share, in (0, 1); 0.2 when neither it nor
            ``last_n`` is given.
        last_n: Instead of a share, this many interactions per user go to test.
        user_id: The user id column; default the schema's.
        item_id: The item id column; default the schema's.
        timestamp: The timestamp column; default the schema's.
        min_train: Each user keeps at least this many interactions in train (so
            fewer go to test when a user has few).
        schema: The :class:`~tfrs_kit.Schema` that names the columns; default the one
            ``data`` carries (an InteractionDataset's, or a DataFrame's), else
            ``Schema()``. Output DataFrames carry it (with the column arguments).

    Returns:
        ``(train, test)``.

    Example:
        >>> log = {"user_id": [1, 1, 1, 2, 2, 3], "item_id": [7, 8, 9, 7, 8, 9],
        ...        "timestamp": [3, 1, 2, 1, 1, 5]}
        >>> train, test = per_user_temporal_split(log, test_fraction=0.2)
        >>> test["item_id"].tolist()
        [7, 8, 9]
        >>> train, test = per_user_temporal_split(log, test_fraction=0.2, min_train=1)
        >>> test["user_id"].tolist()  # user 3's only interaction stays in train
        [1, 2]
        >>> from tfrs_kit import datasets
        >>> data = datasets.synthetic(1_000)  # its column roles name the columns
        >>> train, test = per_user_temporal_split(data, last_n=1)
        >>> len(test) == data.num_users
        True
        >>> test.attrs["tfrs_kit.schema"]["item_id"]  # the output carries the schema
        'item_id'
    """
    if test_fraction is not None and last_n is not None:
        raise invalid_argument(
            "last_n", "be None when `test_fraction` is given", last_n,
            hint="Pass either test_fraction= or last_n=.",
        )
    last_n = check_int("last_n", last_n, minimum=1, allow_none=True)
    fraction = None if last_n is not None else check_fraction(
        "test_fraction", 0.2 if test_fraction is None else test_fraction
    )
    roles = _Roles(data, schema, user_id=user_id, item_id=item_id, timestamp=timestamp)
    user_id, item_id, timestamp = roles["user_id"], roles["item_id"], roles["timestamp"]
    data = _log(data)
    table, columns = _columns(data, {"user_id": user_id, "item_id": item_id,
                                     "timestamp": timestamp})
    users = _codes(columns[user_id])
    n = len(users)
    order = np.lexsort(
        (np.arange(n), _natural_codes(columns[item_id]), _codes(columns[timestamp]), users)
    )
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    sorted_users = users[order]
    rank = np.arange(n) - starts[sorted_users]
    n_test = (_ceil_fraction(fraction, counts) if fraction is not None
              else np.minimum(int(last_n or 1), counts))
    n_test = np.minimum(n_test, np.maximum(counts - check_int("min_train", min_train,
                                                                minimum=0), 0))
    mask = np.zeros(n, dtype=bool)
    mask[order] = rank >= (counts - n_test)[sorted_users]
    return _split(data, table, mask, roles)


def leave_last_one_out(
    data: TableLike, *, user_id: str | None = None, item_id: str | None = None,
    timestamp: str | None = None, schema: Schema | None = None,
) -> tuple[Any, Any]:
    """Each user's latest interaction is test: ``per_user_temporal_split(last_n=1)``.

    The columns come from ``schema`` and the column arguments as there.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2], "item_id": [5, 6, 5, 6], "timestamp": [2, 1, 1, 2]}
        >>> train, test = leave_last_one_out(log)
        >>> test["item_id"].tolist()
        [5, 6]
    """
    return per_user_temporal_split(
        data, last_n=1, user_id=user_id, item_id=item_id, timestamp=timestamp, schema=schema
    )


def _group_split(data: TableLike, role: str, column: str | None, fraction: Any,
                 seed: Any, schema: Schema | None) -> tuple[Any, Any]:
    fraction = check_fraction("test_fraction", fraction)
    seed = check_int("seed", seed, minimum=0)
    roles = _Roles(data, schema, **{role: column})
    column = roles[role]
    data = _log(data)
    table, columns = _columns(data, {role: column})
    codes = _codes(columns[column])
    n_groups = int(codes.max()) + 1
    chosen = np.random.default_rng(seed).permutation(n_groups)[
        : int(_ceil_fraction(fraction, n_groups))
    ]
    held_out = np.zeros(n_groups, dtype=bool)
    held_out[chosen] = True
    return _split(data, table, held_out[codes], roles)


def cold_start_user_split(
    data: TableLike, *, test_fraction: float = 0.2, seed: int = 0, user_id: str | None = None,
    schema: Schema | None = None,
) -> tuple[Any, Any]:
    """Holds out ``ceil(test_fraction * n_users)`` random users with all their interactions.

    Test users are unknown to the training data (user cold start); see
    :func:`~tfrs_kit.evaluation.evaluate` for how recommenders score them.

    Args:
        data: The interactions (any accepted table, or an InteractionDataset).
        test_fraction: The share of users held out, in (0, 1).
        seed: Seeds the choice of users.
        user_id: The user id column; default the schema's.
        schema: The :class:`~tfrs_kit.Schema` that names the columns; default the one
            ``data`` carries, else ``Schema()``. Output DataFrames carry it.

    Returns:
        ``(train, test)``.

    Example:
        >>> log = {"user_id": [1, 1, 2, 3, 3], "item_id": [1, 2, 3, 4, 5]}
        >>> train, test = cold_start_user_split(log, test_fraction=0.3)
        >>> set(train["user_id"]) & set(test["user_id"])
        set()
    """
    return _group_split(data, "user_id", user_id, test_fraction, seed, schema)


def cold_start_item_split(
    data: TableLike, *, test_fraction: float = 0.2, seed: int = 0, item_id: str | None = None,
    schema: Schema | None = None,
) -> tuple[Any, Any]:
    """Holds out ``ceil(test_fraction * n_items)`` random items with all their interactions.

    Test items are unknown to the training data (item cold start): only a recommender
    whose catalogue includes them (a content-based two-tower model) can rank them.

    Args:
        data: The interactions (any accepted table, or an InteractionDataset).
        test_fraction: The share of items held out, in (0, 1).
        seed: Seeds the choice of items.
        item_id: The item id column; default the schema's.
        schema: The :class:`~tfrs_kit.Schema` that names the columns; default the one
            ``data`` carries, else ``Schema()``. Output DataFrames carry it.

    Returns:
        ``(train, test)``.

    Example:
        >>> log = {"user_id": [1, 1, 2, 3, 3], "item_id": [1, 2, 1, 2, 3]}
        >>> train, test = cold_start_item_split(log, test_fraction=0.3)
        >>> set(train["item_id"]) & set(test["item_id"])
        set()
    """
    return _group_split(data, "item_id", item_id, test_fraction, seed, schema)
