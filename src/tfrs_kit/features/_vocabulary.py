"""Vocabularies: the id, category and token sets of features, counted from data.

Counting is vectorised with pandas over whole columns (never element by element
through ``tf.data``), counts from separate shards merge, and the fitted
:class:`Vocabularies` is immutable and saves to plain JSON. How columns are counted
(kinds, tokens, :class:`VocabularyCounts`) is in ``_counting``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, unknown_name
from tfrs_kit._progress import Progress
from tfrs_kit._validation import check_int, check_verbose
from tfrs_kit.data._files import is_files, iter_tables
from tfrs_kit.data._table import Table, TableLike, num_rows, to_table
from tfrs_kit.features._counting import (
    PUNCTUATION,
    STATISTICS,
    FeatureKind,
    VocabularyCounts,
    arrow_counts,
    check_no_padding_tokens,
    feature_kinds,
    flat_values,
    infer_kind,
    integral_to_int,
    numeric_values,
    sum_counts,
    token_dtype,
    tokenize,
)

__all__ = [
    "FeatureKind",
    "Vocabularies",
    "Vocabulary",
    "VocabularyBuilder",
    "VocabularyCounts",
    "PUNCTUATION",
    "layer_name",
    "tokenize",
]

# Defined in ``_counting`` and imported from here elsewhere (``tfrs_kit.beam``).
_feature_kinds = feature_kinds
_sum_counts = sum_counts
_FORMAT_VERSION = 1
_CHUNK_ROWS = 1 << 18  # rows counted at once when counting from files
_MERGE_EVERY = 16  # chunk counts held before they are summed into one


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The fitted vocabulary of one feature. Immutable.

    Tokens are ordered by decreasing count, ties by token. Index ``0 ..
    num_oov_buckets - 1`` are out-of-vocabulary buckets; token ``i`` has index
    ``num_oov_buckets + i`` (the convention of Keras ``StringLookup``).

    Attributes:
        name: The feature's name.
        kind: ``"categorical"`` (one id or category per row), ``"multi"`` (a list
            per row), ``"text"`` (a string split into tokens), ``"numeric"`` or
            ``"timestamp"`` (seconds since the epoch).
        tokens: The vocabulary (empty for numeric features).
        counts: How often each token occurred.
        dtype: ``"string"`` or ``"int64"``: the type of the raw values.
        num_oov_buckets: Buckets that unknown values are hashed into.
        ngrams: For text: the longest n-gram in the vocabulary.
        mean: For numeric: the mean of the finite values.
        std: For numeric: their standard deviation (1.0 if zero).
        boundaries: For numeric: quantile bucket boundaries.
        total: The number of values counted (rows for categorical and numeric).
    """

    name: str
    kind: FeatureKind
    tokens: tuple[Any, ...] = ()
    counts: tuple[int, ...] = ()
    dtype: str = "string"
    num_oov_buckets: int = 1
    ngrams: int = 1
    mean: float = 0.0
    std: float = 1.0
    boundaries: tuple[float, ...] = ()
    total: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def size(self) -> int:
        """The number of indices, tokens plus out-of-vocabulary buckets."""
        return len(self.tokens) + self.num_oov_buckets

    def lookup_layer(self, *, invert: bool = False) -> Any:
        """A new Keras lookup layer mapping raw values to indices (or back).

        Example:
            >>> vocab = Vocabulary(name="color", kind="categorical", tokens=("red", "blue"),
            ...                    counts=(2, 1))
            >>> vocab.lookup_layer()(["blue", "green"]).numpy().tolist()
            [2, 0]
        """
        import tensorflow as tf

        if self.kind in STATISTICS:
            raise invalid_argument(
                "kind", "have tokens for a lookup layer", self.kind,
                hint=f"Feature {self.name!r} has no vocabulary.",
            )
        layer = (
            tf.keras.layers.IntegerLookup if self.dtype == "int64" else tf.keras.layers.StringLookup
        )
        # An array, not a list: Keras tracks a list attribute element by element and walks
        # it on every `trainable_weights` (seconds per call at a million tokens).
        return layer(
            vocabulary=np.array(self.tokens, dtype=object if self.dtype == "string" else np.int64)
            if self.tokens else None,
            num_oov_indices=self.num_oov_buckets,
            mask_token=None,
            invert=invert,
            name=f"{layer_name(self.name)}_lookup" + ("_inverse" if invert else ""),
        )

    def index(self, values: Any) -> np.ndarray:
        """Maps raw values to indices with NumPy; unknown values go to OOV bucket 0.

        With a single OOV bucket this matches :meth:`lookup_layer` exactly.

        Example:
            >>> vocab = Vocabulary(name="color", kind="categorical", tokens=("red", "blue"),
            ...                    counts=(2, 1))
            >>> vocab.index(["blue", "green", "red"]).tolist()
            [2, 0, 1]
        """
        positions = pd.Index(list(self.tokens)).get_indexer(np.asarray(values, dtype=object))
        return np.where(positions < 0, 0, positions + self.num_oov_buckets).astype(np.int64)

    def extend(self, values: Any) -> Vocabulary:
        """This vocabulary with the values it lacks appended as tokens, in order of first
        appearance: every existing token keeps its index (a trained embedding table
        grows by rows at its end). Counts and the total add the values' occurrences.

        Example:
            >>> vocab = Vocabulary(name="item", kind="categorical", tokens=("a", "b"),
            ...                    counts=(2, 1))
            >>> vocab.extend(["c", "a"]).index(["a", "b", "c"]).tolist()
            [1, 2, 3]
        """
        if self.kind in STATISTICS:
            raise invalid_argument("kind", "have tokens to extend", self.kind,
                                   hint=f"Feature {self.name!r} has no vocabulary.")
        raw = np.asarray(values, dtype=object).ravel()
        if self.dtype == "int64":
            raw = np.asarray([int(v) for v in raw], dtype=object)
        occurrences = pd.Series(raw, dtype=object).value_counts(sort=False)
        known = pd.Index(list(self.tokens), dtype=object)
        paired = min(len(self.tokens), len(self.counts))  # counts of the tokens (vectorised)
        counts = (np.asarray(self.counts[:paired], np.int64) + occurrences.reindex(
            known[:paired], fill_value=0).to_numpy(np.int64)).tolist()
        unique = pd.unique(raw)
        added = unique[known.get_indexer(unique) < 0].tolist()
        return dataclasses.replace(
            self, tokens=(*self.tokens, *added), total=self.total + len(raw),
            counts=(*counts, *self.counts[paired:],
                    *occurrences.reindex(added).to_numpy(np.int64).tolist()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` reverses it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Vocabulary:
        """Rebuilds a vocabulary from :meth:`to_dict`'s output."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise invalid_argument(
                "config", f"only hold the fields {sorted(fields)}", f"unknown keys {unknown}"
            )
        values = dict(config)
        for key in ("tokens", "counts", "boundaries"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def layer_name(name: str) -> str:
    """A feature name as Keras accepts it in layer names: other characters become ``_``.

    Example:
        >>> layer_name("user id/v2")
        'user_id_v2'
    """
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


class Vocabularies(Mapping[str, Vocabulary]):
    """The fitted vocabularies of several features, by feature name. Immutable.

    Combine two with ``a | b``; save with :meth:`save` and restore with
    :meth:`load` (plain JSON, no pickle).

    Example:
        >>> vocabs = VocabularyBuilder().fit({"user": ["a", "b", "a"]})
        >>> vocabs["user"].tokens
        ('a', 'b')
    """

    def __init__(self, vocabularies: Iterable[Vocabulary] = ()) -> None:
        items = {v.name: v for v in vocabularies}
        self._items = MappingProxyType(items)

    def __getitem__(self, name: str) -> Vocabulary:
        try:
            return self._items[name]
        except KeyError:
            # A Mapping's lookup raises KeyError (``in`` and ``get`` rely on it).
            message = unknown_name("feature", name, self._items, what="feature with a vocabulary")
            raise KeyError(str(message)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __or__(self, other: Vocabularies) -> Vocabularies:
        return Vocabularies([*self.values(), *other.values()])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabularies) and dict(self._items) == dict(other._items)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, as Beam moves it between workers (the read-only view is not).
        return (Vocabularies, (tuple(self._items.values()),))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {v.kind}[{len(v)}]" for n, v in self._items.items())
        return f"Vocabularies({inner})"

    def alias(self, name: str, source: str, *, kind: FeatureKind | None = None) -> Vocabularies:
        """These vocabularies plus ``source``'s vocabulary under the name ``name``.

        For a feature that holds the same ids as another, such as a history of
        item ids: both then map ids to the same indices, so they can share an
        embedding (``TwoTowerRetrieval(share_embeddings=...)``).

        Example:
            >>> vocabs = VocabularyBuilder().fit({"item_id": ["x", "y", "x"]})
            >>> vocabs.alias("history", "item_id", kind="multi")["history"].tokens
            ('x', 'y')
        """
        vocab = dataclasses.replace(self[source], name=name, kind=kind or self[source].kind)
        if vocab.kind == "multi":
            check_no_padding_tokens(source, np.asarray(vocab.tokens, dtype=object), vocab.dtype,
                                    argument=f"vocabularies[{source!r}].tokens")
        return self | Vocabularies([vocab])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` reverses it."""
        return {
            "format_version": _FORMAT_VERSION,
            "vocabularies": [v.to_dict() for v in self.values()],
        }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Vocabularies:
        """Rebuilds vocabularies from :meth:`to_dict`'s output."""
        version = config.get("format_version") if isinstance(config, Mapping) else None
        if version != _FORMAT_VERSION:
            raise invalid_argument(
                "config",
                f"be saved vocabularies of format version {_FORMAT_VERSION}",
                f"format_version={version!r}",
                hint="Rebuild the vocabularies with this version of tfrs_kit.",
            )
        return cls(Vocabulary.from_dict(v) for v in config["vocabularies"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the vocabularies to a JSON file."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabularies:
        """Reads vocabularies written by :meth:`save`.

        Raises:
            ValueError: The file is not a vocabulary file of a known format.
        """
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except json.JSONDecodeError as error:
            raise invalid_argument(
                "path", "name a JSON file written by Vocabularies.save", str(path),
                hint=f"It does not parse: {error}.",
            ) from error
        return cls.from_dict(config)


class VocabularyBuilder:
    """Builds the vocabularies of several features at once, from any accepted table.

    Args:
        min_count: Tokens seen fewer times are left out (they map to an OOV bucket).
        max_tokens: Keep at most this many tokens per feature (the most frequent),
            not counting OOV buckets. ``None`` keeps all.
        num_oov_buckets: Buckets for out-of-vocabulary values (at least 1).
        ngrams: For text features, also count n-grams up to this length.
        num_buckets: For numeric features, the number of quantile buckets.

    Example:
        >>> import pandas as pd
        >>> log = pd.DataFrame({"user": ["a", "b", "a"], "genres": [["x"], ["x", "y"], []],
        ...                     "title": ["Toy Story", "Heat", "Toy Story"]})
        >>> vocabs = VocabularyBuilder().fit(log, features={"user": "categorical",
        ...                                                 "genres": "multi", "title": "text"})
        >>> vocabs["genres"].tokens, vocabs["title"].tokens
        (('x', 'y'), ('story', 'toy', 'heat'))
    """

    def __init__(
        self,
        *,
        min_count: int = 1,
        max_tokens: int | None = None,
        num_oov_buckets: int = 1,
        ngrams: int = 1,
        num_buckets: int = 10,
    ) -> None:
        self.min_count = check_int("min_count", min_count, minimum=1)
        self.max_tokens = check_int("max_tokens", max_tokens, minimum=1, allow_none=True)
        self.num_oov_buckets = check_int("num_oov_buckets", num_oov_buckets, minimum=1)
        self.ngrams = check_int("ngrams", ngrams, minimum=1)
        self.num_buckets = check_int("num_buckets", num_buckets, minimum=1)

    def __repr__(self) -> str:
        return (
            f"VocabularyBuilder(min_count={self.min_count}, max_tokens={self.max_tokens}, "
            f"num_oov_buckets={self.num_oov_buckets}, ngrams={self.ngrams}, "
            f"num_buckets={self.num_buckets})"
        )

    def fit(
        self,
        data: TableLike,
        features: Sequence[str] | Mapping[str, str] | None = None,
        *,
        verbose: Any = "auto",
    ) -> Vocabularies:
        """Counts ``features`` in ``data`` and returns their vocabularies.

        Args:
            data: A DataFrame, a dict of equal-length arrays, a ``tf.data.Dataset``
                of feature dicts, or files: a path, glob or list of Parquet, CSV or
                TFRecord shards (counted chunk by chunk).
            features: Feature names, or a mapping of name to kind (``"categorical"``,
                ``"multi"``, ``"text"``, ``"numeric"``, ``"timestamp"``). Kinds left
                out are inferred:
                a list per row is ``"multi"``, floats are ``"numeric"``, anything else
                ``"categorical"``; text must be asked for. ``None``: every column.
            verbose: Show progress per feature: ``"auto"`` (for a million rows
                or more), ``True`` or ``False``.

        Returns:
            The immutable :class:`Vocabularies`.
        """
        return self.from_counts(self.count(data, features, verbose=verbose))

    def count(
        self,
        data: TableLike,
        features: Sequence[str] | Mapping[str, str] | None = None,
        *,
        verbose: Any = "auto",
    ) -> VocabularyCounts:
        """Counts features without building vocabularies; merge shards with ``+``.

        Files (a path, glob or list of shards) are counted chunk by chunk, so memory
        holds one chunk and the counts, not the log (numeric features keep their
        values, for the quantiles).
        """
        verbose = check_verbose("verbose", verbose)
        kinds = feature_kinds(features)
        if is_files(data):
            return self._count_files(data, kinds, verbose)
        table = to_table(data, columns=list(kinds) if kinds else None)
        with Progress(len(table), description="Counting vocabularies", verbose=verbose,
                      size=num_rows(table)) as progress:
            return self._count(table, kinds, progress)

    def _count_files(self, data: Any, kinds: dict[str, str], verbose: Any) -> VocabularyCounts:
        parts: list[VocabularyCounts] = []
        quiet = Progress(1, description="", verbose=False)
        def counted_by_arrow(name: str, stored: str) -> bool:
            # Ids and categories stored as strings or integers: Arrow counts them,
            # with no Python object per value (what goes in is what NumPy would count).
            return stored in ("string", "int") and kinds.get(name, "") in ("", "categorical")

        for chunk in iter_tables(data, argument="data", columns=list(kinds) if kinds else None,
                                 rows_per_chunk=_CHUNK_ROWS, verbose=verbose,
                                 keep_arrow=counted_by_arrow):
            parts.append(self._count(chunk, kinds, quiet))
            # The first chunk's kinds hold for all: a later chunk cannot infer another.
            kinds = dict(parts[0].kinds)
            if len(parts) >= _MERGE_EVERY:
                parts = [sum_counts(parts)]
        return sum_counts(parts)

    def _count(self, table: Table, kinds: dict[str, str], progress: Progress) -> VocabularyCounts:
        counts: dict[str, pd.Series] = {}
        numeric: dict[str, np.ndarray] = {}
        kind_of: dict[str, str] = {}
        dtype_of: dict[str, str] = {}
        for name, column in table.items():
            progress.update()
            if not isinstance(column, np.ndarray):  # an Arrow array of ids, from files
                kind_of[name] = kinds.get(name) or "categorical"
                dtype_of[name], counts[name] = arrow_counts(name, column)
                continue
            kind = kinds.get(name) or infer_kind(column)
            kind_of[name] = kind
            if kind in STATISTICS:
                values = numeric_values(name, column)
                numeric[name] = values[np.isfinite(values)]
                dtype_of[name] = "float32"
                continue
            if kind in ("categorical", "multi"):
                column = integral_to_int(name, column, kind)
            values = flat_values(name, column, kind, self.ngrams)
            dtype_of[name] = token_dtype(name, values, kind)
            if kind == "multi":
                check_no_padding_tokens(name, values, dtype_of[name])
            counts[name] = pd.Series(values, dtype=object if dtype_of[name] == "string" else
                                     np.int64).value_counts(sort=False)
        return VocabularyCounts(kind_of, dtype_of, counts, numeric, self.ngrams)

    def from_counts(self, counts: VocabularyCounts) -> Vocabularies:
        """Builds vocabularies from (merged) counts."""
        vocabularies = []
        for name, kind in counts.kinds.items():
            if kind in STATISTICS:
                vocabularies.append(self._numeric(name, kind, counts.numeric[name]))
                continue
            series = counts.counts[name]
            series = series[series >= self.min_count]
            frame = pd.DataFrame({"token": series.index, "count": series.to_numpy()})
            frame = frame.sort_values(["count", "token"], ascending=[False, True], kind="stable")
            if self.max_tokens is not None:
                frame = frame.iloc[: self.max_tokens]
            tokens = tuple(
                int(t) if counts.dtypes[name] == "int64" else str(t) for t in frame["token"]
            )
            vocabularies.append(
                Vocabulary(
                    name=name,
                    kind=kind,  # type: ignore[arg-type]
                    tokens=tokens,
                    counts=tuple(int(c) for c in frame["count"]),
                    dtype=counts.dtypes[name],
                    num_oov_buckets=self.num_oov_buckets,
                    ngrams=counts.ngrams if kind == "text" else 1,
                    total=int(series.sum()),
                )
            )
        return Vocabularies(vocabularies)

    def _numeric(self, name: str, kind: str, values: np.ndarray) -> Vocabulary:
        if values.size == 0:
            raise invalid_argument(
                f"data[{name!r}]", "hold at least one finite number", "no finite values"
            )
        std = float(values.std())
        quantiles = np.quantile(values, np.linspace(0, 1, self.num_buckets + 1)[1:-1])
        return Vocabulary(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            dtype="float32",
            num_oov_buckets=self.num_oov_buckets,
            mean=float(values.mean()),
            std=std if std > 0 and math.isfinite(std) else 1.0,
            boundaries=tuple(float(b) for b in np.unique(quantiles)),
            total=int(values.size),
        )
