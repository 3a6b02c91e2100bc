"""Each user's latest history from event shards, out of core (``HistoryBuilder.for_users``).

The sort of :func:`~tfrs_kit.features.prepare` (``_prepare_log``), reused: the shards are
hashed by user into bucket files in a temporary directory (the system's, ``TMPDIR``),
then each bucket is sorted by (user, time, position in the log) and its users'
latest items are gathered. Memory holds one chunk, then one bucket, and the result:
one row per user. The bucket files are deleted when it returns.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfrs_kit._errors import invalid_argument
from tfrs_kit.data._files import _file_schema, _pyarrow, _unify, resolve
from tfrs_kit.features._prepare import _num_buckets
from tfrs_kit.features._prepare_log import (
    ROW,
    Layout,
    bucket_path,
    sorted_bucket,
    spill,
    with_history,
)

__all__ = ["latest_histories"]

_GATHERED_VALUES = 1 << 26  # history items gathered at once (keeps list offsets 32-bit)


def latest_histories(source: Any, *, user_id: str, item_id: str, timestamp: str | None,
                     max_length: int, name: str) -> dict[str, np.ndarray]:
    """Each user's last ``max_length`` items, as ``HistoryBuilder.for_users`` returns them.

    Args:
        source: ``tk.data.Shards`` (or paths) of events.
        user_id, item_id, timestamp: The columns (``timestamp=None``: the log's order).
        max_length: Items per history at most.
        name: The history column's name.

    Returns:
        The user id column and the history column (an object array of 1-D arrays),
        one row per user, in order of each user's earliest event.
    """
    paths = resolve(source, argument="data")
    named = {user_id: "user_id", item_id: "item_id"}
    if timestamp is not None:
        named[timestamp] = "timestamp"
    kinds = _unify(paths, [_file_schema(p, "data") for p in paths], list(named), "data", named)
    layout = Layout(user_id=user_id, item_id=item_id, timestamp=timestamp, features=(),
                    kinds=kinds, history=name, history_length=max_length,
                    validation_events=0, seed=0)
    num_buckets = _num_buckets(paths)
    parts = []
    with tempfile.TemporaryDirectory(prefix="tfrs_kit_history_") as folder:
        if spill(paths, layout, num_buckets, folder) == 0:
            raise invalid_argument("data", "have at least one row",
                                   f"{len(paths)} shard(s) without a row")
        for bucket in range(num_buckets):
            if os.path.exists(bucket_path(folder, bucket)):
                parts.append(_bucket_latest(bucket_path(folder, bucket), layout))
    first_rows = np.concatenate([rows for rows, _, _ in parts])
    users = _concatenate([ids for _, ids, _ in parts])
    histories = _concatenate([h for _, _, h in parts])
    appearance = np.argsort(first_rows, kind="stable")
    return {user_id: users[appearance], name: histories[appearance]}


def _bucket_latest(path: str, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bucket's users: the log row of each one's earliest event, its id, its history."""
    pa = _pyarrow()
    table, users, starts, sizes = sorted_bucket(path, layout)
    items = table.column(layout.item_id).combine_chunks()
    histories = np.empty(len(starts), dtype=object)
    step = max(1, _GATHERED_VALUES // layout.history_length)
    for first in range(0, len(starts), step):
        part = slice(first, first + step)
        lists = with_history(items, (starts + sizes)[part], sizes[part],
                             layout.history_length)
        histories[part] = _split(lists)
    first_rows = table.column(ROW).combine_chunks().take(pa.array(starts)).to_numpy()
    ids = users.take(pa.array(starts)).to_numpy(zero_copy_only=False)
    return np.asarray(first_rows, dtype=np.int64), ids, histories


def _split(lists: Any) -> list[np.ndarray]:
    """An Arrow list array as NumPy arrays (views of one array of its values)."""
    values = lists.values.to_numpy(zero_copy_only=False)
    if values.dtype == object or not values.flags.writeable:
        values = np.array(values, dtype=values.dtype)  # one copy, then read-only views
    values.setflags(write=False)
    offsets = np.asarray(lists.offsets.to_numpy(), dtype=np.int64)
    return [values[s:e] for s, e in zip(offsets[:-1].tolist(), offsets[1:].tolist(),
                                         strict=True)]


def _concatenate(parts: Sequence[np.ndarray]) -> np.ndarray:
    if parts[0].dtype != object:
        return np.concatenate(parts)
    out = np.empty(sum(len(p) for p in parts), dtype=object)  # keeps arrays one per row
    start = 0
    for part in parts:
        out[start:start + len(part)] = part
        start += len(part)
    return out
