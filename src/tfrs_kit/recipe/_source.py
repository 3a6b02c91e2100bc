"""Where a Recipe's log is: in memory, in local shards, or in shards on a remote file system."""

from __future__ import annotations

from typing import Any

from tfrs_kit._errors import invalid_argument
from tfrs_kit.data._files import estimated_rows
from tfrs_kit.data._source import is_files, is_url, resolve

__all__ = ["out_of_core", "shards"]


def out_of_core(train: Any, in_memory_rows: int, *, argument: str = "train") -> bool:
    """Whether ``fit(train)`` takes the out-of-core path: files of more rows than
    ``in_memory_rows``, or on a remote file system (prepared on Beam)."""
    return is_files(train) and (
        is_url(train) or estimated_rows(resolve(train, argument=argument)) > in_memory_rows)


def shards(recipe: Any, train: Any) -> tuple[list[str], int]:
    """The log's shards and rows: local ones listed here, those on a remote file system
    (``gs://`` ...) through Beam's file systems, which then prepare them."""
    if not is_url(train):
        paths = resolve(train, argument="train")
        return paths, estimated_rows(paths)
    if recipe.beam_runner is None:
        raise invalid_argument(
            "beam_runner", "name a Beam runner for a log on a remote file system (it is "
            "prepared there)", None, hint=f"The log: {train!r}. Pass beam_runner="
            "'DataflowRunner' (or 'DirectRunner') and the runner's beam_options.")
    from tfrs_kit.beam._remote import shard_files  # needs the beam extra

    files = shard_files(train)
    paths = files.resolve(train, argument="train")
    return paths, files.rows(paths)
