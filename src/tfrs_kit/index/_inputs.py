"""Query inputs as the serving functions take them: raw columns and exclusions to tensors.

Every conversion error names the argument the user passed (``query_features['user_id']``,
``exclude``, ``item_ids``), not the tensor it failed to become.

>>> padded([["a"], ["b", "c"], []], "").tolist()
[['a', ''], ['b', 'c'], ['', '']]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import (
    check_no_infinity,
    check_no_missing,
    check_vocabulary_kind,
    id_kind,
    padding_value,
)
from tfrs_kit.data._table import is_multivalued
from tfrs_kit.data._tensors import is_vector

__all__ = ["check_ids", "check_known", "exclusion_tensor", "padded", "query_tensor"]


def padded(rows: Sequence[Sequence[Any]], pad: Any) -> np.ndarray:
    """Lists of ids as one dense ``[len(rows), longest]`` array, padded with ``pad``.

    Raises:
        TypeError, ValueError: A row holds values that do not fit the array's
            dtype; the message names the row.
    """
    width = max((len(row) for row in rows), default=0)
    dense = np.full((len(rows), width), pad, dtype=object if pad == "" else np.int64)
    for number, row in enumerate(rows):
        try:
            if pad != "" and not all(_whole(v) for v in row):
                raise TypeError("not whole numbers")  # NumPy would truncate 1.5 to 1
            dense[number, : len(row)] = list(row)
        except (TypeError, ValueError) as error:
            raise type(error)(f"row {number}: {list(row)[:5]}") from error
    return dense


def _whole(value: Any) -> bool:
    """Whether an id is usable as an integer id: not a fractional float (nor a string)."""
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    return not isinstance(value, (str, bytes))


def query_tensor(name: str, column: np.ndarray, spec: tf.TensorSpec, *,
                 kind: str | None = None) -> tf.Tensor:
    """One raw query feature as the tensor its serving signature takes.

    Args:
        name: The feature's name.
        column: Its raw values.
        spec: Its serving signature's spec.
        kind: Its vocabulary's kind, if it has one (text may hold ``None``).

    Raises:
        TypeError: Numbers given as strings.
        ValueError: The column's values do not fit ``spec``'s dtype, a missing
            (``None``/NaN) id, or an infinite number.
    """
    argument = f"query_features[{name!r}]"
    if spec.dtype.is_floating and spec.shape.rank == 2 and is_vector(column):
        return _vector_tensor(argument, column, spec)  # one float vector per row
    values = np.asarray(column) if not is_multivalued(column) else column
    if spec.dtype == tf.string and values.dtype.kind in "fbc":
        raise invalid_argument(argument, "hold string values", values[:3].tolist(),
                               hint="Convert the ids to str as in training.", error=TypeError)
    if spec.dtype.is_floating:
        if values.dtype.kind in "OUS" and id_kind(values) in ("string", "mixed"):
            raise invalid_argument(argument, "hold numbers", values[:3].tolist(),
                                   error=TypeError, hint="Convert the column with .astype(float).")
        check_no_infinity(argument, values)
    elif spec.shape.rank == 1 and kind != "text":
        # A missing id would become the string "None" (or fail): an unknown user, silently.
        check_no_missing(argument, values)
        check_vocabulary_kind(argument, values, "string" if spec.dtype == tf.string else "int64")
    if spec.shape.rank == 1 and spec.dtype.is_integer and values.dtype.kind in "bf":
        values = _as_int_ids(argument, values)  # as fit and the towers read them
    try:
        if spec.shape.rank == 2:
            rows = list(column) if is_multivalued(column) else [[v] for v in column]
            pad = padding_value("string" if spec.dtype == tf.string else "int64")
            return tf.constant(padded(rows, pad), dtype=spec.dtype)
        if spec.dtype == tf.string:
            return tf.constant(values.astype(str), dtype=tf.string)
        if spec.dtype.is_integer and values.dtype.kind not in "iuO":
            raise TypeError(f"{values.dtype} is not an integer dtype")
        return tf.constant(values, dtype=spec.dtype)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise invalid_argument(
            argument, f"hold values of dtype {spec.dtype.name}",
            f"{values.dtype} values {list(values[:3])}",
        ) from error


def _as_int_ids(argument: str, values: np.ndarray) -> np.ndarray:
    """Booleans and whole floats (``25.0``) of an integer-id feature as int64 ids."""
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise invalid_argument(argument, "hold whole numbers (its vocabulary holds integer "
                               "ids)", values[:3].tolist(),
                               hint="A fractional value is not an id: declare the feature "
                               "as 'numeric' when building the vocabularies.")
    return values.astype(np.int64)


def _vector_tensor(argument: str, column: np.ndarray, spec: tf.TensorSpec) -> tf.Tensor:
    """A column of float vectors (a precomputed embedding) as a dense ``[rows, length]``."""
    values = np.stack(list(column))
    check_no_infinity(argument, values)
    if spec.shape[1] is not None and values.shape[1] != spec.shape[1]:
        raise invalid_argument(argument, f"hold vectors of length {spec.shape[1]}, as the "
                               "query tower's input_signature() says",
                               f"vectors of length {values.shape[1]}")
    return tf.constant(values, dtype=spec.dtype)


def exclusion_tensor(exclude: Sequence[Sequence[Any]] | None, n: int, id_dtype: tf.DType,
                     known: pd.Index) -> tf.Tensor:
    """``exclude`` as a ``[n, longest]`` tensor of ids, padded; ``[n, 0]`` for ``None``.

    Args:
        exclude: One list of candidate ids per query, or ``None``.
        n: The number of queries.
        id_dtype: The index's id dtype.
        known: The index's candidate ids.

    Raises:
        ValueError: Not one list per query, ids of another dtype, or ids not in ``known``.
    """
    if exclude is None:
        return tf.zeros([n, 0], dtype=id_dtype)
    if isinstance(exclude, (str, bytes)) or len(exclude) != n:
        raise invalid_argument(
            "exclude", f"hold one list of ids per query ({n} queries)",
            f"{len(exclude) if not isinstance(exclude, (str, bytes)) else exclude} lists",
        )
    if any(isinstance(e, (str, bytes)) or not hasattr(e, "__len__") for e in exclude):
        raise invalid_argument(
            "exclude", "hold one list of ids per query, not single ids", list(exclude)[:3],
            hint="Wrap each query's ids in a list (an empty one for none): "
            "exclude=[['a', 'b'], [], ...].", error=TypeError,
        )
    pad = padding_value("string" if id_dtype == tf.string else "int64")
    try:
        dense = padded(exclude, pad)
    except (TypeError, ValueError) as error:
        raise invalid_argument(
            "exclude", f"hold {id_dtype.name} ids like the index", str(error), error=TypeError,
        ) from error
    flat = dense[dense != pad] if dense.shape[1] else dense.ravel()
    check_ids(np.asarray(flat, dtype=dense.dtype), known, "exclude")
    return tf.constant(dense, dtype=id_dtype)


def check_ids(ids: np.ndarray, known: pd.Index, argument: str) -> None:
    """Ids of the index's kind, none missing, all in the index.

    Raises:
        TypeError: Integers for an index of string ids, or the other way round.
        ValueError: A ``None``/NaN id, or an id not in the index.
    """
    check_no_missing(argument, ids)
    kind, index_kind = id_kind(ids), id_kind(known)
    if kind != "empty" and (kind == "mixed" or kind != index_kind):
        example = next(iter(ids.ravel()), None)
        sample = known[0].item() if hasattr(known[0], "item") else known[0]
        convert = "str()" if index_kind == "string" else "int()"
        raise invalid_argument(
            argument, f"hold {index_kind} ids like the index's candidates", ids[:5].tolist(),
            error=TypeError,
            hint=f"The index's ids are {index_kind}s such as {sample!r}; {example!r} has "
            f"type {type(example).__name__}. Convert the ids, e.g. with {convert}.",
        )
    if index_kind == "number" and not all(_whole(v) for v in ids.ravel()):
        raise invalid_argument(argument, "hold whole-number ids like the index's",
                               ids[:5].tolist(), error=TypeError)
    check_known(ids, known, argument)


def check_known(ids: np.ndarray, known: pd.Index, argument: str) -> None:
    """Raises a ValueError naming the first ``ids`` that are not in ``known``."""
    unknown = ids[known.get_indexer(pd.Index(ids)) < 0] if len(ids) else ids
    if len(unknown):
        raise invalid_argument(
            argument, "name candidate ids in the index", f"unknown ids {unknown[:5].tolist()}",
        )
