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
from tfrs_kit.data._files import iter_tables, resolve
from tfrs_kit.data._stream import (
    DEFAULT_SHUFFLE_BUFFER,
    check_stream_source,
    count_values,
    id_tensor,
    streaming_buffer,
)
from tfrs_kit.data._table import TableLike

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "SAMPLING_PROBABILITY", "batch_preparation",
           "scan_files", "streaming_buffer"]

# No leading underscore: TensorFlow turns feature names into graph node names.
SAMPLING_PROBABILITY = "tfrs_kit_sampling_probability"


def scan_files(model: Any, x: TableLike, shuffle_buffer: int,
               validation_fraction: float | None) -> tuple[list[str], list[int]]:
    """The shards of a streamed ``x`` and their rows; learns the candidate frequencies.

    One pass over the candidate id column; the first chunk of every feature
    is checked as ``_read`` checks a table.
    """
    check_stream_source(x, shuffle_buffer)
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
