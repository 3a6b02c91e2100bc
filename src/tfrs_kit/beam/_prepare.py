"""``prepare`` on Apache Beam: the work directory of ``tfrs_kit.features.prepare``, out of core.

Two pipelines, on any runner:

1. *Vocabularies*: each shard is counted on a worker (``VocabularyBuilder.count``, as
   ``features.prepare`` counts it); the counts are summed (``CombineGlobally``, in any
   order, then put in ``features.prepare``'s order) and built into the vocabularies,
   and the seeded validation and sample users are chosen from the users' counts by
   ``features.prepare``'s own ``_choose``.
2. *Shards*: each shard is read on a worker, its rows normalised (times as one
   ordering key, the position in the log as the tie-break) and keyed by the same
   hash of the user that ``features.prepare`` buckets by; each bucket meets on one
   worker (``GroupByKey``), which sorts it and writes its training, validation,
   sample and latest rows with ``features.prepare``'s ``write_bucket``.

So the files are ``features.prepare``'s, equal in content: the same claim,
stages, markers and manifest (written last, by the driver), and a later
``features.prepare`` or ``Recipe.fit`` with the same settings reuses the directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_verbose
from tfrs_kit.beam._remote import download, local_copy, shard_files, upload
from tfrs_kit.data._files import _pyarrow
from tfrs_kit.data._source import TableLike, is_url
from tfrs_kit.features import _prepare as local
from tfrs_kit.features._counting import VocabularyCounts, sum_counts
from tfrs_kit.features._prepare import MANIFEST, Prepared
from tfrs_kit.features._prepare_log import (
    Layout,
    _normalise,
    _source_chunks,
    hash_ids,
    write_bucket,
    write_json,
)
from tfrs_kit.features._vocabulary import VocabularyBuilder

__all__ = ["prepare"]

_SHARD_ROWS = 1 << 40  # a row's log position: (shard index) * this + its row in the shard
_COUNTS = "counts.json"  # the vocabulary stage's last file


def prepare(
    source: TableLike,
    *,
    work_dir: str | os.PathLike[str],
    runner: Any = "DirectRunner",
    options: PipelineOptions | Sequence[str] | None = None,
    user_id: str = "user_id",
    item_id: str = "item_id",
    timestamp: str | None = "timestamp",
    features: Sequence[str] | Mapping[str, str] = (),
    history_length: int = 50,
    history: str = "history",
    validation_users: int | float = 0.1,
    validation_events: int = 1,
    sample_users: int | float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    staging: str | None = None,
    verbose: Any = "auto",
) -> Prepared:
    """:func:`tfrs_kit.features.prepare` as Beam pipelines, on any runner.

    Writes into ``work_dir`` what ``tfrs_kit.features.prepare`` writes for the same
    source and settings, equal in content (the vocabularies, the validation and
    sample users, every training, validation, sample and latest row, the manifest's
    counts), with the shards read and the buckets sorted on the runner's workers.
    The directory is then used as ``features.prepare``'s: ``Prepared.load``, and a
    ``Recipe(work_dir=...)`` fit on the same files trains from it without preparing
    again. A run that stopped resumes: finished stages and buckets are kept.

    The source may be local or on any of Beam's file systems (``gs://``,
    ``s3://``, ``hdfs://`` ...: the driver reads its footers, each worker copies
    the shard it reads). ``work_dir`` is on the driver (where the model trains):
    the workers write it directly when they mount it too (a local run, a cluster
    with a shared file system), or else write to ``staging``, a folder on a file
    system they and the driver share, from which the driver copies each finished
    bucket (its files first, its marker last) into ``work_dir``. On Dataflow,
    ``staging`` defaults to a folder under the pipeline's ``--temp_location``.

    Args:
        source: The shards (Parquet, CSV or TFRecord): a path, a glob, a directory,
            a list of them, or :class:`~tfrs_kit.data.Shards`.
        work_dir: Where to write; created if missing.
        runner: A Beam runner's name (``"DirectRunner"``, ``"DataflowRunner"``,
            ``"FlinkRunner"`` ...) or a runner object.
        options: ``PipelineOptions``, or a list of flags
            (``["--direct_num_workers=2", "--direct_running_mode=multi_processing"]``).
        user_id: As :func:`tfrs_kit.features.prepare`, as are ``item_id``,
            ``timestamp``, ``features``, ``history_length``, ``history``,
            ``validation_users``, ``validation_events``, ``sample_users``, ``seed``
            and ``overwrite``.
        staging: Where the workers write, when they do not mount ``work_dir``
            (``"gs://bucket/tmp"``); a folder for this preparation is made in it
            and removed when done. ``None``: a remote ``--temp_location`` if the
            options give one, else ``work_dir`` itself.
        verbose: Checked as in :func:`tfrs_kit.features.prepare`; the runner logs
            its own progress.

    Returns:
        The :class:`~tfrs_kit.features.Prepared` files and counts.

    Raises:
        TypeError: ``options`` is neither ``PipelineOptions`` nor a list of flags.
        ValueError: As :func:`tfrs_kit.features.prepare` (another log's
            ``work_dir``, a setting or the log breaking a rule).
        OSError: The disk of ``work_dir`` filled up (``errno.ENOSPC``), as
            :func:`tfrs_kit.features.prepare` says it; the finished stages and
            buckets are kept.

    Example:
        >>> from tfrs_kit.beam import prepare
        >>> prepared = prepare("log/*.parquet", work_dir="work",  # doctest: +SKIP
        ...                    options=["--direct_num_workers=2"])
    """
    settings = local._settings(
        user_id=user_id, item_id=item_id, timestamp=timestamp, features=features,
        history_length=history_length, history=history, validation_users=validation_users,
        validation_events=validation_events, sample_users=sample_users, seed=seed)
    check_verbose("verbose", verbose)
    pipeline_options = _options(options)
    paths, folder, layout, num_buckets, claim = local.claimed(
        source, work_dir, settings, overwrite, files=shard_files(source))
    if os.path.exists(os.path.join(folder, MANIFEST)):
        return Prepared.load(folder)
    run = _Run(runner, pipeline_options, _staged(staging, pipeline_options, claim))
    with local.disk_checked(folder, claim):
        summary = _vocabulary_stage(folder, paths, layout, settings, run)
        buckets = _shards_stage(folder, paths, layout, num_buckets, run)
        shutil.rmtree(os.path.join(folder, "spill"), ignore_errors=True)
        local._write_manifest(folder, claim, layout, summary, buckets)
    if run.staged is not None:
        _remove(run.staged)
    return Prepared.load(folder)


@dataclasses.dataclass(frozen=True)
class _Run:
    """Where the pipelines run, and where their workers write (``staged``: a folder on a
    shared file system; ``None``: the work directory itself)."""

    runner: Any
    options: PipelineOptions
    staged: str | None

    def pipeline(self) -> beam.Pipeline:
        return beam.Pipeline(runner=self.runner, options=self.options)

    def place(self, stage: str) -> str | None:
        return None if self.staged is None else FileSystems.join(self.staged, stage)


def _staged(staging: str | None, options: PipelineOptions, claim: Mapping[str, Any]) -> Any:
    """This preparation's folder in ``staging`` (or a remote ``--temp_location``), named
    by a hash of its claim, so that a rerun finds what a stopped one staged."""
    if staging is None:
        temp = options.view_as(GoogleCloudOptions).temp_location
        if not is_url(temp):
            return None
        staging = temp
    elif not isinstance(staging, str) or not staging:
        raise invalid_argument("staging", "be a folder (a path or URL such as 'gs://b/tmp')",
                               staging, error=TypeError)
    digest = hashlib.sha256(json.dumps(claim, sort_keys=True).encode()).hexdigest()[:16]
    return FileSystems.join(staging, f"tfrs_kit_prepare-{digest}")


def _options(options: Any) -> PipelineOptions:
    if options is None:
        return PipelineOptions([])
    if isinstance(options, PipelineOptions):
        return options
    if isinstance(options, (list, tuple)) and all(isinstance(o, str) for o in options):
        return PipelineOptions(list(options))
    raise invalid_argument("options", "be PipelineOptions or a list of flags", options,
                           hint="For example options=['--direct_num_workers=2'].",
                           error=TypeError)


# --- 1. vocabularies and the seeded users ----------------------------------------------------


def _vocabulary_stage(folder: str, paths: Sequence[str], layout: Layout,
                      settings: Mapping[str, Any], run: _Run) -> dict[str, int]:
    final, partial, done = local._stage(folder, "vocabularies")
    if done:
        return dict(local._read_json(os.path.join(final, "counts.json")))
    local._fresh(partial)
    features = settings["features"]
    wanted: Any
    if isinstance(features, Mapping):
        wanted = {layout.user_id: "categorical", layout.item_id: "categorical", **features}
    else:
        wanted = list(dict.fromkeys([layout.user_id, layout.item_id, *features]))
    place = run.place("vocabularies")
    with run.pipeline() as pipeline:
        _ = (pipeline
             | "Shards" >> beam.Create(list(enumerate(paths)))
             | "Spread shards" >> beam.Reshuffle()
             | "Count shards" >> beam.Map(_count_shard, wanted)
             | "Sum counts" >> beam.CombineGlobally(_SumInShardOrder())
             | "Write vocabularies" >> beam.Map(_write_vocabularies, partial, place, layout,
                                                settings))
    if place is not None:  # counts.json, written last, is fetched last
        names = sorted((os.path.basename(m.path) for m in FileSystems.match(
            [FileSystems.join(place, "*")])[0].metadata_list), key=lambda n: n == _COUNTS)
        for name in names:
            download(FileSystems.join(place, name), os.path.join(partial, name))
    local._finish(partial, final)
    return dict(local._read_json(os.path.join(final, "counts.json")))


def _count_shard(shard: tuple[int, str], wanted: Any) -> tuple[int, VocabularyCounts]:
    index, path = shard
    try:
        with local_copy(path) as copy:
            return index, VocabularyBuilder().count(copy, wanted, verbose=False)
    except (TypeError, ValueError) as error:  # the counts' message, and the shard
        raise type(error)(f"{error} In the shard {path!r}.") from None


class _SumInShardOrder(beam.CombineFn):
    """Sums shards' counts in any order into ``features.prepare``'s sum in shard order.

    ``features.prepare`` sums the shards in order, and its counts list each token
    where it is first seen in that order: the accumulator keeps, for each token, the
    (shard, position) of its first sighting and the counts summed so far, and
    ``extract_output`` orders the tokens by it. Numeric values are concatenated in
    shard order (their statistics are then computed in the same order). Memory:
    one sum of counts, as ``features.prepare``'s, and the first sightings.
    """

    def create_accumulator(self) -> Any:
        return None

    def add_input(self, accumulator: Any, shard: tuple[int, VocabularyCounts]) -> Any:
        index, counts = shard
        first = {name: pd.Series(np.arange(len(series), dtype=np.int64)
                                 + index * _SHARD_ROWS, index=series.index)
                 for name, series in counts.counts.items()}
        numeric = {name: [(index, values)] for name, values in counts.numeric.items()}
        return self.merge_accumulators([accumulator, (counts, first, numeric)])

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        parts = [a for a in accumulators if a is not None]
        if len(parts) <= 1:
            return parts[0] if parts else None
        counts = sum_counts([counts for counts, _, _ in parts])
        first = {name: pd.concat([f[name] for _, f, _ in parts]).groupby(
            level=0, sort=False).min() for name in parts[0][1]}
        numeric = {name: [piece for _, _, n in parts for piece in n[name]]
                   for name in parts[0][2]}
        return counts, first, numeric

    def extract_output(self, accumulator: Any) -> VocabularyCounts:
        counts, first, numeric = accumulator
        ordered = {}
        for name, series in counts.counts.items():
            keys = first[name].reindex(series.index).to_numpy()
            ordered[name] = series.iloc[np.argsort(keys, kind="stable")]
        values = {name: np.concatenate([v for _, v in sorted(pieces, key=lambda p: p[0])])
                  for name, pieces in numeric.items()}
        return dataclasses.replace(counts, counts=ordered, numeric=values)


def _write_vocabularies(counts: VocabularyCounts, partial: str, place: str | None,
                        layout: Layout, settings: Mapping[str, Any]) -> str:
    """The vocabularies, counts and seeded users, as ``features.prepare`` writes them."""
    with _written(partial, place, last=_COUNTS) as folder:
        vocabularies = VocabularyBuilder().from_counts(counts).alias(
            layout.history, layout.item_id, kind="multi")
        vocabularies.save(os.path.join(folder, "vocabularies.json"))
        users = counts.counts[layout.user_id]
        summary = {"rows": int(users.sum()), "users": len(users),
                   "items": len(counts.counts[layout.item_id])}
        local._write_users(folder, "validation", local._choose(
            users, settings["validation_users"], layout.validation_events, 2 * layout.seed,
            "validation_users"))
        if settings["sample_users"] is not None:
            local._write_users(folder, "sample", local._choose(
                users, settings["sample_users"], 0, 2 * layout.seed + 1, "sample_users"))
        write_json(os.path.join(folder, _COUNTS), summary)
    return partial


@contextlib.contextmanager
def _written(partial: str, place: str | None, *, last: str) -> Iterator[str]:
    """The folder a worker writes a stage's files into: ``partial`` itself, or (with a
    staging ``place``) a temporary one whose files are uploaded there on success,
    ``last`` (the marker that says they are complete) after all others."""
    if place is None:
        yield partial
        return
    with tempfile.TemporaryDirectory(prefix="tfrs_kit_beam_") as folder:
        yield folder
        written = sorted((os.path.relpath(os.path.join(root, name), folder)
                          for root, _, files in os.walk(folder) for name in files),
                         key=lambda name: name == last)
        for name in written:
            upload(os.path.join(folder, name), FileSystems.join(place, *name.split(os.sep)))


# --- 2. buckets sorted on the workers, with histories ----------------------------------------


def _shards_stage(folder: str, paths: Sequence[str], layout: Layout, num_buckets: int,
                  run: _Run) -> list[dict[str, Any]]:
    final, partial, done = local._stage(folder, "shards")
    if done:
        return list(local._read_json(os.path.join(final, "buckets.json")))
    os.makedirs(partial, exist_ok=True)
    validation = local._read_users(folder, "validation")
    sample = local._read_users(folder, "sample")
    place = run.place("shards")
    _fetch_buckets(place, partial, num_buckets)  # a stopped run's staged buckets
    finished = {b for b in range(num_buckets) if os.path.exists(_marker(partial, b))}
    if len(finished) < num_buckets:  # else every bucket is there: no shard read again
        with run.pipeline() as pipeline:
            _ = (pipeline
                 | "Shards" >> beam.Create(list(enumerate(paths)))
                 | "Spread shards" >> beam.Reshuffle()
                 | "Bucket rows" >> beam.FlatMap(_bucketed_rows, layout, num_buckets, finished)
                 | "Group buckets" >> beam.GroupByKey()
                 | "Write buckets" >> beam.Map(_write_bucket, layout, partial, place,
                                               validation, sample))
        _fetch_buckets(place, partial, num_buckets)
    stats = [local._read_json(_marker(partial, b)) for b in range(num_buckets)
             if os.path.exists(_marker(partial, b))]
    if not stats:
        raise invalid_argument("source", "hold at least one event",
                               f"{len(paths)} shard(s) without a row")
    local._merge_validation(partial, stats)
    write_json(os.path.join(partial, "buckets.json"), stats)
    local._finish(partial, final)
    return stats


def _marker(partial: str, bucket: int) -> str:
    return os.path.join(partial, _marker_name(bucket))


def _marker_name(bucket: int) -> str:
    return f"bucket-{bucket:05d}.json"


def _fetch_buckets(place: str | None, partial: str, num_buckets: int) -> None:
    """Copies the buckets the workers finished in ``place`` into ``partial``: each
    bucket's files, then its marker (so a bucket without a marker is never used)."""
    if place is None:
        return
    for bucket in range(num_buckets):
        remote = FileSystems.join(place, _marker_name(bucket))
        if os.path.exists(_marker(partial, bucket)) or not FileSystems.exists(remote):
            continue
        with FileSystems.open(remote, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            stats = json.load(f)
        for name in stats["files"].values():
            target = os.path.join(partial, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            download(FileSystems.join(place, *name.split("/")), target)
        write_json(_marker(partial, bucket), stats)


def _bucketed_rows(shard: tuple[int, str], layout: Layout, num_buckets: int,
                   finished: set[int]) -> Iterator[tuple[int, Any]]:
    """A shard's rows normalised as ``features.prepare`` spills them, keyed by bucket.

    The log position is (shard index, row in the shard): it orders ties as the
    files do, as ``features.prepare``'s running row number does.
    """
    pa = _pyarrow()
    index, path = shard
    row = index * _SHARD_ROWS
    with local_copy(path) as copy:
        for chunk in _source_chunks(copy, layout):
            table = _normalise(chunk, layout, path, row)
            row += table.num_rows
            buckets = hash_ids(table.column(layout.user_id)) % np.uint64(num_buckets)
            order = np.argsort(buckets, kind="stable")
            bounds = np.searchsorted(buckets[order], np.arange(num_buckets + 1))
            table = table.take(pa.array(order))
            for bucket in np.flatnonzero(np.diff(bounds)).tolist():
                if bucket not in finished:
                    start, end = int(bounds[bucket]), int(bounds[bucket + 1])
                    yield bucket, table.slice(start, end - start)


def _write_bucket(group: tuple[int, Iterable[Any]], layout: Layout, partial: str,
                  place: str | None, validation: Any, sample: Any) -> int:
    """One bucket sorted and written by ``write_bucket``; its marker last."""
    pa = _pyarrow()
    bucket, tables = group
    with tempfile.TemporaryDirectory(prefix="tfrs_kit_beam_bucket_") as spilled:
        spill_file = os.path.join(spilled, "bucket.arrow")
        writer = None
        try:
            for table in tables:
                if writer is None:
                    writer = pa.ipc.new_stream(spill_file, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        with _written(partial, place, last=_marker_name(bucket)) as folder:
            stats = write_bucket(spill_file, bucket, layout, folder, validation, sample)
            write_json(_marker(folder, bucket), stats)
    return bucket


def _remove(place: str) -> None:
    """Deletes the staging folder's files (object stores have no folders to delete)."""
    found = FileSystems.match([FileSystems.join(place, "**")])[0].metadata_list
    if found:
        FileSystems.delete([m.path for m in found])
