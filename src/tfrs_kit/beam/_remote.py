"""Shards and work files on any of Beam's file systems (``gs://``, ``s3://``, ``hdfs://`` ...).

A runner's workers (Dataflow's, or a cluster's without a shared mount) cannot read the
driver's disk, nor it theirs. So a source on a remote file system is listed and
described by the driver through Beam's ``FileSystems`` (its footers and first rows
only), each shard is copied whole to the worker that reads it, and what the workers
write goes to a *staging* folder on such a file system, from which the driver copies it
into the local work directory, a bucket at a time, its marker last. Local paths pass
through unchanged: a cluster with a shared mount reads and writes them directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfrs_kit.data._files import _BYTES_PER_ROW, _file_schema, _pyarrow
from tfrs_kit.data._source import FORMATS, fail, is_url, suffix_format
from tfrs_kit.data._source import resolve as resolve_local

__all__ = ["download", "local_copy", "resolve", "shard_files", "upload"]

_COPY_BYTES = 16 << 20


def resolve(source: Any, *, argument: str = "source") -> list[str]:
    """The shards ``source`` names, as :func:`tfrs_kit.data.resolve` lists them, on any
    of Beam's file systems: globs expanded, a folder (prefix) standing for the shards
    under it with a known suffix, except hidden ones and those starting with ``_``."""
    if not is_url(source):
        return resolve_local(source, argument=argument)
    entries = [source] if isinstance(source, str) else source
    local = [e for e in entries if not is_url(e)]
    if local:
        raise fail(argument, "name shards on one file system", f"{local[0]!r} beside "
                   f"{next(e for e in entries if is_url(e))!r}",
                   "Copy the shards to one place first.")
    found: set[str] = set()
    for entry in entries:
        found.update(_expand(entry, argument))
    paths = sorted(found)
    formats = {suffix_format(path, argument) for path in paths}
    if len(formats) > 1:
        raise fail(argument, "name shards of one format", ", ".join(sorted(formats)),
                   "Convert them to one format, or read each format separately.")
    return paths


def _expand(entry: str, argument: str) -> list[str]:
    if not any(c in entry for c in "*?[") and FileSystems.exists(entry):
        return [entry]
    pattern = entry if any(c in entry for c in "*?[") else entry.rstrip("/") + "/**"
    matched = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    shards = [p for p in matched if os.path.splitext(p)[1].lower() in FORMATS
              and not os.path.basename(p).startswith(("_", "."))]
    if not shards:
        raise fail(argument, "name existing files", f"{argument}={entry!r}, which names "
                   "no shard", "Check the path (Beam's FileSystems.match found "
                   f"{len(matched)} file(s) there, none a Parquet, CSV or TFRecord shard).",
                   FileNotFoundError)
    return shards


def shard_files(source: Any) -> Any:
    """How the driver lists and reads ``source``'s shards: through Beam's ``FileSystems``
    when they are remote, ``None`` (the local file system's) otherwise."""
    from tfrs_kit.features._prepare import ShardFiles

    if not is_url(source):
        return None
    return ShardFiles(resolve=resolve, schema=_schema, rows=_rows, fingerprint=_fingerprint,
                      local=False)


def _schema(path: str, argument: str) -> dict[str, str]:
    """A remote shard's columns and kinds: a Parquet footer or a CSV's first block, read
    through ``FileSystems``; a TFRecord shard through TensorFlow's own file systems."""
    if suffix_format(path, argument) == "tfrecord":
        return _file_schema(path, argument)
    with _open(path) as file:
        return _file_schema(path, argument, opened=file)


def _rows(paths: Sequence[str]) -> int:
    """The rows of remote shards: exact for Parquet (its footers), else guessed from size."""
    rows = 0
    for path in paths:
        if suffix_format(path, "source") == "parquet":
            with _open(path) as file:
                rows += _pyarrow().parquet.ParquetFile(file).metadata.num_rows
        else:
            rows += FileSystems.match([path])[0].metadata_list[0].size_in_bytes // _BYTES_PER_ROW
    return rows


def _fingerprint(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Each remote shard's path, size and modification time, as ``FileSystems`` lists them."""
    out = []
    for path in sorted(paths):
        info = FileSystems.match([path])[0].metadata_list[0]
        out.append({"path": path, "size": int(info.size_in_bytes),
                    "mtime_ns": int(info.last_updated_in_seconds * 1e9)})
    return out


def _open(path: str) -> Any:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """``path`` itself if local; else a copy of the remote file in a temporary folder,
    removed on exit (a worker reads a whole shard, with the kit's own readers)."""
    if not is_url(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tfrs_kit_shard_") as folder:
        copy = os.path.join(folder, os.path.basename(path))
        download(path, copy)
        yield copy


def download(remote: str, local: str) -> None:
    """Copies ``remote`` to ``local`` byte for byte (no decompression), through a
    temporary name: ``local`` exists only when complete."""
    partial = f"{local}.incomplete"
    with _open(remote) as source, open(partial, "wb") as target:
        shutil.copyfileobj(source, target, _COPY_BYTES)
    os.replace(partial, local)


def upload(local: str, remote: str) -> None:
    """Copies ``local`` to ``remote`` byte for byte (a remote object appears whole when
    closed, as on GCS and S3; a local target is renamed into place when complete)."""
    target = remote if is_url(remote) else f"{remote}.incomplete"
    with open(local, "rb") as source, FileSystems.create(
            target, compression_type=CompressionTypes.UNCOMPRESSED) as sink:
        shutil.copyfileobj(source, sink, _COPY_BYTES)
    if target != remote:
        os.replace(target, remote)
