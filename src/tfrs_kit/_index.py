"""Top-k indexes over candidate embeddings, and their one-directory SavedModel export.

An :class:`Index` serves through the same TensorFlow functions in memory and
after :func:`load_index`, so what you test before saving is what you serve.
The exported SavedModel needs only TensorFlow:

>>> import tensorflow as tf  # doctest: +SKIP
>>> served = tf.saved_model.load("my_index")  # doctest: +SKIP
>>> served.signatures["serving_default"](user_id=tf.constant(["42"]))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._data import TableLike, is_multivalued, to_table
from tfrs_kit._errors import invalid_argument, missing_column, unknown_name
from tfrs_kit._version import __version__
from tfrs_kit.towers._encoders import padding_value

__all__ = ["Index", "IndexBuilder", "Recommendations", "load_index"]

_FORMAT = "tfrs_kit.index"
_FORMAT_VERSION = 1
_METADATA = "tfrs_kit_index.json"
_BACKENDS = ("brute_force",)


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k results, one row per query, best first.

    Attributes:
        ids: ``[queries, k]`` candidate ids.
        scores: ``[queries, k]`` float32 scores (``-inf`` where fewer than ``k``
            candidates were left after exclusions).
    """

    ids: np.ndarray
    scores: np.ndarray

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.ids, self.scores))


class _ServingModule(tf.Module):
    """What is saved: the query tower, candidate embeddings and ids, and top-k."""

    def __init__(self, query_tower: Any, ids: np.ndarray, embeddings: np.ndarray,
                 id_dtype: tf.DType, k_max: int) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.embeddings = tf.Variable(embeddings, trainable=False, name="candidate_embeddings")
        self.ids = tf.Variable(tf.constant(ids, dtype=id_dtype), trainable=False,
                               name="candidate_ids")
        self.positions = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids, dtype=id_dtype), tf.range(len(ids), dtype=tf.int64)
            ),
            default_value=-1,
        )
        self.k_max = k_max
        specs = dict(query_tower.input_signature())
        id_spec = tf.TensorSpec([None], id_dtype, name="item_ids")
        k_spec = tf.TensorSpec([], tf.int32, name="k")
        exclude_spec = tf.TensorSpec([None, None], id_dtype, name="exclude")
        self.serve = tf.function(self._serve, input_signature=[specs])
        self.recommend = tf.function(self._recommend,
                                     input_signature=[specs, k_spec, exclude_spec])
        self.similar_items = tf.function(self._similar_items, input_signature=[id_spec, k_spec])

    def _top_k(self, queries: tf.Tensor, k: tf.Tensor, exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.matmul(queries, self.embeddings, transpose_b=True)
        positions = self.positions.lookup(exclude)
        rows = tf.broadcast_to(tf.range(tf.shape(positions, out_type=tf.int64)[0])[:, None],
                               tf.shape(positions, out_type=tf.int64))
        valid = positions >= 0
        where = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(positions, valid)], axis=1)
        scores = tf.tensor_scatter_nd_update(
            scores, where, tf.fill(tf.shape(where)[:1], tf.constant(-np.inf, scores.dtype))
        )
        k = tf.minimum(k, tf.shape(scores)[1])
        top_scores, top = tf.math.top_k(scores, k=k)
        return {"ids": tf.gather(self.ids, top), "scores": top_scores}

    def _serve(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        queries = self.query_tower(features, training=False)
        empty = tf.zeros([tf.shape(queries)[0], 0], dtype=self.ids.dtype)
        return self._top_k(queries, tf.constant(self.k_max), empty)

    def _recommend(self, features: dict[str, tf.Tensor], k: tf.Tensor,
                   exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._top_k(self.query_tower(features, training=False), k, exclude)

    def _similar_items(self, item_ids: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        positions = self.positions.lookup(item_ids)
        queries = tf.gather(self.embeddings, tf.maximum(positions, 0))
        return self._top_k(queries, k, item_ids[:, None])


class Index:
    """A servable top-k index: raw query features in, candidate ids and scores out.

    Build one with :class:`IndexBuilder`, or reload one with :func:`load_index`.

    Attributes:
        ids: The candidate ids, in index order.
        k_max: The largest ``k`` served (and the ``k`` of the default signature).
        backend: The search backend's name.
        query_features: The names of the raw query features it reads.
    """

    def __init__(self, functions: Any, *, ids: np.ndarray, k_max: int, backend: str,
                 query_specs: dict[str, tf.TensorSpec], id_dtype: tf.DType) -> None:
        self._functions = functions
        self.ids = ids
        self.k_max = k_max
        self.backend = backend
        self._query_specs = query_specs
        self._id_dtype = id_dtype
        self.query_features = tuple(query_specs)
        self._id_index = pd.Index(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"Index(candidates={len(self)}, backend={self.backend!r}, k_max={self.k_max}, "
                f"query_features={list(self.query_features)})")

    def recommend(
        self,
        query_features: TableLike,
        *,
        k: int = 10,
        exclude: Sequence[Sequence[Any]] | None = None,
        batch_size: int = 4096,
    ) -> Recommendations:
        """The top ``k`` candidates for each query row.

        Args:
            query_features: One row per query with every feature in
                ``query_features`` (a DataFrame, dict of arrays or dataset).
                Ids never seen in training map to the out-of-vocabulary
                embedding: such a query still gets recommendations.
            k: How many candidates per query, 1 to ``min(k_max, len(index))``.
            exclude: For each query, candidate ids to leave out (such as the
                items a user has already seen).
            batch_size: Queries scored at once.

        Returns:
            :class:`Recommendations` with ``[queries, k]`` ids and scores.
        """
        table = to_table(query_features, argument="query_features",
                         columns=self.query_features)
        n = len(next(iter(table.values())))
        self._check_k(k)
        excluded = self._exclusions(exclude, n)
        parts = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            inputs = {name: self._tensor(name, table[name][start:stop])
                      for name in self.query_features}
            parts.append(self._functions.recommend(inputs, tf.constant(k, tf.int32),
                                                   excluded[start:stop]))
        return self._results(parts)

    def similar_items(self, item_ids: Sequence[Any], *, k: int = 10) -> Recommendations:
        """For each candidate id, the ``k`` candidates closest to it (itself excluded)."""
        ids = np.asarray(item_ids, dtype=object if self._id_dtype == tf.string else np.int64)
        self._check_known(ids, "item_ids")
        self._check_k(k)
        out = self._functions.similar_items(tf.constant(ids, self._id_dtype),
                                            tf.constant(k, tf.int32))
        return self._results([out])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Exports the index to a directory, atomically.

        The directory holds a SavedModel (signatures ``serving_default``: query
        features to the top ``k_max``; ``recommend``: features, ``k`` and padded
        ``exclude`` ids; ``similar_items``: ``item_ids`` and ``k``) and
        ``tfrs_kit_index.json`` (versions, backend, feature spec). It is written
        beside ``path`` and moved in place when complete: a crash midway
        leaves any earlier artifact at ``path`` untouched.
        """
        module = self._functions
        if not isinstance(module, _ServingModule):
            raise invalid_argument(
                "self", "be an index built in this process to be saved again", "a loaded index",
                hint="Copy the directory instead.",
            )
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tf.saved_model.save(module, str(staging / "saved_model"), signatures={
                "serving_default": module.serve,
                "recommend": module.recommend,
                "similar_items": module.similar_items,
            })
            metadata = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "tfrs_kit_version": __version__,
                "tensorflow_version": tf.__version__,
                "backend": self.backend,
                "k_max": self.k_max,
                "num_candidates": len(self),
                "id_dtype": self._id_dtype.name,
                "query_features": {
                    name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
                    for name, spec in self._query_specs.items()
                },
            }
            with open(staging / _METADATA, "w", encoding="utf-8") as f:
                json.dump(metadata, f, indent=2)
            _replace_directory(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _check_k(self, k: int) -> None:
        limit = min(self.k_max, len(self))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
            raise invalid_argument(
                "k", f"be an integer from 1 to {limit} (k_max={self.k_max}, "
                f"{len(self)} candidates)", k,
                hint="Build the index with a larger k_max for more." if k > self.k_max else None,
            )

    def _check_known(self, ids: np.ndarray, argument: str) -> None:
        unknown = ids[self._id_index.get_indexer(ids) < 0] if len(ids) else ids
        if len(unknown):
            raise invalid_argument(
                argument, "name candidate ids in the index", f"unknown ids {unknown[:5].tolist()}",
            )

    def _exclusions(self, exclude: Sequence[Sequence[Any]] | None, n: int) -> tf.Tensor:
        pad = padding_value("string" if self._id_dtype == tf.string else "int64")
        if exclude is None:
            return tf.zeros([n, 0], dtype=self._id_dtype)
        if isinstance(exclude, (str, bytes)) or len(exclude) != n:
            raise invalid_argument(
                "exclude", f"hold one list of ids per query ({n} queries)",
                f"{len(exclude) if not isinstance(exclude, (str, bytes)) else exclude} lists",
            )
        width = max((len(e) for e in exclude), default=0)
        dense = np.full((n, width), pad, dtype=object if pad == "" else np.int64)
        for row, ids in enumerate(exclude):
            dense[row, : len(ids)] = list(ids)
        flat = dense[dense != pad] if width else dense.ravel()
        self._check_known(np.asarray(flat, dtype=dense.dtype), "exclude")
        return tf.constant(dense, dtype=self._id_dtype)

    def _tensor(self, name: str, column: np.ndarray) -> tf.Tensor:
        spec = self._query_specs[name]
        if spec.shape.rank == 2:
            rows = list(column) if is_multivalued(column) else [[v] for v in column]
            pad = "" if spec.dtype == tf.string else -1
            width = max((len(r) for r in rows), default=0)
            dense = np.full((len(rows), width), pad, dtype=object if pad == "" else np.int64)
            for i, r in enumerate(rows):
                dense[i, : len(r)] = list(r)
            return tf.constant(dense, dtype=spec.dtype)
        try:
            if spec.dtype == tf.string:
                return tf.constant(np.asarray(column).astype(str), dtype=tf.string)
            return tf.constant(np.asarray(column), dtype=spec.dtype)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise invalid_argument(
                f"query_features[{name!r}]", f"hold values of dtype {spec.dtype.name}",
                f"{np.asarray(column).dtype} values {np.asarray(column)[:3].tolist()}",
            ) from error

    def _results(self, parts: list[dict[str, tf.Tensor]]) -> Recommendations:
        ids = np.concatenate([p["ids"].numpy() for p in parts], axis=0)
        if ids.dtype == object:
            ids = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(ids)
        scores = np.concatenate([p["scores"].numpy() for p in parts], axis=0)
        return Recommendations(ids=ids, scores=scores)


class IndexBuilder:
    """Builds a top-k :class:`Index` from a trained model and its candidates.

    Args:
        backend: ``"brute_force"``: exact scores of every candidate.
        k_max: The largest ``k`` the index serves.
        batch_size: Candidates embedded at once while building.

    Example:
        >>> import tfrs_kit as tk
        >>> log = {"user_id": ["a", "b", "a"], "item_id": ["x", "y", "z"]}
        >>> vocabs = tk.VocabularyBuilder().fit(log)
        >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
        ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
        >>> index = tk.IndexBuilder(k_max=3).build(model, {"item_id": ["x", "y", "z"]})
        >>> index.recommend({"user_id": ["a"]}, k=2, exclude=[["x"]]).ids.shape
        (1, 2)
    """

    def __init__(self, *, backend: str = "brute_force", k_max: int = 100,
                 batch_size: int = 8192) -> None:
        if backend not in _BACKENDS:
            raise unknown_name("backend", backend, _BACKENDS, what="index backend")
        if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
            raise invalid_argument("k_max", "be a positive integer", k_max)
        self.backend = backend
        self.k_max = k_max
        self.batch_size = batch_size

    def build(self, model: Any, candidates: TableLike, *, candidate_id: str | None = None) -> Index:
        """Embeds every candidate and returns the index.

        Args:
            model: A :class:`~tfrs_kit.TwoTowerRetrieval` (or anything with
                ``query_tower``, ``candidate_tower`` and ``candidate_id``).
            candidates: One row per candidate: its id column and the candidate
                tower's features. Duplicate ids keep their last row.
            candidate_id: The id column (default: the model's ``candidate_id``).
        """
        candidate_id = candidate_id or model.candidate_id
        table = to_table(candidates, argument="candidates")
        if candidate_id not in table:
            raise missing_column("candidates", candidate_id, table, role="the candidate id")
        ids = table[candidate_id]
        if is_multivalued(ids) or (ids.dtype.kind not in "iuO"):
            raise invalid_argument(
                f"candidates[{candidate_id!r}]", "hold string or integer ids", ids[:3].tolist(),
            )
        keep = ~pd.Series(ids).duplicated(keep="last").to_numpy()
        table = {name: column[keep] for name, column in table.items()}
        ids = table[candidate_id]
        embeddings = model.candidate_embeddings(table, batch_size=self.batch_size)
        id_dtype = tf.int64 if ids.dtype.kind in "iu" else tf.string
        ids = ids.astype(np.int64) if id_dtype == tf.int64 else ids.astype(str).astype(object)
        module = _ServingModule(model.query_tower, ids, embeddings.astype(np.float32), id_dtype,
                                self.k_max)
        return Index(module, ids=ids, k_max=self.k_max, backend=self.backend,
                     query_specs=dict(model.query_tower.input_signature()), id_dtype=id_dtype)


def load_index(path: str | os.PathLike[str]) -> Index:
    """Loads an index written by :meth:`Index.save`.

    Raises:
        FileNotFoundError: ``path`` is not an index directory.
        ValueError: Its metadata is corrupt or from an incompatible version.

    Example:
        >>> index = load_index("no/such/dir")
        Traceback (most recent call last):
        ...
        FileNotFoundError: `path` must be a directory written by Index.save. ...
    """
    root = Path(path)
    metadata_file = root / _METADATA
    if not root.is_dir() or not metadata_file.is_file() or not (root / "saved_model").is_dir():
        raise invalid_argument(
            "path", "be a directory written by Index.save", str(path),
            hint=f"It needs {_METADATA} and saved_model/.", error=FileNotFoundError,
        )
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}")
        version = metadata["format_version"]
        k_max = int(metadata["k_max"])
        specs = {
            name: tf.TensorSpec(spec["shape"], tf.as_dtype(spec["dtype"]), name=name)
            for name, spec in metadata["query_features"].items()
        }
        id_dtype = tf.as_dtype(metadata["id_dtype"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise invalid_argument(
            "path", "hold valid index metadata", str(metadata_file), hint=f"Problem: {error}.",
        ) from error
    if version != _FORMAT_VERSION:
        raise invalid_argument(
            "path", f"hold an index of format version {_FORMAT_VERSION}",
            f"format_version={version} (written by tfrs_kit "
            f"{metadata.get('tfrs_kit_version')})", hint="Export it again with this version.",
        )
    try:
        restored = tf.saved_model.load(str(root / "saved_model"))
    except Exception as error:
        raise invalid_argument(
            "path", "hold a complete SavedModel", str(root / "saved_model"),
            hint=f"Loading failed: {error}",
        ) from error
    ids = restored.ids.numpy()
    if ids.dtype == object:
        ids = np.array([b.decode("utf-8") for b in ids], dtype=object)
    return Index(restored, ids=ids, k_max=k_max, backend=metadata.get("backend", "brute_force"),
                 query_specs=specs, id_dtype=id_dtype)


def _replace_directory(staging: Path, target: Path) -> None:
    """Moves ``staging`` to ``target``; an old ``target`` is removed only afterwards."""
    if target.exists():
        if not (target / _METADATA).is_file() and any(target.iterdir()):
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
