"""The streamed ingestion of :meth:`Ranker.fit <tfrs_kit.Ranker.fit>`: labelled rows read
from shards (``tk.data.Shards``, or paths with a ``shuffle_buffer``), as
``retrieval._streamed`` streams the retriever's log.

What streams: rows that already carry their label (a rating, or pairs written out
with a 0/1 label), fitted pointwise with ``negatives=0``; each row is its own
group, as in memory. One pass checks the label and weight columns shard by shard;
the catalogue (one row per item) is kept to give each row its candidate features,
as the in-memory groups take them; then each epoch reads the shards through
:func:`~tfrs_kit.data._stream.file_dataset`, its rows shuffled within the window.
Memory: the window, a chunk per shard read, and the catalogue.

What does not: sampled negatives need every user's positives across the whole
log (never drawn as negatives) and hard negatives the retriever's top items per
user, and ``retrieval_score`` standardises the retriever's scores over all pairs,
so those fits read ``x`` into memory; so does :meth:`Ranker.fit_lists`, which
groups the positives by user to build each user's list.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int
from tfrs_kit.data._files import iter_tables, resolve
from tfrs_kit.data._source import fail
from tfrs_kit.data._stream import (
    check_stream_source,
    count_values,
    distinct_rows,
    file_dataset,
    id_tensor,
    streaming_buffer,
)
from tfrs_kit.data._table import Table, TableLike
from tfrs_kit.data._tensors import to_tensors
from tfrs_kit.ranking._checks import check_hard_fraction, check_loss_settings
from tfrs_kit.ranking._pairs import catalogue_for
from tfrs_kit.ranking._sampling import LABEL, WEIGHT

__all__ = ["pair_buffer", "streamed_pairs"]

_ROWS_PER_CHUNK = 8192  # rows read from a shard at a time while training
_SCAN_ROWS = 1 << 16  # rows per chunk of the pass that checks labels and weights
_NUMBERS = ("int", "float", "bool")


def pair_buffer(x: TableLike, shuffle_buffer: int | None, *, negatives: Any, label: str | None,
                loss: str, retrieval_score: bool) -> int | None:
    """The shuffle buffer ``Ranker.fit`` streams ``x`` with; ``None``: read it into memory.

    ``tk.data.Shards`` stream by default, paths only with a ``shuffle_buffer``
    (as the retriever's ``fit``), when the fit can stream (see the module). A
    ``Shards`` log whose fit cannot stream is read whole with a warning; an
    explicit ``shuffle_buffer`` is then refused.
    """
    buffer = streaming_buffer(x, shuffle_buffer)
    if buffer is None:
        return None
    negatives = check_int("negatives", negatives, minimum=0)
    check_loss_settings(loss, negatives=negatives, label=label)
    if negatives == 0 and not retrieval_score:
        return buffer
    reason = ("sampled negatives need every user's positives across the whole log"
              if negatives else "retrieval_score standardises the retriever's scores over "
              "every pair")
    hint = ("Write the rows with their label (a rating, or positives and negatives "
            "labelled 1 and 0) and fit them with label=... and negatives=0, or read x into "
            "memory (pass a table, or paths without shuffle_buffer).")
    if shuffle_buffer is None:
        warnings.warn(f"Ranker.fit reads the tk.data.Shards log whole: {reason}. {hint}",
                      UserWarning, stacklevel=3)
        return None
    raise invalid_argument(
        "shuffle_buffer", "be None unless the ranker's fit can stream (an explicit label, "
        f"negatives=0, retrieval_score=False): {reason}", shuffle_buffer, hint=hint)


def streamed_pairs(ranker: Any, x: TableLike, *, shuffle_buffer: int, retriever: Any,
                   candidates: TableLike | None, user_id: str, hard_fraction: Any,
                   label: str, sample_weight: str | None, batch_size: int, shuffle: bool,
                   seed: int | None) -> tuple[tf.data.Dataset, int | None]:
    """``fit``'s batches of labelled rows streamed from ``x``; steps per epoch (or None).

    The checks of the in-memory groups (``_pairs.pair_examples``), made on the
    shards: every shard has the columns (kinds agreeing), the features of a first
    chunk are checked as a table's, every label and weight as in memory.
    """
    check_stream_source(x, shuffle_buffer)
    check_hard_fraction(hard_fraction, retriever)
    paths = resolve(x, argument="x")
    query = tuple(ranker.query_tower.features)
    candidate = tuple(dict.fromkeys([ranker.item_id, *ranker.candidate_tower.features]))
    read = _columns_read(ranker, retriever, candidates, user_id=user_id, label=label,
                         sample_weight=sample_weight)
    settings = {user_id: "user_id", label: "label",
                **({sample_weight: "sample_weight"} if sample_weight else {})}
    first = next(iter_tables(paths, argument="x", columns=read, rows_per_chunk=1024,
                             settings=settings))
    ranker._check_columns(first, "x", [c for c in read if c not in (label, sample_weight)])
    rows = _scan_numbers(paths, label, sample_weight)
    catalogue = catalogue_for(ranker, _items_of(paths, ranker, retriever, candidates),
                              candidates, retriever)
    columns = list(dict.fromkeys([*query, ranker.item_id, label,
                                  *([sample_weight] if sample_weight else [])]))
    dataset, steps = file_dataset(
        paths, columns, batch_size=batch_size, shuffle=shuffle, seed=seed,
        shuffle_buffer=shuffle_buffer, rows_per_chunk=_ROWS_PER_CHUNK, rows_per_file=rows,
        prepare=_preparation(catalogue, query, candidate, ranker.item_id, label, sample_weight),
        strategy=ranker.distribute_strategy)
    if steps is None:  # every batch full but the last: Keras then counts one step per batch
        # (of a dataset of unknown length it counts the failed read that ends the epoch as
        # a step too, which moves Adam's step count and its bias correction).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            -(-sum(rows) // batch_size)))
    return dataset, steps


def _columns_read(ranker: Any, retriever: Any, candidates: TableLike | None, *, user_id: str,
                  label: str, sample_weight: str | None) -> list[str]:
    """The columns ``x`` must hold: what the in-memory fit reads of it."""
    columns = [user_id, ranker.item_id, *ranker.query_tower.features,
               *(retriever.query_tower.features if retriever is not None else ())]
    if candidates is None:  # the catalogue comes from x
        columns += [*ranker.candidate_tower.features,
                    *(retriever.candidate_tower.features if retriever is not None else ())]
    return list(dict.fromkeys([*columns, label, *([sample_weight] if sample_weight else [])]))


def _items_of(paths: Sequence[str], ranker: Any, retriever: Any,
              candidates: TableLike | None) -> Table:
    """Each item's last row of the candidate features (none needed with ``candidates``)."""
    if candidates is not None:
        counts, _ = count_values(paths, ranker.item_id)  # the distinct items, to check
        return {ranker.item_id: np.asarray(counts.index)}
    features = [*ranker.candidate_tower.features,
                *(retriever.candidate_tower.features if retriever is not None else ())]
    return distinct_rows(paths, ranker.item_id, list(dict.fromkeys(features)))


def _scan_numbers(paths: Sequence[str], label: str, sample_weight: str | None) -> list[int]:
    """Every label a finite number, every weight finite and >= 0, shard by shard; the
    labels not all one value and the weights not all 0 (as ``check_label`` and
    ``check_weights`` check a table). An error names the shard and its row. Returns
    each shard's number of rows."""
    columns = [label, *([sample_weight] if sample_weight else [])]
    low, high, weighted = np.inf, -np.inf, False
    rows = []
    for path in paths:
        start = 0
        for chunk in iter_tables(path, argument="x", columns=columns, rows_per_chunk=_SCAN_ROWS):
            values = _numbers(chunk, label, path)
            _check_rows(path, label, start, ~np.isfinite(values),
                        "hold a finite label for every row (no NaN, None or inf)")
            if len(values):
                low, high = min(low, values.min()), max(high, values.max())
            if sample_weight:
                weights = _numbers(chunk, sample_weight, path)
                _check_rows(path, sample_weight, start, ~np.isfinite(weights) | (weights < 0),
                            "hold finite weights >= 0")
                weighted = weighted or bool(weights.any())
            start += len(values)
        rows.append(start)
    if low == high:
        raise invalid_argument(
            f"x[{label!r}]", "vary (a constant label teaches the ranker nothing)",
            f"every row {low!r}",
            hint="Leave label=None to learn the log's positives against sampled negatives.")
    if sample_weight and not weighted:
        raise invalid_argument(f"x[{sample_weight!r}]", "hold at least one weight > 0", "all 0")
    return rows


def _numbers(chunk: Table, column: str, path: str) -> np.ndarray:
    try:
        return np.asarray(pd.to_numeric(pd.Series(chunk[column]), errors="raise"),
                          dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise fail(f"x[{column!r}]", "hold numbers", f"{list(chunk[column][:3])!r} in the "
                   f"shard {path!r}", "Rewrite that shard with a numeric column.",
                   TypeError) from error


def _check_rows(path: str, column: str, start: int, bad: np.ndarray, rule: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise fail(f"x[{column!r}]", rule, f"{int(bad.sum())} bad value(s) in the shard "
                   f"{path!r}, the first at its row {start + row}",
                   "Drop or fill those rows when writing the shards.")


def _preparation(catalogue: Table, query: tuple[str, ...], candidate: tuple[str, ...],
                 item_id: str, label: str, sample_weight: str | None) -> Any:
    """What ``_sampling`` does to a row of the log, done to a streamed batch: the query
    features of the row, the candidate features of the catalogue, label and weight."""
    features = to_tensors(catalogue, candidate)
    position = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        id_tensor(pd.Index(catalogue[item_id])),
        tf.range(len(catalogue[item_id]), dtype=tf.int64)), default_value=-1)

    def prepare(batch: dict[str, Any]) -> dict[str, Any]:
        rows = position.lookup(batch[item_id])
        prepared = {name: batch[name] for name in query}
        prepared.update({name: tf.gather(features[name], rows) for name in candidate})
        prepared[LABEL] = tf.cast(batch[label], tf.float32)
        prepared[WEIGHT] = (tf.cast(batch[sample_weight], tf.float32) if sample_weight
                            else tf.ones_like(prepared[LABEL]))
        return prepared

    return prepare
