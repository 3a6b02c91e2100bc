"""``tk.data.Shards``: event shards on disk, named once and read chunk by chunk."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tfrs_kit.data._files import iter_tables, schema
from tfrs_kit.data._source import FileSource, fail, is_files, resolve, suffix_format

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Shards"]


class Shards(FileSource):
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
        return schema(self, argument="paths")

    def chunks(self, *, columns: Sequence[str] | None = None,
               rows: int = 65536) -> Iterator[pd.DataFrame]:
        """The rows as DataFrames of at most ``rows`` rows, shard after shard.

        Args:
            columns: The columns to read (Parquet and CSV read nothing else); all if None.
            rows: Rows per chunk at most; a chunk never spans two shards.
        """
        import pandas as pd

        for table in iter_tables(self, argument="paths", columns=columns, rows_per_chunk=rows):
            yield pd.DataFrame(table)
