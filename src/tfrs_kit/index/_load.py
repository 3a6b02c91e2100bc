"""Reading an index directory back: :func:`load_index`.

Every file is checked before it is used, so a partial, edited or foreign
directory fails with an error that names the file and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.index._backends import BACKENDS, import_scann
from tfrs_kit.index._export import (
    FINGERPRINT,
    FORMAT,
    FORMAT_VERSION,
    METADATA,
    SAVED_MODEL,
    VOCABULARIES,
    fingerprint,
    recover,
)
from tfrs_kit.index._index import Index

__all__ = ["load_index"]


def load_index(path: str | os.PathLike[str]) -> Index:
    """Loads an index written by :meth:`Index.save`.

    The loaded index recommends exactly like the saved one; it cannot be saved
    again or refreshed (rebuild it from the model for that).

    Raises:
        FileNotFoundError: ``path`` is missing, is a file, is the
            ``saved_model/`` inside an index, or lacks one of its files.
        ValueError: Its metadata, vocabularies or SavedModel are corrupt, do
            not match each other, or are from an incompatible version.
        ImportError: It is a ScaNN index and ``scann`` is not installed.

    Example:
        >>> index = load_index("no/such/dir")
        Traceback (most recent call last):
        ...
        FileNotFoundError: `path` must be a directory written by Index.save. ...
    """
    root = _index_directory(path)
    metadata = _read_metadata(root / METADATA)
    _check_compatible(metadata)
    if metadata.backend == "scann":
        import_scann()  # registers ScaNN's ops, which the SavedModel calls
    vocabularies = _read_vocabularies(root / VOCABULARIES)
    restored, ids = _read_saved_model(root / SAVED_MODEL, metadata.num_candidates)
    _check_vocabularies(restored, vocabularies, root / VOCABULARIES)
    _check_cascade(restored, metadata, root / SAVED_MODEL)
    return Index(restored, ids=ids, k_max=metadata.k_max, backend=metadata.backend,
                 backend_options=metadata.backend_options, query_specs=metadata.query_specs,
                 id_dtype=metadata.id_dtype, vocabularies=vocabularies,
                 retrieve_k=metadata.retrieve_k)


@dataclasses.dataclass(frozen=True)
class _Metadata:
    """The parts of ``tfrs_kit_index.json`` an index is rebuilt from."""

    format_version: Any
    written_by: Any  # the tfrs_kit version, for error messages
    k_max: int
    num_candidates: int
    query_specs: dict[str, tf.TensorSpec]
    id_dtype: tf.DType
    backend: Any
    backend_options: dict[str, Any]
    retrieve_k: int | None = None  # a cascade's; absent from a retrieval index


def _index_directory(path: str | os.PathLike[str]) -> Path:
    """``path``, once it is a directory holding every file of an index.

    A directory whose export was killed between its two renames is repaired
    first (the previous export moved back in place).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise invalid_argument("path", "be a str or os.PathLike naming a folder", path,
                               error=TypeError)
    root = Path(path)
    if not root.exists():
        root = recover(root) or root
    required = {METADATA: Path.is_file, SAVED_MODEL: Path.is_dir, VOCABULARIES: Path.is_file}
    if root.name == SAVED_MODEL and (root.parent / METADATA).is_file():
        raise invalid_argument(
            "path", "be the index directory written by Index.save, not its SavedModel",
            str(path), hint=f"Pass its parent: load_index({str(root.parent)!r}).",
            error=FileNotFoundError,
        )
    if not root.exists() or root.is_file():
        raise invalid_argument(
            "path", "be a directory written by Index.save", str(path),
            hint="It does not exist." if not root.exists() else "It is a file.",
            error=FileNotFoundError,
        )
    missing = [name for name, check in required.items() if not check(root / name)]
    if missing:
        raise invalid_argument(
            "path", "be a directory written by Index.save", str(path),
            hint=f"It needs {', '.join(required)}; missing: {', '.join(missing)}.",
            error=FileNotFoundError,
        )
    return root


def _read_metadata(metadata_file: Path) -> _Metadata:
    """The metadata file parsed, or a ValueError naming what is wrong with it."""
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}")
        return _Metadata(
            format_version=metadata["format_version"],
            written_by=metadata.get("tfrs_kit_version"),
            k_max=int(metadata["k_max"]),
            num_candidates=int(metadata["num_candidates"]),
            query_specs={
                name: tf.TensorSpec(spec["shape"], tf.as_dtype(spec["dtype"]), name=name)
                for name, spec in metadata["query_features"].items()
            },
            id_dtype=tf.as_dtype(metadata["id_dtype"]),
            backend=metadata["backend"],
            backend_options=dict(metadata["backend_options"]),
            retrieve_k=(None if metadata.get("retrieve_k") is None
                        else int(metadata["retrieve_k"])),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise invalid_argument(
            "path", "hold valid index metadata", str(metadata_file), hint=f"Problem: {error}.",
        ) from error


def _check_compatible(metadata: _Metadata) -> None:
    """Raises a ValueError for another format version or an unknown backend."""
    if metadata.format_version != FORMAT_VERSION:
        raise invalid_argument(
            "path", f"hold an index of format version {FORMAT_VERSION}",
            f"format_version={metadata.format_version} (written by tfrs_kit "
            f"{metadata.written_by})", hint="Export it again with this version.",
        )
    if metadata.backend not in BACKENDS:
        raise invalid_argument(
            "path", f"hold an index of a known backend {sorted(BACKENDS)}",
            f"backend={metadata.backend!r}",
            hint=f"It was written by tfrs_kit {metadata.written_by}.",
        )


def _check_cascade(restored: Any, metadata: _Metadata, directory: Path) -> None:
    """Raises a ValueError when the metadata and the SavedModel disagree on being a cascade.

    A cascade's SavedModel holds its ranker and the ranker's candidate
    outputs; without them it would serve retrieval's order under a cascade's
    name (or fail at the first request), so it is refused at load time.
    """
    has_ranker = all(hasattr(restored, name) for name in ("ranker", "ranker_embeddings"))
    if metadata.retrieve_k is not None and not has_ranker:
        raise invalid_argument(
            "path", "hold the ranker of the cascade its metadata describes", str(directory),
            hint=f"tfrs_kit_index.json records retrieve_k={metadata.retrieve_k} but the "
            "SavedModel has no ranker: it was replaced or copied without its ranker; export "
            "the cascade again.")
    if metadata.retrieve_k is not None and metadata.retrieve_k > metadata.num_candidates:
        raise invalid_argument(
            "path", "hold a retrieve_k no larger than its catalogue", str(directory),
            hint=f"retrieve_k={metadata.retrieve_k}, {metadata.num_candidates} candidates.")


def _read_vocabularies(file: Path) -> Vocabularies:
    try:
        return Vocabularies.load(file)
    except (ValueError, KeyError, TypeError) as error:
        raise invalid_argument(
            "path", "hold valid vocabularies", str(file), hint=f"Problem: {error}",
        ) from error


def _check_vocabularies(restored: Any, vocabularies: Vocabularies, file: Path) -> None:
    """Raises a ValueError when ``vocabularies.json`` is not the one exported with the model."""
    saved = getattr(restored, FINGERPRINT, None)
    if saved is None:
        return  # written before fingerprints: nothing to compare against
    if saved.numpy().decode("utf-8") != fingerprint(vocabularies):
        raise invalid_argument(
            "path", "hold the vocabularies exported with its SavedModel", str(file),
            hint="vocabularies.json was replaced or edited after export (the SavedModel "
            "records its SHA-256); export the index again.",
        )


def _read_saved_model(directory: Path, num_candidates: int) -> tuple[Any, np.ndarray]:
    """The restored serving module and its candidate ids, checked against the metadata."""
    try:
        restored = tf.saved_model.load(str(directory))
        ids = restored.ids.numpy()
    except Exception as error:
        raise invalid_argument(
            "path", "hold a complete SavedModel", str(directory),
            hint=f"Loading failed: {error}",
        ) from error
    if len(ids) != num_candidates:
        raise invalid_argument(
            "path", "hold a SavedModel matching its metadata",
            f"{len(ids)} candidate ids, metadata says {num_candidates}",
            hint="The directory was modified after export; export it again.",
        )
    if ids.dtype == object:
        ids = np.array([b.decode("utf-8") for b in ids], dtype=object)
    return restored, ids
