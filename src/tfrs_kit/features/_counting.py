"""Counting features for vocabularies: kinds, tokens and mergeable counts.

The column-level half of ``_vocabulary``: how a feature's kind is inferred, how a
column becomes the values counted (ids, list items, text tokens, numbers), the
checks on those values, and :class:`VocabularyCounts`, the counts that merge across
chunks and shards (``+``, :func:`sum_counts`). ``VocabularyBuilder`` counts with
these; ``tfrs_kit.beam`` and ``prepare`` merge counts with them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_choice, check_no_infinity, id_kind, padding_value
from tfrs_kit.data._files import counts_series
from tfrs_kit.data._table import is_multivalued

__all__ = [
    "KINDS",
    "PUNCTUATION",
    "STATISTICS",
    "FeatureKind",
    "VocabularyCounts",
    "arrow_counts",
    "check_no_padding_tokens",
    "feature_kinds",
    "flat_values",
    "infer_kind",
    "integral_to_int",
    "numeric_values",
    "sum_counts",
    "token_dtype",
    "tokenize",
]

FeatureKind = Literal["categorical", "multi", "text", "numeric", "timestamp"]
KINDS: tuple[str, ...] = ("categorical", "multi", "text", "numeric", "timestamp")
STATISTICS = ("numeric", "timestamp")  # kinds described by statistics, not tokens
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
class VocabularyCounts:
    """Raw counts of features, before ``min_count`` and ``max_tokens`` apply.

    Counts of separate shards merge with ``+``, so vocabularies of a log too large
    for one pass (or one machine) are counted shard by shard, then built once
    with :meth:`VocabularyBuilder.from_counts`.

    Example:
        >>> from tfrs_kit import VocabularyBuilder
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


def sum_counts(parts: Sequence[VocabularyCounts]) -> VocabularyCounts:
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


def arrow_counts(name: str, column: Any) -> tuple[str, pd.Series]:
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


def integral_to_int(name: str, column: np.ndarray, kind: str) -> np.ndarray:
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


def feature_kinds(features: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    if features is None:
        return {}
    if isinstance(features, str):
        raise invalid_argument(
            "features", "be a list of feature names or a mapping of name to kind", features,
            hint=f"Did you mean features=[{features!r}]?", error=TypeError,
        )
    if isinstance(features, Mapping):
        for name, kind in features.items():
            check_choice(f"features[{name!r}]", kind, KINDS, what="feature kind")
        return {str(n): str(k) for n, k in features.items()}
    names = list(features)
    if not names:
        raise invalid_argument("features", "name at least one feature", features)
    return {str(n): "" for n in names}


def infer_kind(column: np.ndarray) -> str:
    if is_multivalued(column):
        return "multi"
    if column.dtype.kind == "f":
        return "numeric"
    return "categorical"


def numeric_values(name: str, column: np.ndarray) -> np.ndarray:
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


def flat_values(name: str, column: np.ndarray, kind: str, ngrams: int) -> np.ndarray:
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


def token_dtype(name: str, values: np.ndarray, kind: str) -> str:
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
