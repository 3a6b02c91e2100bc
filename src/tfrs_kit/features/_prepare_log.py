"""The out-of-core half of :func:`~tfrs_kit.features._prepare.prepare`: spill, sort, histories.

A raw log too large for memory is ordered by user and time in two passes, each holding
one piece of it:

1. :func:`spill` reads the shards chunk by chunk (Arrow, no Python object per value)
   and appends each chunk's rows to one of ``P`` bucket files on disk, chosen by a
   hash of the user id, so every event of a user lands in the same bucket;
2. :func:`write_bucket` reads one bucket (a ``1/P`` share of the log), sorts it by
   (user, time, position in the log) with Arrow, and writes its rows with their
   history column, ``SLICE_ROWS`` rows at a time.

Memory grows with one chunk (pass 1) or one bucket (pass 2), never with the log.
Times of any representation become one ``int64`` ordering key (``TIME``); the
position of a row in the log (``ROW``) breaks ties, so equal times keep file order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import padding_value
from tfrs_kit.data._files import _arrow_batches, _arrow_type, _conform, _pyarrow, iter_tables
from tfrs_kit.data._source import suffix_format

__all__ = ["MAX_HISTORY", "ROW", "TIME", "Layout", "hash_ids", "sorted_bucket", "spill",
           "write_bucket"]

TIME = "__prepare_time"  # the int64 ordering key of each event's time
ROW = "__prepare_row"  # the event's position in the log, which breaks ties in time
SPILL_ROWS = 1 << 19  # rows read at once from the source
SLICE_ROWS = 1 << 16  # rows whose histories are gathered at once (one Parquet row group)
_HASH_KEY = "tfrs-kit-prepare"  # 16 bytes: pandas' hash key for strings
_FLIP = np.int64(0x7FFF_FFFF_FFFF_FFFF)
MAX_HISTORY = 10_000  # items per history at most (keeps a slice's offsets 32-bit)


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a bucket's rows hold and how they are split; the same for every bucket."""

    user_id: str
    item_id: str
    timestamp: str | None
    features: tuple[str, ...]
    kinds: Mapping[str, str]  # the source's kind of each column read
    history: str
    history_length: int
    validation_events: int
    seed: int

    @property
    def columns(self) -> list[str]:
        """The source columns read, each once."""
        names = [self.user_id, self.item_id, self.timestamp, *self.features]
        return list(dict.fromkeys(n for n in names if n is not None))


# --- pass 1: the log, hashed by user into buckets on disk -----------------------------------


def spill(paths: Sequence[str], layout: Layout, num_buckets: int, folder: str,
          on_shard: Any = None) -> int:
    """Appends every event to ``folder/bucket-<b>.arrow``, ``b`` a hash of its user.

    Returns:
        The number of events.
    """
    pa = _pyarrow()
    options = pa.ipc.IpcWriteOptions(
        compression="lz4" if pa.Codec.is_available("lz4") else None)
    writers: dict[int, Any] = {}
    row = 0
    try:
        for path in paths:
            for chunk in _source_chunks(path, layout):
                table = _normalise(chunk, layout, path, row)
                row += table.num_rows
                buckets = (hash_ids(table.column(layout.user_id)) % np.uint64(num_buckets))
                order = np.argsort(buckets, kind="stable")
                bounds = np.searchsorted(buckets[order], np.arange(num_buckets + 1))
                table = table.take(pa.array(order))
                for bucket in np.flatnonzero(np.diff(bounds)).tolist():
                    if bucket not in writers:
                        writers[bucket] = pa.ipc.new_stream(
                            bucket_path(folder, bucket), table.schema, options=options)
                    start, end = int(bounds[bucket]), int(bounds[bucket + 1])
                    writers[bucket].write_table(table.slice(start, end - start))
            if on_shard is not None:
                on_shard()
    finally:
        for writer in writers.values():
            writer.close()
    return row


def bucket_path(folder: str, bucket: int) -> str:
    return os.path.join(folder, f"bucket-{bucket:05d}.arrow")


def hash_ids(ids: Any, seed: int | None = None) -> np.ndarray:
    """A ``uint64`` hash per id (an Arrow array of strings or int64, or a NumPy array).

    The same id hashes alike in every chunk and run; ``seed`` gives another hash
    (for seeded samples of users). Strings are hashed once per distinct value.
    """
    pa = _pyarrow()
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if isinstance(ids, np.ndarray):
        hashed = pd.util.hash_array(ids, hash_key=_HASH_KEY, categorize=True)
    elif pa.types.is_integer(ids.type):
        hashed = pd.util.hash_array(ids.to_numpy(), hash_key=_HASH_KEY)
    else:
        encoded = ids.dictionary_encode()
        distinct = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False),
                                      hash_key=_HASH_KEY)
        hashed = distinct[encoded.indices.to_numpy()]
    if seed is None:
        return np.asarray(hashed, dtype=np.uint64)
    # pandas mixes integers without the key: xor a seed and mix again, for strings too.
    mixed = np.asarray(hashed, dtype=np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    return np.asarray(pd.util.hash_array(mixed), dtype=np.uint64)


def _source_chunks(path: str, layout: Layout) -> Iterator[Any]:
    """One shard's columns as Arrow tables of ``SPILL_ROWS`` rows, as stored."""
    pa = _pyarrow()
    kinds = {name: layout.kinds[name] for name in layout.columns}
    fmt = suffix_format(path, "source")
    if fmt != "tfrecord":
        yield from _arrow_batches(path, fmt, kinds, SPILL_ROWS, "source")
        return
    for chunk in iter_tables(path, argument="source", columns=list(kinds),
                             rows_per_chunk=SPILL_ROWS):
        yield pa.table({name: pa.array(list(column) if column.dtype == object
                                       and kinds[name].startswith("list<") else column)
                        for name, column in chunk.items()})


def _normalise(chunk: Any, layout: Layout, path: str, first_row: int) -> Any:
    """A chunk in one schema for all chunks, with the time key and the log position."""
    pa = _pyarrow()
    columns: dict[str, Any] = {}
    for name in (layout.user_id, layout.item_id):
        columns[name] = _id_column(chunk.column(name), layout.kinds[name], name, path)
    _check_no_padding(columns[layout.item_id], layout.item_id, path)
    rows = np.arange(first_row, first_row + chunk.num_rows, dtype=np.int64)
    if layout.timestamp is not None:
        key, columns[layout.timestamp] = _times(chunk.column(layout.timestamp),
                                                layout.kinds[layout.timestamp],
                                                layout.timestamp, path)
    else:
        key = rows
    for name in layout.features:
        if name not in columns:
            kind = layout.kinds[name]
            columns[name] = (_times(chunk.column(name), kind, name, path)[1]
                             if kind == "timestamp"
                             else _conform(chunk.column(name), _arrow_type(kind, "source", name)))
    columns[TIME] = pa.array(key)
    columns[ROW] = pa.array(rows)
    return pa.table(columns)


def _id_column(column: Any, kind: str, name: str, path: str) -> Any:
    if kind not in ("string", "int"):
        raise invalid_argument(f"source[{name!r}]", "hold string or integer ids",
                               f"{kind} values in {path!r}",
                               hint="Convert the column when writing the shards.",
                               error=TypeError)
    array = _conform(column, _arrow_type(kind, "source", name))
    _check_no_nulls(array, name, path, "ids")
    return array


def _check_no_nulls(array: Any, name: str, path: str, what: str) -> None:
    if array.null_count:
        first = int(np.argmax(np.asarray(array.is_null())))
        raise invalid_argument(f"source[{name!r}]", f"hold no missing {what}",
                               f"{array.null_count} missing in {path!r}, the first at row "
                               f"{first} of a chunk", hint="Drop or fill those rows first.")


def _check_no_padding(items: Any, name: str, path: str) -> None:
    pa = _pyarrow()
    pad = padding_value("int64" if pa.types.is_integer(items.type) else "string")
    if pa.compute.any(pa.compute.equal(items, pa.scalar(pad, items.type))).as_py():
        raise invalid_argument(f"source[{name!r}]", f"hold no {pad!r}: it pads histories",
                               f"{pad!r} in {path!r}",
                               hint="Give that item another id in every shard.")


def _times(column: Any, kind: str, name: str, path: str) -> tuple[np.ndarray, Any]:
    """A time column's ordering keys, and the column as training shards hold it.

    Numbers are kept as stored; date-times and date-time strings become ``int64``
    seconds since the epoch (UTC), what a ``"timestamp"`` feature reads.
    """
    pa = _pyarrow()
    key, nanoseconds = time_key(column, kind, name, path)
    if nanoseconds:
        return key, pa.array(np.floor_divide(key, 10**9))
    if kind == "string":  # numbers written as text
        return key, pa.array(key)
    return key, _conform(column, _arrow_type(kind, "source", name))


def time_key(column: Any, kind: str, name: str, path: str) -> tuple[np.ndarray, bool]:
    """Times of any representation as ``int64`` keys that order them alike.

    Integers are kept (seconds or milliseconds alike), floats mapped by their bits
    (an order-preserving map), date-times (with or without a time zone: their UTC
    instant) and date-time strings become nanoseconds since the epoch.

    Returns:
        The keys, and whether they are nanoseconds since the epoch.
    """
    pa = _pyarrow()
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    _check_no_nulls(array, name, path, "times")
    if kind == "int":
        return np.asarray(array.cast(pa.int64()).to_numpy(), dtype=np.int64), False
    if kind == "float":
        values = np.asarray(array.cast(pa.float64()).to_numpy(), dtype=np.float64)
        if np.isnan(values).any():
            _check_no_nulls(pa.array(values, from_pandas=True), name, path, "times")
        bits = (values + 0.0).view(np.int64)  # + 0.0: -0.0 and 0.0 are one time
        return np.where(bits < 0, bits ^ _FLIP, bits), False
    if kind == "timestamp":
        return np.asarray(array.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy()), True
    if kind == "string":
        return _parse_times(array, name, path)
    raise invalid_argument("timestamp", "name a column of numbers, date-times or date-time "
                           "strings", f"{name!r}, a column of {kind} values", error=TypeError)


def _parse_times(array: Any, name: str, path: str) -> tuple[np.ndarray, bool]:
    pa = _pyarrow()
    try:  # numbers written as text
        return np.asarray(array.cast(pa.int64()).to_numpy(), dtype=np.int64), False
    except pa.ArrowInvalid:
        pass
    strings = array.to_pandas()
    for form in ("ISO8601", "mixed"):
        try:
            parsed = pd.to_datetime(strings, utc=True, format=form)
        except (ValueError, TypeError, OverflowError):
            continue
        nanoseconds = parsed.dt.as_unit("ns").astype("int64").to_numpy()
        return np.asarray(nanoseconds, dtype=np.int64), True
    raise invalid_argument(f"source[{name!r}]", "hold times: numbers, date-times or "
                           "date-time strings (ISO 8601)", f"{strings.iloc[0]!r} in {path!r}",
                           hint="Write the times as numbers or ISO 8601 strings.")


# --- pass 2: one bucket sorted, with histories, split into training and validation rows ------


def write_bucket(spill_file: str, bucket: int, layout: Layout, folder: str,
                 validation_users: Any, sample_users: Any) -> dict[str, Any]:
    """Sorts one bucket and writes its training, validation and sample rows.

    Training and sample rows are written in a seeded random order (a streaming
    window then mixes users); validation rows by user and time; and each user's
    latest history (all its events: the query feature for serving). Each file is
    written under a temporary name and renamed when complete.

    Returns:
        The bucket's counts and the files written (relative to ``folder``).
    """
    pa = _pyarrow()
    table, users, starts, sizes = sorted_bucket(spill_file, layout)
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    held = _member(users, validation_users) & (rank >= np.repeat(sizes, sizes)
                                               - layout.validation_events)
    order = np.random.default_rng([layout.seed, bucket]).permutation(len(users))
    rows = table.drop_columns([TIME, ROW])
    items = table.column(layout.item_id).combine_chunks()
    parts = {"train": order[~held[order]], "validation": np.flatnonzero(held)}
    if sample_users is not None:
        chosen = _member(users, sample_users) & ~held
        parts["sample"] = order[chosen[order]]
    stats: dict[str, Any] = {"rows": len(users), "users": len(starts), "files": {},
                             "validation_users": int(np.count_nonzero(held[starts + sizes - 1]))}
    positions = np.arange(len(users))
    for part, chosen_rows in parts.items():
        stats[f"{part}_rows"] = len(chosen_rows)
        if len(chosen_rows):
            stats["files"][part] = os.path.join(part, f"part-{bucket:05d}.parquet")
            _write_rows(rows, chosen_rows, items, positions, rank, layout,
                        os.path.join(folder, stats["files"][part]))
    stats["files"]["latest"] = os.path.join("latest", f"part-{bucket:05d}.parquet")
    _write_rows(pa.table({layout.user_id: users.take(pa.array(starts))}),
                np.arange(len(starts)), items, starts + sizes, sizes, layout,
                os.path.join(folder, stats["files"]["latest"]))
    if sample_users is not None:
        sampled = _member(users.take(pa.array(starts)), sample_users)
        stats["sample_users"] = int(np.count_nonzero(sampled))
    return stats


def sorted_bucket(spill_file: str, layout: Layout) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """A spilled bucket sorted by user, time and log position: the table, its user
    column, and each user's first row and number of rows."""
    pa = _pyarrow()
    with pa.memory_map(spill_file) as source:
        table = pa.ipc.open_stream(source).read_all()
    table = table.sort_by([(layout.user_id, "ascending"), (TIME, "ascending"),
                           (ROW, "ascending")])
    users = table.column(layout.user_id).combine_chunks()
    starts = _group_starts(users)
    return table, users, starts, np.diff(np.r_[starts, len(users)])


def _group_starts(users: Any) -> np.ndarray:
    """The first row of each user in rows sorted by user."""
    pa = _pyarrow()
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    change = pa.compute.not_equal(users.slice(1), users.slice(0, len(users) - 1))
    return np.r_[0, np.flatnonzero(change.to_numpy(zero_copy_only=False)) + 1].astype(np.int64)


def _member(users: Any, chosen: Any) -> np.ndarray:
    if chosen is None or len(chosen) == 0:
        return np.zeros(len(users), dtype=bool)
    pa = _pyarrow()
    found = pa.compute.is_in(users, value_set=chosen.cast(users.type))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _write_rows(rows: Any, chosen: np.ndarray, items: Any, ends: np.ndarray,
                ranks: np.ndarray, layout: Layout, path: str) -> None:
    """Writes ``rows[chosen]``, each with the history of its user's ``ranks`` events
    before position ``ends`` of the sorted ``items``, ``SLICE_ROWS`` rows at a time."""
    pa = _pyarrow()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    schema = rows.schema.append(pa.field(layout.history, pa.list_(items.type)))
    temporary = f"{path}.tmp"
    with pa.parquet.ParquetWriter(temporary, schema) as writer:
        for start in range(0, len(chosen), SLICE_ROWS):
            part = chosen[start:start + SLICE_ROWS]
            history = with_history(items, ends[part], ranks[part], layout.history_length)
            writer.write_table(rows.take(pa.array(part)).append_column(
                schema.field(layout.history), history))
    os.replace(temporary, path)


def with_history(items: Any, ends: np.ndarray, ranks: np.ndarray, length: int) -> Any:
    """Histories of a log sorted by user and time, vectorised: no Python loop per row.

    Row ``i`` gets the items at ``ends[i] - min(ranks[i], length) .. ends[i] - 1``
    (``ranks[i]``: how many events of its user precede ``ends[i]``): one gather of
    all of them, cut by offsets. An event's history: its position and rank; a
    user's latest: the end of its events and their number.
    """
    pa = _pyarrow()
    lengths = np.minimum(ranks, length)
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    gather = np.repeat(ends - lengths - offsets[:-1], lengths) + np.arange(offsets[-1])
    values = items.take(pa.array(gather))
    # SLICE_ROWS * MAX_HISTORY values at most: 32-bit offsets suffice.
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def merge_parquet(paths: Sequence[str], target: str) -> None:
    """Concatenates Parquet files of one schema into ``target``, one file at a time."""
    pa = _pyarrow()
    temporary = f"{target}.tmp"
    writer = None
    try:
        for path in paths:
            table = pa.parquet.read_table(path)
            if writer is None:
                writer = pa.parquet.ParquetWriter(temporary, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        os.replace(temporary, target)


def write_json(path: str, content: Any) -> None:
    """Writes JSON atomically: a temporary file, flushed, then renamed."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
