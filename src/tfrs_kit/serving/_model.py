"""One loaded, warmed-up version of an index, and a batch of queries run through it.

A batch is one call of :meth:`tfrs_kit.Index.recommend` (one TensorFlow call for up to
``batch_size`` queries) with the largest ``k`` asked for; each query's answer is then
cut to its own ``k``. Exclusions are per query, so cutting is exact.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_kit.index import Index, load_index
from tfrs_kit.serving._requests import ModelSpec, Query, RequestError, recommend_query, requery

__all__ = ["Answer", "ServedModel", "load_model", "run_batch", "spec_of"]

logger = logging.getLogger("tfrs_kit.serving")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One query's recommendations, best first, and the version that computed them."""

    ids: list[Any]
    scores: list[float]
    version: int
    explanations: list[dict[str, Any]] | None = None  # one per id, when asked


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """An index ready to serve: loaded, checked, warmed up."""

    version: int  # 0 for a plain index directory
    path: Path
    index: Index
    spec: ModelSpec
    known_ids: frozenset[Any]


def spec_of(index: Index) -> ModelSpec:
    """What requests to ``index`` must hold, read from its public attributes."""
    kinds: dict[str, str | None] = {}
    dtypes: dict[str, str | None] = {}
    unknown: dict[str, Any] = {}
    known: dict[str, frozenset[Any]] = {}
    for name in index.query_features:
        vocab = index.vocabularies.get(name)
        kinds[name] = vocab.kind if vocab is not None else None
        dtypes[name] = vocab.dtype if vocab is not None else None
        if vocab is not None and vocab.kind == "categorical":
            unknown[name] = _unknown_token(vocab.tokens, vocab.dtype)
        elif vocab is not None and vocab.kind == "multi":
            unknown[name] = []  # omitted: no history yet (padding only)
        if vocab is not None and vocab.kind in ("categorical", "multi") and vocab.tokens:
            convert = str if vocab.dtype == "string" else int
            known[name] = frozenset(convert(token) for token in vocab.tokens)
    id_kind = "string" if index.ids.dtype == object else "int64"
    return ModelSpec(features=tuple(index.query_features), kinds=kinds, dtypes=dtypes,
                     unknown=unknown, id_kind=id_kind, k_max=index.k_max,
                     candidates=len(index), known=known)


def _unknown_token(tokens: Sequence[Any], dtype: str) -> Any:
    """An id that the vocabulary lacks: it maps to the out-of-vocabulary embedding."""
    if dtype != "string":
        return max((int(t) for t in tokens), default=0) + 1
    token = "[UNK]"
    while token in tokens:
        token += "_"
    return token


def load_model(path: str | os.PathLike[str], version: int, *,
               warmup: Mapping[str, Any] | None = None) -> ServedModel:
    """Loads the index at ``path`` and answers one query with it, so that it is ready.

    Args:
        path: An index directory written by ``Index.save``.
        version: Its version number (0 for a plain index directory).
        warmup: The features of the warm-up query (default: built from the vocabularies).

    Raises:
        FileNotFoundError, ValueError, ImportError: As :func:`~tfrs_kit.load_index`.
        RuntimeError: The warm-up query failed.
    """
    index = load_index(path)
    spec = spec_of(index)
    model = ServedModel(version=version, path=Path(path), index=index, spec=spec,
                        known_ids=frozenset(index.ids.tolist()))
    payload = dict(warmup) if warmup is not None else _warmup_features(index)
    try:
        query = recommend_query({**payload, "k": spec.k_limit}, spec)
    except RequestError as error:
        raise RuntimeError(f"The warm-up query {payload!r} is not valid for the index at "
                           f"{path}: {error.message} Pass `warmup=` with one.") from error
    answer = run_batch(model, [query])[0]
    if isinstance(answer, RequestError):
        raise RuntimeError(f"The warm-up query {payload!r} failed on the index at {path}: "
                           f"{answer.message}")
    return model


def _warmup_features(index: Index) -> dict[str, Any]:
    """A plausible query: each feature's most frequent token, mean or a zero."""
    features: dict[str, Any] = {}
    for name in index.query_features:
        vocab = index.vocabularies.get(name)
        if vocab is None:
            features[name] = 0.0
        elif vocab.kind in ("numeric", "timestamp"):
            features[name] = float(vocab.mean)
        elif vocab.kind == "text":
            features[name] = " ".join(str(t) for t in vocab.tokens[:2]) or "warm up"
        else:
            token = vocab.tokens[0] if vocab.tokens else _unknown_token((), vocab.dtype)
            token = int(token) if vocab.dtype != "string" else str(token)
            features[name] = [token] if vocab.kind == "multi" else token
    return features


def run_batch(model: ServedModel, queries: Sequence[Query]) -> list[Answer | RequestError]:
    """Answers ``queries`` with one call of the index; a query it refuses fails alone.

    A query checked against another version is checked again against ``model``.
    """
    checked: list[Query | RequestError] = []
    for query in queries:
        try:
            checked.append(requery(query, model.spec))
        except RequestError as error:
            checked.append(error)
    valid = [q for q in checked if isinstance(q, Query)]
    answers = iter(_answer(model, valid) if valid else [])
    return [next(answers) if isinstance(q, Query) else q for q in checked]


def _answer(model: ServedModel, queries: list[Query]) -> list[Answer | RequestError]:
    try:
        return list(_recommend(model, queries))
    except (ValueError, TypeError, OverflowError) as error:
        if len(queries) > 1:  # find the query at fault: each one on its own
            return [_answer(model, [query])[0] for query in queries]
        return [RequestError(422, _field_of(str(error)), str(error))]


def _recommend(model: ServedModel, queries: list[Query]) -> list[Answer]:
    table = {name: _column([q.features[name] for q in queries]) for name in model.spec.features}
    exclude = [[i for i in q.exclude if i in model.known_ids] for q in queries]
    k = max(q.k for q in queries)
    ids, scores = model.index.recommend(
        table, k=k, exclude=exclude if any(exclude) else None, batch_size=len(queries))
    explained = _explanations(model, queries, table, exclude, k)
    answers = []
    for row, query in enumerate(queries):
        kept = [(i, float(s)) for i, s in zip(ids[row, : query.k].tolist(),
                                              scores[row, : query.k].tolist(), strict=True)
                if math.isfinite(s)]  # -inf: a slot left empty by the exclusions
        answers.append(Answer(ids=[i for i, _ in kept], scores=[s for _, s in kept],
                              version=model.version,
                              explanations=explained[row][:len(kept)] if row in explained
                              else None))
    return answers


def _explanations(model: ServedModel, queries: list[Query], table: dict[str, np.ndarray],
                  exclude: list[list[Any]], k: int) -> dict[int, list[dict[str, Any]]]:
    """The explanations of the queries that ask for them (one more index call, for
    those alone: explaining costs more than recommending)."""
    rows = [row for row, query in enumerate(queries) if query.explain]
    if not rows:
        return {}
    served = model.index.recommend(
        {name: values[rows] for name, values in table.items()}, k=k,
        exclude=[exclude[row] for row in rows] if any(exclude) else None,
        batch_size=len(rows), explain=True)
    explanations = served.explanations or []
    return {row: [e.to_dict() for e in explanations[i] if e is not None]
            for i, row in enumerate(rows)}


def _column(values: list[Any]) -> np.ndarray:
    if any(isinstance(v, list) for v in values):
        column = np.empty(len(values), dtype=object)
        for row, value in enumerate(values):  # one by one: equal lengths must stay lists
            column[row] = value
        return column
    return np.asarray(values)


_FIELD = re.compile(r"^`(?:query_features\[')?([^`']+)")


def _field_of(message: str) -> str:
    """The field an index error names: "`query_features['age']` must ..." -> "age"."""
    match = _FIELD.match(message)
    return match.group(1) if match else "body"
