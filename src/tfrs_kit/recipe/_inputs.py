"""The Recipe's view of the data: the log, one row per item and per user, the validation slice."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit.data._schema import Schema
from tfrs_kit.data._table import TableLike, is_multivalued, to_table
from tfrs_kit.evaluation import per_user_temporal_split

__all__ = [
    "Columns", "attach", "attribute_table", "split_validation", "to_frame", "usable_features",
]


@dataclasses.dataclass(frozen=True)
class Columns:
    """The column roles of the user's log: its schema, and the history column the
    Recipe adds (a name no column of the schema has)."""

    schema: Schema
    history: str

    @property
    def user_id(self) -> str:
        return self.schema.user_id

    @property
    def item_id(self) -> str:
        return self.schema.item_id

    @property
    def timestamp(self) -> str | None:
        return self.schema.timestamp

    def ids(self) -> list[str]:
        return [c for c in (self.user_id, self.item_id, self.timestamp) if c is not None]

    def settings(self) -> dict[str, str]:
        """The id columns by the argument that names them (``{"item_id": "movie_id"}``)."""
        return {role: column for role, column in (("user_id", self.user_id),
                ("item_id", self.item_id), ("timestamp", self.timestamp)) if column is not None}


def to_frame(data: TableLike, argument: str, required: Mapping[str, str]) -> pd.DataFrame:
    """Any accepted table as a DataFrame holding the ``required`` columns.

    ``required`` maps the argument that names a column to the column
    (``{"item_id": "movie_id"}``), so that a missing one's error says which
    argument to change.
    """
    table = to_table(data, argument=argument)
    for setting, column in required.items():
        if column not in table:
            raise missing_column(argument, column, table, setting=setting)
    frame = pd.DataFrame(table)
    for setting in ("user_id", "item_id"):
        if setting in required:
            column = required[setting]
            frame[column] = _whole_ids(frame[column], f"{argument}[{column!r}]")
    return frame


def _whole_ids(ids: pd.Series, argument: str) -> pd.Series:
    """Float ids of whole numbers (a column pandas made float) as integers, as the same
    ids read from another table would be; a fraction is an error (missing ids are
    left to the checks that name them)."""
    values = ids.to_numpy()
    if ids.dtype.kind != "f" or np.isnan(values).any():
        return ids
    fractional = values[~np.isfinite(values) | (values != np.round(values))]
    if len(fractional):
        raise invalid_argument(
            argument, "hold integer or string ids", f"floats such as {float(fractional[0])}",
            hint=f"Convert the column first: {argument} = {argument}.astype(str).")
    return ids.astype(np.int64)


def attribute_table(log: pd.DataFrame, key: str, features: Sequence[str],
                    given: pd.DataFrame | None, *, argument: str) -> pd.DataFrame:
    """One row per id with its attributes: from ``given`` where it has the id, else the log.

    An attribute describes the item (or user), not the interaction: a value that
    varies per row of the log (a price paid) is reduced to one per id (the
    mean of a number, the last value otherwise), so per-row noise never reaches
    the id's embedding. Ids only in ``given`` (a catalogue's unsold items) stay.
    """
    table = _per_id(log, key, [f for f in features if f in log])
    if given is not None:
        missing = [f for f in features if f not in given and f not in log]
        if missing:
            raise missing_column(argument, missing[0], map(str, given.columns),
                                 role="a feature you named")
        given = given.drop_duplicates(key, keep="last")
        from_log = [f for f in features if f not in given]
        known = given[[key, *[f for f in features if f in given]]].merge(
            table[[key, *from_log]], on=key, how="left")
        extra = table[~table[key].isin(given[key])]
        # Concatenating an empty frame would turn a column of booleans into objects.
        table = (pd.concat([known, extra], ignore_index=True).infer_objects()
                 if len(extra) else known)
    missing = [f for f in features if f not in table]
    if missing:
        raise missing_column("train", missing[0], map(str, log.columns),
                             role="a feature you named")
    return table.reset_index(drop=True)


def _per_id(log: pd.DataFrame, key: str, features: list[str]) -> pd.DataFrame:
    groups = log[[key, *features]].groupby(key, sort=False)
    out = groups.tail(1).set_index(key)
    for name in features:
        if log[name].dtype.kind in "f":
            out[name] = groups[name].mean()
    return out.reset_index()


def usable_features(table: pd.DataFrame, features: Sequence[str]) -> tuple[
    list[str], dict[str, str]
]:
    """The features that can carry signal, and why each other one was dropped."""
    keep, dropped = [], {}
    for name in features:
        column = table[name].to_numpy()
        values = (pd.Series([tuple(v) for v in column]) if is_multivalued(column)
                  else pd.Series(column))
        distinct = values.dropna().nunique()
        if distinct == 0:
            dropped[name] = "every value is missing"
        elif distinct == 1:
            dropped[name] = "it has a single value"
        else:
            keep.append(name)
    return keep, dropped


def split_validation(log: pd.DataFrame, columns: Columns, fraction: float,
                     min_users: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Carves each user's latest interactions out of the training log.

    Users with a single interaction stay whole in the fit part (a validation
    row is only useful when something came before it). Returns ``(log, None)``
    when fewer than ``min_users`` users could be validated.
    """
    if columns.timestamp is None:
        raise invalid_argument(
            "timestamp", "name a time column, for a temporal validation slice", None,
            hint="The Recipe validates on each user's latest interactions.",
        )
    if (log[columns.user_id].value_counts() >= 2).sum() < min_users:
        return log, None
    fit, validation = per_user_temporal_split(
        log, test_fraction=fraction, user_id=columns.user_id, item_id=columns.item_id,
        timestamp=columns.timestamp, min_train=1)
    return fit, validation


def attach(rows: Mapping[str, Any], table: pd.DataFrame, key: str,
           features: Sequence[str]) -> dict[str, Any]:
    """``rows`` with each id's attribute values in place of any per-row ones.

    Every id of ``rows`` is in ``table`` (:func:`attribute_table` covers the log).
    """
    lookup = table.set_index(key)
    positions = lookup.index.get_indexer(pd.Index(rows[key]))
    return {**rows, **{name: lookup[name].to_numpy()[positions] for name in features}}
