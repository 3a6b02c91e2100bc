"""The roles of a log's columns, named once and carried with the data.

A :class:`Schema` says which column holds the user ids, the item ids, the time, and
which columns describe users and items. Every entry point that reads columns finds
them by one rule, :func:`resolve_schema`:

1. an explicit ``schema=`` argument;
2. else the schema the data carries: an :class:`~tfrs_kit.datasets.InteractionDataset`'s
   ``.schema``, or a DataFrame's ``attrs["tfrs_kit.schema"]`` (which the splits and the
   data sets set);
3. else the schema of the fitted model it is given (``schema_``);
4. else the defaults, ``Schema()``;

and column arguments (``user_id=``, ``item_id=``, ``timestamp=``) given explicitly
override the chosen schema's fields.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Final

from tfrs_kit._errors import closest, invalid_argument, unknown_name

__all__ = [
    "ATTRS_KEY", "UNSET", "Schema", "carried_schema", "resolve_schema", "with_schema",
]

ATTRS_KEY: Final = "tfrs_kit.schema"
"""The key of ``DataFrame.attrs`` that carries a schema (as a plain dict, so that
``to_parquet``, which writes ``attrs`` as JSON, keeps working and keeps it)."""


class _Unset(enum.Enum):
    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""The default of a column argument where ``None`` itself means something ("no time
column"): the argument was not given, so the schema decides."""

_COLUMNS = ("user_id", "item_id", "timestamp")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Schema:
    """The roles of a log's columns: user and item ids, time, and features.

    Name your columns once: the splits, :func:`~tfrs_kit.evaluation.evaluate`, the
    baselines, :class:`~tfrs_kit.HistoryBuilder` and :class:`~tfrs_kit.Recipe` all take
    ``schema=``, and read it from data that carries one (a data set, or the DataFrames
    the splits return) or from a fitted model. A column argument such as
    ``item_id="movie_id"`` still works everywhere and overrides the schema's field.

    Args:
        user_id: The user id column.
        item_id: The item id column.
        timestamp: The time column (orders histories and temporal splits), or
            ``None`` when the log has none.
        user_features: Columns (not the id) that describe users.
        item_features: Columns (not the id) that describe items.

    Raises:
        TypeError: A column name that is not a string, or features given as one string.
        ValueError: An empty column name.

    Example:
        >>> import pandas as pd
        >>> import tfrs_kit as tk
        >>> schema = tk.Schema(item_id="movie_id", item_features=["genres"])
        >>> schema
        Schema(user_id='user_id', item_id='movie_id', timestamp='timestamp', user_features=(), item_features=('genres',))
        >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2], "movie_id": [5, 6, 5, 6],
        ...                     "timestamp": [1, 2, 1, 2]})
        >>> train, test = tk.evaluation.leave_last_one_out(log, schema=schema)
        >>> train.attrs["tfrs_kit.schema"]["item_id"]  # the split's frames carry it
        'movie_id'
        >>> model = tk.baselines.Popularity().fit(train)  # no column names needed
        >>> model.schema_.item_id
        'movie_id'
        >>> schema.replace(timestamp=None).timestamp is None
        True
    """  # noqa: E501

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str | None = "timestamp"
    user_features: tuple[str, ...] = ()
    item_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for role in ("user_id", "item_id"):
            _check_name(role, getattr(self, role))
        if self.timestamp is not None:
            _check_name("timestamp", self.timestamp)
        for role in ("user_features", "item_features"):
            object.__setattr__(self, role, _check_names(role, getattr(self, role)))

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the schema names, in order (ids, time, user then item features)."""
        time = (self.timestamp,) if self.timestamp is not None else ()
        return (self.user_id, self.item_id, *time, *self.user_features, *self.item_features)

    def replace(self, **overrides: Any) -> Schema:
        """A copy with some fields changed (and checked again).

        Raises:
            ValueError: An unknown field (with the closest known one).

        Example:
            >>> Schema().replace(item_id="movie_id").item_id
            'movie_id'
        """
        fields = [field.name for field in dataclasses.fields(self)]
        for name in overrides:
            if name not in fields:
                raise unknown_name("replace", name, fields, what="Schema field")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-compatible values (features as lists).

        >>> Schema(item_features=("genres",)).to_dict()["item_features"]
        ['genres']
        """
        return {"user_id": self.user_id, "item_id": self.item_id, "timestamp": self.timestamp,
                "user_features": list(self.user_features),
                "item_features": list(self.item_features)}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> Schema:
        """The schema of :meth:`to_dict`'s output (unknown keys are an error).

        >>> Schema.from_dict(Schema(user_id="u").to_dict()) == Schema(user_id="u")
        True
        """
        if not isinstance(fields, Mapping):
            raise invalid_argument("fields", "be a mapping of Schema fields", fields,
                                   error=TypeError)
        return cls().replace(**dict(fields))


def _check_name(role: str, name: Any) -> str:
    if not isinstance(name, str):
        raise invalid_argument(role, "be a column name (a string)", name, error=TypeError)
    if not name:
        raise invalid_argument(role, "be a non-empty column name", name)
    return name


def _check_names(role: str, names: Any) -> tuple[str, ...]:
    if isinstance(names, str) or not _is_sequence(names):
        hint = f"Did you mean {role}=[{names!r}]?" if isinstance(names, str) else None
        raise invalid_argument(role, "be a list of column names", names, error=TypeError,
                               hint=hint)
    return tuple(_check_name(f"{role}[{index}]", name) for index, name in enumerate(names))


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (
        hasattr(value, "__iter__") and hasattr(value, "__len__")
        and not isinstance(value, (Mapping, bytes)))


def check_schema(argument: str, schema: Any) -> Schema:
    """``schema`` if it is a :class:`Schema`; a ``TypeError`` naming ``argument`` if not."""
    if not isinstance(schema, Schema):
        raise invalid_argument(
            argument, "be a tfrs_kit.Schema", schema, error=TypeError,
            hint="For example schema=tk.Schema(item_id='movie_id'); a single column is "
                 "also named by its own argument (item_id='movie_id').",
        )
    return schema


def carried_schema(data: Any) -> Schema | None:
    """The schema ``data`` carries: a data set's ``.schema``, a DataFrame's attrs, or None.

    >>> import pandas as pd
    >>> carried_schema(pd.DataFrame({"u": [1]})) is None
    True
    >>> carried_schema(with_schema(pd.DataFrame({"u": [1]}), Schema(user_id="u"))).user_id
    'u'
    """
    schema = getattr(data, "schema", None)
    if isinstance(schema, Schema):
        return schema
    attrs = getattr(data, "attrs", None)
    fields = attrs.get(ATTRS_KEY) if isinstance(attrs, Mapping) else None
    if isinstance(fields, Schema):
        return fields
    if isinstance(fields, Mapping):
        try:
            return Schema.from_dict(fields)
        except (TypeError, ValueError) as error:
            raise invalid_argument(
                f"data.attrs[{ATTRS_KEY!r}]", "hold a valid schema", dict(fields),
                hint=f"{error} Delete it or pass schema= to override it.",
            ) from None
    return None


def with_schema(frame: Any, schema: Schema) -> Any:
    """``frame`` carrying ``schema`` in its ``attrs`` (set in place; returns ``frame``)."""
    frame.attrs[ATTRS_KEY] = schema.to_dict()
    return frame


def model_schema(model: Any) -> Schema | None:
    """The ``schema_`` of a fitted model, or of the first model of a mapping that has one."""
    models = model.values() if isinstance(model, Mapping) else (model,)
    for candidate in models:
        schema = getattr(candidate, "schema_", None)
        if isinstance(schema, Schema):
            return schema
    return None


def resolve_schema(*data: Any, schema: Schema | None = None, model: Any = None,
                   **overrides: Any) -> Schema:
    """The schema a call uses: the one rule of every entry point.

    The first that applies: ``schema``; the schema the first of ``data`` that carries
    one carries; ``model``'s ``schema_``; ``Schema()``. Then each override that was
    given (not ``None`` nor ``UNSET``) replaces its field, and is checked as a field.

    Args:
        *data: The tables of the call, most specific first (``test``, then ``train``).
        schema: The call's explicit ``schema=`` argument.
        model: A fitted model (or a mapping of them) whose ``schema_`` may apply.
        **overrides: Column arguments: ``user_id``, ``item_id``, ``timestamp``.

    Raises:
        TypeError: ``schema`` is not a :class:`Schema`, or an override is not a string.
        ValueError: An override is an empty string, or a DataFrame's ``attrs`` carry a
            schema whose user or item id column the frame no longer has (renamed or
            dropped since: pandas keeps ``attrs`` through ``rename``), not overridden.

    Example:
        >>> import pandas as pd
        >>> log = with_schema(pd.DataFrame({"u": [1], "i": [2]}), Schema(user_id="u", item_id="i"))
        >>> resolve_schema(log).item_id, resolve_schema(log, item_id="j").item_id
        ('i', 'j')
        >>> resolve_schema({"user_id": [1]}).user_id  # nothing carried: the defaults
        'user_id'
    """
    for name in overrides:
        if name not in _COLUMNS:
            raise unknown_name("overrides", name, _COLUMNS, what="column argument")
    carrier = None
    if schema is not None:
        chosen = check_schema("schema", schema)
    else:
        carrier = next((d for d in data if carried_schema(d) is not None), None)
        chosen = (carried_schema(carrier) if carrier is not None else None) or (
            model_schema(model) if model is not None else None) or Schema()
    given = {name: value for name, value in overrides.items()
             if value is not None and value is not UNSET}
    _check_not_stale(carrier, chosen, given)
    if not given or all(getattr(chosen, name) == value for name, value in given.items()):
        return chosen
    for name, value in given.items():
        _check_name(name, value)
    return chosen.replace(**given)


def _check_not_stale(frame: Any, schema: Schema, given: Mapping[str, Any]) -> None:
    """A schema ``frame``'s ``attrs`` carry must name id columns it has (unless overridden).

    >>> import pandas as pd
    >>> log = with_schema(pd.DataFrame({"u": [1], "i": [2]}), Schema(user_id="u", item_id="i"))
    >>> resolve_schema(log.rename(columns={"i": "product"}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: `data.attrs['tfrs_kit.schema']` must name columns the table has ... \
Pass item_id='...' ...
    """
    attrs = getattr(frame, "attrs", None)
    if not isinstance(attrs, Mapping) or ATTRS_KEY not in attrs or not hasattr(frame,
                                                                                "columns"):
        return
    columns = {str(c) for c in frame.columns}
    stale = [role for role in ("user_id", "item_id")
             if role not in given and getattr(schema, role) not in columns]
    if stale:
        close = closest(getattr(schema, stale[0]), sorted(columns))
        guess = f"Did you mean {stale[0]}={close!r}? " if close else ""
        raise invalid_argument(
            f"data.attrs[{ATTRS_KEY!r}]", "name columns the table has (its user and item "
            "ids)", ", ".join(f"{role}={getattr(schema, role)!r}" for role in stale),
            hint=f"Its columns: {sorted(columns)[:30]}. {guess}The table carries the schema "
            "of a frame whose columns were renamed or dropped since (pandas keeps attrs "
            f"through rename). Pass {stale[0]}='...' (or schema=tk.Schema(...)) with its "
            f"column now, or drop the carried one: frame.attrs.pop({ATTRS_KEY!r}).")
