"""Top-k indexes over candidate embeddings, and their one-directory SavedModel export.

An :class:`Index` serves through the same TensorFlow functions in memory and
after :func:`load_index`, so what you test before saving is what you serve.
The search itself is a backend (``index/_backends.py``): exact brute force, or ScaNN.
The exported SavedModel needs only TensorFlow (and ``import scann`` first for a
ScaNN index, which registers its ops):

>>> import tensorflow as tf  # doctest: +SKIP
>>> served = tf.saved_model.load("my_index/saved_model")  # doctest: +SKIP
>>> served.signatures["serving_default"](user_id=tf.constant(["42"]))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._data import Table, TableLike, is_multivalued, last_rows, to_table
from tfrs_kit._errors import invalid_argument, missing_column, unknown_name
from tfrs_kit._version import __version__
from tfrs_kit._vocabulary import Vocabularies
from tfrs_kit.index._backends import BACKENDS, Backend, ScaNN, get_backend, import_scann
from tfrs_kit.towers._encoders import padding_value

__all__ = ["Index", "IndexBuilder", "Recommendations", "load_index"]

_FORMAT = "tfrs_kit.index"
_FORMAT_VERSION = 1
_METADATA = "tfrs_kit_index.json"
_SAVED_MODEL = "saved_model"
_VOCABULARIES = "vocabularies.json"


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
    """What is saved: the query tower, candidate embeddings and ids, and the searcher."""

    def __init__(self, query_tower: Any, ids: np.ndarray, embeddings: np.ndarray,
                 id_dtype: tf.DType, k_max: int, backend: Backend,
                 params: dict[str, Any]) -> None:
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
        self.searcher = backend.make_searcher(self.embeddings, params)
        self.k_max = k_max
        specs = dict(query_tower.input_signature())
        id_spec = tf.TensorSpec([None], id_dtype, name="item_ids")
        k_spec = tf.TensorSpec([], tf.int32, name="k")
        exclude_spec = tf.TensorSpec([None, None], id_dtype, name="exclude")
        # No autograph: the graphs hold no tensor-dependent Python control flow, and
        # converting them costs more than the rest of building a small index.
        self.serve = tf.function(self._serve, input_signature=[specs], autograph=False)
        self.recommend = tf.function(self._recommend, autograph=False,
                                     input_signature=[specs, k_spec, exclude_spec])
        self.similar_items = tf.function(self._similar_items, autograph=False,
                                         input_signature=[id_spec, k_spec])

    def _top_k(self, queries: tf.Tensor, k: tf.Tensor, exclude: tf.Tensor) -> dict[str, tf.Tensor]:
        k = tf.minimum(k, tf.shape(self.ids)[0])
        scores, positions = self.searcher.search(queries, k, self.positions.lookup(exclude))
        return {"ids": tf.gather(self.ids, positions), "scores": scores}

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
    Immutable: :meth:`with_candidates` returns a new index.

    Attributes:
        ids: The candidate ids, in index order.
        k_max: The largest ``k`` served (and the ``k`` of the default signature).
        backend: The search backend's name (``"brute_force"`` or ``"scann"``).
        backend_options: Every option of the backend, as used for this catalogue.
        query_features: The names of the raw query features it reads.
        vocabularies: The query tower's vocabularies.
    """

    def __init__(self, functions: Any, *, ids: np.ndarray, k_max: int, backend: str,
                 backend_options: dict[str, Any], query_specs: dict[str, tf.TensorSpec],
                 id_dtype: tf.DType, vocabularies: Vocabularies,
                 builder: IndexBuilder | None = None) -> None:
        self._functions = functions
        self.ids = ids
        self.k_max = k_max
        self.backend = backend
        self.backend_options = dict(backend_options)
        self._query_specs = query_specs
        self._id_dtype = id_dtype
        self.query_features = tuple(query_specs)
        self.vocabularies = vocabularies
        self._builder = builder
        self._id_index = pd.Index(ids)
        self._max_batch = BACKENDS[backend].max_batch(self.backend_options, len(ids))

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
            batch_size: Queries scored at once (brute force lowers it to keep
                each batch's score matrix near 256 MB).

        Returns:
            :class:`Recommendations` with ``[queries, k]`` ids and scores.

        Example:
            >>> import tfrs_kit as tk
            >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"], "item_id": ["x", "y"]})
            >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> index = tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]})
            >>> index.recommend({"user_id": ["a", "b"]}, k=1, exclude=[["x"], []]).ids.shape
            (2, 1)
        """
        table = to_table(query_features, argument="query_features",
                         columns=self.query_features)
        n = len(next(iter(table.values())))
        self._check_k(k)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid_argument("batch_size", "be a positive integer", batch_size)
        batch_size = min(batch_size, self._max_batch or batch_size)
        excluded = self._exclusions(exclude, n)
        inputs = {name: self._tensor(name, table[name]) for name in self.query_features}
        parts = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            parts.append(self._functions.recommend(
                {name: tensor[start:stop] for name, tensor in inputs.items()},
                tf.constant(k, tf.int32), excluded[start:stop]))
        return self._results(parts)

    def similar_items(self, item_ids: Sequence[Any], *, k: int = 10) -> Recommendations:
        """For each candidate id, the ``k`` candidates closest to it (itself excluded).

        Closeness is the dot product of candidate embeddings, searched by the
        index's backend.

        Example:
            >>> import tfrs_kit as tk
            >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"], "item_id": ["x", "y"]})
            >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> index = tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]})
            >>> index.similar_items(["x"], k=1).ids.tolist()
            [['y']]
        """
        ids = np.asarray(item_ids, dtype=object if self._id_dtype == tf.string else np.int64)
        self._check_known(ids, "item_ids")
        self._check_k(k)
        out = self._functions.similar_items(tf.constant(ids, self._id_dtype),
                                            tf.constant(k, tf.int32))
        return self._results([out])

    def with_candidates(
        self,
        model: Any,
        candidates: TableLike,
        *,
        candidate_id: str | None = None,
        keep_existing: bool = True,
    ) -> Index:
        """A new index with candidates added or replaced; the towers are not retrained.

        Use it when new items arrive or item features change: the query tower
        stays the index's own, and the new rows are embedded by the candidate
        tower. The backend is rebuilt for the new catalogue (ScaNN retrains its
        partitions, with defaults derived from the new size).

        Args:
            model: The trained :class:`~tfrs_kit.TwoTowerRetrieval` (its
                candidate tower is used) or the candidate tower itself.
            candidates: One row per new or changed candidate: its id column and
                the candidate tower's features.
            candidate_id: The id column (default: the model's ``candidate_id``,
                or a tower's first feature).
            keep_existing: Keep the candidates not named in ``candidates`` (ids
                already in the index get their new embedding in place, new ids
                are appended). ``False`` replaces the whole catalogue.

        Returns:
            A new :class:`Index`; this one is unchanged.

        Example:
            >>> import tfrs_kit as tk
            >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"], "item_id": ["x", "y"]})
            >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> index = tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]})
            >>> bigger = index.with_candidates(model, {"item_id": ["y", "new"]})
            >>> len(index), len(bigger), list(bigger.ids)
            (2, 3, ['x', 'y', 'new'])
        """
        module = self._own_module("refreshed")
        tower, candidate_id = _candidate_tower(model, candidate_id)
        table, ids, id_dtype = _candidate_table(candidates, candidate_id)
        if id_dtype != self._id_dtype:
            raise invalid_argument(
                f"candidates[{candidate_id!r}]", f"hold {self._id_dtype.name} ids like the index",
                ids[:3].tolist(),
            )
        builder = self._builder or IndexBuilder(backend=self.backend, k_max=self.k_max)
        embeddings = tower.embed(table, batch_size=builder.batch_size).astype(np.float32)
        old = module.embeddings.numpy()
        if embeddings.shape[1] != old.shape[1]:
            raise invalid_argument(
                "model", f"embed candidates in {old.shape[1]} dimensions like the index",
                f"{embeddings.shape[1]} dimensions",
                hint="Pass the candidate tower trained with this index's query tower.",
            )
        if keep_existing:
            where = self._id_index.get_indexer(ids)
            known = where >= 0
            old[where[known]] = embeddings[known]
            ids = np.concatenate([self.ids, ids[~known]])
            embeddings = np.concatenate([old, embeddings[~known]], axis=0)
        return builder._assemble(module.query_tower, ids, embeddings, id_dtype)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Exports the index to a directory, atomically.

        The directory holds:

        - ``saved_model/``: signatures ``serving_default`` (raw query features to
          the top ``k_max`` ``ids`` and ``scores``), ``recommend`` (features,
          ``k`` and padded ``exclude`` ids) and ``similar_items`` (``item_ids``
          and ``k``). It loads with plain ``tf.saved_model.load``, without
          tfrs_kit; a ScaNN index needs ``import scann`` first (it registers
          ScaNN's ops).
        - ``vocabularies.json``: the query tower's vocabularies
          (:meth:`Vocabularies.load` reads them).
        - ``tfrs_kit_index.json``: versions, backend and its options, feature spec.

        It is written beside ``path`` and moved in place when complete: a crash
        midway leaves any earlier artifact at ``path`` untouched. A process
        killed midway cannot clean up after itself: its hidden
        ``.NAME.tmp-*`` directory beside ``path`` is safe to delete.

        Example:
            >>> import tfrs_kit as tk
            >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"], "item_id": ["x", "y"]})
            >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> index = tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]})
            >>> import tempfile, os
            >>> folder = tempfile.mkdtemp()
            >>> index.save(os.path.join(folder, "index"))
            >>> sorted(os.listdir(os.path.join(folder, "index")))
            ['saved_model', 'tfrs_kit_index.json', 'vocabularies.json']
        """
        module = self._own_module("saved again")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tf.saved_model.save(module, str(staging / _SAVED_MODEL), signatures={
                "serving_default": module.serve,
                "recommend": module.recommend,
                "similar_items": module.similar_items,
            })
            self.vocabularies.save(staging / _VOCABULARIES)
            with open(staging / _METADATA, "w", encoding="utf-8") as f:
                json.dump(self._metadata(module), f, indent=2)
            _replace_directory(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _metadata(self, module: _ServingModule) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "tfrs_kit_version": __version__,
            "tensorflow_version": tf.__version__,
            "tensorflow_recommenders_version": _package_version("tensorflow-recommenders"),
            "scann_version": _package_version("scann") if self.backend == "scann" else None,
            "backend": self.backend,
            "backend_options": self.backend_options,
            "k_max": self.k_max,
            "num_candidates": len(self),
            "embedding_dim": int(module.embeddings.shape[1]),
            "id_dtype": self._id_dtype.name,
            "query_features": {
                name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
                for name, spec in self._query_specs.items()
            },
        }

    def _own_module(self, action: str) -> _ServingModule:
        if not isinstance(self._functions, _ServingModule):
            raise invalid_argument(
                "self", f"be an index built in this process to be {action}", "a loaded index",
                hint="Copy the directory to save it elsewhere, or rebuild it with "
                "IndexBuilder(...).build(model, candidates).",
            )
        return self._functions

    def _check_k(self, k: int) -> None:
        limit = min(self.k_max, len(self))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
            raise invalid_argument(
                "k", f"be an integer from 1 to {limit} (k_max={self.k_max}, "
                f"{len(self)} candidates)", k,
                hint="Build the index with a larger k_max for more."
                if isinstance(k, (int, float)) and k > self.k_max else None,
            )

    def _check_known(self, ids: np.ndarray, argument: str) -> None:
        unknown = ids[self._id_index.get_indexer(ids) < 0] if len(ids) else ids
        if len(unknown):
            raise invalid_argument(
                argument, "name candidate ids in the index", f"unknown ids {unknown[:5].tolist()}",
            )

    def _exclusions(self, exclude: Sequence[Sequence[Any]] | None, n: int) -> tf.Tensor:
        if exclude is None:
            return tf.zeros([n, 0], dtype=self._id_dtype)
        if isinstance(exclude, (str, bytes)) or len(exclude) != n:
            raise invalid_argument(
                "exclude", f"hold one list of ids per query ({n} queries)",
                f"{len(exclude) if not isinstance(exclude, (str, bytes)) else exclude} lists",
            )
        if any(isinstance(e, (str, bytes)) for e in exclude):
            raise invalid_argument(
                "exclude", "hold one list of ids per query, not single ids", list(exclude)[:3],
                hint="Wrap each query's ids in a list: exclude=[['a', 'b'], ...].",
            )
        pad = padding_value("string" if self._id_dtype == tf.string else "int64")
        try:
            dense = _padded(exclude, pad)
        except (TypeError, ValueError) as error:
            raise invalid_argument(
                "exclude", f"hold {self._id_dtype.name} ids like the index", str(error),
            ) from error
        flat = dense[dense != pad] if dense.shape[1] else dense.ravel()
        self._check_known(np.asarray(flat, dtype=dense.dtype), "exclude")
        return tf.constant(dense, dtype=self._id_dtype)

    def _tensor(self, name: str, column: np.ndarray) -> tf.Tensor:
        spec = self._query_specs[name]
        argument = f"query_features[{name!r}]"
        values = np.asarray(column) if not is_multivalued(column) else column
        if spec.dtype == tf.string and values.dtype.kind in "fbc":
            raise invalid_argument(argument, "hold string values", values[:3].tolist(),
                                   hint="Convert the ids to str as in training.")
        try:
            if spec.shape.rank == 2:
                rows = list(column) if is_multivalued(column) else [[v] for v in column]
                pad = padding_value("string" if spec.dtype == tf.string else "int64")
                return tf.constant(_padded(rows, pad), dtype=spec.dtype)
            if spec.dtype == tf.string:
                return tf.constant(values.astype(str), dtype=tf.string)
            if spec.dtype.is_integer and values.dtype.kind not in "iuO":
                raise TypeError(f"{values.dtype} is not an integer dtype")
            return tf.constant(values, dtype=spec.dtype)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise invalid_argument(
                argument, f"hold values of dtype {spec.dtype.name}",
                f"{values.dtype} values {list(values[:3])}",
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
            ``"scann"``: approximate search with ScaNN (the ``scann`` extra:
            ``pip install "tfrs-kit[scann]"``, Linux x86_64); its options
            default to values derived from the catalogue size (see
            ``backend_options``). ``"auto"`` (default): ScaNN from 100,000
            candidates on when it is installed, brute force otherwise.
        k_max: The largest ``k`` the index serves.
        batch_size: Candidates embedded at once while building.
        backend_options: Options of the backend, overriding its defaults.
            Brute force: ``chunk_size`` (candidates scored at once, 65,536).
            ScaNN: ``num_leaves`` (``sqrt(n)``; 0 below 1,024 candidates: no
            tree), ``num_leaves_to_search`` (``max(10, num_leaves / 20)``, more
            so the searched leaves hold at least ~20,000 candidates and twice
            the reordered ones), ``num_reordering_candidates`` (``max(100, 4 * k_max)``,
            rescored exactly), ``dimensions_per_block`` (2),
            ``anisotropic_quantization_threshold`` (0.2),
            ``training_sample_size`` (``min(n, 100000)``),
            ``training_iterations`` (12). With ``"auto"`` they apply only if
            ScaNN is chosen.

    Raises:
        ImportError: ``backend="scann"`` without the ``scann`` package.

    Example:
        >>> import tfrs_kit as tk
        >>> log = {"user_id": ["a", "b", "a"], "item_id": ["x", "y", "z"]}
        >>> vocabs = tk.VocabularyBuilder().fit(log)
        >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
        ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
        >>> index = tk.IndexBuilder(k_max=3).build(model, {"item_id": ["x", "y", "z"]})
        >>> index.backend
        'brute_force'
        >>> index.recommend({"user_id": ["a"]}, k=2, exclude=[["x"]]).ids.shape
        (1, 2)
    """

    def __init__(self, *, backend: str = "auto", k_max: int = 100, batch_size: int = 8192,
                 backend_options: Mapping[str, Any] | None = None) -> None:
        if backend not in ("auto", *BACKENDS):
            raise unknown_name("backend", backend, ("auto", *BACKENDS), what="index backend")
        if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
            raise invalid_argument("k_max", "be a positive integer", k_max)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid_argument("batch_size", "be a positive integer", batch_size)
        if backend_options is not None and not isinstance(backend_options, Mapping):
            raise invalid_argument("backend_options", "be a dict of option name to value",
                                   backend_options, error=TypeError)
        options = dict(backend_options or {})
        # Fail here, not after embedding a catalogue: unknown options, missing scann.
        for option in options:
            known = ScaNN.option_names if backend == "auto" else BACKENDS[backend].option_names
            if option not in known:
                raise unknown_name("backend_options", option, known,
                                   what=f"option of the {backend!r} backend")
        if backend == "scann":
            import_scann()
        self.backend = backend
        self.k_max = k_max
        self.batch_size = batch_size
        self.backend_options = options

    def __repr__(self) -> str:
        return (f"IndexBuilder(backend={self.backend!r}, k_max={self.k_max}, "
                f"batch_size={self.batch_size}, backend_options={self.backend_options})")

    def build(self, model: Any, candidates: TableLike, *, candidate_id: str | None = None,
              verbose: Any = "auto") -> Index:
        """Embeds every candidate and returns the index.

        Args:
            model: A :class:`~tfrs_kit.TwoTowerRetrieval` (or anything with
                ``query_tower``, ``candidate_tower`` and ``candidate_id``).
            candidates: One row per candidate: its id column and the candidate
                tower's features. Duplicate ids keep their last row.
            candidate_id: The id column (default: the model's ``candidate_id``).
            verbose: Show progress while embedding: ``"auto"`` (a million
                candidates or more), ``True`` or ``False``.
        """
        table, ids, id_dtype = _candidate_table(candidates, candidate_id or model.candidate_id)
        embeddings = model.candidate_embeddings(table, batch_size=self.batch_size,
                                                verbose=verbose)
        return self._assemble(model.query_tower, ids, embeddings.astype(np.float32), id_dtype)

    def _assemble(self, query_tower: Any, ids: np.ndarray, embeddings: np.ndarray,
                  id_dtype: tf.DType) -> Index:
        backend = get_backend(self.backend, self.backend_options, len(ids))
        params = backend.resolve(len(ids), embeddings.shape[1], self.k_max)
        module = _ServingModule(query_tower, ids, embeddings, id_dtype, self.k_max,
                                backend, params)
        vocabularies = getattr(query_tower, "vocabularies", None)
        return Index(module, ids=ids, k_max=self.k_max, backend=backend.name,
                     backend_options=params, query_specs=dict(query_tower.input_signature()),
                     id_dtype=id_dtype, builder=self,
                     vocabularies=vocabularies if isinstance(vocabularies, Vocabularies)
                     else Vocabularies())


def _padded(rows: Sequence[Sequence[Any]], pad: Any) -> np.ndarray:
    """Lists of ids as one dense ``[len(rows), longest]`` array, padded with ``pad``.

    Raises:
        TypeError, ValueError: A row holds values that do not fit the array's
            dtype; the message names the row.
    """
    width = max((len(row) for row in rows), default=0)
    dense = np.full((len(rows), width), pad, dtype=object if pad == "" else np.int64)
    for number, row in enumerate(rows):
        try:
            dense[number, : len(row)] = list(row)
        except (TypeError, ValueError) as error:
            raise type(error)(f"row {number}: {list(row)[:5]}") from error
    return dense


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
    required = {_METADATA: Path.is_file, _SAVED_MODEL: Path.is_dir, _VOCABULARIES: Path.is_file}
    missing = [name for name, check in required.items() if not check(root / name)]
    if not root.is_dir() or missing:
        raise invalid_argument(
            "path", "be a directory written by Index.save", str(path),
            hint=f"It needs {', '.join(required)}; missing: {', '.join(missing)}.",
            error=FileNotFoundError,
        )
    metadata_file = root / _METADATA
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if metadata.get("format") != _FORMAT:
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
    if version != _FORMAT_VERSION:
        raise invalid_argument(
            "path", f"hold an index of format version {_FORMAT_VERSION}",
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
        vocabularies = Vocabularies.load(root / _VOCABULARIES)
    except (ValueError, KeyError, TypeError) as error:
        raise invalid_argument(
            "path", "hold valid vocabularies", str(root / _VOCABULARIES),
            hint=f"Problem: {error}",
        ) from error
    try:
        restored = tf.saved_model.load(str(root / _SAVED_MODEL))
        ids = restored.ids.numpy()
    except Exception as error:
        raise invalid_argument(
            "path", "hold a complete SavedModel", str(root / _SAVED_MODEL),
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


def _candidate_table(candidates: TableLike,
                     candidate_id: str) -> tuple[Table, np.ndarray, tf.DType]:
    """The candidates' table with duplicate ids dropped (last row kept), its ids and id dtype."""
    table = to_table(candidates, argument="candidates")
    if candidate_id not in table:
        raise missing_column("candidates", candidate_id, table, role="the candidate id")
    ids = table[candidate_id]
    if is_multivalued(ids) or (ids.dtype.kind not in "iuO"):
        raise invalid_argument(
            f"candidates[{candidate_id!r}]", "hold string or integer ids", ids[:3].tolist(),
        )
    table = last_rows(table, candidate_id)
    ids = table[candidate_id]
    id_dtype = tf.int64 if ids.dtype.kind in "iu" else tf.string
    ids = ids.astype(np.int64) if id_dtype == tf.int64 else ids.astype(str).astype(object)
    return table, ids, id_dtype


def _candidate_tower(model: Any, candidate_id: str | None) -> tuple[Any, str]:
    if hasattr(model, "candidate_tower"):
        return model.candidate_tower, candidate_id or model.candidate_id
    if isinstance(model, tf.keras.layers.Layer) and hasattr(model, "features"):
        return model, candidate_id or model.features[0]
    raise invalid_argument(
        "model", "be a TwoTowerRetrieval or its candidate Tower", type(model).__name__,
        error=TypeError,
    )


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


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
