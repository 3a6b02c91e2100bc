"""Building an :class:`~tfrs_kit.Index`: embed the candidates, pick and tune a backend.

:class:`IndexBuilder` builds an index from a trained model, and rebuilds one for a
new catalogue when :meth:`Index.with_candidates <tfrs_kit.Index.with_candidates>` asks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument, missing_column
from tfrs_kit._validation import (
    check_choice,
    check_int,
    check_no_missing,
    check_same_kind,
    check_verbose,
    id_kind,
    padding_value,
    renamed_argument,
)
from tfrs_kit.data._files import is_files, iter_tables
from tfrs_kit.data._table import Table, TableLike, is_multivalued, last_rows, to_table
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.index._backends import BACKENDS, ScaNN, get_backend, import_scann
from tfrs_kit.index._cascade import build_cascade, check_cascade, unwrap_cascade
from tfrs_kit.index._index import Index
from tfrs_kit.index._serving import ServingModule

__all__ = ["IndexBuilder"]


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
        backend = check_choice("backend", backend, ("auto", *BACKENDS), what="index backend")
        k_max = check_int("k_max", k_max, minimum=1)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if backend_options is not None and not isinstance(backend_options, Mapping):
            raise invalid_argument("backend_options", "be a dict of option name to value",
                                   backend_options, error=TypeError)
        options = dict(backend_options or {})
        # Fail here, not after embedding a catalogue: unknown options, missing scann.
        known = ScaNN.option_names if backend == "auto" else BACKENDS[backend].option_names
        for option in options:
            check_choice("backend_options", option, known,
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

    def build(self, model: Any, candidates: TableLike, *, item_id: str | None = None,
              ranker: Any = None, retrieve_k: int | None = None,
              verbose: Any = "auto", candidate_id: str | None = None) -> Index:
        """Embeds every candidate and returns the index.

        Args:
            model: A :class:`~tfrs_kit.TwoTowerRetrieval` (or anything with
                ``query_tower``, ``candidate_tower`` and ``item_id``), or a
                :class:`~tfrs_kit.Cascade`: both its stages and its ``retrieve_k``.
            candidates: One row per candidate: its id column and the candidate
                tower's features (and the ranker's). Duplicate ids keep their last row.
                Files (``tk.data.Shards``, paths) are embedded chunk by chunk,
                reading only the id and the candidate tower's features: memory
                holds the ids and embeddings, never every candidate's features
                (with a ``ranker``, the candidates are read into memory).
            item_id: The id column (default: the model's ``item_id``).
            ranker: A trained :class:`~tfrs_kit.Ranker`: the index then retrieves
                ``retrieve_k`` candidates per query, re-ranks them with the
                ranker and returns the top ``k`` (a cascade, one SavedModel; its
                query features are both stages'). ``similar_items`` stays
                retrieval's.
            retrieve_k: With ``ranker``: the candidates re-ranked per query,
                from ``k_max`` to the catalogue size.
            verbose: Show progress while embedding: ``"auto"`` (a million
                candidates or more), ``True`` or ``False``.
            candidate_id: Deprecated: the old name of ``item_id``.
        """
        item_id = renamed_argument("item_id", item_id, old="candidate_id",
                                   old_value=candidate_id)
        verbose = check_verbose("verbose", verbose)
        model, candidates, ranker, retrieve_k = unwrap_cascade(model, candidates, ranker,
                                                               retrieve_k)
        item_id = item_id or _model_item_id(model)
        if is_files(candidates) and ranker is None and retrieve_k is None:
            ids, embeddings, id_dtype = _embed_files(
                lambda table: model.candidate_embeddings(table, batch_size=self.batch_size,
                                                         verbose=False),
                model.candidate_tower.features, candidates, item_id, verbose=verbose)
            return self._assemble(model.query_tower, ids, embeddings, id_dtype)
        table, ids, id_dtype = _candidate_table(candidates, item_id)
        specs = None
        if ranker is not None or retrieve_k is not None:
            specs = check_cascade(ranker, retrieve_k, model=model, candidates=table,
                                  num_candidates=len(ids), k_max=self.k_max)
        embeddings = model.candidate_embeddings(table, batch_size=self.batch_size,
                                                verbose=verbose)
        if specs is not None:
            return build_cascade(self, model, ranker, table, ids, embeddings.astype(np.float32),
                                 id_dtype, retrieve_k=retrieve_k, specs=specs)
        return self._assemble(model.query_tower, ids, embeddings.astype(np.float32), id_dtype)

    def _refresh(self, module: ServingModule, ids: np.ndarray, id_dtype: tf.DType, model: Any,
                 candidates: TableLike, *, item_id: str | None,
                 keep_existing: bool) -> Index:
        """The index of ``module`` with ``candidates`` added or replaced (see ``with_candidates``).

        Args:
            module: The index's serving module: its query tower and embeddings.
            ids: The index's candidate ids.
            id_dtype: The index's id dtype.
            model: A TwoTowerRetrieval or its candidate tower.
            candidates: The new or changed candidates.
            item_id: Their id column, or ``None`` for the model's.
            keep_existing: Keep the candidates not in ``candidates``.
        """
        tower, item_id = _candidate_tower(model, item_id)
        if is_files(candidates):
            new_ids, embeddings, _ = _embed_files(
                lambda table: tower.embed(table, batch_size=self.batch_size, verbose=False),
                tower.features, candidates, item_id, verbose="auto", index_ids=ids)
        else:
            table, new_ids, _ = _candidate_table(candidates, item_id)
            check_same_kind(f"candidates[{item_id!r}]", new_ids, ids, reference_name="the index")
            embeddings = tower.embed(table, batch_size=self.batch_size).astype(np.float32)
        old = module.embeddings.numpy()
        if embeddings.shape[1] != old.shape[1]:
            raise invalid_argument(
                "model", f"embed candidates in {old.shape[1]} dimensions like the index",
                f"{embeddings.shape[1]} dimensions",
                hint="Pass the candidate tower trained with this index's query tower.",
            )
        if keep_existing:
            where = pd.Index(ids).get_indexer(new_ids)
            known = where >= 0
            old[where[known]] = embeddings[known]
            new_ids = np.concatenate([ids, new_ids[~known]])
            embeddings = np.concatenate([old, embeddings[~known]], axis=0)
        return self._assemble(module.query_tower, new_ids, embeddings, id_dtype)

    def _assemble(self, query_tower: Any, ids: np.ndarray, embeddings: np.ndarray,
                  id_dtype: tf.DType) -> Index:
        backend = get_backend(self.backend, self.backend_options, len(ids))
        params = backend.resolve(len(ids), embeddings.shape[1], self.k_max)
        module = ServingModule(query_tower, ids, embeddings, id_dtype, self.k_max,
                               backend, params)
        vocabularies = getattr(query_tower, "vocabularies", None)
        return Index(module, ids=ids, k_max=self.k_max, backend=backend.name,
                     backend_options=params, query_specs=dict(query_tower.input_signature()),
                     id_dtype=id_dtype, builder=self,
                     vocabularies=vocabularies if isinstance(vocabularies, Vocabularies)
                     else Vocabularies())


def _candidate_table(candidates: TableLike,
                     item_id: str) -> tuple[Table, np.ndarray, tf.DType]:
    """The candidates' table with duplicate ids dropped (last row kept), its ids and id dtype."""
    table = to_table(candidates, argument="candidates")
    if item_id not in table:
        raise missing_column("candidates", item_id, table, role="the candidate id")
    ids = table[item_id]
    if is_multivalued(ids) or (ids.dtype.kind not in "iuO"):
        raise invalid_argument(
            f"candidates[{item_id!r}]", "hold string or integer ids", ids[:3].tolist(),
        )
    argument = f"candidates[{item_id!r}]"
    check_no_missing(argument, ids)
    kind = id_kind(ids)
    if kind == "mixed":
        check_same_kind(argument, ids, ids)  # raises, naming one id of each kind
    table = last_rows(table, item_id)
    ids = table[item_id]
    if kind == "number" and ids.dtype == object:
        ids = ids.astype(np.int64)
    id_dtype = tf.int64 if ids.dtype.kind in "iu" else tf.string
    pad = padding_value("string" if id_dtype == tf.string else "int64")
    if np.any(ids == pad):
        raise invalid_argument(
            argument, f"hold no {pad!r}: it pads exclusion lists and empty result slots",
            f"{pad!r} at row {int(np.flatnonzero(ids == pad)[0])}",
            hint="Give that candidate another id.",
        )
    ids = ids.astype(np.int64) if id_dtype == tf.int64 else ids.astype(str).astype(object)
    return table, ids, id_dtype


def _embed_files(embed: Callable[[Table], np.ndarray], features: Sequence[str],
                 candidates: TableLike, item_id: str, *, verbose: Any,
                 index_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, tf.DType]:
    """The ids, float32 embeddings and id dtype of candidates in files, chunk by chunk.

    Only the id and ``features`` are read; each chunk is checked and deduplicated
    as :func:`_candidate_table` does a table (and its ids against ``index_ids``),
    embedded, and dropped. Across chunks a duplicate id keeps its last row, in the
    order a whole table would have.
    """
    argument = f"candidates[{item_id!r}]"
    ids_parts: list[np.ndarray] = []
    embedding_parts: list[np.ndarray] = []
    dtype = None
    for chunk in iter_tables(candidates, argument="candidates",
                             columns=list(dict.fromkeys([item_id, *features])),
                             rows_per_chunk=_CHUNK_ROWS, verbose=verbose):
        table, chunk_ids, dtype = _candidate_table(chunk, item_id)
        if index_ids is not None:
            check_same_kind(argument, chunk_ids, index_ids, reference_name="the index")
        if ids_parts:
            check_same_kind(argument, chunk_ids, ids_parts[0], reference_name=argument)
        ids_parts.append(chunk_ids)
        embedding_parts.append(np.asarray(embed(table), dtype=np.float32))
    if not ids_parts:
        raise invalid_argument("candidates", "have at least one row", "files without rows")
    ids = np.concatenate(ids_parts)
    keep = ~pd.Series(ids).duplicated(keep="last").to_numpy()
    return ids[keep], np.concatenate(embedding_parts, axis=0)[keep], dtype


_CHUNK_ROWS = 65536  # candidates read and embedded at once from files


def _model_item_id(model: Any) -> str:
    """The id column of ``model``: its ``item_id`` (``candidate_id`` before the rename)."""
    item_id = getattr(model, "item_id", None)
    return item_id if item_id is not None else model.candidate_id


def _candidate_tower(model: Any, item_id: str | None) -> tuple[Any, str]:
    if hasattr(model, "candidate_tower"):
        return model.candidate_tower, item_id or _model_item_id(model)
    if isinstance(model, tf.keras.layers.Layer) and hasattr(model, "features"):
        return model, item_id or model.features[0]
    raise invalid_argument(
        "model", "be a TwoTowerRetrieval or its candidate Tower", type(model).__name__,
        error=TypeError,
    )
