"""Parquet shards from Beam: one schema for all shards, inferred from the rows.

``beam.io.WriteToParquet`` needs the schema when the pipeline is built, before any
row is seen; here it is inferred from the rows themselves (per batch, then unified:
integers and floats become floats, a column without values takes the others' type),
so every shard has the same schema and the kit's reader accepts them together.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int
from tfrs_kit.beam import _events
from tfrs_kit.beam._events import check_event, check_instance

__all__ = ["WriteParquetShards"]


class WriteParquetShards(beam.PTransform):
    """Writes a ``PCollection`` of rows (dicts) as Parquet shards the kit reads back.

    The shards are ``{file_path_prefix}-00000-of-00016.parquet`` and so on
    (a shard that receives no row is not written), each written under a
    temporary name and renamed when complete. A path on any of Beam's file
    systems works (``gs://bucket/train/part`` on Dataflow). Rows go to shards by
    a hash of their content; the order of rows within and across shards is
    unspecified (training shuffles them). List columns, such as the history
    :class:`AddHistories` adds, are Parquet lists, so ``TwoTowerRetrieval.fit``,
    ``VocabularyBuilder.fit`` and every other entry point read the shards as they
    would the same rows in memory (see *Logs in files*).

    Args:
        file_path_prefix: The shards' path, without the shard number and suffix.
        num_shards: How many shards to spread the rows over.
        schema: A ``pyarrow.Schema`` for the shards; ``None`` infers it from the
            rows (one pass over them before writing).
        row_group_size: Rows per Parquet row group (what a reader reads at once).

    Returns:
        From ``expand``: a ``PCollection`` of the written paths.

    Raises:
        ValueError: ``num_shards`` or ``row_group_size`` is below 1; or, when the
            pipeline runs, a column holds values of several types (strings in one
            row, integers in another).

    Example:
        >>> import apache_beam as beam
        >>> from tfrs_kit.beam import WriteParquetShards
        >>> rows = [{"user_id": "a", "item_id": "x", "history": []}]
        >>> with beam.Pipeline() as pipeline:  # doctest: +SKIP
        ...     pipeline | beam.Create(rows) | WriteParquetShards("train/part", num_shards=4)
    """

    def __init__(self, file_path_prefix: str, *, num_shards: int = 16, schema: Any = None,
                 row_group_size: int = 65_536) -> None:
        super().__init__()
        self.file_path_prefix = check_instance("file_path_prefix", file_path_prefix, str,
                                               "'gs://bucket/train/part'")
        self.num_shards = check_int("num_shards", num_shards, minimum=1)
        self.row_group_size = check_int("row_group_size", row_group_size, minimum=1)
        if schema is not None:
            check_instance("schema", schema, _pyarrow().Schema,
                           "pa.schema([('user_id', pa.string())])")
        self.schema = schema

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        schema: Any = self.schema
        if schema is None:
            schema = beam.pvalue.AsSingleton(
                rows
                | "Batch rows" >> beam.BatchElements(max_batch_size=_events.BATCH_ROWS)
                | "Infer schemas" >> beam.Map(_batch_schema)
                | "Unify schemas" >> beam.CombineGlobally(_unify))
        return (
            rows
            | "Key by shard" >> beam.Map(_keyed_by_shard, self.num_shards)
            | "Group by shard" >> beam.GroupByKey()
            | "Write shards" >> beam.Map(_write_shard, self.file_path_prefix, self.num_shards,
                                         self.row_group_size, schema))


def _pyarrow() -> Any:
    import pyarrow
    import pyarrow.parquet

    return pyarrow


def _keyed_by_shard(row: Any, num_shards: int) -> tuple[int, Any]:
    # A hash of the content, not Python's hash(): the same on every worker and run.
    return zlib.crc32(repr(check_event(row, "rows")).encode("utf-8")) % num_shards, row


def _columns(rows: list[Any]) -> dict[str, list[Any]]:
    names = dict.fromkeys(name for row in rows for name in row)  # in order of appearance
    return {name: [row.get(name) for row in rows] for name in names}


def _batch_schema(rows: list[Any]) -> Any:
    pa = _pyarrow()
    columns = _columns(rows)
    try:
        return pa.Table.from_pydict(columns).schema
    except (pa.ArrowException, TypeError, ValueError):
        for name, values in columns.items():
            try:
                pa.array(values)
            except (pa.ArrowException, TypeError, ValueError) as error:
                types = sorted({type(v).__name__ for v in values if v is not None})
                raise invalid_argument(
                    f"rows[{name!r}]", "hold values of one type that Parquet stores",
                    f"values of the types {types}", error=TypeError,
                    hint=f"Convert the column to one type first ({error}).",
                ) from None
        raise


def _unify(schemas: Iterable[Any]) -> Any:
    pa = _pyarrow()
    found = [schema for schema in schemas if schema is not None]
    if not found:
        return None
    try:
        return pa.unify_schemas(found, promote_options="permissive")
    except (pa.ArrowException, TypeError) as error:
        raise invalid_argument(
            "rows", "hold one type per column in every row", str(error), error=TypeError,
            hint="Convert such a column to one type first.",
        ) from None


def _write_shard(shard: tuple[int, Iterable[Any]], prefix: str, num_shards: int,
                 row_group_size: int, schema: Any) -> str:
    index, rows = shard
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    pa = _pyarrow()
    path = f"{prefix}-{index:05d}-of-{num_shards:05d}.parquet"
    temporary = f"{path}.incomplete"  # no reader's glob or directory listing takes it
    try:
        with (FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED)
              as file, pa.parquet.ParquetWriter(file, schema) as writer):
            for chunk in _chunks(rows, row_group_size):
                writer.write_table(_table(chunk, schema))
    except BaseException:
        FileSystems.delete([temporary])
        raise
    FileSystems.rename([temporary], [path])
    return path


def _table(rows: list[Any], schema: Any) -> Any:
    pa = _pyarrow()
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise invalid_argument(
            "rows", "match the shards' schema", f"a row that does not ({error})",
            error=TypeError, hint=f"Convert such a column to one type first. Schema: {schema}.",
        ) from None


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
