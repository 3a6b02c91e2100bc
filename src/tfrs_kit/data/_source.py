"""Where a log lives: the rules that turn paths, globs and folders into shard files.

A path, a glob, a folder, a list of them, or a :class:`FileSource` (such as
:class:`~tfrs_kit.data.Shards`) names files; :data:`TableLike` is every kind of log
the entry points accept.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import pandas as pd
    import tensorflow as tf

__all__ = ["FORMATS", "FileSource", "TableLike", "fail", "is_files", "is_url", "resolve",
           "suffix_format"]

#: File suffix -> format.
FORMATS: Mapping[str, str] = {
    ".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
    ".tfrecord": "tfrecord", ".tfrecords": "tfrecord",
}
_SUFFIXES = ", ".join(FORMATS)
_URL = re.compile(r"^[a-zA-Z][-a-zA-Z0-9+.]*://")  # a scheme, as Beam's FileSystems read it


class FileSource:
    """A log named by its files: what :func:`is_files` and :func:`resolve` accept besides
    paths. :class:`~tfrs_kit.data.Shards` is the public one."""

    __slots__ = ()
    paths: tuple[str, ...]


def fail(argument: str, rule: str, received: str, hint: str = "",
          error: type = ValueError) -> Exception:
    """The package's error shape, with ``received`` as text (paths are never shortened)."""
    message = f"`{argument}` must {rule}. Received: {received}."
    return error(f"{message} {hint}" if hint else message)


def is_files(data: Any) -> bool:
    """Whether ``data`` names files: :class:`Shards`, a path, a glob, or a non-empty list."""
    if isinstance(data, (str, os.PathLike, FileSource)):
        return True
    return (isinstance(data, (list, tuple)) and len(data) > 0
            and all(isinstance(d, (str, os.PathLike)) for d in data))


def is_url(data: Any) -> bool:
    """Whether ``data`` names files by URL (``gs://bucket/log/*.parquet``): files on a
    remote file system, which ``tfrs_kit.beam`` reads (the local readers do not)."""
    entries = [data] if isinstance(data, str) else data
    return (isinstance(entries, (list, tuple))
            and any(isinstance(e, str) and _URL.match(e) is not None for e in entries))


def resolve(data: Any, *, argument: str = "data") -> list[str]:
    """The shard paths ``data`` names: sorted, globs expanded, a directory's shards listed.

    A directory stands for every file with a known suffix inside it (recursively),
    except hidden ones and those starting with ``_`` (such as Spark's ``_SUCCESS``).

    Raises:
        FileNotFoundError: A path does not exist, a glob matches nothing, or a
            directory holds no shards.
        ValueError: A file's suffix is unknown, or the files mix formats.
    """
    if isinstance(data, FileSource):
        return list(data.paths)
    entries = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    paths: set[str] = set()
    for entry in entries:
        paths.update(_expand(os.path.expanduser(os.fspath(entry)), argument))
    found = sorted(paths)
    formats = {suffix_format(path, argument) for path in found}
    if len(formats) > 1:
        kinds = {fmt: next(p for p in found if suffix_format(p, argument) == fmt)
                 for fmt in formats}
        raise fail(argument, "name shards of one format",
                   ", ".join(f"{fmt} ({path!r})" for fmt, path in sorted(kinds.items())),
                    "Convert them to one format, or read each format separately.")
    return found


def _expand(entry: str, argument: str) -> list[str]:
    if any(c in entry for c in "*?["):
        matches = [m for m in glob.glob(entry, recursive=True) if os.path.isfile(m)]
        if not matches:
            raise fail(argument, "name existing files", f"{argument}={entry!r}, a pattern "
                        "that matches no file", f"Check the pattern (looked in "
                        f"{os.path.abspath(os.path.dirname(entry) or '.')!r}).",
                        FileNotFoundError)
        return matches
    if os.path.isdir(entry):
        shards = [os.path.join(root, name) for root, dirs, names in os.walk(entry)
                  for name in names if not name.startswith(("_", "."))
                  and _suffix(name) in FORMATS]
        if not shards:
            raise fail(argument, f"name a directory that holds shards ({_SUFFIXES})",
                        f"{argument}={entry!r}, a directory without any", "",
                        FileNotFoundError)
        return shards
    if not os.path.exists(entry):
        raise fail(argument, "name existing files", f"{argument}={entry!r}, which does not "
                    "exist", f"The current directory is {os.getcwd()!r}.", FileNotFoundError)
    return [entry]


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def suffix_format(path: str, argument: str) -> str:
    fmt = FORMATS.get(_suffix(path))
    if fmt is None:
        raise fail(argument, f"name Parquet, CSV or TFRecord files (suffixes {_SUFFIXES})",
                    f"{path!r}", "Rename the file if it holds one of these formats, or "
                    "read it with pandas and pass the DataFrame.")
    return fmt


#: What every entry point accepts as a log or a table: a pandas DataFrame, a mapping of
#: column name to equal-length arrays, a ``tf.data.Dataset`` of feature dicts, or files
#: (:class:`~tfrs_kit.data.Shards`, a path, a glob, a directory or a list of them).
TableLike = Union[
    "pd.DataFrame", Mapping[str, Any], "tf.data.Dataset", FileSource, str, "os.PathLike[str]",
    Sequence[Union[str, "os.PathLike[str]"]],
]
