"""Where a log lives: :class:`Shards` (files on disk) and the rules that name them.

A source names its shards once; every stage (vocabularies, histories, training,
evaluation, index) reads them chunk by chunk from the same object, so nothing asks
for the whole log in memory unless it needs it. A path, a glob or a list of paths
is accepted wherever a :class:`Shards` is, and read the same way.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import pandas as pd
    import tensorflow as tf

__all__ = ["FORMATS", "Shards", "TableLike", "fail", "is_files", "resolve", "suffix_format"]

#: File suffix -> format.
FORMATS: Mapping[str, str] = {
    ".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
    ".tfrecord": "tfrecord", ".tfrecords": "tfrecord",
}
_SUFFIXES = ", ".join(FORMATS)


class Shards:
    """Event shards on disk (Parquet, CSV or TFRecord), named once and read chunk by chunk.

    Passing ``Shards`` instead of a DataFrame tells every stage that the log may not
    fit in memory: it is read shard by shard, only the columns a stage needs. The
    paths are resolved when the object is made (globs expanded, a directory's shards
    listed, sorted), so a typo fails here and not an hour into training.

    Args:
        paths: A path, a glob, a directory of shards, or a list of them. Hidden
            files and names starting with ``_`` (Spark's ``_SUCCESS``) are skipped
            in directories.

    Raises:
        FileNotFoundError: A path does not exist or a glob matches nothing.
        ValueError: A suffix is unknown, or the shards mix formats.

    Example:
        >>> import os, tempfile
        >>> import pandas as pd
        >>> import tfrs_kit as tk
        >>> folder = tempfile.mkdtemp()
        >>> for day in range(2):
        ...     pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}).to_csv(
        ...         os.path.join(folder, f"day-{day}.csv"), index=False)
        >>> source = tk.data.Shards(folder)
        >>> len(source), source.format, source.columns()
        (2, 'csv', {'user_id': 'string', 'item_id': 'string'})
        >>> sum(len(chunk) for chunk in source.chunks(columns=["item_id"]))
        4
    """

    __slots__ = ("paths",)
    paths: tuple[str, ...]

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> None:
        if isinstance(paths, Shards):
            resolved = list(paths.paths)
        elif is_files(paths):
            resolved = resolve(paths, argument="paths")
        else:
            raise fail("paths", "be a path, a glob, a directory or a non-empty list of them",
                       f"{type(paths).__name__} {paths!r}"[:200],
                       "Pass where the shards are, e.g. Shards('logs/*.parquet').", TypeError)
        object.__setattr__(self, "paths", tuple(resolved))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Shards is immutable; make a new one instead of setting {name!r}")

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        first = self.paths[0]
        more = f" and {len(self.paths) - 1} more" if len(self.paths) > 1 else ""
        return f"Shards({first!r}{more})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shards) and other.paths == self.paths

    def __hash__(self) -> int:
        return hash(self.paths)

    @property
    def format(self) -> str:
        """``"parquet"``, ``"csv"`` or ``"tfrecord"``."""
        return suffix_format(self.paths[0], "paths")

    def columns(self) -> dict[str, str]:
        """Each column's kind, checked to agree across shards.

        Kinds: ``"string"``, ``"int"``, ``"float"``, ``"bool"``, ``"timestamp"``,
        ``"null"`` and ``"list<kind>"``.
        """
        from tfrs_kit.data._files import schema

        return schema(self, argument="paths")

    def chunks(self, *, columns: Sequence[str] | None = None,
               rows: int = 65536) -> Iterator[pd.DataFrame]:
        """The rows as DataFrames of at most ``rows`` rows, shard after shard.

        Args:
            columns: The columns to read (Parquet and CSV read nothing else); all if None.
            rows: Rows per chunk at most; a chunk never spans two shards.
        """
        import pandas as pd

        from tfrs_kit.data._files import iter_tables

        for table in iter_tables(self, argument="paths", columns=columns, rows_per_chunk=rows):
            yield pd.DataFrame(table)


def fail(argument: str, rule: str, received: str, hint: str = "",
          error: type = ValueError) -> Exception:
    """The package's error shape, with ``received`` as text (paths are never shortened)."""
    message = f"`{argument}` must {rule}. Received: {received}."
    return error(f"{message} {hint}" if hint else message)


def is_files(data: Any) -> bool:
    """Whether ``data`` names files: :class:`Shards`, a path, a glob, or a non-empty list."""
    if isinstance(data, (str, os.PathLike, Shards)):
        return True
    return (isinstance(data, (list, tuple)) and len(data) > 0
            and all(isinstance(d, (str, os.PathLike)) for d in data))


def resolve(data: Any, *, argument: str = "data") -> list[str]:
    """The shard paths ``data`` names: sorted, globs expanded, a directory's shards listed.

    A directory stands for every file with a known suffix inside it (recursively),
    except hidden ones and those starting with ``_`` (such as Spark's ``_SUCCESS``).

    Raises:
        FileNotFoundError: A path does not exist, a glob matches nothing, or a
            directory holds no shards.
        ValueError: A file's suffix is unknown, or the files mix formats.
    """
    if isinstance(data, Shards):
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
#: (:class:`Shards`, a path, a glob, a directory or a list of them).
TableLike = Union[
    "pd.DataFrame", Mapping[str, Any], "tf.data.Dataset", Shards, str, "os.PathLike[str]",
    Sequence[Union[str, "os.PathLike[str]"]],
]
