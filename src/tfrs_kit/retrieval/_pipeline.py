"""The training input pipeline: ``fit``'s dataset, shuffled reproducibly per epoch.

Ids are looked up in the towers, at every step; text is tokenised once, before the
loop (see :func:`text_encodings`), and histories are gathered per batch from one
shared item array (see :class:`tfrs_kit._tensors.Spans`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._data import Table, last_rows, num_rows
from tfrs_kit._errors import invalid_argument
from tfrs_kit._files import iter_tables, schema
from tfrs_kit._tensors import make_dataset, to_tensors
from tfrs_kit._validation import check_no_missing
from tfrs_kit.towers import Tower
from tfrs_kit.towers._encoders import TextEncoder

__all__ = ["EpochShuffle", "count_values", "distinct_rows", "file_dataset", "text_encodings",
           "training_dataset"]


def text_encodings(towers: Iterable[Any]) -> dict[str, Callable[[tf.Tensor], Any]]:
    """The text features that training may feed tokenised, each with its tokeniser.

    A text feature qualifies when every tower that reads it is a :class:`Tower`
    with the built-in ``encode`` and ``call`` (a custom one may read the raw
    strings) whose encoder of it is a :class:`TextEncoder` over the same tokens:
    such an encoder gives the same embedding for the tokens as for the string.
    """
    readers: dict[str, list[Any]] = {}
    for tower in towers:
        for name in getattr(tower, "features", ()):
            builtin = (isinstance(tower, Tower) and type(tower).encode is Tower.encode
                       and type(tower).call is Tower.call)
            readers.setdefault(name, []).append(tower.encoders.get(name) if builtin else None)
    encodings = {}
    for name, encoders in readers.items():
        first = encoders[0]
        if all(isinstance(e, TextEncoder) and e.vocabulary == first.vocabulary
               for e in encoders):
            encodings[name] = first.tokenize
    return encodings


class EpochShuffle(tf.keras.callbacks.Callback):
    """Keeps :func:`make_dataset`'s shuffle keyed on the epoch being trained.

    The epoch is the optimizer's step count divided by the steps per epoch, so
    it survives a restart from a checkpoint (``BackupAndRestore`` restores the
    step count) and continues across several ``fit`` calls.

    Args:
        steps_per_epoch: Optimizer steps in one pass over the data.
    """

    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        with tf.init_scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="shuffle_epoch")

    def _sync(self) -> None:
        steps = int(self.model.optimizer.iterations.numpy())
        self.epoch.assign(steps // self.steps_per_epoch)

    def on_train_begin(self, logs: Any = None) -> None:
        self._sync()  # after BackupAndRestore (an earlier callback) has restored the steps

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._sync()  # before Keras creates the next epoch's iterator


def training_dataset(
    table: Table,
    columns: Iterable[str],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    strategy: tf.distribute.Strategy | None = None,
    encode_once: Mapping[str, Callable[[tf.Tensor], Any]] | None = None,
) -> tuple[tf.data.Dataset, list[tf.keras.callbacks.Callback]]:
    """The training dataset of ``fit`` and the callbacks that must go with it.

    With a ``seed`` the shuffle is keyed on the epoch (see :class:`EpochShuffle`),
    so training resumed from a checkpoint sees the same batches as an
    uninterrupted run. Several workers must shuffle alike, so they need a seed.
    ``encode_once`` is :func:`make_dataset`'s (text tokenised before the loop).
    """
    workers = _num_workers(strategy)
    if shuffle and seed is None and workers > 1:
        raise invalid_argument(
            "seed", "be set when shuffling under a multi-worker strategy", seed,
            hint=f"Every one of the {workers} workers must draw the same order; "
            "pass the same seed=... on each, or shuffle=False.",
        )
    if not shuffle or seed is None:
        return make_dataset(table, columns, batch_size=batch_size, shuffle=shuffle,
                            seed=seed, encode_once=encode_once), []
    epoch = EpochShuffle(-(-num_rows(table) // batch_size))
    dataset = make_dataset(table, columns, batch_size=batch_size, shuffle=True, seed=seed,
                           epoch=epoch, encode_once=encode_once)
    return dataset, [epoch]


def _num_workers(strategy: tf.distribute.Strategy | None) -> int:
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
    Batches are built from whole chunks (vectorised, no per-row ``tf.data``
    elements), given ``prepare`` inside ``tf.data`` and prefetched. Memory: the
    window, and one chunk per shard being read.

    Under a multi-worker strategy each worker reads its own shards (every
    ``workers``-th of them, sorted, from its index on) and the dataset repeats:
    an epoch is then the returned number of steps, as many as the worker with the
    fewest rows (``rows_per_file`` tells) fills; ``None`` on one worker.
    """
    spec = _row_spec(schema(list(paths), argument="x", columns=columns), columns)
    mine, steps = _own_shards(list(paths), rows_per_file, batch_size, strategy)
    passes = itertools.count()

    def batches() -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng(None if seed is None else [seed, next(passes)])
        yield from _window_batches(mine, columns, spec, rng=rng if shuffle else None,
                                   batch_size=batch_size, window=shuffle_buffer,
                                   rows_per_chunk=rows_per_chunk)

    dataset = tf.data.Dataset.from_generator(
        batches, output_signature={name: _batched(s) for name, s in spec.items()})
    if prepare is not None:
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    # Several workers read their own files (chosen above: TF's FILE policy cannot see
    # through a Python reader); one worker's batches are split among its replicas.
    options.experimental_distribute.auto_shard_policy = (
        policy.OFF if steps is not None else policy.DATA)
    dataset = dataset.with_options(options)
    if steps is not None:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE), steps


def _window_batches(paths: Sequence[str], columns: Sequence[str], spec: Mapping[str, Any], *,
                    rng: np.random.Generator | None, batch_size: int, window: int,
                    rows_per_chunk: int) -> Iterator[dict[str, Any]]:
    """The batches of one pass: rounds of chunks gathered into windows, then cut."""
    files = list(paths) if rng is None else [paths[i] for i in rng.permutation(len(paths))]
    pending: list[dict[str, Any]] = []
    count = 0
    for chunks in _rounds(files, columns, rows_per_chunk):
        pending.append(_interleave_rows(chunks, columns, spec))
        count += sum(len(next(iter(c.values()))) for c in chunks)
        if count < (window if rng is not None else batch_size):
            continue
        rows = _concat(pending)
        order = rng.permutation(count) if rng is not None else np.arange(count)
        full = count // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield _take(rows, order[start:start + batch_size])
        pending, count = ([_take(rows, order[full:])] if full < count else []), count - full
    if count:
        rows = _concat(pending)
        order = rng.permutation(count) if rng is not None else np.arange(count)
        for start in range(0, count, batch_size):
            yield _take(rows, order[start:start + batch_size])


def _rounds(paths: Sequence[str], columns: Sequence[str],
            rows_per_chunk: int, cycle: int = 4) -> Iterator[list[Table]]:
    """The next chunk of each of (up to) ``cycle`` open shards, round after round."""
    queue = list(paths)
    readers: list[Iterator[Table]] = []
    while queue or readers:
        while queue and len(readers) < cycle:
            readers.append(iter_tables(queue.pop(0), argument="x", columns=columns,
                                       rows_per_chunk=rows_per_chunk))
        chunks = []
        for reader in list(readers):
            chunk = next(reader, None)
            if chunk is None:
                readers.remove(reader)
            else:
                chunks.append(chunk)
        if chunks:
            yield chunks


def _interleave_rows(chunks: list[Table], columns: Sequence[str],
                     spec: Mapping[str, Any]) -> dict[str, Any]:
    """The chunks' rows as tensors, taking one row of each chunk in turn."""
    parts = [{name: _conform(t, spec[name]) for name, t in to_tensors(c, columns).items()}
             for c in chunks]
    sizes = [len(next(iter(c.values()))) for c in chunks]
    position = np.concatenate([np.arange(n) for n in sizes])
    slot = np.repeat(np.arange(len(sizes)), sizes)
    return _take(_concat(parts), np.lexsort((slot, position)))


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    return {name: tf.concat([p[name] for p in parts], axis=0) for name in parts[0]}


def _take(rows: dict[str, Any], order: np.ndarray) -> dict[str, Any]:
    return {name: tf.gather(t, order) for name, t in rows.items()}


def _own_shards(paths: list[str], rows_per_file: Sequence[int] | None, batch_size: int,
                strategy: tf.distribute.Strategy | None) -> tuple[list[str], int | None]:
    """This worker's shards, and the steps per epoch when there are several workers."""
    workers = _num_workers(strategy)
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


def _batched(row: tf.TensorSpec) -> Any:
    """The spec of a chunk of such rows: lists ragged, scalars a vector."""
    if row.shape.rank == 1:
        return tf.RaggedTensorSpec([None, None], row.dtype, ragged_rank=1,
                                   row_splits_dtype=tf.int64)
    return tf.TensorSpec([None], row.dtype)


def _conform(tensor: Any, row: tf.TensorSpec) -> Any:
    """A chunk's column in its column's dtype (a chunk of empty lists reads as strings)."""
    if tensor.dtype == row.dtype:
        return tensor
    if isinstance(tensor, tf.RaggedTensor) and tf.size(tensor.flat_values) == 0:
        return tf.RaggedTensor.from_row_splits(tf.zeros([0], row.dtype), tensor.row_splits)
    return tf.cast(tensor, row.dtype)


def count_values(paths: Sequence[str], column: str) -> tuple[pd.Series, list[int]]:
    """How often each value of ``column`` occurs in the shards (most frequent first),
    and each shard's number of rows, in one pass over that column alone."""
    counts = pd.Series(dtype=np.int64)
    rows = []
    for path in paths:
        rows.append(0)
        for chunk in iter_tables(path, argument="x", columns=[column], rows_per_chunk=1 << 20):
            check_no_missing(f"x[{column!r}]", chunk[column], what="ids")
            part = pd.Series(chunk[column]).value_counts()
            counts = part if not len(counts) else counts.add(part, fill_value=0)
            rows[-1] += len(chunk[column])
    return counts.astype(np.int64).sort_values(ascending=False, kind="stable"), rows


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
