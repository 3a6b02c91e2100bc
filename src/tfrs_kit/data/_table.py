"""Turns every accepted input into one in-memory table: a dict of equal-length NumPy columns.

Accepted inputs, everywhere in the public API:

* a ``pandas.DataFrame``;
* a mapping of column name to equal-length array-likes;
* a ``tf.data.Dataset`` of feature dicts, batched or not;
* files: a path, a glob, a directory or a list of them, naming Parquet, CSV or
  TFRecord shards, or :class:`~tfrs_kit.data.Shards` (read by ``_files``, only the
  columns asked for).

Column conventions after conversion:

* strings (and bytes, decoded as UTF-8) are ``object`` arrays of ``str``;
* integers are ``int64``, floats ``float32`` or ``float64`` as given;
* multi-valued features (a list of genres, a history of item ids) are ``object``
  arrays whose elements are 1-D NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit.data._files import read_table
from tfrs_kit.data._source import TableLike, is_files

__all__ = ["Table", "TableLike", "is_multivalued", "num_rows", "select", "take", "to_table"]

Table = dict[str, np.ndarray]


def _normalize_column(name: str, values: Any, argument: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype != object:
        array = values
    else:
        try:
            array = np.asarray(values)
        except ValueError:  # ragged nested lists
            array = np.empty(len(values), dtype=object)
            array[:] = [np.asarray(v) for v in values]
        if array.dtype.kind == "U" and array.ndim == 1 and not all(
                isinstance(v, str) for v in values):
            # NumPy turns [1, "a"] into ["1", "a"] and [None-like NaN, "a"] into ["nan", "a"]:
            # keep the values as given, so mixed ids and missing values are seen as such.
            array = np.empty(len(array), dtype=object)
            array[:] = list(values)
    if array.ndim == 0:
        raise invalid_argument(
            f"{argument}[{name!r}]", "be a 1-D sequence of values, one per row", values
        )
    if array.ndim > 1:
        # A dense 2-D column: one fixed-length list per row.
        rows = np.empty(array.shape[0], dtype=object)
        rows[:] = list(array)
        return rows
    if array.dtype.kind == "S":
        return np.array([v.decode("utf-8") for v in array], dtype=object)
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype == object and len(array):
        first = array[0]
        if isinstance(first, bytes):
            return np.array(
                [v.decode("utf-8") if isinstance(v, bytes) else v for v in array], dtype=object
            )
        if isinstance(first, (list, tuple, np.ndarray)):
            out = np.empty(len(array), dtype=object)
            out[:] = [_normalize_sequence(v) for v in array]
            return out
    if array.dtype.kind == "u" and len(array) and array.max() > np.iinfo(np.int64).max:
        raise invalid_argument(  # int64 would wrap them around to negative ids
            f"{argument}[{name!r}]", "hold integers below 2**63 (int64)",
            array[array > np.iinfo(np.int64).max][:3].tolist(),
            hint="Convert such ids to str.",
        )
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    return array


def _normalize_sequence(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "S" or (
        array.dtype == object and len(array) and isinstance(array[0], bytes)
    ):
        return np.array([v.decode("utf-8") for v in array], dtype=object)
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    return array


def _from_dataset(dataset: Any, argument: str) -> Table:
    import tensorflow as tf

    spec = dataset.element_spec
    if not isinstance(spec, Mapping):
        raise invalid_argument(
            argument, "be a tf.data.Dataset of feature dicts", f"a Dataset of {spec}",
            error=TypeError,
        )
    ranks = [getattr(s, "shape", tf.TensorShape(None)).rank for s in spec.values()]
    leading = [getattr(s, "shape", tf.TensorShape(None)) for s in spec.values()]
    batched = all(rank and shape[0] is None for rank, shape in zip(ranks, leading, strict=True))
    batched = batched and 0 not in ranks
    if not batched:
        dataset = dataset.ragged_batch(65536)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in spec}
    for batch in dataset:
        for name, value in batch.items():
            if isinstance(value, tf.RaggedTensor) or len(value.shape) > 1:
                rows = value.numpy()
                chunk = np.empty(len(rows), dtype=object)
                chunk[:] = [_normalize_sequence(row) for row in rows]
            else:
                chunk = value.numpy()
            parts[name].append(chunk)
    return {
        name: _normalize_column(name, np.concatenate(chunks), argument)
        for name, chunks in parts.items()
        if chunks
    }


def to_table(
    data: TableLike, *, argument: str = "data", columns: Iterable[str] | None = None,
    settings: Mapping[str, str] | None = None,
) -> Table:
    """Converts ``data`` into a :data:`Table` and validates it.

    Args:
        data: A DataFrame, a mapping of equal-length arrays, a ``tf.data.Dataset``
            of feature dicts, or files: a path, a glob, a directory or a list of
            them, naming Parquet, CSV or TFRecord shards.
        argument: The argument's name, for error messages.
        columns: If given, only these columns are converted, and each must exist.
        settings: For a column that a keyword argument named, that argument
            (``{"movieid": "item_id"}``): the error for a missing column then
            suggests ``item_id='movie_id'`` instead of renaming the user's column.

    Returns:
        A dict of equal-length NumPy arrays.

    Raises:
        TypeError: ``data`` is of none of the accepted types.
        ValueError: The table is empty or its columns differ in length.
        ValueError: A requested column is missing.
        FileNotFoundError: Files that ``data`` names do not exist.
    """
    wanted = list(columns) if columns is not None else None
    if is_files(data):
        # Read in the in-memory conventions already; the checks below still apply.
        table = read_table(data, argument=argument, columns=wanted, settings=settings)
    elif _is_dataframe(data):
        names = list(data.columns)
        _check_columns(wanted, names, argument, settings)
        table = {str(c): _normalize_column(str(c), data[c].to_numpy(), argument)
                 for c in (wanted or names)}
    elif isinstance(data, Mapping):
        names = list(data)
        _check_columns(wanted, names, argument, settings)
        table = {str(c): _normalize_column(str(c), data[c], argument) for c in (wanted or names)}
    elif _is_dataset(data):
        table = _from_dataset(data, argument)
        _check_columns(wanted, list(table), argument, settings)
        if wanted is not None:
            table = {c: table[c] for c in wanted}
    else:
        raise invalid_argument(
            argument,
            "be a pandas DataFrame, a dict of equal-length arrays, a tf.data.Dataset of "
            "feature dicts, or files (a path, glob or list of Parquet, CSV or TFRecord shards)",
            type(data).__name__,
            error=TypeError,
        )
    if not table:
        raise invalid_argument(argument, "have at least one column", data)
    lengths = {name: len(col) for name, col in table.items()}
    if len(set(lengths.values())) > 1:
        raise invalid_argument(
            argument, "have columns of equal length", f"column lengths {lengths}"
        )
    if next(iter(lengths.values())) == 0:
        raise invalid_argument(
            argument, "have at least one row", f"an empty table with columns {sorted(table)}"
        )
    return table


def _check_columns(wanted: Sequence[str] | None, names: Sequence[Any], argument: str,
                   settings: Mapping[str, str] | None = None) -> None:
    if wanted is None:
        return
    known = [str(n) for n in names]
    for column in wanted:
        if column not in known:
            raise missing_column(argument, column, known,
                                 setting=(settings or {}).get(column))


def _is_dataframe(data: Any) -> TypeGuard[pd.DataFrame]:
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns")


def _is_dataset(data: Any) -> bool:
    return hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator")


def num_rows(table: Table) -> int:
    """The number of rows of a table."""
    return len(next(iter(table.values())))


def is_multivalued(column: np.ndarray) -> bool:
    """Whether a column holds one sequence of values per row."""
    return column.dtype == object and len(column) > 0 and isinstance(column[0], np.ndarray)


def select(table: Table, columns: Iterable[str], *, argument: str = "data",
           settings: Mapping[str, str] | None = None) -> Table:
    """The named columns of a table, with an error naming any missing one.

    ``settings`` is as in :func:`to_table`.
    """
    columns = list(columns)
    _check_columns(columns, list(table), argument, settings)
    return {c: table[c] for c in columns}


def take(table: Table, indices: np.ndarray) -> Table:
    """The rows at ``indices`` (or a boolean mask) of every column."""
    return {name: column[indices] for name, column in table.items()}


def last_rows(table: Table, key: str) -> Table:
    """Each ``key``'s last row: one row per user or item, its latest features.

    >>> last_rows({"id": np.array([1, 2, 1]), "x": np.array([10, 20, 30])}, "id")["x"].tolist()
    [20, 30]
    """
    return take(table, ~pd.Series(table[key]).duplicated(keep="last").to_numpy())
