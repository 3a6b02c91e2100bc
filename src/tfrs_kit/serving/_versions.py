"""The versioned model folder that the server watches.

::

    DIR/
      latest            the version served: a whole number, e.g. "2" (ASCII, optional newline)
      versions/
        1/index/        an index directory written by Index.save
        2/index/

A writer publishes version ``n`` by writing ``versions/<n>/index/`` completely, then
replacing ``latest`` atomically (write ``latest.tmp``, then ``os.replace``), so a reader
never sees a half-written version nor a half-written pointer. Rolling back is writing an
older number to ``latest``. A plain index directory (``Index.save``) is served as is,
without versions.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> latest_version(folder) is None
True
>>> _ = (folder / "latest").write_text("3\\n")
>>> latest_version(folder), version_path(folder, 3).relative_to(folder).as_posix()
(3, 'versions/3/index')
"""

from __future__ import annotations

import os
from pathlib import Path

from tfrs_kit._errors import invalid_argument

__all__ = ["LATEST", "available_versions", "is_versioned", "latest_version", "version_path",
           "write_latest"]

LATEST = "latest"
VERSIONS = "versions"
INDEX = "index"


def is_versioned(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` has the versioned layout (a ``latest`` file or ``versions/``)."""
    root = Path(directory)
    return (root / LATEST).is_file() or (root / VERSIONS).is_dir()


def latest_version(directory: str | os.PathLike[str]) -> int | None:
    """The version number in ``directory/latest``; ``None`` when there is no such file.

    Raises:
        ValueError: The file does not hold a whole number from 1 up.
    """
    file = Path(directory) / LATEST
    try:
        text = file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise invalid_argument(str(file), "be readable ASCII text", str(error)) from error
    if not text.isdigit() or int(text) < 1:
        raise invalid_argument(str(file), "hold a version number from 1 up (such as 2)", text,
                               hint="Write the number of a folder in versions/.")
    return int(text)


def version_path(directory: str | os.PathLike[str], version: int) -> Path:
    """Where version ``version`` of the model in ``directory`` keeps its index."""
    return Path(directory) / VERSIONS / str(int(version)) / INDEX


def available_versions(directory: str | os.PathLike[str]) -> list[int]:
    """The version numbers with an index folder in ``directory/versions``, ascending."""
    folder = Path(directory) / VERSIONS
    if not folder.is_dir():
        return []
    return sorted(int(entry.name) for entry in folder.iterdir()
                  if entry.name.isdigit() and int(entry.name) >= 1
                  and (entry / INDEX).is_dir())


def write_latest(directory: str | os.PathLike[str], version: int) -> None:
    """Points ``directory/latest`` at ``version``, atomically (for writers and tests)."""
    root = Path(directory)
    temporary = root / f"{LATEST}.tmp"
    temporary.write_text(f"{int(version)}\n", encoding="ascii")
    os.replace(temporary, root / LATEST)
