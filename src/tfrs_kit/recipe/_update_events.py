"""An update's new events: read, checked against the model's columns, and those the model
has already learned from left out.

A day given twice (a scheduled job run again after a crash that had in fact published,
or an overlapping export) must not count its events twice: the rows with the same user,
item and time as an event of the model's log are left out and counted
(``UpdateReport.already_logged``), and a batch of nothing else is refused. A repeated
(user, item) pair at another time is a new event (a repeat purchase).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit.data._table import TableLike
from tfrs_kit.recipe._inputs import to_frame
from tfrs_kit.recipe._training import Data

__all__ = ["late_events", "read_new_events"]


def read_new_events(new_events: TableLike, old: Data, c: Any,
                    settings: Any) -> tuple[pd.DataFrame, int]:
    """``new_events`` as a DataFrame checked against the model's schema, without the rows
    already in ``old``'s log; and how many those were.

    Raises:
        ValueError: No rows, or every row already in the log.
        TypeError: An id or time column of another type than the model's.
    """
    frame = to_frame(new_events, "new_events", c.settings())
    if not len(frame):
        raise invalid_argument("new_events", "hold at least one event", "0 rows",
                               hint="Nothing to update with: skip the update.")
    for column in (c.user_id, c.item_id, c.timestamp):
        if column is None:
            continue
        expected, found = old.log[column].dtype, frame[column].dtype
        kinds = {_kind(old.log[column]), _kind(frame[column])}
        if len(kinds) > 1 and not (column == c.timestamp and kinds == {"i", "n"}):
            raise invalid_argument(
                f"new_events[{column!r}]", f"hold values of the model's type ({expected})",
                f"dtype {found} ({_kind_name(frame[column])})", error=TypeError,
                hint=f"Convert it first, e.g. new_events[{column!r}] = "
                f"new_events[{column!r}].astype({str(expected)!r}).")
        if _kind(frame[column]) == "i" and column != c.timestamp:
            frame[column] = frame[column].astype(np.int64)
    logged = _already_logged(frame, old.log, c)
    if logged.all():
        raise invalid_argument(
            "new_events", "hold events the model has not learned from",
            f"all {len(frame)} rows already in its log (the same user, item and "
            f"{c.timestamp!r})", hint="The model was updated with these events already "
            "(`tfrs-kit versions` lists the versions): nothing to do.")
    features = [*settings.item_features, *settings.user_features]
    kept = frame.loc[~logged, c.ids() + [f for f in features if f in frame]]
    return kept.reset_index(drop=True), int(logged.sum())


def _already_logged(frame: pd.DataFrame, log: pd.DataFrame, c: Any) -> np.ndarray:
    """Which rows of ``frame`` have the user, item and time of a row of ``log``. Only the
    log's rows from the frame's earliest time on are compared."""
    if c.timestamp is None or not len(log):
        return np.zeros(len(frame), bool)
    keys = [c.user_id, c.item_id, c.timestamp]
    recent = log.loc[(log[c.timestamp] >= frame[c.timestamp].min()).to_numpy(), keys]
    if not len(recent):
        return np.zeros(len(frame), bool)
    return pd.MultiIndex.from_frame(frame[keys]).isin(pd.MultiIndex.from_frame(recent))


def late_events(old: Data, new: pd.DataFrame, timestamp: str | None) -> int:
    """The new events older than the model's newest."""
    if timestamp is None or not len(old.log):
        return 0
    return int((new[timestamp] < old.log[timestamp].max()).sum())


def _kind(values: pd.Series) -> str:
    """``i`` for integer ids, ``n`` for other numbers, ``M`` for datetimes, ``O`` for text;
    an object column by the values it holds (integers in an object column are ``i``,
    a mix of kinds ``mixed``)."""
    types, dtype = pd.api.types, values.dtype
    if types.is_bool_dtype(dtype) or types.is_integer_dtype(dtype):
        return "i"
    if types.is_datetime64_any_dtype(dtype):
        return "M"
    if types.is_numeric_dtype(dtype):
        return "n"
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    return {"integer": "i", "floating": "n", "mixed-integer-float": "n", "datetime": "M",
            "string": "O", "empty": "O"}.get(inferred, "mixed")


def _kind_name(values: pd.Series) -> str:
    return {"i": "integers", "n": "numbers", "M": "datetimes", "O": "text",
            "mixed": "values of mixed types"}[_kind(values)]
