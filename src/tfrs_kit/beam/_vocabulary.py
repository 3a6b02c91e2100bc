"""Vocabularies on Beam: ``VocabularyBuilder``'s counts per batch, combined per column.

Three steps. A column's kind, when not declared, is inferred from the value types
of all events at once (a global combine of small per-batch summaries), as pandas
types a column of the whole log; a kind inferred per batch would differ where one
batch holds only integers and another a missing value. Then each batch of events
becomes a table and is counted by ``VocabularyBuilder._count`` (the same tokens,
kinds and checks as in memory), and the counts of each column are summed across
batches and workers with ``CombinePerKey``. Last, the merged counts of all columns
are built into one :class:`~tfrs_kit.Vocabularies` by ``VocabularyBuilder.from_counts``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._progress import Progress
from tfrs_kit.beam import _events
from tfrs_kit.beam._events import check_event, check_instance
from tfrs_kit.data._table import is_multivalued, to_table
from tfrs_kit.features._counting import VocabularyCounts
from tfrs_kit.features._counting import feature_kinds as _feature_kinds
from tfrs_kit.features._counting import sum_counts as _sum_counts
from tfrs_kit.features._vocabulary import Vocabularies, VocabularyBuilder

__all__ = ["CountVocabularies", "WriteVocabularies"]

_MERGE_EVERY = 16  # partial counts a worker holds per column before summing them
_BATCHES_COUNTED = beam.metrics.Metrics.counter("tfrs_kit", "vocabulary_batches")


class CountVocabularies(beam.PTransform):
    """Counts the vocabularies of a ``PCollection`` of events, as ``VocabularyBuilder``.

    The result is one :class:`~tfrs_kit.Vocabularies`, equal to
    ``builder.fit(events, features)`` on the same events in memory: the same
    kinds (inferred from all events, as pandas types a column of the whole log),
    tokens, counts and order, text split into the same tokens and n-grams, and
    the same errors for missing or mixed-type values.
    Each column's counts are combined per key, so the work spreads over the
    workers; only the final vocabularies meet on one. A numeric feature's
    values travel whole to that worker (its quantiles are exact), sorted first, so
    the mean and standard deviation do not depend on the order events arrive in
    (they equal the in-memory ones up to floating-point rounding, about 1e-15).

    Args:
        features: Column names, or a mapping of name to kind, as in
            :meth:`tfrs_kit.VocabularyBuilder.fit`; ``None``: every column.
        builder: The options (``min_count``, ``max_tokens``, ``ngrams`` ...);
            ``None``: ``VocabularyBuilder()``.

    Raises:
        TypeError: ``builder`` is not a ``VocabularyBuilder``, or (when the
            pipeline runs) an event is not a dict or a column mixes strings and
            integers.
        ValueError: Invalid ``features``; or, when the pipeline runs, a column
            none of the events has, or any error ``VocabularyBuilder.fit`` raises.

    Example:
        >>> import apache_beam as beam
        >>> from apache_beam.testing.util import assert_that, equal_to
        >>> import tfrs_kit as tk
        >>> from tfrs_kit.beam import CountVocabularies
        >>> events = [{"user": "a", "item": "x"}, {"user": "b", "item": "x"},
        ...           {"user": "a", "item": "y"}]
        >>> with beam.Pipeline() as pipeline:
        ...     vocabularies = (pipeline | beam.Create(events)
        ...                     | CountVocabularies(builder=tk.VocabularyBuilder()))
        ...     _ = assert_that(vocabularies, equal_to([tk.VocabularyBuilder().fit(
        ...         {"user": ["a", "b", "a"], "item": ["x", "x", "y"]})]))
    """

    def __init__(
        self,
        *,
        features: Sequence[str] | Mapping[str, str] | None = None,
        builder: VocabularyBuilder | None = None,
    ) -> None:
        super().__init__()
        self.kinds = _feature_kinds(features)
        self.builder = check_instance("builder", builder or VocabularyBuilder(),
                                      VocabularyBuilder, "tk.VocabularyBuilder(min_count=2)")

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        batches = events | "Batch events" >> beam.BatchElements(
            max_batch_size=_events.BATCH_ROWS)
        kinds = beam.pvalue.AsSingleton(
            batches
            | "Summarise types" >> beam.Map(_summarise, list(self.kinds) or None)
            | "Combine types" >> beam.CombineGlobally(_combine_summaries)
            | "Decide kinds" >> beam.Map(_decide_kinds, self.kinds))
        return (
            batches
            | "Count batches" >> beam.FlatMap(_count_batch, self.builder, kinds)
            | "Sum per column" >> beam.CombinePerKey(_SumCounts())
            | "Gather columns" >> beam.combiners.ToList()
            | "Build" >> beam.Map(_build, self.builder, kinds).with_output_types(Vocabularies))


class WriteVocabularies(beam.PTransform):
    """Saves a ``PCollection`` of one :class:`~tfrs_kit.Vocabularies` as a JSON file.

    The file is the one :meth:`~tfrs_kit.Vocabularies.save` writes (and
    :meth:`~tfrs_kit.Vocabularies.load` reads), written through Beam's file
    systems, so the path may be on any of them (``gs://...`` on Dataflow).

    Args:
        path: Where to write.

    Example:
        >>> import apache_beam as beam
        >>> from tfrs_kit.beam import CountVocabularies, WriteVocabularies
        >>> with beam.Pipeline() as pipeline:  # doctest: +SKIP
        ...     (pipeline | beam.Create([{"user": "a"}]) | CountVocabularies()
        ...      | WriteVocabularies("vocabularies.json"))
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = check_instance("path", path, str, "'vocabularies.json'")

    def expand(self, vocabularies: beam.PCollection) -> beam.PCollection:
        return vocabularies | "Save" >> beam.Map(_save, self.path)


# --- kinds ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Summary:
    """The value types of each column in some events, and how many events have it."""

    rows: int = 0
    types: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    present: dict[str, int] = dataclasses.field(default_factory=dict)
    columns: set[str] = dataclasses.field(default_factory=set)  # every column seen


def _value_type(value: Any) -> str:
    if value is None:
        return "none"
    for name, types in (("bool", (bool, np.bool_)), ("int", (int, np.integer)),
                        ("float", (float, np.floating)), ("str", (str, bytes)),
                        ("list", (list, tuple, np.ndarray))):
        if isinstance(value, types):
            return name
    return type(value).__name__


def _summarise(batch: list[Any], columns: list[str] | None) -> _Summary:
    summary = _Summary(rows=len(batch))
    for event in batch:
        check_event(event)
        summary.columns.update(event)
        for name in columns or event:
            if name in event:
                summary.present[name] = summary.present.get(name, 0) + 1
                summary.types.setdefault(name, set()).add(_value_type(event[name]))
    return summary


def _combine_summaries(summaries: Iterable[_Summary]) -> _Summary:
    total = _Summary()
    for summary in summaries:
        total.rows += summary.rows
        total.columns.update(summary.columns)
        for name, types in summary.types.items():
            total.types.setdefault(name, set()).update(types)
            total.present[name] = total.present.get(name, 0) + summary.present[name]
    return total


def _inferred_kind(types: set[str]) -> str:
    """The kind ``VocabularyBuilder`` infers for a DataFrame column holding these types."""
    if "list" in types:
        return "multi"
    numbers = types - {"none"}
    # pandas makes integers with a missing value float64, which is numeric.
    if numbers and numbers <= {"int", "float"} and ("float" in numbers or "none" in types):
        return "numeric"
    return "categorical"


def _decide_kinds(summary: _Summary, declared: Mapping[str, str]) -> dict[str, str]:
    if not summary.rows:
        raise invalid_argument("events", "hold at least one event", "an empty PCollection")
    names = list(declared) or sorted(summary.types)
    kinds = {}
    for name in names:
        if name not in summary.types:
            raise missing_column("events", name, summary.columns)
        types = set(summary.types[name])
        if summary.present[name] < summary.rows:
            types.add("none")  # events without the column: missing values, as in pandas
        kinds[name] = declared.get(name) or _inferred_kind(types)
    return kinds


# --- counting ------------------------------------------------------------------------------


def _count_batch(batch: list[Mapping[str, Any]], builder: VocabularyBuilder,
                 kinds: dict[str, str]) -> Iterator[tuple[str, VocabularyCounts]]:
    """Each column's counts in one batch of events, keyed by column."""
    frame = pd.DataFrame.from_records(batch, columns=list(kinds))
    table = to_table(frame, argument="events")
    # A batch whose lists are all empty has nothing to count, and NumPy would type
    # its (empty) values float, which no vocabulary holds.
    table = {name: column for name, column in table.items()
             if not (kinds[name] == "multi" and is_multivalued(column)
                     and not any(len(v) for v in column))}
    if not table:
        return
    counts = builder._count(table, kinds, Progress(1, description="", verbose=False))
    _BATCHES_COUNTED.inc()
    for name in table:
        yield name, VocabularyCounts(
            kinds={name: counts.kinds[name]}, dtypes={name: counts.dtypes[name]},
            counts={name: counts.counts[name]} if name in counts.counts else {},
            numeric={name: counts.numeric[name]} if name in counts.numeric else {},
            ngrams=counts.ngrams,
        )


class _SumCounts(beam.CombineFn):
    """Sums one column's counts: a list of partial counts, summed every few."""

    def create_accumulator(self) -> list[VocabularyCounts]:
        return []

    def add_input(self, parts: list[VocabularyCounts],
                  part: VocabularyCounts) -> list[VocabularyCounts]:
        parts.append(part)
        return [_sum(parts)] if len(parts) >= _MERGE_EVERY else parts

    def merge_accumulators(
        self, accumulators: Iterable[list[VocabularyCounts]]
    ) -> list[VocabularyCounts]:
        parts = [part for parts in accumulators for part in parts]
        return [_sum(parts)] if len(parts) > 1 else parts

    def extract_output(self, parts: list[VocabularyCounts]) -> VocabularyCounts:
        return _sum(parts)


def _sum(parts: Sequence[VocabularyCounts]) -> VocabularyCounts:
    dtypes = {part.dtypes[name] for part in parts for name in part.dtypes}
    if len(dtypes) > 1:
        name = next(iter(parts[0].dtypes))
        raise invalid_argument(
            f"events[{name!r}]", "hold ids of one type (all strings or all integers)",
            f"{' values in some events, '.join(sorted(dtypes))} values in others",
            error=TypeError, hint="Convert the column to one type (str or int) first.",
        )
    return _sum_counts(parts)


def _build(columns: list[tuple[str, VocabularyCounts]], builder: VocabularyBuilder,
           kinds: dict[str, str]) -> Vocabularies:
    merged = dict(columns)
    for name in kinds:
        if name not in merged:  # a list column whose lists are all empty
            raise invalid_argument(f"events[{name!r}]", "hold at least one value",
                                   "only empty lists")
    parts = [merged[name] for name in kinds]
    counts = VocabularyCounts(
        kinds={name: part.kinds[name] for name, part in zip(kinds, parts, strict=True)},
        dtypes={name: part.dtypes[name] for name, part in zip(kinds, parts, strict=True)},
        counts={name: part.counts[name] for name, part in zip(kinds, parts, strict=True)
                if name in part.counts},
        # Sorted: statistics then do not depend on the order the values arrived in.
        numeric={name: np.sort(part.numeric[name])
                 for name, part in zip(kinds, parts, strict=True) if name in part.numeric},
        ngrams=builder.ngrams,
    )
    return builder.from_counts(counts)


# --- saving --------------------------------------------------------------------------------


def _save(vocabularies: Vocabularies, path: str) -> str:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    check_instance("vocabularies", vocabularies, Vocabularies, "CountVocabularies()'s output")
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
        file.write(json.dumps(vocabularies.to_dict(), ensure_ascii=False).encode("utf-8"))
    return path
