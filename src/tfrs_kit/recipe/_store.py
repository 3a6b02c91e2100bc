"""The versioned folder a Recipe saves to: numbered versions, the ``latest`` pointer, a lock.

::

    DIR/
      latest              the version served and loaded by default: "2\\n"
      .lock               held (``fcntl.flock``) by the one process writing DIR
      versions/
        1/  2/            complete versions (``manifest.json`` in each, written last)
        .tmp-3-<pid>/     a version being written (or left by a killed writer: removed)

A version is written under a temporary name, its files flushed to disk, and renamed
into place whole; ``latest`` moves only afterwards, by ``os.replace`` of a flushed
temporary file. A process killed at any point leaves the previous version loadable.
The layout matches what ``tfrs-kit serve`` watches (``DIR/versions/<n>/index/``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from tfrs_kit._errors import invalid_argument

__all__ = ["LATEST", "MANIFEST", "VERSIONS", "Version", "commit", "complete_versions",
           "foreign_files", "locked", "manifest_of", "not_saved", "now", "read_arrays",
           "read_latest", "rollback", "versions", "write_latest"]

LATEST = "latest"
VERSIONS = "versions"
MANIFEST = "manifest.json"  # written last: its presence marks a complete version
LOCK = ".lock"
_HELD: set[tuple[str, int]] = set()  # (folder, thread) pairs holding the lock
_TEMPORARY = ".tmp-"
_T = TypeVar("_T")


class Version(NamedTuple):
    """One saved version: its number, when it was saved (UTC, ISO 8601) and its
    metrics: a fit's validation score by metric name (``{"ndcg@10": ...}``; ``{}``
    without a validation slice), an update's guard scores of this version and of the
    one before on the same held-out events (``{"guard ndcg@10": ...,
    "guard ndcg@10 before": ...}``; ``{}`` without a holdout)."""

    number: int
    created: str
    metrics: dict[str, float]


def read_latest(root: Path) -> int | None:
    """The number in ``root/latest``; ``None`` without one.

    Raises:
        ValueError: The file does not hold a whole number from 1 up.
    """
    try:
        text = (root / LATEST).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise invalid_argument(str(root / LATEST), "be readable ASCII text",
                               str(error)) from error
    if not text.isdigit() or int(text) < 1:
        raise invalid_argument(str(root / LATEST), "hold a version number from 1 up", text,
                               hint="Write the number of a folder in versions/, or run "
                               "`tfrs-kit rollback DIR --to N`.")
    return int(text)


def write_latest(root: Path, number: int) -> None:
    """Points ``root/latest`` at ``number`` atomically: a flushed temporary file, replaced."""
    temporary = root / f"{LATEST}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{int(number)}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, root / LATEST)
    _sync_directory(root)


def complete_versions(root: Path) -> list[int]:
    """The numbers of the complete versions in ``root/versions``, in order."""
    folder = root / VERSIONS
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir()
                  if p.name.isdigit() and (p / MANIFEST).is_file())


def versions(path: str | os.PathLike[str]) -> list[Version]:
    """Every complete version saved in ``path``, oldest first.

    Args:
        path: A folder :meth:`tfrs_kit.Recipe.save` wrote.

    Returns:
        ``Version(number, created, metrics)`` tuples (:class:`Version` says what the
        metrics of a fit and of an update are).

    Raises:
        ValueError: ``path`` holds no saved Recipe.
    """
    root = Path(path)
    numbers = complete_versions(root)
    if not numbers:
        raise not_saved("path", root)
    result = []
    for number in numbers:
        manifest = manifest_of(root, number)
        result.append(Version(number, str(manifest.get("created", "")),
                              dict(manifest.get("metrics", {}))))
    return result


def rollback(path: str | os.PathLike[str], to: int | None = None, *,
             wait: float = 60.0) -> int:
    """Points ``path/latest`` at an earlier version (atomically); returns its number.

    Args:
        path: A folder :meth:`tfrs_kit.Recipe.save` wrote.
        to: The version to serve and load; default the complete version before the
            one ``latest`` names. Any complete version can be named, a later one too.
        wait: Seconds to wait for a save in progress to finish.

    Raises:
        ValueError: ``path`` holds no saved Recipe, ``to`` names no complete
            version, or there is no version before the latest.
    """
    root = Path(path)
    with locked(root, wait=wait):
        numbers = complete_versions(root)
        if not numbers:
            raise not_saved("path", root)
        current = read_latest(root) or numbers[-1]
        if to is None:
            earlier = [n for n in numbers if n < current]
            if not earlier:
                raise invalid_argument("to", "name a version, as none precedes the latest",
                                       None, hint=f"Latest: {current}; saved: {numbers}.")
            to = earlier[-1]
        if to not in numbers:
            raise invalid_argument("to", "be a complete saved version", to,
                                   hint=f"Saved versions: {numbers}.")
        write_latest(root, to)
    return to


@contextlib.contextmanager
def locked(root: Path, *, wait: float = 60.0) -> Iterator[None]:
    """Holds ``root/.lock`` exclusively: one writer at a time; another waits up to
    ``wait`` seconds, then fails with :class:`TimeoutError` (an ``OSError``).

    The lock is the kernel's (``fcntl.flock``): a killed holder releases it. A thread
    that holds it already (an update saving its version) takes it again at once.
    """
    root.mkdir(parents=True, exist_ok=True)
    key = (os.path.realpath(root), threading.get_ident())
    if key in _HELD:
        yield
        return
    with open(root / LOCK, "a+b") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{root} is locked by another process saving or rolling back a "
                        f"version (waited {wait:g} s). Try again when it is done.") from None
                time.sleep(0.1)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def commit(root: Path) -> Iterator[tuple[int, Path]]:
    """Yields ``(n, folder)``: the next version's number and a temporary folder to
    write it in. When the block ends, the folder is flushed to disk and renamed to
    ``versions/<n>``, then ``latest`` moves to ``n``; an exception removes the folder
    and leaves ``latest`` as it was. The caller holds :func:`locked`."""
    folder = root / VERSIONS
    folder.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)  # under the lock, every temporary folder is a dead writer's
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    number = max(taken, default=0) + 1
    staging = folder / f"{_TEMPORARY}{number}-{os.getpid()}"
    staging.mkdir()
    try:
        yield number, staging
        if not (staging / MANIFEST).is_file():
            raise RuntimeError(f"{MANIFEST} must be written last, before the commit")
        _sync_tree(staging)
        os.rename(staging, folder / str(number))
        _sync_directory(folder)
        write_latest(root, number)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def foreign_files(root: Path) -> list[str]:
    """The names in ``root`` that a saved Recipe's folder does not hold."""
    return sorted(p.name for p in root.iterdir() if p.name not in (LATEST, VERSIONS, LOCK)
                  and not p.name.startswith(f"{LATEST}.tmp"))


def now() -> str:
    """The time a version is saved: UTC, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _remove_leftovers(folder: Path) -> None:
    for path in folder.iterdir():
        if path.name.startswith(_TEMPORARY):
            shutil.rmtree(path, ignore_errors=True)


def _sync_tree(folder: Path) -> None:
    """Flushes every file and folder under ``folder`` to disk (before it is renamed)."""
    for directory, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(directory, name), "rb") as file:
                os.fsync(file.fileno())
        _sync_directory(Path(directory))


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def not_saved(argument: str, root: Path) -> Exception:
    hint = ("It has no versions/<n>/manifest.json: it was not written by Recipe.save "
            "(an index directory from Index.save loads with tk.load_index).")
    return invalid_argument(argument, "be a folder Recipe.save (or `tfrs-kit train "
                            "--export DIR`) wrote", str(root), hint=hint)


def manifest_of(root: Path, number: int) -> dict[str, Any]:
    """The manifest of version ``number``."""
    data: dict[str, Any] = json.loads((root / VERSIONS / str(number) / MANIFEST)
                                      .read_text(encoding="utf-8"))
    return data


def read_arrays(path: Path, parse: Callable[[Any], _T], *, lost: str) -> _T | None:
    """``parse`` of the arrays of the ``.npz`` file at ``path`` (a version's optional
    part), or ``None``: no such file (a version saved before it was written), or one
    ``parse`` cannot read, with a warning that the model loads without ``lost``."""
    if not path.exists():
        return None
    try:
        with np.load(path) as arrays:
            return parse(arrays)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        warnings.warn(f"{path} could not be read ({error}): the model loads without {lost}.",
                      RuntimeWarning, stacklevel=3)
        return None
