"""The second ingestion mode of ``fit``: shards of files streamed (``tk.data.Shards``,
or paths with a ``shuffle_buffer``).

One pass counts the candidate ids (the logQ probabilities); each epoch then
reads the shards in a new order and prepares every batch as the in-memory mode
(``_in_memory``) prepares the whole table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int
from tfrs_kit.data._files import is_files, iter_tables, resolve
from tfrs_kit.data._shards import Shards
from tfrs_kit.data._stream import count_values, id_tensor
from tfrs_kit.data._table import TableLike

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "SAMPLING_PROBABILITY", "batch_preparation",
           "scan_files", "streaming_buffer"]

# No leading underscore: TensorFlow turns feature names into graph node names.
SAMPLING_PROBABILITY = "tfrs_kit_sampling_probability"

#: Rows shuffled together when ``x`` is ``tk.data.Shards`` and no buffer is given.
DEFAULT_SHUFFLE_BUFFER = 65536


def streaming_buffer(x: TableLike, shuffle_buffer: int | None) -> int | None:
    """The shuffle buffer ``fit`` streams with; ``None``: read ``x`` into memory.

    Naming a log ``tk.data.Shards`` says it may not fit in memory, so it streams
    by default; a path or glob keeps reading into memory unless a buffer is given
    (the results of existing calls do not change).
    """
    if shuffle_buffer is None and isinstance(x, Shards):
        return DEFAULT_SHUFFLE_BUFFER
    return shuffle_buffer


def scan_files(model: Any, x: TableLike, shuffle_buffer: int,
               validation_fraction: float | None) -> tuple[list[str], list[int]]:
    """The shards of a streamed ``x`` and their rows; learns the candidate frequencies.

    One pass over the candidate id column; the first chunk of every feature
    is checked as ``_read`` checks a table.
    """
    check_int("shuffle_buffer", shuffle_buffer, minimum=1)
    if not is_files(x):
        raise invalid_argument("shuffle_buffer", "be None unless x names files",
                               shuffle_buffer, hint="Streaming reads Parquet, CSV or "
                               "TFRecord shards; a table in memory is shuffled whole.")
    if validation_fraction is not None:
        raise invalid_argument("validation_fraction", "be None when streaming files",
                               validation_fraction, hint="Pass validation_data=... "
                               "(a table or files, read into memory).")
    paths = resolve(x, argument="x")
    first = next(iter_tables(paths, argument="x", columns=model.features,
                             rows_per_chunk=1024))
    model._read(first, "x")  # the features' kinds and missing ids, on a sample
    counts, rows = count_values(paths, model.item_id)
    model.candidate_frequencies_ = counts / sum(rows)
    return paths, rows


def batch_preparation(model: Any, rows: int) -> Any:
    """What ``_prepare`` and ``_encode_once`` do to a table, done to a streamed batch."""
    encodings = model._encode_once()
    probability = None
    frequencies = model.candidate_frequencies_
    if model.logq_correction and frequencies is not None:
        probability = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            id_tensor(frequencies.index),
            tf.constant(frequencies.to_numpy(np.float32))), default_value=1.0 / rows)

    def prepare(batch: dict[str, Any]) -> dict[str, Any]:
        batch = {name: encodings[name](value) if name in encodings else value
                 for name, value in batch.items()}
        if probability is not None:
            batch[SAMPLING_PROBABILITY] = probability.lookup(batch[model.item_id])
        return batch

    return prepare
