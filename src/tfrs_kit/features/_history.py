"""History features: each event's preceding items, and each user's latest items."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import check_int, check_no_missing, padding_value
from tfrs_kit.data._schema import UNSET, Schema, resolve_schema
from tfrs_kit.data._shards import Shards
from tfrs_kit.data._table import Table, TableLike, to_table
from tfrs_kit.features._history_files import latest_histories

__all__ = ["HistoryBuilder"]


class HistoryBuilder:
    """Adds a history feature: the items a user interacted with before each event.

    The history of an event holds the user's ``max_length`` most recent items
    strictly before it (by ``timestamp``, then by row order), most recent last,
    so training never sees the future. :meth:`for_users` gives each user's
    latest history, the query feature for evaluation and serving; a user never
    seen in training is served from a history alone.

    In a :class:`~tfrs_kit.Tower`, a history is a multi-valued feature: build its
    vocabulary from the column (``features={"history": "multi"}``).

    The columns come from a :class:`~tfrs_kit.Schema`, looked up at each call: the
    ``schema`` given here, else the one the data carries (a split's DataFrame, a data
    set's table), else ``Schema()``; a column argument given here overrides its field.

    Args:
        user_id: The user id column; default the schema's.
        item_id: The item id column; default the schema's.
        timestamp: The time column; ``None`` keeps the table's row order. Default
            the schema's.
        max_length: The most recent items kept per history.
        name: The name of the history column to add.
        schema: The :class:`~tfrs_kit.Schema` that names the columns.

    Attributes:
        user_id: The user id column used for data that carries no schema.
        item_id: The item id column used for data that carries no schema.
        timestamp: The time column used for data that carries no schema.

    Example:
        >>> log = {"user_id": ["a", "a", "a", "b"], "item_id": ["x", "y", "z", "x"],
        ...        "timestamp": [1, 2, 3, 1]}
        >>> builder = HistoryBuilder(max_length=2)
        >>> [h.tolist() for h in builder.transform(log)["history"]]
        [[], ['x'], ['x', 'y'], []]
        >>> users = builder.for_users(log)
        >>> users["user_id"].tolist(), [h.tolist() for h in users["history"]]
        (['a', 'b'], [['y', 'z'], ['x']])
    """

    def __init__(
        self,
        *,
        user_id: str | None = None,
        item_id: str | None = None,
        timestamp: Any = UNSET,
        max_length: int = 50,
        name: str = "history",
        schema: Schema | None = None,
    ) -> None:
        self._schema = schema
        self._columns = {"user_id": user_id, "item_id": item_id, "timestamp": timestamp}
        columns = self._resolve(None)
        self.user_id = columns.user_id
        self.item_id = columns.item_id
        self.timestamp = columns.timestamp
        self.max_length = check_int("max_length", max_length, minimum=1)
        self.name = name

    def __repr__(self) -> str:
        return (f"HistoryBuilder(user_id={self.user_id!r}, item_id={self.item_id!r}, "
                f"timestamp={self.timestamp!r}, max_length={self.max_length}, name={self.name!r})")

    def _resolve(self, data: Any) -> Schema:
        """The columns for ``data``: the builder's schema and arguments, else data's."""
        columns = resolve_schema(*(() if data is None else (data,)), schema=self._schema,
                                 **self._columns)
        if self._columns["timestamp"] is None:  # given as None: keep the row order
            columns = columns.replace(timestamp=None)
        return columns

    def _sorted(self, data: TableLike) -> tuple[Table, np.ndarray, np.ndarray, np.ndarray,
                                                Schema]:
        columns = self._resolve(data)
        user_id, item_id, timestamp = columns.user_id, columns.item_id, columns.timestamp
        table = to_table(data)
        for setting, column in (("user_id", user_id), ("item_id", item_id),
                                ("timestamp", timestamp)):
            if column is not None and column not in table:
                raise missing_column("data", column, table, setting=setting)
        for column in (user_id, item_id):
            check_no_missing(f"data[{column!r}]", table[column])
        if timestamp is not None:  # a NaN time would sort last: a history from the future
            check_no_missing(f"data[{timestamp!r}]", table[timestamp], what="timestamps")
        items = table[item_id]
        pad = padding_value("int64" if items.dtype.kind in "iu" else "string")
        if np.any(items == pad):
            raise invalid_argument(
                f"data[{item_id!r}]", f"hold no {pad!r}: it pads histories",
                f"{pad!r} at row {int(np.flatnonzero(items == pad)[0])}",
                hint="Give that item another id in every table.",
            )
        users = pd.factorize(table[user_id])[0]
        keys = [np.arange(len(users))]
        if timestamp is not None:
            keys.append(table[timestamp])
        keys.append(users)
        order = np.lexsort(keys)  # by user, then time, then row
        sorted_users = users[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
        first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        return table, order, first, table[item_id][order], columns

    def transform(self, data: TableLike) -> Table:
        """Returns the table with a history column: each row's preceding items.

        Each history is a read-only view into one array of the sorted items, so
        the column costs one small object per row, not a copy per row. Training,
        validation and :meth:`~tfrs_kit.Tower.embed` keep it in that form (the
        sorted items once, a start and a length per row) and gather each batch's
        lists inside the ``tf.data`` pipeline: memory grows with the rows, not
        with rows x ``max_length``.

        The result holds every event, so files (``tk.data.Shards`` too) are read
        into memory here. For a log bigger than memory,
        :func:`~tfrs_kit.features.prepare` writes the same per-event histories as
        training shards, out of core, and :meth:`for_users` streams.
        """
        table, order, first, items, _ = self._sorted(data)
        position = np.arange(len(order))
        start = np.maximum(first, position - self.max_length)
        histories = np.empty(len(order), dtype=object)
        items.setflags(write=False)
        spans = zip(start.tolist(), position.tolist(), strict=True)
        histories[order] = [items[s:e] for s, e in spans]
        return {**table, self.name: histories}

    def for_users(self, data: TableLike) -> dict[str, Any]:
        """Each user's latest history (their last ``max_length`` items).

        ``tk.data.Shards`` are read out of core, by the sort :func:`~tfrs_kit.features.prepare`
        uses: spilled by user into temporary bucket files (``TMPDIR``), each bucket
        sorted alone; memory holds a bucket and the result, never the log. Times
        are then ordered as ``prepare`` orders them (date-time strings parsed).
        Paths, like tables, are read into memory.

        Returns:
            A table with the user id column and the history column, one row per
            user, in order of each user's earliest event.
        """
        if isinstance(data, Shards):
            columns = self._resolve(data)
            return latest_histories(data, user_id=columns.user_id, item_id=columns.item_id,
                                    timestamp=columns.timestamp, max_length=self.max_length,
                                    name=self.name)
        table, order, first, items, columns = self._sorted(data)
        last = np.r_[np.flatnonzero(np.diff(first)), len(order) - 1]
        starts = np.maximum(first[last], last + 1 - self.max_length)
        histories = np.empty(len(last), dtype=object)
        spans = zip(starts.tolist(), last.tolist(), strict=True)
        histories[:] = [items[s : e + 1] for s, e in spans]
        user_ids = table[columns.user_id][order[last]]
        appearance = np.argsort(order[first[last]], kind="stable")
        return {columns.user_id: user_ids[appearance], self.name: histories[appearance]}
