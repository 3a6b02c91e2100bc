"""Preprocessing on Apache Beam: vocabularies and training shards from a raw event log.

The same preprocessing as :class:`~tfrs_kit.VocabularyBuilder` and
:class:`~tfrs_kit.HistoryBuilder`, as Beam transforms, so that it runs on any Beam
runner (Dataflow, Flink, Spark, or the local DirectRunner) when the log does not fit
one machine. Events are a ``PCollection`` of dicts, one per event (what
``beam.io.ReadFromParquet`` yields):

* :class:`CountVocabularies` counts each column's tokens, per batch of events, then
  combines the counts per column (``CombinePerKey``): one :class:`~tfrs_kit.Vocabularies`,
  equal to ``VocabularyBuilder(...).fit`` on the same events.
* :class:`AddHistories` groups the events by user, orders them by time and adds
  each event's history column, as ``HistoryBuilder(...).transform`` does.
* :class:`WriteParquetShards` writes rows as Parquet shards that
  ``TwoTowerRetrieval.fit``, ``VocabularyBuilder.fit`` and every other entry point
  read back (see *Logs in files*).
* :class:`WriteVocabularies` saves the vocabularies as the JSON file that
  :meth:`~tfrs_kit.Vocabularies.load` reads.
* :func:`prepare` is :func:`tfrs_kit.features.prepare` as Beam pipelines: the same
  work directory (vocabularies, histories, validation, sample, manifest) from event
  shards, with the reading and sorting on the runner's workers; ``Recipe.fit`` then
  trains from it (see *Preparing a large log on Apache Beam* in ``docs/files.md``).

Needs Apache Beam, the ``beam`` extra: ``pip install "tfrs-kit[beam]"``. ``import
tfrs_kit`` never imports it.

Example:
    >>> import apache_beam as beam
    >>> from tfrs_kit.beam import CountVocabularies
    >>> events = [{"user_id": "a", "item_id": "x"}, {"user_id": "b", "item_id": "x"}]
    >>> with beam.Pipeline() as pipeline:  # doctest: +SKIP
    ...     vocabularies = pipeline | beam.Create(events) | CountVocabularies()
"""

try:
    import apache_beam  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised by a test with Beam hidden
    raise ImportError(
        'tfrs_kit.beam needs Apache Beam. Install it with `pip install "tfrs-kit[beam]"`.'
    ) from error

from tfrs_kit.beam._history import AddHistories
from tfrs_kit.beam._prepare import prepare
from tfrs_kit.beam._shards import WriteParquetShards
from tfrs_kit.beam._vocabulary import CountVocabularies, WriteVocabularies

__all__ = [
    "AddHistories",
    "CountVocabularies",
    "WriteParquetShards",
    "WriteVocabularies",
    "prepare",
]
