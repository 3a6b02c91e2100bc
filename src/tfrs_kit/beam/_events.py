"""What the Beam transforms share: events as dicts, their checks, and batching."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfrs_kit._errors import invalid_argument, missing_column

__all__ = ["BATCH_ROWS", "check_event", "check_instance", "is_missing", "required"]

#: Events (or rows) a worker handles at once, vectorised: large enough that pandas and
#: NumPy amortise their overhead, small enough for any worker's memory. Read when a
#: pipeline is built, so a test may lower it.
BATCH_ROWS = 10_000


def check_instance(argument: str, value: Any, cls: type, example: str) -> Any:
    """``value`` if it is a ``cls``; a ``TypeError`` in the package's style otherwise."""
    if not isinstance(value, cls):
        raise invalid_argument(argument, f"be a {cls.__name__}", value,
                               hint=f"For example {argument}={example}.", error=TypeError)
    return value


def check_event(event: Any, argument: str = "events") -> Mapping[str, Any]:
    """An event: a dict of column name to value, as ``beam.io.ReadFromParquet`` yields."""
    if not isinstance(event, Mapping):
        raise invalid_argument(
            argument, "be a PCollection of dicts, one per event (column name to value)",
            f"an element of type {type(event).__name__}: {event!r}", error=TypeError,
            hint="Map each element to a dict first, e.g. beam.Map(lambda row: row._asdict()).",
        )
    return event


def is_missing(value: Any) -> bool:
    """``None`` or NaN: a missing value, as pandas reads it."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def required(event: Mapping[str, Any], column: str, *, setting: str, what: str) -> Any:
    """The event's value in ``column``, which must exist and not be missing.

    Args:
        event: The event.
        column: The column.
        setting: The keyword argument that named the column (for the fix).
        what: What the column holds ("ids", "timestamps"), for the message.
    """
    try:
        value = event[column]
    except KeyError:
        raise missing_column("events", column, event, setting=setting) from None
    if is_missing(value):
        raise invalid_argument(
            f"events[{column!r}]", f"hold no missing (None or NaN) {what}",
            value, hint=f"The event: {_shorten(dict(event))}. Drop or fill such events first.",
        )
    return value.item() if isinstance(value, np.generic) else value


def _shorten(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
