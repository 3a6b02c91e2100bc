"""Tables from files: Parquet, CSV and TFRecord (``tf.train.Example``) shards.

Wherever a table goes in, a path, a glob or a list of paths and globs may go in
instead; ``_table.to_table`` reads them with :func:`read_table`, and a pipeline that
must not hold the whole log reads them with :func:`iter_tables`, chunk by chunk.

Columns follow the in-memory conventions of ``_table``: strings are ``object``
arrays of ``str``, integers ``int64``, floats as stored (``float32`` or
``float64``; an integer column with missing values becomes ``float64`` with NaN,
as pandas reads it), and list columns ``object`` arrays of 1-D arrays (a missing
list is an empty one). Shards must agree on their columns and kinds; integers in
one shard and floats in another are read as floats everywhere.

Parquet and CSV are read by ``pyarrow`` (the ``tfrs-kit[parquet]`` extra), TFRecord
by TensorFlow. The kind of a TFRecord feature is that of its first records: one
value in each of them makes a scalar column, anything else a list column.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tfrs_kit._errors import missing_column
from tfrs_kit._progress import Progress
from tfrs_kit.data._source import FORMATS, fail, is_files, resolve, suffix_format

__all__ = ["FORMATS", "counts_series", "estimated_rows", "is_files", "iter_arrow", "iter_records",
           "iter_tables",
           "read_table", "resolve", "schema"]

Table = dict[str, np.ndarray]
_TFRECORD_SAMPLE = 100  # records whose features decide a TFRecord shard's schema
_INSTALL_HINT = (
    "Reading Parquet and CSV files needs pyarrow: pip install 'tfrs-kit[parquet]'."
)


_BYTES_PER_ROW = 40  # a CSV or TFRecord row, to guess a log's length from its size


def estimated_rows(paths: Sequence[str]) -> int:
    """The rows of the shards: exact for Parquet (its footers), else guessed from the size."""
    rows = 0
    for path in paths:
        if suffix_format(path, "paths") == "parquet":
            rows += _pyarrow().parquet.ParquetFile(path).metadata.num_rows
        else:
            rows += os.path.getsize(path) // _BYTES_PER_ROW
    return rows


# --- schemas -------------------------------------------------------------------------------


def schema(data: Any, *, argument: str = "data",
           columns: Sequence[str] | None = None) -> dict[str, str]:
    """The columns of the shards ``data`` names and their kinds, checked across shards.

    Kinds: ``"string"``, ``"int"``, ``"float"``, ``"bool"``, ``"timestamp"``,
    ``"null"`` (no value at all) and ``"list<kind>"``.

    Raises:
        ValueError: The shards differ in their columns or kinds, or one lacks a
            requested column (the message names the shards and the column).
    """
    paths = resolve(data, argument=argument)
    return _unify(paths, [_file_schema(p, argument) for p in paths], columns, argument)


def _file_schema(path: str, argument: str, *, opened: Any = None) -> dict[str, str]:
    """The columns and kinds of the shard ``path`` (read from ``opened``, a file object
    on it, if given: a Parquet or CSV shard on another file system)."""
    fmt = suffix_format(path, argument)
    if fmt == "tfrecord":
        return _tfrecord_schema(path, argument)
    pa = _pyarrow()
    source = path if opened is None else opened
    try:
        if fmt == "parquet":
            arrow_schema = pa.parquet.ParquetFile(source).schema_arrow
        else:
            with pa.csv.open_csv(source, convert_options=_csv_convert()) as reader:
                arrow_schema = reader.schema
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, fmt, error, argument) from None
    return {field.name: _arrow_kind(field.type) for field in arrow_schema}


def _arrow_kind(arrow_type: Any) -> str:
    pa = _pyarrow()
    types = pa.types
    if types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if types.is_list(arrow_type) or types.is_large_list(arrow_type) or \
            types.is_fixed_size_list(arrow_type):
        return f"list<{_arrow_kind(arrow_type.value_type)}>"
    for kind, test in (("string", types.is_string), ("string", types.is_large_string),
                       ("string", types.is_binary), ("string", types.is_large_binary),
                       ("bool", types.is_boolean), ("int", types.is_integer),
                       ("float", types.is_floating), ("timestamp", types.is_timestamp),
                       ("timestamp", types.is_date), ("null", types.is_null)):
        if test(arrow_type):
            return kind
    return str(arrow_type)


def _merge_kinds(a: str, b: str) -> str | None:
    """The kind two shards' kinds read as together, or None if they cannot mix."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    if a.startswith("list<") and b.startswith("list<"):
        inner = _merge_kinds(a[5:-1], b[5:-1])
        return None if inner is None else f"list<{inner}>"
    return None


def _unify(paths: Sequence[str], schemas: Sequence[Mapping[str, str]],
           columns: Sequence[str] | None, argument: str,
           settings: Mapping[str, str] | None = None) -> dict[str, str]:
    first = schemas[0]
    wanted = list(columns) if columns is not None else list(first)
    for column in wanted:
        lacking = [i for i, s in enumerate(schemas) if column not in s]
        if len(lacking) == len(schemas):
            raise missing_column(argument, column, first, setting=(settings or {}).get(column))
        if lacking:
            other = next(i for i in range(len(schemas)) if i not in lacking)
            raise fail(argument, "name shards that all have the columns read",
                        f"the shard {paths[lacking[0]]!r} lacks the column {column!r} "
                        f"(columns {sorted(schemas[lacking[0]])}), which {paths[other]!r} has",
                        "Rewrite that shard with the column, or leave it out.")
    if columns is None:
        for path, shard in zip(paths, schemas, strict=True):
            extra = sorted(set(shard) - set(first))
            if extra:
                raise fail(argument, "name shards with one schema",
                            f"the shard {path!r} has the column {extra[0]!r}, which "
                            f"{paths[0]!r} lacks", "Rewrite the shards with the same columns.")
    kinds = {}
    for column in wanted:
        kind = first[column]
        for index, shard in enumerate(schemas):
            merged = _merge_kinds(kind, shard[column])
            if merged is None:
                raise fail(argument, "name shards with one schema",
                            f"the column {column!r} holds {first[column]} values in "
                            f"{paths[0]!r} but {shard[column]} values in {paths[index]!r}",
                            "Rewrite the shards with one type per column.")
            kind = merged
        kinds[column] = kind
    return kinds


# --- reading -------------------------------------------------------------------------------


def read_table(data: Any, *, argument: str = "data", columns: Iterable[str] | None = None,
               settings: Mapping[str, str] | None = None, verbose: Any = "auto") -> Table:
    """All rows of the shards ``data`` names, only the ``columns`` asked for.

    Args:
        data: A path, a glob, a directory of shards, or a list of them.
        argument: The argument's name, for error messages.
        columns: The columns to read (Parquet and CSV read nothing else); ``None``: all.
        settings: As in ``_table.to_table``: the keyword argument that named a column,
            for the error when no shard has it.
        verbose: Progress over the shards: ``"auto"`` (100 MB of files or more),
            ``True`` or ``False``.

    Returns:
        A dict of equal-length NumPy arrays, in the in-memory conventions.
    """
    chunks = list(iter_tables(data, argument=argument, columns=columns, rows_per_chunk=None,
                              settings=settings, verbose=verbose))
    if len(chunks) == 1:
        return chunks[0]
    return {name: _concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    if parts[0].dtype == object:  # keeps an object column of arrays one array per row
        out = np.empty(sum(len(p) for p in parts), dtype=object)
        start = 0
        for part in parts:
            out[start:start + len(part)] = part
            start += len(part)
        return out
    return np.concatenate(parts)


def iter_tables(data: Any, *, argument: str = "data", columns: Iterable[str] | None = None,
                rows_per_chunk: int | None = 65536, settings: Mapping[str, str] | None = None,
                verbose: Any = False,
                keep_arrow: Callable[[str, str], bool] | None = None) -> Iterator[Table]:
    """The rows of the shards ``data`` names, as tables of at most ``rows_per_chunk`` rows.

    Shards are read in :func:`resolve`'s order, one after the other, so memory is
    that of one chunk. A chunk never spans two shards. ``rows_per_chunk=None`` reads
    each shard whole. Of Parquet and CSV shards, the columns for which
    ``keep_arrow(name, kind)`` holds stay one ``pyarrow`` array each (typed as
    :func:`iter_arrow` types them), for readers that count them without a Python
    object per value.

    Raises:
        FileNotFoundError, ValueError: As :func:`resolve` and :func:`schema`; a
            shard that cannot be read (corrupt, a bad CSV row) is named with the
            reason (for CSV, the line).
    """
    paths = resolve(data, argument=argument)
    wanted = list(columns) if columns is not None else None
    kinds = _unify(paths, [_file_schema(p, argument) for p in paths], wanted, argument,
                   settings)
    size = sum(os.path.getsize(p) for p in paths) // 100
    with Progress(len(paths), description=f"Reading {len(paths)} shard(s)", verbose=verbose,
                  size=size) as progress:
        for path in paths:
            yield from _read_file(path, kinds, rows_per_chunk, argument, keep_arrow)
            progress.update()


def _read_file(path: str, kinds: Mapping[str, str], rows: int | None, argument: str,
               keep_arrow: Callable[[str, str], bool] | None = None) -> Iterator[Table]:
    fmt = suffix_format(path, argument)
    if fmt == "tfrecord":
        yield from _read_tfrecord(path, kinds, rows, argument)
        return
    arrow = {name for name, kind in kinds.items() if keep_arrow and keep_arrow(name, kind)}
    types = {name: _arrow_type(kinds[name], argument, name) for name in arrow}
    for batch in _arrow_batches(path, fmt, kinds, rows, argument):
        yield {name: _conform(batch.column(name), types[name]) if name in arrow
               else _column(batch.column(name), kinds[name]) for name in kinds}


def _arrow_batches(path: str, fmt: str, kinds: Mapping[str, str], rows: int | None,
                   argument: str) -> Iterator[Any]:
    """A Parquet or CSV shard's Arrow tables of ``rows`` rows; errors name the shard."""
    pa = _pyarrow()
    try:
        if fmt == "parquet":
            yield from _parquet_batches(path, list(kinds), rows)
        else:
            yield from _csv_batches(path, kinds, rows)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, fmt, error, argument) from None


def iter_arrow(path: str, kinds: Mapping[str, str], *, argument: str = "data",
               rows_per_chunk: int = 65536) -> Iterator[Any]:
    """One Parquet or CSV shard's rows as ``pyarrow.Table`` chunks, no Python object per value.

    The streaming counterpart of :func:`iter_tables` for readers that stay in
    Arrow: only the columns of ``kinds`` (as :func:`schema` unified them over all
    shards), each of one Arrow type per kind whatever the shard stored, so chunks
    of different shards concatenate: ``string`` (dictionaries decoded, binary as
    UTF-8), ``int64``, ``float64``, ``bool`` and ``list`` of these (a missing list
    is an empty one). TFRecord shards: :func:`iter_records`.

    Raises:
        ValueError: As :func:`iter_tables` for a shard that cannot be read, or a
            kind with no Arrow type here (timestamps, a column with no value).
    """
    types = {name: _arrow_type(kind, argument, name) for name, kind in kinds.items()}
    pa = _pyarrow()
    fmt = suffix_format(path, argument)
    for batch in _arrow_batches(path, fmt, kinds, rows_per_chunk, argument):
        yield pa.table({name: _conform(batch.column(name), types[name]) for name in kinds})


def _arrow_type(kind: str, argument: str, name: str) -> Any:
    pa = _pyarrow()
    plain = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(),
             "bool": pa.bool_()}
    inner = kind[5:-1] if kind.startswith("list<") else kind
    if inner not in plain:
        raise fail(f"{argument}[{name!r}]", "hold strings, numbers or lists of them to be "
                    "streamed", f"{kind} values", "Convert the column when writing the shards.")
    return pa.list_(plain[inner]) if inner != kind else plain[inner]


def _conform(column: Any, arrow_type: Any) -> Any:
    """A column as one Arrow array of ``arrow_type`` (missing lists empty)."""
    pa = _pyarrow()
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.type != arrow_type:  # decodes dictionaries, widens ints, lists any list
        array = array.cast(arrow_type, safe=False)
    if pa.types.is_list(arrow_type) and array.null_count:
        array = pa.ListArray.from_arrays(array.offsets, array.values)  # null lists: empty
    return array


def _parquet_batches(path: str, columns: list[str], rows: int | None) -> Iterator[Any]:
    pa = _pyarrow()
    if rows is None:
        yield pa.parquet.read_table(path, columns=columns)
        return
    # pre_buffer=False: with Arrow's default the reader keeps every row group it has
    # read until it is closed (~90 B per row of a training shard: a whole shard per
    # open reader), so memory grew with the shard, not the chunk.
    with pa.parquet.ParquetFile(path, pre_buffer=False) as shard:
        yield from _rechunk(shard.iter_batches(batch_size=rows, columns=columns), rows)


def _csv_batches(path: str, kinds: Mapping[str, str], rows: int | None) -> Iterator[Any]:
    pa = _pyarrow()
    types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(),
             "bool": pa.bool_()}
    options = _csv_convert(include_columns=list(kinds),
                           column_types={n: types[k] for n, k in kinds.items() if k in types})
    with pa.csv.open_csv(path, convert_options=options) as reader:
        yield from _rechunk(reader, rows)


def _csv_convert(**options: Any) -> Any:
    # Empty fields are missing values in every column, as pandas.read_csv reads them.
    return _pyarrow().csv.ConvertOptions(strings_can_be_null=True, **options)


def _rechunk(batches: Iterable[Any], rows: int | None) -> Iterator[Any]:
    """Arrow record batches regrouped into tables of exactly ``rows`` rows (the last fewer)."""
    pa = _pyarrow()
    pending: list[Any] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while rows is not None and count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


def _column(array: Any, kind: str) -> np.ndarray:
    """An Arrow column as a NumPy column in the in-memory conventions."""
    pa = _pyarrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if kind.startswith("list<"):
        return _lists(array, kind[5:-1])
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        array = array.cast(pa.string())
    values = array.to_numpy(zero_copy_only=False)
    if kind == "int" and values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if kind == "float" and values.dtype.kind in "iu":
        return values.astype(np.float64)
    if kind == "string" and values.dtype != object:
        return values.astype(object)
    return values


def _lists(array: Any, inner: str) -> np.ndarray:
    pa = _pyarrow()
    if pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    offsets = array.offsets.to_numpy().astype(np.int64)
    flat = _column(array.values.slice(offsets[0], offsets[-1] - offsets[0]), inner)
    return _split(flat, offsets - offsets[0])


def _split(flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One array per row from flat values and row offsets (``len(offsets) = rows + 1``)."""
    rows = np.empty(len(offsets) - 1, dtype=object)
    for i, part in enumerate(np.split(flat, offsets[1:-1])):
        rows[i] = part
    return rows


def _unreadable(path: str, fmt: str, error: BaseException, argument: str) -> Exception:
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\].*", "", str(error)).strip()
    detail = text.splitlines()[0] if text else type(error).__name__
    if fmt == "csv":
        line = _bad_csv_line(path)
        if line is not None:
            return fail(argument, "name readable CSV files (one value per column on every "
                         "line)", f"the shard {path!r}, line {line[0]}: {line[1]}",
                         "Fix or drop that line.")
    names = {"parquet": "Parquet", "csv": "CSV", "tfrecord": "TFRecord"}
    return fail(argument, f"name readable {names[fmt]} files", f"the shard {path!r}, "
                 f"which cannot be read ({detail})", "Rewrite or remove that shard.")


def _bad_csv_line(path: str) -> tuple[int, str] | None:
    """The first line whose number of fields differs from the header's, and why."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for fields in reader:
                if len(fields) != len(header) and fields:
                    return reader.line_num, (f"{len(fields)} fields where the header has "
                                             f"{len(header)}: {','.join(fields)[:80]!r}")
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return pyarrow


# --- TFRecord ------------------------------------------------------------------------------

_TF_KINDS = {"bytes_list": "string", "int64_list": "int", "float_list": "float"}


def _tfrecord_schema(path: str, argument: str) -> dict[str, str]:
    import tensorflow as tf

    kinds: dict[str, str] = {}
    lists: set[str] = set()
    try:
        for count, raw in enumerate(tf.data.TFRecordDataset(path).take(_TFRECORD_SAMPLE)):
            example = tf.train.Example.FromString(raw.numpy())
            features = example.features.feature
            for name, feature in features.items():
                which = feature.WhichOneof("kind")
                if which is None:
                    continue
                if len(getattr(feature, which).value) != 1 or (count and name not in kinds):
                    lists.add(name)  # several values, or none in an earlier record
                kinds.setdefault(name, _TF_KINDS[which])
            lists.update(set(kinds) - set(features))
    except (tf.errors.OpError, ValueError) as error:
        raise _unreadable(path, "tfrecord", error, argument) from None
    return {name: f"list<{kind}>" if name in lists else kind
            for name, kind in sorted(kinds.items())}


def _tfrecord_batches(path: str, kinds: Mapping[str, str], rows: int | None,
                      argument: str) -> Iterator[Any]:
    """A TFRecord shard's records parsed ``rows`` at a time: ``{name: RaggedTensor}``.

    TensorFlow ends a file cut inside a record's header without an error, so the
    records' sizes are summed and must reach the end of the file.
    """
    import tensorflow as tf

    dtypes = {"string": tf.string, "int": tf.int64, "float": tf.float32}
    spec = {name: tf.io.RaggedFeature(dtypes[kind.removeprefix("list<").rstrip(">")])
            for name, kind in kinds.items()}
    dataset = tf.data.TFRecordDataset(path).batch(rows or 1 << 20)
    # A record on disk: its length (8 bytes), two CRCs (4 bytes each) and its data.
    dataset = dataset.map(lambda records: (tf.io.parse_example(records, spec), tf.reduce_sum(
        tf.strings.length(records, unit="BYTE") + 16, axis=0)))
    chunks: Iterator[Any] = iter(dataset)
    read = 0
    while True:
        try:
            batch, record_bytes = next(chunks)
        except StopIteration:
            break
        except tf.errors.OpError as error:
            raise _unreadable(path, "tfrecord", error, argument) from None
        read += int(record_bytes)
        if kinds:
            yield batch
    size = os.path.getsize(path)
    if read != size:
        raise _unreadable(path, "tfrecord", ValueError(
            f"truncated: its whole records end at byte {read:,} of {size:,}"), argument)


def _read_tfrecord(path: str, kinds: Mapping[str, str], rows: int | None,
                   argument: str) -> Iterator[Table]:
    for batch in _tfrecord_batches(path, kinds, rows, argument):
        yield {name: _tfrecord_column(path, name, batch[name], kinds[name], argument)
               for name in kinds}


def iter_records(path: str, kinds: Mapping[str, str], *, argument: str = "data",
                 rows_per_chunk: int = 65536) -> Iterator[dict[str, Any]]:
    """One TFRecord shard's rows as tensors, ``rows_per_chunk`` records at a time.

    The streaming counterpart of :func:`iter_tables` for TFRecord (no pyarrow, no
    Python object per value): only the features of ``kinds``, a ``[rows]`` tensor
    per scalar kind and a ``[rows, None]`` ragged one per list kind, of strings,
    int64 or float32.

    Raises:
        ValueError: As :func:`iter_tables`: a shard that cannot be read, or a scalar
            feature without exactly one value in a record.
    """
    for batch in _tfrecord_batches(path, kinds, rows_per_chunk, argument):
        chunk = {}
        for name, kind in kinds.items():
            ragged = batch[name]
            if not kind.startswith("list<"):
                _check_one_value(path, name, ragged.row_lengths().numpy(), argument)
                ragged = ragged.flat_values
            chunk[name] = ragged
        yield chunk


def _check_one_value(path: str, name: str, lengths: np.ndarray, argument: str) -> None:
    if np.any(lengths != 1):
        row = int(np.flatnonzero(lengths != 1)[0])
        raise fail(argument, f"name TFRecord shards whose feature {name!r} holds one value "
                    "per record, as their first records do",
                    f"{int(lengths[row])} values in a record of the shard {path!r}",
                    "Write it as a list in every record (or one value in every record).")


def _tfrecord_column(path: str, name: str, ragged: Any, kind: str, argument: str) -> np.ndarray:
    flat = ragged.flat_values.numpy()
    if flat.dtype == object:
        flat = np.array([v.decode("utf-8") for v in flat], dtype=object)
    elif kind == "float" or kind == "list<float>":
        flat = flat.astype(np.float32, copy=False)
    offsets = ragged.row_splits.numpy().astype(np.int64)
    if kind.startswith("list<"):
        return _split(flat, offsets)
    _check_one_value(path, name, np.diff(offsets), argument)
    return flat


def counts_series(counted: Any) -> Any:
    """An Arrow ``value_counts`` result (a struct array of the distinct values and
    their counts) as a pandas Series of int64 counts indexed by the values; strings
    stay in Arrow's buffers, not a Python object per value."""
    import pandas as pd

    values = counted.field(0)
    index = values.to_numpy() if str(values.type) == "int64" else values.to_pandas()
    return pd.Series(counted.field(1).to_numpy().astype(np.int64), index=index, name="count")
