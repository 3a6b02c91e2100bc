"""The one home of argument checks, so their rules and exception types cannot drift apart.

The rule for exception types (also in ``docs/contributing.md``):

- ``TypeError``: a value of the wrong type (a string or ``True`` where an integer
  is wanted, ids of another kind than the data they are matched against);
- ``ValueError``: a value of the right type that breaks a rule (out of range, not
  finite, an unknown name or choice, a missing column);
- :class:`~tfrs_kit.NotFittedError`: an object used before ``fit``/``build``.

Every check returns the value as a plain Python type (``np.int64(3)`` becomes
``3``), so callers store what they checked.

>>> check_int("k", 5, minimum=1)
5
>>> check_int("k", 0, minimum=1)
Traceback (most recent call last):
ValueError: `k` must be an integer >= 1. Received: k=0.
>>> check_choice("backend", "scan", ("brute_force", "scann"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: `backend` must be one of 'brute_force', 'scann'. Received: ... Did you mean 'scann'?
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import closest, invalid_argument, unknown_name

__all__ = [
    "check_bool",
    "check_choice",
    "check_features",
    "check_fraction",
    "check_int",
    "check_no_infinity",
    "check_no_missing",
    "check_number",
    "check_same_kind",
    "check_verbose",
    "check_vocabulary_kind",
    "id_kind",
    "padding_value",
    "renamed_argument",
]


def _range_rule(minimum: float | None, maximum: float | None, *, low_open: bool = False,
                high_open: bool = False) -> str:
    low = None if minimum is None else f"{'>' if low_open else '>='} {minimum}"
    high = None if maximum is None else f"{'<' if high_open else '<='} {maximum}"
    if low and high:
        if not low_open and not high_open:
            return f" between {minimum} and {maximum}"
        return f" {low} and {high}"
    return f" {low or high}" if (low or high) else ""


def check_int(argument: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None, allow_none: bool = False) -> Any:
    """An integer (Python or NumPy, never ``bool``) in ``[minimum, maximum]``.

    Raises:
        TypeError: ``value`` is not an integer (or ``None`` when ``allow_none``).
        ValueError: ``value`` is out of range.
    """
    if value is None and allow_none:
        return None
    rule = "be an integer" + _range_rule(minimum, maximum) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise invalid_argument(argument, rule, value, error=TypeError)
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise invalid_argument(argument, rule, value)
    return number


def check_number(argument: str, value: Any, *, minimum: float | None = None,
                 maximum: float | None = None, low_open: bool = False,
                 high_open: bool = False, allow_none: bool = False) -> Any:
    """A finite real number (never ``bool``) in the given range.

    ``low_open``/``high_open`` exclude the bound itself (``minimum=0,
    low_open=True`` is "> 0").

    Raises:
        TypeError: ``value`` is not a real number (or ``None`` when ``allow_none``).
        ValueError: ``value`` is NaN, infinite or out of range.
    """
    if value is None and allow_none:
        return None
    rule = ("be a finite number"
            + _range_rule(minimum, maximum, low_open=low_open, high_open=high_open)
            + (" or None" if allow_none else ""))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid_argument(argument, rule, value, error=TypeError)
    value = float(value)
    too_low = minimum is not None and (value <= minimum if low_open else value < minimum)
    too_high = maximum is not None and (value >= maximum if high_open else value > maximum)
    if not math.isfinite(value) or too_low or too_high:
        raise invalid_argument(argument, rule, value)
    return value


def check_bool(argument: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy's booleans too); anything else is a ``TypeError``.

    >>> check_bool("blend", 1)
    Traceback (most recent call last):
    ...
    TypeError: `blend` must be True or False. Received: blend=1.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise invalid_argument(argument, "be True or False", value, error=TypeError)
    return bool(value)


def check_fraction(argument: str, value: Any, *, allow_zero: bool = False,
                   allow_one: bool = False, allow_none: bool = False) -> Any:
    """A share of rows: a number in ``(0, 1)``, closed at either end on request."""
    return check_number(argument, value, minimum=0.0, maximum=1.0, low_open=not allow_zero,
                        high_open=not allow_one, allow_none=allow_none)


def check_choice(argument: str, value: Any, choices: Iterable[str], *,
                 what: str | None = None) -> str:
    """One of ``choices``; else a ``ValueError`` with the closest choice.

    ``what`` names the kind of choice in the message ("a known backend");
    without it the message lists the choices ("one of 'a', 'b'").
    """
    choices = tuple(choices)
    if isinstance(value, str) and value in choices:
        return str(value)
    if not isinstance(value, str):
        raise invalid_argument(argument, f"be one of {', '.join(map(repr, choices))}", value,
                               error=TypeError)
    if what is None and len(choices) <= 10:
        shown = ", ".join(repr(c) for c in choices)
        hint = closest(value, choices)
        raise invalid_argument(argument, f"be one of {shown}", value,
                               hint=f"Did you mean {hint!r}?" if hint else None)
    raise unknown_name(argument, value, choices, what=what or "name")


def check_verbose(argument: str, value: Any, *, keras: bool = False) -> Any:
    """A verbosity: ``"auto"``, ``True`` or ``False``, and with ``keras`` also 0, 1 or 2.

    Raises:
        TypeError: ``value`` is neither a bool, a string nor (with ``keras``) an
            integer; an integer without ``keras``.
        ValueError: another string than ``"auto"``, or an integer out of 0-2.
    """
    rule = "be 'auto', True, False or a Keras verbosity 0, 1 or 2" if keras else (
        "be 'auto', True or False")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        if value != "auto":
            raise invalid_argument(argument, rule, value)
        return value
    if keras and isinstance(value, numbers.Integral):
        if int(value) not in (0, 1, 2):
            raise invalid_argument(argument, rule, value)
        return int(value)
    raise invalid_argument(argument, rule, value, error=TypeError)


def id_kind(values: Any) -> str:
    """``"number"``, ``"string"``, ``"mixed"`` or ``"empty"``: the kind of a column of ids.

    Every value is looked at (missing values aside), so a string among a
    million integers makes the column ``"mixed"``.

    >>> id_kind([1, 2, 3]), id_kind(["a", "b"]), id_kind(np.array([1, "a"], dtype=object))
    ('number', 'string', 'mixed')
    """
    array = np.asarray(values, dtype=object) if isinstance(values, (list, tuple)) else (
        np.asarray(values))  # a list [1, "a"] must not become the strings ["1", "a"]
    if array.dtype.kind in "iufb":
        return "number"
    if array.dtype.kind in "US":
        return "string"
    inferred = pd.api.types.infer_dtype(array.ravel(), skipna=True)
    if inferred in ("string", "bytes"):
        return "string"
    if inferred in ("integer", "floating", "decimal", "boolean", "mixed-integer-float"):
        return "number"
    return "empty" if inferred == "empty" else "mixed"


def padding_value(dtype: str) -> Any:
    """The value that pads lists of ids (histories, exclusions): ``""`` or ``-1``.

    Lists are padded to a rectangle with it, so it can never be a real value of a
    list-valued feature, nor a candidate id of an index.

    >>> padding_value("string"), padding_value("int64")
    ('', -1)
    """
    return "" if dtype == "string" else -1


def renamed_argument(new: str, new_value: Any, *, old: str, old_value: Any,
                     stacklevel: int = 3) -> Any:
    """The value of a keyword argument that was renamed, given under either name.

    ``None`` means "not given". The old name still works, with a
    ``DeprecationWarning`` that names the new one (``stacklevel`` 3 points at
    the caller of the function that takes both).

    >>> renamed_argument("item_id", "movie", old="candidate_id", old_value=None)
    'movie'
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     value = renamed_argument("item_id", None, old="candidate_id", old_value="movie")
    >>> value, str(caught[0].message)
    ('movie', '`candidate_id` is deprecated: pass `item_id` instead.')

    Raises:
        ValueError: both names given.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise invalid_argument(old, f"be left out when `{new}` is given (it is `{new}`'s old "
                               "name)", old_value, hint=f"Pass {new}= alone.")
    warnings.warn(f"`{old}` is deprecated: pass `{new}` instead.", DeprecationWarning,
                  stacklevel=stacklevel)
    return old_value


def check_no_infinity(argument: str, values: Any) -> None:
    """Float values that are finite in float32 or NaN (a missing value); ``inf`` is an error.

    Raises:
        ValueError: naming the argument, the count and the first position.
    """
    array = np.asarray(values)
    if array.dtype.kind != "f":
        return
    # Features are float32 in the towers: a larger finite float64 becomes inf there.
    with np.errstate(invalid="ignore"):
        infinite = np.abs(array) > np.finfo(np.float32).max
    if infinite.any():
        first = int(np.flatnonzero(infinite.ravel())[0])
        raise invalid_argument(
            argument, "hold finite numbers (NaN marks a missing value)",
            _Shown(f"{int(infinite.sum())} infinite values, the first at row {first}"),
            hint="Replace or drop them first, e.g. df[col].replace([np.inf, -np.inf], np.nan).",
        )


def check_no_missing(argument: str, values: Any, *, what: str = "ids") -> None:
    """Values without ``None`` or NaN (ids are never missing).

    Raises:
        ValueError: naming the argument, the count and the first position.
    """
    array = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if array.dtype.kind not in "fOc" or not len(array):
        return
    missing = pd.isna(array) if array.ndim == 1 else pd.isna(array.ravel())
    if np.any(missing):
        raise invalid_argument(
            argument, f"hold no missing (None or NaN) {what}",
            _Shown(f"{int(np.sum(missing))} missing, the first at row "
                   f"{int(np.flatnonzero(missing)[0])}"),
            hint="Drop or fill those rows first.",
        )


def check_features(argument: str, table: Any, vocabularies: Any, features: Iterable[str]) -> None:
    """Raw feature columns that fit their vocabularies, checked before TensorFlow sees them.

    Numbers (``"numeric"``, ``"timestamp"``) must not be strings nor infinite
    (NaN is a missing value); one-value id and category columns must not be
    missing (``None``/NaN would silently become the unknown id).

    Raises:
        TypeError: A numeric feature given as strings.
        ValueError: An infinite number, or a missing id or category.
    """
    for name in features:
        if name not in table or name not in vocabularies:
            continue  # a missing column is the caller's error; no vocabulary, no rule
        column, vocab = table[name], vocabularies[name]
        shown = f"{argument}[{name!r}]"
        if vocab.kind in ("numeric", "timestamp"):
            if column.dtype.kind in "OUS" and id_kind(column) in ("string", "mixed"):
                raise invalid_argument(
                    shown, f"hold numbers for the {vocab.kind} feature {name!r}",
                    list(column[:3]), error=TypeError,
                    hint="Convert the column first, e.g. df[col].astype(float).",
                )
            check_no_infinity(shown, column)
        elif vocab.kind == "categorical":
            check_no_missing(shown, column, what="values")
            check_vocabulary_kind(shown, column, vocab.dtype)


def check_vocabulary_kind(argument: str, values: Any, dtype: str) -> None:
    """Ids of the kind their vocabulary holds: strings for ``"string"``, numbers for ``"int64"``.

    An integer never matches a string token (``1`` is not ``"1"``): every such
    id would silently be out of vocabulary, or fail inside TensorFlow.

    A list per row (a history read through the item ids' vocabulary) is checked
    by its values.

    Raises:
        TypeError: numbers for a string vocabulary, or strings for an integer one.
    """
    values = _flat_if_lists(values)
    kind = id_kind(values)
    wanted = "string" if dtype == "string" else "number"
    if kind in ("empty", wanted):
        return
    first = next((v for v in np.asarray(values).ravel() if not pd.isna(v)), None)
    raise invalid_argument(
        argument, f"hold {wanted} ids like its vocabulary ({dtype} tokens)",
        _Shown(f"{kind} ids such as {_plain(first)!r}"), error=TypeError,
        hint="Convert the column as in the data the vocabulary was built from "
        f"(.astype({'str' if wanted == 'string' else 'int'})).",
    )


def _flat_if_lists(values: Any) -> Any:
    """The values of a column holding a list per row, one after the other; else ``values``."""
    if not isinstance(values, np.ndarray) or values.dtype != object or not any(
            isinstance(row, (np.ndarray, list, tuple)) for row in values):
        return values
    rows = [np.asarray(row, dtype=object).ravel() for row in values]
    return np.concatenate(rows) if rows else np.array([], dtype=object)


def check_same_kind(argument: str, values: Any, reference: Any, *, what: str = "ids",
                    reference_name: str = "the training data") -> None:
    """Ids that can match ``reference``: both numbers or both strings.

    Raises:
        TypeError: one side holds numbers and the other strings, or a side
            mixes both (``1`` never equals ``"1"``, so such ids would silently
            never match).
    """
    kind, reference_kind = id_kind(values), id_kind(reference)
    if "mixed" in (kind, reference_kind):
        mixed = values if kind == "mixed" else reference
        name = argument if kind == "mixed" else reference_name
        raise invalid_argument(
            name, f"hold {what} of one kind (all numbers or all strings)",
            _Shown(f"a mix such as {_first_of_each_kind(mixed)}"), error=TypeError,
            hint="Convert the column with .astype(str) (or to int) first.",
        )
    if "empty" in (kind, reference_kind) or kind == reference_kind:
        return
    first = next((v for v in np.asarray(values).ravel() if not pd.isna(v)), None)
    raise invalid_argument(
        argument, f"hold {what} of the same kind as {reference_name} ({reference_kind} ids)",
        _Shown(f"{kind} ids such as {_plain(first)!r}"), error=TypeError,
        hint="Convert the ids of both tables to str, or both to int.",
    )


def _first_of_each_kind(values: Any) -> str:
    seen: dict[bool, Any] = {}
    for value in np.asarray(values).ravel():
        if not pd.isna(value):
            seen.setdefault(isinstance(value, (str, bytes)), _plain(value))
            if len(seen) == 2:
                break
    return " and ".join(repr(v) for v in seen.values())


class _Shown(str):
    """A description shown as is after "Received:" (not quoted like a value)."""

    def __repr__(self) -> str:
        return str(self)


def _plain(value: Any) -> Any:
    """``np.int64(3)`` as ``3``: NumPy scalars as the Python values users wrote."""
    return value.item() if isinstance(value, np.generic) else value
