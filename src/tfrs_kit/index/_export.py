"""Writing an index directory: the SavedModel, vocabularies and metadata, swapped in atomically.

The directory's layout (its file names and format version) is defined here; ``_load``
reads it back.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._version import __version__
from tfrs_kit._vocabulary import Vocabularies
from tfrs_kit.index._serving import ServingModule

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA", "SAVED_MODEL", "VOCABULARIES",
           "export", "index_metadata"]

FORMAT = "tfrs_kit.index"
FORMAT_VERSION = 1
METADATA = "tfrs_kit_index.json"
SAVED_MODEL = "saved_model"
VOCABULARIES = "vocabularies.json"


def export(path: str | os.PathLike[str], module: ServingModule, *,
           vocabularies: Vocabularies, metadata: dict[str, Any]) -> None:
    """Writes the index directory beside ``path``, then moves it in place.

    A crash midway leaves any earlier export at ``path`` untouched; the staging
    directory is removed.

    Raises:
        FileExistsError: ``path`` is a non-empty directory that is not an index.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tf.saved_model.save(module, str(staging / SAVED_MODEL), signatures={
            "serving_default": module.serve,
            "recommend": module.recommend,
            "similar_items": module.similar_items,
        })
        vocabularies.save(staging / VOCABULARIES)
        with open(staging / METADATA, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
        _replace_directory(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def index_metadata(module: ServingModule, *, backend: str, backend_options: dict[str, Any],
                   k_max: int, num_candidates: int, id_dtype: tf.DType,
                   query_specs: dict[str, tf.TensorSpec]) -> dict[str, Any]:
    """The content of ``tfrs_kit_index.json``: versions, backend, sizes and feature specs."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tfrs_kit_version": __version__,
        "tensorflow_version": tf.__version__,
        "tensorflow_recommenders_version": _package_version("tensorflow-recommenders"),
        "scann_version": _package_version("scann") if backend == "scann" else None,
        "backend": backend,
        "backend_options": backend_options,
        "k_max": k_max,
        "num_candidates": num_candidates,
        "embedding_dim": int(module.embeddings.shape[1]),
        "id_dtype": id_dtype.name,
        "query_features": {
            name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for name, spec in query_specs.items()
        },
    }


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _replace_directory(staging: Path, target: Path) -> None:
    """Moves ``staging`` to ``target``; an old ``target`` is removed only afterwards."""
    if target.exists():
        if not (target / METADATA).is_file() and any(target.iterdir()):
            raise invalid_argument(
                "path", "be new, empty, or an earlier index export", str(target),
                hint="Refusing to replace a directory that is not an index.",
                error=FileExistsError,
            )
        backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, backup)
        os.replace(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, target)
