"""Search backends of :class:`~tfrs_kit.IndexBuilder`: one small interface, several engines.

A backend turns a ``[candidates, dim]`` embedding matrix into a :class:`Searcher`,
a ``tf.Module`` whose :meth:`Searcher.search` runs inside the index's serving
functions (so it is saved in the SavedModel with them). Adding an engine means
subclassing :class:`Backend` (options, their size-derived defaults, and
``make_searcher``) and :class:`Searcher` (one method, ``_nearest``), then adding
the backend to ``BACKENDS``.

Exclusions are the searcher's job: :meth:`Searcher.search` asks the engine for
``k`` plus the number of excluded ids and filters them out, so an approximate
engine never needs to know about them. Brute force instead masks them before
its top-k, which is exact and fetches nothing extra.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_choice, check_int

__all__ = ["AUTO_SCANN_THRESHOLD", "BACKENDS", "Backend", "BruteForce", "ScaNN", "Searcher",
           "get_backend", "import_scann", "scann_available"]

#: ``backend="auto"`` picks ScaNN from this many candidates on, when it is installed.
AUTO_SCANN_THRESHOLD = 100_000

_SCANN_OPS: list[ModuleType] = []  # scann's TF ops once imported; read while tracing
_SCANN_HINT = 'Install it with: pip install "tfrs-kit[scann]" (Linux x86_64, TensorFlow 2.20).'


class Searcher(tf.Module):
    """The top-k search over one catalogue's embeddings, traced into serving functions.

    Subclasses implement :meth:`_nearest`; :meth:`search` adds exclusions.
    """

    def __init__(self, num_candidates: int) -> None:
        super().__init__()
        self.num_candidates = int(num_candidates)

    def search(self, queries: tf.Tensor, k: tf.Tensor,
               excluded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The ``k`` best candidates of each query, excluded positions left out.

        Args:
            queries: ``[batch, dim]`` float32 query embeddings.
            k: Scalar int32, at most ``num_candidates``.
            excluded: ``[batch, width]`` int64 candidate positions to leave out;
                negative entries are padding.

        Returns:
            ``[batch, k]`` float32 scores (``-inf`` where fewer than ``k``
            candidates were found) and ``[batch, k]`` int64 positions.
        """
        width = tf.shape(excluded)[1]
        fetch = tf.minimum(k + width, self.num_candidates)
        scores, positions = self._nearest(queries, fetch)
        dropped = tf.math.is_nan(scores) | _contains(excluded, positions)
        scores = tf.where(dropped, tf.constant(-np.inf, scores.dtype), scores)
        missing = tf.maximum(k - tf.shape(scores)[1], 0)  # the engine found fewer than k
        scores = tf.pad(scores, [[0, 0], [0, missing]], constant_values=-np.inf)
        positions = tf.pad(positions, [[0, 0], [0, missing]])
        top_scores, order = tf.math.top_k(scores, k=k)
        return top_scores, tf.gather(positions, order, batch_dims=1)

    def _nearest(self, queries: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Up to ``k`` ``(scores, int64 positions)`` per query, best first; NaN scores pad."""
        raise NotImplementedError


class Backend:
    """A search engine: its options, their defaults for a catalogue, and its searcher.

    Args:
        **options: Values for some of ``option_names``; the rest are derived
            from the catalogue in :meth:`resolve`.
    """

    name: ClassVar[str]
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        for option in options:
            check_choice("backend_options", option, self.option_names,
                         what=f"option of the {self.name!r} backend")
        self.options = dict(options)

    def resolve(self, num_candidates: int, dim: int, k_max: int) -> dict[str, Any]:
        """Every option's value for this catalogue: the user's, else a derived default."""
        return dict(self.options)

    def make_searcher(self, embeddings: tf.Variable, params: dict[str, Any]) -> Searcher:
        """The searcher over ``embeddings`` (``[candidates, dim]`` float32)."""
        raise NotImplementedError

    @classmethod
    def max_batch(cls, params: dict[str, Any], num_candidates: int) -> int | None:
        """The most queries per call that keep memory in check (``None``: no limit)."""
        return None


class BruteForce(Backend):
    """Exact: scores every candidate, in chunks of ``chunk_size`` candidates.

    Options:
        chunk_size: Candidates scored at once (default 65,536); bounds memory
            at ``batch x chunk_size`` scores.
    """

    name = "brute_force"
    option_names = ("chunk_size",)

    def resolve(self, num_candidates: int, dim: int, k_max: int) -> dict[str, Any]:
        chunk = check_int("backend_options['chunk_size']", self.options.get("chunk_size", 65_536),
                          minimum=1)
        return {"chunk_size": chunk}

    def make_searcher(self, embeddings: tf.Variable, params: dict[str, Any]) -> Searcher:
        return _BruteForceSearcher(embeddings, params["chunk_size"])

    @classmethod
    def max_batch(cls, params: dict[str, Any], num_candidates: int) -> int | None:
        # Keeps one batch's score matrix near 256 MB.
        return max(1, 2**26 // max(1, min(num_candidates, params["chunk_size"])))


class _BruteForceSearcher(Searcher):
    def __init__(self, embeddings: tf.Variable, chunk_size: int) -> None:
        super().__init__(int(embeddings.shape[0]))
        self.embeddings = embeddings
        self.chunk_size = chunk_size

    def search(self, queries: tf.Tensor, k: tf.Tensor,
               excluded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rows = tf.broadcast_to(tf.range(tf.shape(excluded, out_type=tf.int64)[0])[:, None],
                               tf.shape(excluded, out_type=tf.int64))
        parts = []
        for start in range(0, self.num_candidates, self.chunk_size):
            stop = min(start + self.chunk_size, self.num_candidates)
            scores = tf.matmul(queries, self.embeddings[start:stop], transpose_b=True)
            inside = (excluded >= start) & (excluded < stop)
            where = tf.stack([tf.boolean_mask(rows, inside),
                              tf.boolean_mask(excluded, inside) - start], axis=1)
            scores = tf.tensor_scatter_nd_update(
                scores, where, tf.fill(tf.shape(where)[:1], tf.constant(-np.inf, scores.dtype)))
            top_scores, top = tf.math.top_k(scores, k=tf.minimum(k, stop - start))
            parts.append((top_scores, tf.cast(top, tf.int64) + start))
        if len(parts) == 1:
            return parts[0]
        scores = tf.concat([s for s, _ in parts], axis=1)  # chunk order keeps ties stable
        positions = tf.concat([p for _, p in parts], axis=1)
        top_scores, order = tf.math.top_k(scores, k=k)
        return top_scores, tf.gather(positions, order, batch_dims=1)


class ScaNN(Backend):
    """Approximate: ScaNN's partitioning tree, asymmetric hashing, then exact reordering.

    Needs the ``scann`` extra. Every option has a default derived from the
    catalogue of ``n`` candidates:

    Options:
        num_leaves: Partitions of the tree, ``round(sqrt(n))``; 0 (the default
            below 1,024 candidates) scores every candidate by hashing.
        num_leaves_to_search: Partitions searched per query:
            ``max(10, num_leaves / 20)``, raised so they hold at least about
            20,000 candidates and twice ``num_reordering_candidates``.
        num_reordering_candidates: Candidates rescored exactly per query,
            ``max(100, 4 * k_max)`` (raised at query time to ``k`` plus the
            exclusions when needed). Scores returned are exact dot products.
        dimensions_per_block: Dimensions per hashing block, 2.
        anisotropic_quantization_threshold: 0.2, ScaNN's advice for dot products.
        training_sample_size: Candidates the tree and hashing are trained on,
            ``min(n, 100000)``.
        training_iterations: k-means iterations of the tree, 12.
    """

    name = "scann"
    option_names = ("num_leaves", "num_leaves_to_search", "num_reordering_candidates",
                    "dimensions_per_block", "anisotropic_quantization_threshold",
                    "training_sample_size", "training_iterations")

    def __init__(self, **options: Any) -> None:
        import_scann()
        super().__init__(**options)

    def resolve(self, num_candidates: int, dim: int, k_max: int) -> dict[str, Any]:
        n, given = num_candidates, self.options
        for option in ("num_leaves_to_search", "num_reordering_candidates",
                       "dimensions_per_block", "training_sample_size", "training_iterations"):
            if option in given:
                check_int(f"backend_options[{option!r}]", given[option], minimum=1)
        leaves = check_int("backend_options['num_leaves']",
                           given.get("num_leaves", round(math.sqrt(n)) if n >= 1024 else 0),
                           minimum=0, maximum=n)
        reorder = min(n, given.get("num_reordering_candidates", max(100, 4 * k_max)))
        if leaves:
            # Search 5% of the leaves, at least 10, holding at least twice the reordered
            # candidates and ~20,000 candidates in all (cheap, and near exact when small).
            wanted = max(10, math.ceil(leaves / 20), math.ceil(2 * reorder * leaves / n),
                         math.ceil(20_000 * leaves / n))
            to_search = min(leaves, given.get("num_leaves_to_search", wanted))
        else:
            to_search = 0
        return {
            "num_leaves": int(leaves),
            "num_leaves_to_search": int(to_search),
            "num_reordering_candidates": int(reorder),
            "dimensions_per_block": int(given.get("dimensions_per_block", 2)),
            "anisotropic_quantization_threshold":
                float(given.get("anisotropic_quantization_threshold", 0.2)),
            "training_sample_size": int(min(n, given.get("training_sample_size", 100_000))),
            "training_iterations": int(given.get("training_iterations", 12)),
        }

    def make_searcher(self, embeddings: tf.Variable, params: dict[str, Any]) -> Searcher:
        return _ScannSearcher(embeddings.numpy(), params)


class _ScannSearcher(Searcher):
    """Holds ScaNN's serialized state; each serving function rebuilds the searcher once.

    ScaNN's TF kernel keeps the searcher it builds from the state variables for
    the life of the function, so only the first call of each signature pays
    for it (about a second per million candidates).
    """

    def __init__(self, embeddings: np.ndarray, params: dict[str, Any]) -> None:
        super().__init__(len(embeddings))
        ops = import_scann()
        builder = ops.builder(embeddings, 10, "dot_product")
        if params["num_leaves"]:
            builder = builder.tree(
                num_leaves=params["num_leaves"],
                num_leaves_to_search=params["num_leaves_to_search"],
                training_sample_size=params["training_sample_size"],
                training_iterations=params["training_iterations"],
            )
        builder = builder.score_ah(
            params["dimensions_per_block"],
            anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"],
            training_sample_size=params["training_sample_size"],
        ).reorder(params["num_reordering_candidates"])
        self.state = builder.build().serialize_to_module()
        self.num_reordering_candidates = params["num_reordering_candidates"]

    def _nearest(self, queries: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        result = _SCANN_OPS[0].scann_search_batched(
            self.state.recreate_handle(), queries, k,
            tf.maximum(k, self.num_reordering_candidates), -1, True,
        )
        return result.distances, tf.cast(result.indices, tf.int64)


BACKENDS: dict[str, type[Backend]] = {"brute_force": BruteForce, "scann": ScaNN}


def get_backend(name: str, options: dict[str, Any] | None, num_candidates: int) -> Backend:
    """The backend called ``name`` (``"auto"`` resolved for this catalogue size)."""
    if name == "auto":
        use_scann = num_candidates >= AUTO_SCANN_THRESHOLD and scann_available()
        name = "scann" if use_scann else "brute_force"
        options = options if use_scann else None  # options name the engine they tune
    return BACKENDS[name](**(options or {}))


def scann_available() -> bool:
    """Whether ``import scann`` works here."""
    try:
        import_scann()
    except ImportError:
        return False
    return True


def import_scann() -> ModuleType:
    """ScaNN's TensorFlow ops (importing ``scann`` registers them), or an ImportError."""
    try:
        importlib.import_module("scann")
        ops = importlib.import_module("scann.scann_ops.py.scann_ops")
    except ImportError as error:
        raise invalid_argument(
            "backend", "name an installed search library: 'scann' needs the scann package",
            "scann", hint=f"{_SCANN_HINT} ({error})", error=ImportError,
        ) from error
    if not _SCANN_OPS:
        _SCANN_OPS.append(ops)
    return ops


def _contains(excluded: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """Whether each of ``positions[b]`` is in ``excluded[b]``, by binary search."""
    pad = tf.fill([tf.shape(excluded)[0], 1], tf.constant(-1, excluded.dtype))
    table = tf.sort(tf.concat([pad, excluded], axis=1), axis=1)
    where = tf.minimum(tf.searchsorted(table, positions, side="left"), tf.shape(table)[1] - 1)
    return tf.gather(table, where, batch_dims=1) == positions

