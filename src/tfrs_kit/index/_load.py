"""Reading an index directory back: :func:`load_index`.

Every file is checked before it is used, so a partial, edited or foreign
directory fails with an error that names the file and the problem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._vocabulary import Vocabularies
from tfrs_kit.index._backends import BACKENDS, import_scann
from tfrs_kit.index._export import FORMAT, FORMAT_VERSION, METADATA, SAVED_MODEL, VOCABULARIES
from tfrs_kit.index._index import Index

__all__ = ["load_index"]


def load_index(path: str | os.PathLike[str]) -> Index:
    """Loads an index written by :meth:`Index.save`.

    The loaded index recommends exactly like the saved one; it cannot be saved
    again or refreshed (rebuild it from the model for that).

    Raises:
        FileNotFoundError: ``path`` is not a complete index directory.
        ValueError: Its metadata, vocabularies or SavedModel are corrupt, or
            it is from an incompatible version.
        ImportError: It is a ScaNN index and ``scann`` is not installed.

    Example:
        >>> index = load_index("no/such/dir")
        Traceback (most recent call last):
        ...
        FileNotFoundError: `path` must be a directory written by Index.save. ...
    """
    root = Path(path)
    required = {METADATA: Path.is_file, SAVED_MODEL: Path.is_dir, VOCABULARIES: Path.is_file}
    missing = [name for name, check in required.items() if not check(root / name)]
    if not root.is_dir() or missing:
        raise invalid_argument(
            "path", "be a directory written by Index.save", str(path),
            hint=f"It needs {', '.join(required)}; missing: {', '.join(missing)}.",
            error=FileNotFoundError,
        )
    metadata_file = root / METADATA
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}")
        version = metadata["format_version"]
        k_max = int(metadata["k_max"])
        num_candidates = int(metadata["num_candidates"])
        specs = {
            name: tf.TensorSpec(spec["shape"], tf.as_dtype(spec["dtype"]), name=name)
            for name, spec in metadata["query_features"].items()
        }
        id_dtype = tf.as_dtype(metadata["id_dtype"])
        backend = metadata["backend"]
        options = dict(metadata["backend_options"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise invalid_argument(
            "path", "hold valid index metadata", str(metadata_file), hint=f"Problem: {error}.",
        ) from error
    if version != FORMAT_VERSION:
        raise invalid_argument(
            "path", f"hold an index of format version {FORMAT_VERSION}",
            f"format_version={version} (written by tfrs_kit "
            f"{metadata.get('tfrs_kit_version')})", hint="Export it again with this version.",
        )
    if backend not in BACKENDS:
        raise invalid_argument(
            "path", f"hold an index of a known backend {sorted(BACKENDS)}", f"backend={backend!r}",
            hint=f"It was written by tfrs_kit {metadata.get('tfrs_kit_version')}.",
        )
    if backend == "scann":
        import_scann()  # registers ScaNN's ops, which the SavedModel calls
    try:
        vocabularies = Vocabularies.load(root / VOCABULARIES)
    except (ValueError, KeyError, TypeError) as error:
        raise invalid_argument(
            "path", "hold valid vocabularies", str(root / VOCABULARIES),
            hint=f"Problem: {error}",
        ) from error
    try:
        restored = tf.saved_model.load(str(root / SAVED_MODEL))
        ids = restored.ids.numpy()
    except Exception as error:
        raise invalid_argument(
            "path", "hold a complete SavedModel", str(root / SAVED_MODEL),
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
    return Index(restored, ids=ids, k_max=k_max, backend=backend, backend_options=options,
                 query_specs=specs, id_dtype=id_dtype, vocabularies=vocabularies)
