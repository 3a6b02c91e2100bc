"""Top-k indexes over candidate embeddings: :class:`Index` and its :class:`Recommendations`.

An :class:`Index` serves through the same TensorFlow functions in memory and
after :func:`~tfrs_kit.load_index`, so what you test before saving is what you serve.
The search itself is a backend (``index/_backends.py``): exact brute force, or ScaNN.
The exported SavedModel needs only TensorFlow (and ``import scann`` first for a
ScaNN index, which registers its ops):

>>> import tensorflow as tf  # doctest: +SKIP
>>> served = tf.saved_model.load("my_index/saved_model")  # doctest: +SKIP
>>> served.signatures["serving_default"](user_id=tf.constant(["42"]))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int, renamed_argument
from tfrs_kit.data._table import TableLike, to_table
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.index._backends import BACKENDS
from tfrs_kit.index._explain import Explanation, explain_results, history_feature_of
from tfrs_kit.index._export import export, index_metadata
from tfrs_kit.index._inputs import check_ids, exclusion_tensor, query_tensor
from tfrs_kit.index._serving import ServingModule

__all__ = ["Index", "Recommendations"]


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k results, one row per query, best first.

    Attributes:
        ids: ``[queries, k]`` candidate ids. Where fewer than ``k``
            candidates are left after exclusions, the empty slots hold the
            padding id: ``""`` for string ids, ``-1`` for integer ids (neither
            can be a candidate id).
        scores: ``[queries, k]`` float32 scores; ``-inf`` in the empty slots.
        explanations: With ``recommend(..., explain=True)``: per query, per
            slot, an :class:`~tfrs_kit.index.Explanation` (the history items
            that contributed most, and each score component's share), ``None``
            in an empty slot; otherwise ``None``.
    """

    ids: np.ndarray
    scores: np.ndarray
    explanations: list[list[Explanation | None]] | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.ids, self.scores))


class _Builder(Protocol):
    """What :meth:`Index.with_candidates` asks of the IndexBuilder that built the index."""

    def _refresh(self, module: ServingModule, ids: np.ndarray, id_dtype: tf.DType, model: Any,
                 candidates: TableLike, *, item_id: str | None,
                 keep_existing: bool) -> Index: ...


class Index:
    """A servable top-k index: raw query features in, candidate ids and scores out.

    Build one with :class:`IndexBuilder`, or reload one with :func:`load_index`.
    Immutable: :meth:`with_candidates` returns a new index.

    Attributes:
        ids: The candidate ids, in index order.
        k_max: The largest ``k`` served (and the ``k`` of the default signature).
        retrieve_k: A cascade's candidates retrieved per query and re-ranked;
            ``None`` for a retrieval index.
        backend: The search backend's name (``"brute_force"`` or ``"scann"``).
        backend_options: Every option of the backend, as used for this catalogue.
        query_features: The names of the raw query features it reads.
        vocabularies: The query tower's vocabularies.
    """

    def __init__(self, functions: Any, *, ids: np.ndarray, k_max: int, backend: str,
                 backend_options: dict[str, Any], query_specs: dict[str, tf.TensorSpec],
                 id_dtype: tf.DType, vocabularies: Vocabularies,
                 builder: _Builder | None = None, retrieve_k: int | None = None) -> None:
        self._functions = functions
        self.retrieve_k = retrieve_k
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
        k: int | None = None,
        exclude: Sequence[Sequence[Any]] | None = None,
        batch_size: int = 4096,
        explain: bool | str = False,
    ) -> Recommendations:
        """The top ``k`` candidates for each query row.

        Args:
            query_features: One row per query with every feature in
                ``query_features`` (a DataFrame, dict of arrays or dataset).
                Ids never seen in training map to the out-of-vocabulary
                embedding: such a query still gets recommendations.
            k: How many candidates per query, 1 to ``min(k_max, len(index))``;
                default 10, or that limit when it is smaller.
            exclude: For each query, candidate ids to leave out (such as the
                items a user has already seen).
            batch_size: Queries scored at once (brute force lowers it to keep
                each batch's score matrix near 256 MB).
            explain: Also explain each recommended item
                (``Recommendations.explanations``): the query's history items
                whose removal from the history lowers its retrieval score most
                (leave-one-out through the query tower), and each score
                component's share. ``True`` reads the
                history from the cascade ranker's history feature, or the one
                query feature that is a list of item ids; a string names it.

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
        k = self._checked_k(k)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        batch_size = min(batch_size, self._max_batch or batch_size)
        excluded = exclusion_tensor(exclude, n, self._id_dtype, self._id_index)
        inputs = {name: query_tensor(name, table[name], self._query_specs[name],
                                     kind=self._kind(name))
                  for name in self.query_features}
        parts = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            parts.append(self._functions.recommend(
                {name: tensor[start:stop] for name, tensor in inputs.items()},
                tf.constant(k, tf.int32), excluded[start:stop]))
        results = self._results(parts)
        if explain is False:
            return results
        return self._explained(results, inputs, table, excluded, explain, batch_size)

    def _query_vectors(self, query_features: TableLike, *,
                       inputs: dict[str, tf.Tensor] | None = None,
                       batch_size: int = 4096) -> np.ndarray:
        """``[queries, d]``: the query tower's outputs, as the index searches with them."""
        if inputs is None:
            table = to_table(query_features, argument="query_features",
                             columns=self.query_features)
            inputs = {name: query_tensor(name, table[name], self._query_specs[name],
                                         kind=self._kind(name))
                      for name in self.query_features}
        n = int(tf.shape(next(iter(inputs.values())))[0])
        width = int(self._functions.embeddings.shape[1])
        return np.concatenate([np.zeros((0, width), np.float32)] + [
            _embed_queries(self._functions,
                           {name: tensor[start:start + batch_size]
                            for name, tensor in inputs.items()})
            for start in range(0, n, batch_size)])

    def _explained(self, results: Recommendations, inputs: dict[str, tf.Tensor], table: Any,
                   excluded: tf.Tensor, explain: Any, batch_size: int) -> Recommendations:
        """``results`` with their explanations (see :mod:`~tfrs_kit.index._explain`)."""
        feature = history_feature_of(self._functions, self._query_specs, self._id_dtype,
                                     explain)
        positions = self._id_index.get_indexer(results.ids.ravel()).reshape(results.ids.shape)
        rows = excluded.numpy()
        rows = _decoded(rows) if rows.dtype == object else rows
        excluded_positions = [found[found >= 0] for found in map(self._id_index.get_indexer, rows)]
        callable_tower = self._tower_callable({name: t[:1] for name, t in inputs.items()})
        explanations = explain_results(
            self._functions,
            queries=lambda: self._query_vectors(table, inputs=inputs, batch_size=batch_size),
            history=table[feature], ids=self._id_index,
            positions=positions, scores=results.scores, excluded=excluded_positions,
            retrieve_k=self.retrieve_k, padding="" if self._id_dtype == tf.string else -1,
            scores_with=self._scores_with(table, feature, positions, batch_size)
            if callable_tower else None)
        return dataclasses.replace(results, explanations=explanations)

    def _tower_callable(self, inputs: dict[str, tf.Tensor]) -> bool:
        """Whether the query tower can embed these inputs (a loaded one may not)."""
        try:
            _embed_queries(self._functions, inputs)
        except (ValueError, TypeError):
            return False
        return True

    def _scores_with(self, table: Any, feature: str, positions: np.ndarray,
                     batch_size: int) -> Any:
        """``(owners, histories) -> [m, k]``: the retrieval scores of query ``owners[i]``'s
        recommended items when its history is ``histories[i]`` (for ``leave_one_out``)."""
        embeddings = self._functions.embeddings.numpy()
        dtype = np.int64 if self._id_dtype == tf.int64 else object

        def scores_with(owners: np.ndarray, histories: list[Any]) -> np.ndarray:
            rows = {name: np.asarray(table[name])[owners] for name in self.query_features}
            column = np.empty(len(histories), dtype=object)
            column[:] = [np.asarray(h, dtype=dtype) for h in histories]
            rows[feature] = column
            vectors = self._query_vectors(rows, batch_size=batch_size)
            return np.einsum("md,mkd->mk", vectors, embeddings[positions[owners].clip(0)])

        return scores_with

    def similar_items(self, item_ids: Sequence[Any], *, k: int | None = None) -> Recommendations:
        """For each candidate id, the ``k`` candidates closest to it (itself excluded).

        Closeness is the dot product of candidate embeddings, searched by the
        index's backend. ``k`` is as in :meth:`recommend`.

        Example:
            >>> import tfrs_kit as tk
            >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"], "item_id": ["x", "y"]})
            >>> model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
            ...                              tk.Tower(vocabs, features=["item_id"], output_dim=4))
            >>> index = tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]})
            >>> index.similar_items(["x"], k=1).ids.tolist()
            [['y']]
        """
        if isinstance(item_ids, (str, bytes)):
            raise invalid_argument("item_ids", "be a list of candidate ids", item_ids,
                                   error=TypeError, hint=f"Did you mean [{item_ids!r}]?")
        ids = np.empty(len(item_ids), dtype=object)
        ids[:] = [_plain(v) for v in item_ids]
        check_ids(ids, self._id_index, "item_ids")
        ids = ids.astype(np.int64) if self._id_dtype == tf.int64 else ids
        k = self._checked_k(k)
        out = self._functions.similar_items(tf.constant(ids, self._id_dtype),
                                            tf.constant(k, tf.int32))
        return self._results([out])

    def with_candidates(
        self,
        model: Any,
        candidates: TableLike,
        *,
        item_id: str | None = None,
        keep_existing: bool = True,
        candidate_id: str | None = None,
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
            item_id: The id column (default: the model's ``item_id``, or a
                tower's first feature).
            keep_existing: Keep the candidates not named in ``candidates`` (ids
                already in the index get their new embedding in place, new ids
                are appended). ``False`` replaces the whole catalogue.
            candidate_id: Deprecated: the old name of ``item_id``.

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
        item_id = renamed_argument("item_id", item_id, old="candidate_id",
                                   old_value=candidate_id)
        module, builder = self._built("refreshed")
        return builder._refresh(module, self.ids, self._id_dtype, model, candidates,
                                item_id=item_id, keep_existing=keep_existing)

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
        killed midway leaves a hidden ``.NAME.tmp-*`` directory beside
        ``path``, removed by the next ``save`` to that path; one killed between
        the two renames of the final swap leaves the previous export in
        ``.NAME.old-*``, moved back by the next ``save`` or :func:`load_index`.
        Directories follow the process's umask. See ``docs/reliability.md``.

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
        module, _ = self._built("saved again")
        metadata = index_metadata(
            module, backend=self.backend, backend_options=self.backend_options,
            k_max=self.k_max, num_candidates=len(self), id_dtype=self._id_dtype,
            query_specs=self._query_specs,
        )
        export(path, module, vocabularies=self.vocabularies, metadata=metadata)

    def _built(self, action: str) -> tuple[ServingModule, _Builder]:
        """The serving module and builder of an index built in this process (not loaded)."""
        if not isinstance(self._functions, ServingModule) or self._builder is None:
            raise invalid_argument(
                "self", f"be an index built in this process to be {action}", "a loaded index",
                hint="Copy the directory to save it elsewhere, or rebuild it with "
                "IndexBuilder(...).build(model, candidates).",
            )
        return self._functions, self._builder

    def _kind(self, feature: str) -> str | None:
        vocab = self.vocabularies.get(feature)
        return vocab.kind if vocab is not None else None

    def _checked_k(self, k: int | None) -> int:
        """``k``, checked against the index's limit; ``None``: 10, or the limit if smaller."""
        limit = min(self.k_max, len(self))
        if k is None:
            return min(10, limit)
        # check_int has no room for the limit's reasons or the k_max hint: range checked here.
        if not 1 <= check_int("k", k) <= limit:
            raise invalid_argument(
                "k", f"be an integer from 1 to {limit} (k_max={self.k_max}, "
                f"{len(self)} candidates)", k,
                hint="Build the index with a larger k_max for more." if k > self.k_max else None,
            )
        return k

    def _results(self, parts: list[dict[str, tf.Tensor]]) -> Recommendations:
        ids = np.concatenate([p["ids"].numpy() for p in parts], axis=0)
        if ids.dtype == object:
            ids = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(ids)
        scores = np.concatenate([p["scores"].numpy() for p in parts], axis=0)
        return Recommendations(ids=ids, scores=scores)


def _embed_queries(functions: Any, features: dict[str, tf.Tensor]) -> np.ndarray:
    """The query tower's outputs, or an error that says why a loaded one cannot give them.

    An index exported with ``embed_queries`` (the query tower traced with the
    serving inputs) calls it; in an older export, a reloaded Keras tower keeps
    only the call traces of training (other inputs, list features ragged), not
    one the serving signatures' inputs match.
    """
    embed = getattr(functions, "embed_queries", None)
    if embed is not None:  # its inputs: the query tower's (a cascade's signature has more)
        return embed({name: features[name] for name in embed.input_signature[0]}).numpy()
    tower = functions.query_tower
    try:
        return tower(features, training=False).numpy()
    except (ValueError, TypeError) as error:
        if not hasattr(tower, "call_and_return_all_conditional_losses"):
            raise  # an in-memory tower: a real error
        raise invalid_argument(
            "explain", "be used on an index built in this process to get the score shares "
            "of a blend or a cascade (a loaded query tower cannot be called alone)",
            "a loaded index", hint="Explain with the index built by IndexBuilder(...).build"
            "(...); a loaded two-tower index explains by history alone.") from error


def _decoded(values: np.ndarray) -> np.ndarray:
    """Bytes ids as strings."""
    return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(values)


def _plain(value: Any) -> Any:
    """NumPy scalars as Python values, bytes decoded: ids as the index holds them."""
    value = value.item() if isinstance(value, np.generic) else value
    return value.decode("utf-8") if isinstance(value, bytes) else value
