"""Streaming shards into training: Parquet, CSV and TFRecord files to ``tf.data`` batches.

Shards streamed from files (:func:`file_dataset`) stay in Arrow arrays from the file
to the batch, with no Python object per value: a window of shards is read, its rows
shuffled together and cut into batches whose columns are flat buffers, made tensors
inside ``tf.data``. Each worker of a multi-worker strategy reads its own shards.
:func:`count_values` and :func:`distinct_rows` are the passes a streamed fit makes
before it trains (candidate counts for the logQ correction, the candidates' rows).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int, check_no_missing
from tfrs_kit.data._files import (
    FORMATS,
    counts_series,
    iter_arrow,
    iter_records,
    iter_tables,
    schema,
)
from tfrs_kit.data._shards import Shards
from tfrs_kit.data._source import is_files
from tfrs_kit.data._table import Table, last_rows
from tfrs_kit.data._tensors import training_options

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "check_stream_source", "count_values", "distinct_rows",
           "file_dataset", "id_tensor", "num_workers", "streaming_buffer"]

#: Rows shuffled together when ``x`` is ``tk.data.Shards`` and no buffer is given.
DEFAULT_SHUFFLE_BUFFER = 65536


def streaming_buffer(x: Any, shuffle_buffer: int | None) -> int | None:
    """The shuffle buffer a ``fit`` streams with; ``None``: read ``x`` into memory.

    Naming a log ``tk.data.Shards`` says it may not fit in memory, so it streams
    by default; a path or glob keeps reading into memory unless a buffer is given
    (the results of existing calls do not change).
    """
    if shuffle_buffer is None and isinstance(x, Shards):
        return DEFAULT_SHUFFLE_BUFFER
    return shuffle_buffer


def check_stream_source(x: Any, shuffle_buffer: Any) -> None:
    """A ``shuffle_buffer`` of at least 1, given with an ``x`` that names files."""
    check_int("shuffle_buffer", shuffle_buffer, minimum=1)
    if not is_files(x):
        raise invalid_argument("shuffle_buffer", "be None unless x names files",
                               shuffle_buffer, hint="Streaming reads Parquet, CSV or "
                               "TFRecord shards; a table in memory is shuffled whole.")


def num_workers(strategy: tf.distribute.Strategy | None) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("chief", [])) + len(spec.get("worker", [])))


def file_dataset(
    paths: Sequence[str],
    columns: Sequence[str],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    shuffle_buffer: int,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    rows_per_file: Sequence[int] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    rows_per_chunk: int = 8192,
) -> tuple[tf.data.Dataset, int | None]:
    """Batches streamed from shards, never the whole log in memory; and the steps per epoch.

    Four shards are read at a time, a chunk of ``rows_per_chunk`` rows from each in
    turn, their rows interleaved; when shuffling, the shards come in a new order each
    pass and rows are shuffled within windows of ``shuffle_buffer`` rows (at least).
    Rows stay in Arrow from the file to the batch (TFRecord rows in tensors): one
    ``take`` per window interleaves and shuffles them, slices cut the batches, and
    each batch leaves Python as a few flat arrays per column (strings: their bytes
    and offsets), made tensors inside ``tf.data``, with ``prepare``, in parallel,
    and prefetched. Memory: the window, and one chunk per shard being read.

    Under a multi-worker strategy each worker reads its own shards (every
    ``workers``-th of them, sorted, from its index on) and the dataset repeats:
    an epoch is then the returned number of steps, as many as the worker with the
    fewest rows (``rows_per_file`` tells) fills; ``None`` on one worker, where the
    dataset's length is then known from ``rows_per_file`` (if given), so that Keras
    runs one optimizer step per batch.
    """
    kinds = schema(list(paths), argument="x", columns=columns)
    spec = _row_spec(kinds, columns)
    mine, steps = _own_shards(list(paths), rows_per_file, batch_size, strategy)
    passes = itertools.count()

    def batches() -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng(None if seed is None else [seed, next(passes)])
        for batch in _window_batches(mine, kinds, rng=rng if shuffle else None,
                                     batch_size=batch_size, window=shuffle_buffer,
                                     rows_per_chunk=rows_per_chunk):
            yield {name: _flat(batch, name, spec[name]) for name in spec}

    def to_tensors(flat: dict[str, Any]) -> dict[str, Any]:
        batch = {name: _from_flat(flat[name], spec[name]) for name in spec}
        return prepare(batch) if prepare is not None else batch

    dataset = tf.data.Dataset.from_generator(
        batches, output_signature={name: _flat_spec(s) for name, s in spec.items()})
    dataset = dataset.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = training_options()  # autotuning off: a cut training's iterator ends at once
    policy = tf.data.experimental.AutoShardPolicy
    # Several workers read their own files (chosen above: TF's FILE policy cannot see
    # through a Python reader); one worker's batches are split among its replicas.
    options.experimental_distribute.auto_shard_policy = (
        policy.OFF if steps is not None else policy.DATA)
    dataset = dataset.with_options(options)
    if steps is not None:
        dataset = dataset.repeat()
    elif rows_per_file is not None:  # every batch full but the last: its length is known
        # (of a dataset of unknown length Keras counts the failed read that ends the first
        # epoch as an optimizer step too: one step more than the batches).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            -(-sum(rows_per_file) // batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE), steps


def _window_batches(paths: Sequence[str], kinds: Mapping[str, str], *,
                    rng: np.random.Generator | None, batch_size: int, window: int,
                    rows_per_chunk: int) -> Iterator[Any]:
    """The batches of one pass, as Arrow tables (or :class:`_Records`): rounds of
    chunks gathered into windows, each window's rows put in order (interleaved, then
    shuffled when there is a generator) by a single ``take``, then cut."""
    files = list(paths) if rng is None else [paths[i] for i in rng.permutation(len(paths))]
    tables: list[Any] = []
    orders: list[np.ndarray] = []  # each round's rows interleaved, as positions in tables
    count = 0
    for chunks in _rounds(files, kinds, rows_per_chunk):
        tables += chunks
        orders.append(count + _interleaved([c.num_rows for c in chunks]))
        count += sum(c.num_rows for c in chunks)
        if count < (window if rng is not None else batch_size):
            continue
        rows = _arrange(tables, np.concatenate(orders), rng)
        full = count // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield rows.slice(start, batch_size)
        tables, orders = ([rows.slice(full)], [np.arange(count - full)]) if full < count \
            else ([], [])
        count -= full
    if count:
        rows = _arrange(tables, np.concatenate(orders), rng)
        for start in range(0, count, batch_size):
            yield rows.slice(start, batch_size)


def _interleaved(sizes: list[int]) -> np.ndarray:
    """The order that takes one row of each of chunks of these sizes in turn."""
    position = np.concatenate([np.arange(n) for n in sizes])
    slot = np.repeat(np.arange(len(sizes)), sizes)
    return np.lexsort((slot, position))


def _arrange(tables: list[Any], order: np.ndarray, rng: np.random.Generator | None) -> Any:
    """The tables' rows in ``order``, shuffled when there is a generator, as one table."""
    import pyarrow as pa

    if rng is not None:
        order = order[rng.permutation(len(order))]
    if len(tables) == 1:
        rows = tables[0]
    else:
        rows = _Records.concat(tables) if isinstance(tables[0], _Records) else \
            pa.concat_tables(tables)
    if np.array_equal(order, np.arange(len(order))):
        return rows
    return rows.combine_chunks().take(order)


def _rounds(paths: Sequence[str], kinds: Mapping[str, str],
            rows_per_chunk: int, cycle: int = 4) -> Iterator[list[Any]]:
    """The next chunk of each of (up to) ``cycle`` open shards, round after round."""
    queue = list(paths)
    readers: list[Iterator[Any]] = []
    while queue or readers:
        while queue and len(readers) < cycle:
            readers.append(_chunks(queue.pop(0), kinds, rows_per_chunk))
        chunks = []
        for reader in list(readers):
            chunk = next(reader, None)
            if chunk is None:
                readers.remove(reader)
            elif chunk.num_rows:
                chunks.append(chunk)
        if chunks:
            yield chunks


def _chunks(path: str, kinds: Mapping[str, str], rows_per_chunk: int) -> Iterator[Any]:
    """A shard's chunks: Arrow tables (Parquet, CSV) or :class:`_Records` (TFRecord)."""
    if FORMATS.get(os.path.splitext(path)[1].lower()) == "tfrecord":
        return (_Records(chunk) for chunk in iter_records(path, kinds, argument="x",
                                                          rows_per_chunk=rows_per_chunk))
    return iter_arrow(path, kinds, argument="x", rows_per_chunk=rows_per_chunk)


class _Records:
    """TFRecord rows as tensors, with the few ``pyarrow.Table`` methods the windows
    use (TFRecord shards are parsed by TensorFlow, and stream without pyarrow)."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.columns = columns

    @classmethod
    def concat(cls, parts: list[_Records]) -> _Records:
        return cls({name: tf.concat([p.columns[name] for p in parts], axis=0)
                    for name in parts[0].columns})

    @property
    def num_rows(self) -> int:
        first = next(iter(self.columns.values()))
        return int(first.nrows() if isinstance(first, tf.RaggedTensor) else first.shape[0])

    def slice(self, start: int, length: int | None = None) -> _Records:
        stop = None if length is None else start + length
        return _Records({name: c[start:stop] for name, c in self.columns.items()})

    def take(self, order: np.ndarray) -> _Records:
        return _Records({name: tf.gather(c, order) for name, c in self.columns.items()})

    def combine_chunks(self) -> _Records:
        return self

    def flat(self, name: str, row: tf.TensorSpec) -> dict[str, Any]:
        """As :func:`_flat_column`: the strings joined into one, with their offsets."""
        tensor, flat = self.columns[name], {}
        if row.shape.rank == 1:
            flat["splits"], tensor = tensor.row_splits.numpy(), tensor.flat_values
        if row.dtype == tf.string:
            lengths = tf.strings.length(tensor).numpy().astype(np.int64)
            flat["bytes"] = tf.strings.reduce_join(tensor).numpy()
            flat["offsets"] = np.concatenate([[0], np.cumsum(lengths)])
        else:
            flat["values"] = tf.cast(tensor, row.dtype).numpy()
        return flat


def _flat(batch: Any, name: str, row: tf.TensorSpec) -> dict[str, Any]:
    if isinstance(batch, _Records):
        return batch.flat(name, row)
    return _flat_column(batch.column(name), row)


def _flat_column(column: Any, row: tf.TensorSpec) -> dict[str, Any]:
    """A batch's Arrow column as flat NumPy parts: ``splits`` of its lists, and its
    values: ``values`` (numbers) or ``bytes`` and ``offsets`` (strings)."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    flat: dict[str, Any] = {}
    if row.shape.rank == 1:
        offsets = array.offsets.to_numpy().astype(np.int64)
        flat["splits"] = offsets - offsets[0]
        array = array.values.slice(offsets[0], offsets[-1] - offsets[0])
    if row.dtype == tf.string:
        flat["bytes"], flat["offsets"] = _string_buffers(array)
    else:
        if array.null_count and row.dtype.is_integer:
            array = array.fill_null(0)
        values = array.to_numpy(zero_copy_only=False)  # a missing float is NaN
        flat["values"] = values.astype(row.dtype.as_numpy_dtype, copy=False)
    return flat


def _string_buffers(array: Any) -> tuple[bytes, np.ndarray]:
    """A string array's UTF-8 bytes and its ``len + 1`` offsets into them (a missing
    string is empty), without a Python object per string."""
    offsets = np.frombuffer(array.buffers()[1], np.int32)[
        array.offset:array.offset + len(array) + 1].astype(np.int64)
    data = array.buffers()[2]
    if data is None or not len(array):
        return b"", np.zeros(len(array) + 1, np.int64)
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes(), \
        offsets - offsets[0]


def _flat_spec(row: tf.TensorSpec) -> dict[str, tf.TensorSpec]:
    spec = {"splits": tf.TensorSpec([None], tf.int64)} if row.shape.rank == 1 else {}
    if row.dtype == tf.string:
        return {**spec, "bytes": tf.TensorSpec([], tf.string),
                "offsets": tf.TensorSpec([None], tf.int64)}
    return {**spec, "values": tf.TensorSpec([None], row.dtype)}


def _from_flat(flat: Mapping[str, tf.Tensor], row: tf.TensorSpec) -> Any:
    """A column's tensor from :func:`_flat_column`'s parts: lists ragged, scalars a vector."""
    if row.dtype == tf.string:
        offsets = flat["offsets"]
        values = tf.strings.substr(flat["bytes"], offsets[:-1], offsets[1:] - offsets[:-1])
    else:
        values = flat["values"]
    if row.shape.rank == 1:
        return tf.RaggedTensor.from_row_splits(values, flat["splits"], validate=False)
    return values


def _own_shards(paths: list[str], rows_per_file: Sequence[int] | None, batch_size: int,
                strategy: tf.distribute.Strategy | None) -> tuple[list[str], int | None]:
    """This worker's shards, and the steps per epoch when there are several workers."""
    workers = num_workers(strategy)
    if workers == 1:
        return paths, None
    if len(paths) < workers:
        raise invalid_argument(
            "x", f"name at least one shard per worker ({workers} workers)",
            f"{len(paths)} shard(s)", hint="Write the log as more shards, or train it in "
            "memory (shuffle_buffer=None).")
    resolver = strategy.cluster_resolver  # type: ignore[union-attr]
    chief = "chief" in resolver.cluster_spec().as_dict()
    index = 0 if resolver.task_type == "chief" else int(resolver.task_id) + int(chief)
    sizes = list(rows_per_file) if rows_per_file is not None else [0] * len(paths)
    per_worker = [sum(sizes[w::workers]) for w in range(workers)]
    steps = max(1, min(per_worker) * workers // batch_size)
    return paths[index::workers], steps


_DTYPES = {"string": tf.string, "int": tf.int64, "bool": tf.int64, "float": tf.float32}


def _row_spec(kinds: Mapping[str, str], columns: Sequence[str]) -> dict[str, Any]:
    """The spec of one row of each column, as the in-memory pipeline types it."""
    spec: dict[str, Any] = {}
    for name in columns:
        kind = kinds[name]
        inner = kind[5:-1] if kind.startswith("list<") else kind
        if inner not in _DTYPES:
            raise invalid_argument(f"x[{name!r}]", "hold strings, numbers or lists of them "
                                   "to be streamed", f"{kind} values",
                                   hint="Convert the column when writing the shards.")
        dtype = _DTYPES[inner]
        spec[name] = tf.TensorSpec([None] if inner != kind else [], dtype)
    return spec


def count_values(paths: Sequence[str], column: str) -> tuple[pd.Series, list[int]]:
    """How often each value of ``column`` occurs in the shards (most frequent first,
    ties by value), and each shard's number of rows, in one pass over that column
    alone (counted and summed by Arrow for Parquet and CSV: memory holds the distinct
    values of a few chunks, never a Python object per value)."""
    kinds = schema(list(paths), argument="x", columns=[column])
    parts: list[Any] = []
    rows = []
    for path in paths:
        rows.append(0)
        for values in _column_chunks(path, column, kinds):
            if isinstance(values, np.ndarray):
                check_no_missing(f"x[{column!r}]", values, what="ids")
                parts.append(pd.Series(values).value_counts())
            else:
                if values.null_count or kinds[column] == "float":  # NaN is missing too
                    check_no_missing(f"x[{column!r}]",
                                     values.to_numpy(zero_copy_only=False), what="ids")
                parts.append(values.value_counts())
                if len(parts) >= _SUM_EVERY:
                    parts = [_sum_value_counts(parts)]
            rows[-1] += len(values)
    if not parts:
        return pd.Series(dtype=np.int64), rows
    if isinstance(parts[0], pd.Series):
        counts = pd.concat(parts).groupby(level=0, sort=True).sum().astype(np.int64)
    else:
        counts = counts_series(_sum_value_counts(parts)).sort_index(kind="stable")
    return counts.sort_values(ascending=False, kind="stable"), rows


_SUM_EVERY = 16  # chunks' value counts held before Arrow sums them into one


def _sum_value_counts(parts: list[Any]) -> Any:
    """Arrow ``value_counts`` results summed into one (a struct array of the distinct
    values and their counts)."""
    import pyarrow as pa

    table = pa.table({"values": pa.concat_arrays([p.field(0) for p in parts]),
                      "counts": pa.concat_arrays([p.field(1) for p in parts])})
    summed = table.group_by("values").aggregate([("counts", "sum")])
    return pa.StructArray.from_arrays([summed.column("values").combine_chunks(),
                                       summed.column("counts_sum").combine_chunks()],
                                      names=["values", "counts"])


def id_tensor(ids: pd.Index) -> tf.Tensor:
    """Ids (such as :func:`count_values`'s index) as a string or int64 tensor; strings
    that Arrow holds go over as one buffer, not as a Python object per id."""
    if ids.dtype.kind in "iub":
        return tf.constant(ids.to_numpy().astype(np.int64))
    if hasattr(ids.array, "__arrow_array__"):
        import pyarrow as pa

        strings = pa.array(ids.array)
        strings = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
        if pa.types.is_large_string(strings.type):
            strings = strings.cast(pa.string())  # 32-bit offsets, as _string_buffers reads
        if pa.types.is_string(strings.type) and not strings.null_count:
            data, offsets = _string_buffers(strings)
            return tf.strings.substr(tf.constant(data), offsets[:-1], np.diff(offsets))
    return tf.constant(ids.to_numpy(dtype=object).astype(str))


def _column_chunks(path: str, column: str, kinds: Mapping[str, str]) -> Iterator[Any]:
    """A shard's ``column`` in chunks: Arrow arrays, or NumPy arrays from TFRecord."""
    if FORMATS.get(os.path.splitext(path)[1].lower()) == "tfrecord":
        for table in iter_tables(path, argument="x", columns=[column], rows_per_chunk=1 << 20):
            yield table[column]
        return
    for chunk in iter_arrow(path, kinds, argument="x", rows_per_chunk=1 << 20):
        yield chunk.column(column).chunk(0)


def distinct_rows(paths: Sequence[str], key: str, features: Sequence[str]) -> Table:
    """Each ``key``'s last row of ``features`` in the shards, chunk by chunk (memory:
    the distinct keys' rows, and one chunk)."""
    columns = list(dict.fromkeys([key, *features]))
    kept: Table = {}
    for chunk in iter_tables(list(paths), argument="x", columns=columns,
                             rows_per_chunk=1 << 18):
        if kept:
            chunk = {name: _concatenate(kept[name], chunk[name]) for name in columns}
        kept = last_rows(chunk, key)
    return kept


def _concatenate(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    if first.dtype == object or second.dtype == object:  # keeps a list column one per row
        out = np.empty(len(first) + len(second), dtype=object)
        out[:len(first)], out[len(first):] = first, second
        return out
    return np.concatenate([first, second])
