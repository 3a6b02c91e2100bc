"""Writing an index directory: the SavedModel, vocabularies and metadata, swapped in atomically.

The directory's layout (its file names and format version) is defined here; ``_load``
reads it back.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._keras import without_layer_traces
from tfrs_kit._version import __version__
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.index._serving import ServingModule
from tfrs_kit.index._warmup import write_warmup

__all__ = ["FINGERPRINT", "FORMAT", "FORMAT_VERSION", "METADATA", "SAVED_MODEL", "VOCABULARIES",
           "check_target", "export", "fingerprint", "index_metadata", "recover"]

FORMAT = "tfrs_kit.index"
FORMAT_VERSION = 1
METADATA = "tfrs_kit_index.json"
SAVED_MODEL = "saved_model"
VOCABULARIES = "vocabularies.json"
FINGERPRINT = "vocabularies_sha256"  # a variable of the SavedModel


def export(path: str | os.PathLike[str], module: ServingModule, *,
           vocabularies: Vocabularies, metadata: dict[str, Any]) -> None:
    """Writes the index directory beside ``path``, then moves it in place.

    A crash midway leaves any earlier export at ``path`` untouched; the staging
    directory is removed. Directories are created with the process's umask
    (like ``mkdir``), so a server running as another user can read them.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty directory that is not an index.
        PermissionError: ``path`` cannot be written.
    """
    target = check_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target, clean=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        _set_fingerprint(module, vocabularies)
        with without_layer_traces():
            tf.saved_model.save(module, str(staging / SAVED_MODEL), signatures={
                "serving_default": module.serve,
                "recommend": module.recommend,
                "similar_items": module.similar_items,
            })
        write_warmup(staging / SAVED_MODEL, module.serve.input_signature[0], vocabularies,
                     backend=metadata.get("backend", ""))
        vocabularies.save(staging / VOCABULARIES)
        with open(staging / METADATA, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)  # written last: its presence marks a whole export
        _replace_directory(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as an export target: a new path, an empty folder or an earlier index export.

    Checked before any work (the CLI calls it before training): the nearest
    existing folder on the way must be writable.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty folder that is not an index.
        PermissionError: ``path`` (or the folder it would be created in) is not writable.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise invalid_argument("path", "be a str or os.PathLike naming a folder", path,
                               error=TypeError)
    target = Path(path)
    if target.is_file() or (target.exists() and not target.is_dir()):
        raise invalid_argument("path", "name a folder for the index", str(target),
                               hint="It is a file.", error=FileExistsError)
    if target.is_dir() and not (target / METADATA).is_file() and any(target.iterdir()):
        raise invalid_argument(
            "path", "be new, empty, or an earlier index export", str(target),
            hint="Refusing to replace a directory that is not an index.", error=FileExistsError)
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise invalid_argument("path", "be inside a folder", str(target),
                               hint=f"{existing} is a file.", error=FileExistsError)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise invalid_argument("path", "be in a folder this process can write to", str(target),
                               hint=f"{existing} is not writable.", error=PermissionError)
    return target


def fingerprint(vocabularies: Vocabularies) -> str:
    """The SHA-256 of the vocabularies' canonical JSON: ties vocabularies.json to its model."""
    text = json.dumps(vocabularies.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _set_fingerprint(module: ServingModule, vocabularies: Vocabularies) -> None:
    value = fingerprint(vocabularies)
    if isinstance(getattr(module, FINGERPRINT, None), tf.Variable):
        getattr(module, FINGERPRINT).assign(value)
    else:
        setattr(module, FINGERPRINT, tf.Variable(value, trainable=False, name=FINGERPRINT))


def recover(target: Path, *, clean: bool = False) -> Path | None:
    """Repairs what a killed :func:`export` left beside ``target``.

    A process killed between the two renames of the swap leaves no ``target``
    and the previous export in ``.NAME.old-*``: it is moved back. With
    ``clean``, staging and backup directories of processes that no longer run
    are deleted.

    Returns:
        The directory holding the index when ``target`` itself is missing and a
        backup could not be moved back (a read-only folder), else ``None``.
    """
    if not target.parent.is_dir():
        return None
    leftovers = sorted(target.parent.glob(f".{glob.escape(target.name)}.*-*"),
                       key=_modified, reverse=True)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(tmp|old)-(?:(\d+)-)?[A-Za-z0-9_]+")
    stale = [(m.group(1), p) for p in leftovers
             if (m := pattern.fullmatch(p.name)) and not _running(m.group(2))]
    fallback = None
    if not target.exists():
        for kind, backup in stale:
            if kind == "old" and (backup / METADATA).is_file():
                try:
                    os.replace(backup, target)
                except OSError:
                    fallback = backup
                break
    if clean:
        for _, leftover in stale:
            if leftover.exists() and leftover != fallback:  # never the only copy left
                shutil.rmtree(leftover, ignore_errors=True)
    return fallback if not target.exists() else None


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _running(pid: str | None) -> bool:
    """Whether the process that named a staging directory still runs (on this machine)."""
    if pid is None:
        return False  # written by an older version: no owner to wait for
    if int(pid) == os.getpid():
        return False  # this process exports one index at a time per call
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


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
        # What stock TF Serving can do with saved_model/ (docs/serving.md).
        "tf_serving": ("needs ScaNN's TensorFlow op, which stock TF Serving lacks"
                       if backend == "scann" else "stock TF Serving loads it (core ops only)"),
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
        # A cascade (index/_cascade.py): the candidates it retrieves, then re-ranks.
        **({"retrieve_k": int(module.retrieve_k)} if hasattr(module, "retrieve_k") else {}),
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
        backup = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(target, backup)
        os.replace(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, target)
