"""Vocabularies: the id, category and token sets of features, counted from data.

Counting is vectorised with pandas over whole columns (never element by element
through ``tf.data``), counts from separate shards merge, and the fitted
:class:`Vocabularies` is immutable and saves to plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument, unknown_name
from tfrs_kit._progress import Progress
from tfrs_kit._validation import (
    check_choice,
    check_int,
    check_no_infinity,
    check_verbose,
    id_kind,
    padding_value,
)
from tfrs_kit.data._files import counts_series, is_files, iter_tables
from tfrs_kit.data._table import Table, TableLike, is_multivalued, num_rows, to_table

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

FeatureKind = Literal["categorical", "multi", "text", "numeric", "timestamp"]
_KINDS: tuple[str, ...] = ("categorical", "multi", "text", "numeric", "timestamp")
_STATISTICS = ("numeric", "timestamp")  # kinds described by statistics, not tokens
_FORMAT_VERSION = 1
_CHUNK_ROWS = 1 << 18  # rows counted at once when counting from files
_MERGE_EVERY = 16  # chunk counts held before they are summed into one
#: ASCII punctuation (RE2's ``[[:punct:]]``), which tokens never hold. Python's ``re``
#: and TensorFlow's RE2 read it alike, so text vocabularies and text encoders split
#: text into the same tokens.
PUNCTUATION = r"[!-/:-@\[-`{-~]"
_PUNCTUATION_RE = re.compile(PUNCTUATION)


def tokenize(text: str, *, ngrams: int = 1) -> list[str]:
    """Splits text into the tokens that text vocabularies and text encoders use.

    Lower-cases, replaces ASCII punctuation with spaces, splits on white space and,
    with ``ngrams > 1``, appends the space-joined n-grams up to that length.

    Args:
        text: The text.
        ngrams: The longest n-gram to produce.

    Returns:
        The tokens.

    Example:
        >>> tokenize("Toy Story (1995)", ngrams=2)
        ['toy', 'story', '1995', 'toy story', 'story 1995']
    """
    words = _PUNCTUATION_RE.sub(" ", text.lower()).split()
    tokens = list(words)
    for n in range(2, ngrams + 1):
        tokens.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return tokens


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

        if self.kind in _STATISTICS:
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


@dataclasses.dataclass(frozen=True)
class VocabularyCounts:
    """Raw counts of features, before ``min_count`` and ``max_tokens`` apply.

    Counts of separate shards merge with ``+``, so vocabularies of a log too large
    for one pass (or one machine) are counted shard by shard, then built once
    with :meth:`VocabularyBuilder.from_counts`.

    Example:
        >>> builder = VocabularyBuilder()
        >>> a = builder.count({"user": ["x", "y"]})
        >>> b = builder.count({"user": ["x"]})
        >>> builder.from_counts(a + b)["user"].counts
        (2, 1)
    """

    kinds: Mapping[str, str]
    dtypes: Mapping[str, str]
    counts: Mapping[str, pd.Series]
    numeric: Mapping[str, np.ndarray]  # a sample of finite values per numeric feature
    ngrams: int = 1

    def __add__(self, other: VocabularyCounts) -> VocabularyCounts:
        for name in set(self.kinds) & set(other.kinds):
            if self.kinds[name] != other.kinds[name] or self.dtypes[name] != other.dtypes[name]:
                raise invalid_argument(
                    "other",
                    f"count feature {name!r} with the same kind and dtype",
                    f"{other.kinds[name]}/{other.dtypes[name]} "
                    f"(this: {self.kinds[name]}/{self.dtypes[name]})",
                )
        counts = dict(self.counts)
        for name, series in other.counts.items():
            counts[name] = counts[name].add(series, fill_value=0) if name in counts else series
        numeric = dict(self.numeric)
        for name, values in other.numeric.items():
            numeric[name] = np.concatenate([numeric[name], values]) if name in numeric else values
        return VocabularyCounts(
            kinds={**self.kinds, **other.kinds},
            dtypes={**self.dtypes, **other.dtypes},
            counts=counts,
            numeric=numeric,
            ngrams=max(self.ngrams, other.ngrams),
        )


def _sum_counts(parts: Sequence[VocabularyCounts]) -> VocabularyCounts:
    """The sum of several counts at once (one ``groupby`` per feature, not one ``+`` each)."""
    first = parts[0]
    for part in parts[1:]:
        if part.dtypes != first.dtypes:
            name = next(n for n in first.dtypes if part.dtypes.get(n) != first.dtypes[n])
            raise invalid_argument(
                f"data[{name!r}]", "hold values of one type in every shard",
                f"{first.dtypes[name]} values in one chunk, {part.dtypes.get(name)} in another",
                hint="Rewrite the shards with one type per column.", error=TypeError,
            )
    counts = {
        name: pd.concat([p.counts[name] for p in parts]).groupby(level=0, sort=False).sum()
        for name in first.counts
    }
    numeric = {name: np.concatenate([p.numeric[name] for p in parts]) for name in first.numeric}
    return VocabularyCounts(first.kinds, first.dtypes, counts, numeric, first.ngrams)


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
        kinds = _feature_kinds(features)
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
                parts = [_sum_counts(parts)]
        return _sum_counts(parts)

    def _count(self, table: Table, kinds: dict[str, str], progress: Progress) -> VocabularyCounts:
        counts: dict[str, pd.Series] = {}
        numeric: dict[str, np.ndarray] = {}
        kind_of: dict[str, str] = {}
        dtype_of: dict[str, str] = {}
        for name, column in table.items():
            progress.update()
            if not isinstance(column, np.ndarray):  # an Arrow array of ids, from files
                kind_of[name] = kinds.get(name) or "categorical"
                dtype_of[name], counts[name] = _arrow_counts(name, column)
                continue
            kind = kinds.get(name) or _infer_kind(column)
            kind_of[name] = kind
            if kind in _STATISTICS:
                values = _numeric_values(name, column)
                numeric[name] = values[np.isfinite(values)]
                dtype_of[name] = "float32"
                continue
            if kind in ("categorical", "multi"):
                column = _integral_to_int(name, column, kind)
            values = _flat_values(name, column, kind, self.ngrams)
            dtype_of[name] = _token_dtype(name, values, kind)
            if kind == "multi":
                check_no_padding_tokens(name, values, dtype_of[name])
            counts[name] = pd.Series(values, dtype=object if dtype_of[name] == "string" else
                                     np.int64).value_counts(sort=False)
        return VocabularyCounts(kind_of, dtype_of, counts, numeric, self.ngrams)

    def from_counts(self, counts: VocabularyCounts) -> Vocabularies:
        """Builds vocabularies from (merged) counts."""
        vocabularies = []
        for name, kind in counts.kinds.items():
            if kind in _STATISTICS:
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


def _arrow_counts(name: str, column: Any) -> tuple[str, pd.Series]:
    """An Arrow array of string or int64 ids: its dtype and how often each id occurs."""
    if column.null_count:
        missing = np.asarray(column.is_null())
        raise invalid_argument(
            f"data[{name!r}]", "hold no missing (None or NaN) values",
            f"{column.null_count} missing, the first at position {int(np.argmax(missing))}",
            hint="Drop or fill those rows first.",
        )
    return "int64" if str(column.type) == "int64" else "string", counts_series(
        column.value_counts())


def _integral_to_int(name: str, column: np.ndarray, kind: str) -> np.ndarray:
    """Booleans and whole floats (like a bucketised age of 25.0) become int64 ids."""
    if kind == "multi" or column.dtype.kind not in "fb":
        return column
    if column.dtype.kind == "f" and not np.all(np.mod(column[np.isfinite(column)], 1) == 0):
        raise invalid_argument(
            f"data[{name!r}]", "hold whole numbers to be a categorical feature",
            column[:3].tolist(), hint=f"Declare it as features={{{name!r}: 'numeric'}}.",
        )
    if column.dtype.kind == "f" and not np.all(np.isfinite(column)):
        return column  # NaN: reported as missing below
    return column.astype(np.int64)


def _feature_kinds(features: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    if features is None:
        return {}
    if isinstance(features, str):
        raise invalid_argument(
            "features", "be a list of feature names or a mapping of name to kind", features,
            hint=f"Did you mean features=[{features!r}]?", error=TypeError,
        )
    if isinstance(features, Mapping):
        for name, kind in features.items():
            check_choice(f"features[{name!r}]", kind, _KINDS, what="feature kind")
        return {str(n): str(k) for n, k in features.items()}
    names = list(features)
    if not names:
        raise invalid_argument("features", "name at least one feature", features)
    return {str(n): "" for n in names}


def _infer_kind(column: np.ndarray) -> str:
    if is_multivalued(column):
        return "multi"
    if column.dtype.kind == "f":
        return "numeric"
    return "categorical"


def _numeric_values(name: str, column: np.ndarray) -> np.ndarray:
    """A numeric column as float64: NaN is a missing value, infinities and strings are errors."""
    argument = f"data[{name!r}]"
    if (column.dtype.kind in "OUS" and not is_multivalued(column)
            and id_kind(column) in ("string", "mixed")):
        raise invalid_argument(
            argument, "hold numbers (int or float) for a numeric feature",
            column[:3].tolist(), error=TypeError,
            hint="Convert the column first, e.g. df[col].astype(float).",
        )
    try:
        values = np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise invalid_argument(
            argument, "hold numbers for a numeric feature", column[:3].tolist()
        ) from error
    check_no_infinity(argument, values)
    return values


def _flat_values(name: str, column: np.ndarray, kind: str, ngrams: int) -> np.ndarray:
    if kind == "multi":
        if not is_multivalued(column):
            raise invalid_argument(
                f"data[{name!r}]", "hold a list of values per row for a 'multi' feature",
                column[:3].tolist(),
            )
        # An empty list is a float array to NumPy: left out, it cannot make integers floats.
        parts = [np.asarray(v) for v in column if len(v)]
        values = np.concatenate(parts) if parts else np.array([], dtype=object)
    elif kind == "text":
        series = pd.Series(column, dtype=object)
        if series.isna().any():
            series = series.fillna("")
        if ngrams == 1:
            tokens = series.str.lower().str.replace(_PUNCTUATION_RE, " ", regex=True).str.split()
        else:
            tokens = series.map(lambda s: tokenize(str(s), ngrams=ngrams))
        values = tokens.explode().dropna().to_numpy()
    else:
        if is_multivalued(column):
            raise invalid_argument(
                f"data[{name!r}]", "hold one value per row for a 'categorical' feature",
                column[:3].tolist(), hint=f"Declare it as features={{{name!r}: 'multi'}}.",
            )
        values = column
    missing = pd.isna(values) if values.dtype == object or values.dtype.kind == "f" else None
    if missing is not None and np.any(missing):
        first = int(np.flatnonzero(missing)[0])
        raise invalid_argument(
            f"data[{name!r}]", "hold no missing (None or NaN) values",
            f"{int(np.sum(missing))} missing, the first at position {first}",
            hint="Drop or fill those rows first.",
        )
    return values


def _token_dtype(name: str, values: np.ndarray, kind: str) -> str:
    if kind == "text" or values.dtype == object or values.dtype.kind in "US":
        if values.dtype == object and len(values):
            # Every value is looked at (vectorised): a string among a million integers
            # would otherwise make the integers strings, or fail inside TensorFlow.
            inferred = pd.api.types.infer_dtype(values, skipna=False)
            if id_kind(values) == "mixed" or inferred.startswith("mixed-integer"):
                raise invalid_argument(
                    f"data[{name!r}]", "hold ids of one type (all strings or all integers)",
                    _mixed_types(values), error=TypeError,
                    hint="Convert the column with .astype(str) (or to int) first.",
                )
            if inferred in ("integer", "boolean"):
                return "int64"
        return "string"
    if values.dtype.kind in "iub":
        return "int64"
    vectors = values.ndim > 1 or kind == "multi"
    raise invalid_argument(
        f"data[{name!r}]", "hold strings or integers for a vocabulary",
        f"{'vectors of ' if vectors else ''}dtype {values.dtype}",
        hint="A vector of floats per row (an embedding) has no vocabulary: leave it out of "
             "the features and read it with a custom tower (docs: Custom towers)."
        if vectors else "Declare floats as 'numeric'.",
    )


def _mixed_types(values: np.ndarray) -> Any:
    """The value types of a mixed column, each with its first example."""
    types = pd.Series(values).map(type)
    first = types.drop_duplicates()
    pairs = zip(first.index.tolist(), first.tolist(), strict=True)
    return ", ".join(f"{t.__name__} (such as {values[i]!r})" for i, t in pairs)


def check_no_padding_tokens(name: str, values: np.ndarray, dtype: str, *,
                            argument: str | None = None) -> None:
    """Multi-valued features pad rows with ``""`` (strings) or ``-1`` (integers).

    A real value equal to the padding would be dropped from every list it is in
    (a history, an exclusion list), so it is refused.
    """
    pad = padding_value(dtype)
    if len(values) and np.any(np.asarray(values == pad)):
        where = int(np.flatnonzero(values == pad)[0])
        raise invalid_argument(
            argument or f"data[{name!r}]",
            f"hold no {pad!r} in a list-valued feature ({pad!r} pads lists of ids)",
            f"{pad!r} (value number {where})",
            hint=f"Map {pad!r} to another id first"
            + (" (e.g. '<empty>')." if pad == "" else " (e.g. a large unused integer)."),
        )
