"""Request bodies checked and turned into queries, with errors that name the field.

Every check happens before a request joins a batch, so one bad request never fails
the others; its error says which field broke which rule (the package's error style),
and the server answers it with a 4xx status.

>>> spec = ModelSpec(features=("user_id",), kinds={"user_id": "categorical"},
...                  dtypes={"user_id": "string"}, unknown={"user_id": "[UNK]"},
...                  id_kind="string", k_max=5, candidates=5)
>>> recommend_query({"user_id": "u1", "k": 3}, spec).k
3
>>> recommend_query({"user_id": "u1", "k": 0}, spec)
Traceback (most recent call last):
...
tfrs_kit.serving._requests.RequestError: `k` must be an integer from 1 to 5 (k_max=5, \
5 candidates). Received: k=0.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from tfrs_kit._errors import closest, invalid_argument
from tfrs_kit._validation import check_number

try:  # optional: a faster parser for the request bodies
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

__all__ = ["ModelSpec", "Query", "RequestError", "parse_json", "predict_queries",
           "recommend_query", "requery", "requested_version"]

RECOMMEND_FIELDS = ("k", "exclude", "version", "explain")
_LONG_DIGITS = re.compile(rb"[0-9]{20}")  # may pass 2**64: only json reads it exactly


class RequestError(Exception):
    """A request the server refuses: its HTTP status, the field at fault and why."""

    def __init__(self, status: int, field: str, message: str, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.headers = dict(headers or {})  # such as Retry-After on a 503

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a served index reads: its query features, their kinds and the largest ``k``."""

    features: tuple[str, ...]
    kinds: Mapping[str, str | None]  # a vocabulary's kind; None: no vocabulary (numbers)
    dtypes: Mapping[str, str | None]  # "string" or "int64" for features with tokens
    unknown: Mapping[str, Any]  # an id outside the vocabulary, for an omitted id feature
    id_kind: str  # the candidates' ids: "string" or "int64"
    k_max: int
    candidates: int
    # Each id or list feature's vocabulary: a query the model knows nothing of is refused.
    known: Mapping[str, frozenset[Any]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False)

    @property
    def k_limit(self) -> int:
        """The largest ``k`` a request may ask for."""
        return min(self.k_max, self.candidates)


@dataclasses.dataclass(frozen=True)
class Query:
    """One checked query: its features, ``k`` and the ids to leave out."""

    features: Mapping[str, Any]
    k: int
    exclude: tuple[Any, ...]
    spec: ModelSpec  # checked against this model
    payload: Mapping[str, Any]  # as received, to check again against another version
    instance: int | None = None  # its place in a predict request's instances
    explain: bool = False  # answer each item's explanation too


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a 400 error.

    orjson parses it when it is installed (several times faster). A body it refuses
    (``NaN``) or might read differently (an integer of 20 digits or more, which orjson
    reads as a float) goes to :func:`json.loads`, so what is accepted, what it becomes
    and every error message are the standard library's.
    """
    if orjson is not None and not _LONG_DIGITS.search(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, "body", f"The request body must be valid JSON. Problem: "
                           f"{error}.") from error
    except RecursionError as error:  # "[[[[..." deeper than Python's recursion limit
        raise RequestError(400, "body", "The request body must be JSON nested at most "
                           "a few hundred levels deep.") from error


def recommend_query(payload: Any, spec: ModelSpec) -> Query:
    """A ``POST /v1/recommend`` body as a :class:`Query`, or a 422 :class:`RequestError`."""
    body = _object(payload, "body", "be a JSON object of query features, `k` and `exclude`")
    _check_fields(body, (*spec.features, *RECOMMEND_FIELDS), "")
    k = _checked_k(body.get("k"), spec)
    exclude = _exclusions(body.get("exclude", []), spec)
    requested_version(body)
    features = _features(body, spec, "")
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise _error("explain", "be true or false", explain)
    return Query(features=features, k=k, exclude=exclude, spec=spec, payload=body,
                 explain=explain)


def requested_version(body: Mapping[str, Any]) -> int | None:
    """The body's optional ``version`` (a whole number from 1 up), or ``None``."""
    version = body.get("version")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _error("version", "be a version number from 1 up (a folder in DIR/versions)",
                     version, hint="Leave it out to use the version being served.")
    return version


def predict_queries(payload: Any, spec: ModelSpec) -> list[Query]:
    """A TF-Serving-style ``{"instances": [...]}`` body as queries (top ``k_max`` each)."""
    body = _object(payload, "body", 'be {"instances": [...]}')
    _check_fields(body, ("instances", "signature_name"), "")
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise _error("signature_name", "be 'serving_default' (the one signature served "
                     "over REST; use POST /v1/recommend for k and exclude)", signature)
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise _error("instances", "be a non-empty list of query feature objects", instances)
    return [_instance(instance, number, spec) for number, instance in enumerate(instances)]


def requery(query: Query, spec: ModelSpec) -> Query:
    """``query`` checked again against another model version's ``spec``."""
    if query.spec is spec:
        return query
    if query.instance is not None:
        return _instance(query.payload, query.instance, spec)
    return recommend_query(query.payload, spec)


def _instance(instance: Any, number: int, spec: ModelSpec) -> Query:
    prefix = f"instances[{number}]."
    if not isinstance(instance, dict) and len(spec.features) == 1:
        instance = {spec.features[0]: instance}  # TF Serving's bare value for one input
    body = _object(instance, prefix[:-1], "be an object of query features")
    _check_fields(body, spec.features, prefix)
    return Query(features=_features(body, spec, prefix), k=spec.k_limit, exclude=(),
                 spec=spec, payload=body, instance=number)


def _error(field: str, rule: str, received: Any, *, hint: str | None = None,
           status: int = 422) -> RequestError:
    message = str(invalid_argument(field, rule, received, hint=hint))
    return RequestError(status, field, message)


def _object(value: Any, field: str, rule: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(field, rule, value)
    return value


def _check_fields(body: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for name in body:
        if name not in known:
            close = closest(name, known)
            message = (f"`{prefix}{name}` is not a field this request may hold; the fields "
                       f"are {', '.join(known)}.")
            message += f" Did you mean {close!r}?" if close else ""
            raise RequestError(422, f"{prefix}{name}", message + " Unknown fields are "
                               "refused so that a misspelt one is not silently ignored.")


def _checked_k(value: Any, spec: ModelSpec) -> int:
    if value is None:
        return min(10, spec.k_limit)
    rule = (f"be an integer from 1 to {spec.k_limit} (k_max={spec.k_max}, "
            f"{spec.candidates} candidates)")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= spec.k_limit:
        raise _error("k", rule, value)
    return value


def _exclusions(value: Any, spec: ModelSpec) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise _error("exclude", "be a list of candidate ids", value)
    for number, item in enumerate(value):
        if not _is_id(item, spec.id_kind):
            raise _error(f"exclude[{number}]", f"be a {spec.id_kind} id like the index's "
                         "candidates", item)
    return tuple(value)


def _features(body: Mapping[str, Any], spec: ModelSpec, prefix: str) -> dict[str, Any]:
    if not any(name in body for name in spec.features):
        raise RequestError(422, f"{prefix}{spec.features[0]}", "A query must hold the "
                           "features the index reads: "
                           f"{', '.join(f'`{prefix}{n}`' for n in spec.features)}. Received "
                           "none of them.")
    features = {}
    for name in spec.features:
        if name in body:
            features[name] = _feature(body[name], spec.kinds[name], spec.dtypes[name],
                                      f"{prefix}{name}")
        elif name in spec.unknown:
            features[name] = spec.unknown[name]  # a new user or item: out of vocabulary
        else:
            raise RequestError(422, f"{prefix}{name}", f"`{prefix}{name}` must be given: "
                               "the index reads it, and it has no default.")
    if spec.known:
        _check_known(body, spec, prefix)
    return features


def _check_known(body: Mapping[str, Any], spec: ModelSpec, prefix: str) -> None:
    """Refuses a query of which the model knows nothing: unknown ids and no history it knows.

    A user id outside the vocabulary is a new user, served by the rest of the query (its
    history); a history of new items is served by the user id. With nothing known, the
    answer would come from out-of-vocabulary embeddings, the same for every such query,
    so it is refused with a message that says what to send.
    """
    unknown: list[str] = []
    for name in spec.features:
        if name not in body:
            continue
        tokens, value = spec.known.get(name), body[name]
        if tokens is None:  # a number, a text, a vector: information the model reads
            return
        if any(item in tokens for item in value) if isinstance(value, list) else value in tokens:
            return
        unknown.append(name)
    if not unknown:
        return
    lists = [name for name in unknown if isinstance(body[name], list)]
    if lists:
        field = f"{prefix}{lists[0]}"
        raise RequestError(422, field, f"`{field}` must hold at least one id the model "
                           "knows (or come with a user id it knows); none of its ids is "
                           f"in its vocabulary (first: {body[lists[0]][0]!r}). Check that "
                           "they are ids of the catalogue the model was trained on.")
    field = f"{prefix}{unknown[0]}"
    histories = [f"`{prefix}{n}`" for n in spec.features if spec.kinds[n] == "multi"]
    fix = (f"For a new user, send {' or '.join(histories)}: the items they interacted "
           "with." if histories else "The index reads nothing else to recommend from: "
           "answer a new user from another source (such as the most popular items).")
    raise RequestError(422, field, f"`{field}` must be an id the model knows, or come "
                       f"with features it knows. Received: {field}={body[unknown[0]]!r}, "
                       f"not in its vocabulary. {fix}")


def _feature(value: Any, kind: str | None, dtype: str | None, field: str) -> Any:
    """One feature's JSON value, checked against its vocabulary's kind and dtype."""
    if kind == "categorical":
        if not _is_id(value, dtype or "string"):
            raise _error(field, f"be one {dtype} id", value)
    elif kind == "multi":
        if not isinstance(value, list) or not value:
            raise _error(field, f"be a non-empty list of {dtype} ids", value,
                         hint="A history lists the user's items, oldest first; for a user "
                         "with none yet, leave the history out or send only the user id.")
        for number, item in enumerate(value):
            if not _is_id(item, dtype or "string"):
                raise _error(f"{field}[{number}]", f"be a {dtype} id", item)
    elif kind == "text":
        if not isinstance(value, str):
            raise _error(field, "be a string", value)
    elif kind in ("numeric", "timestamp"):
        _number(value, field)
    elif isinstance(value, list):  # no vocabulary: a vector of numbers
        for number, item in enumerate(value):
            _number(item, f"{field}[{number}]")
    else:
        _number(value, field)
    return value


def _number(value: Any, field: str) -> float:
    try:
        return float(check_number(field, value))
    except (TypeError, ValueError) as error:
        raise RequestError(422, field, str(error)) from error


def _is_id(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63

