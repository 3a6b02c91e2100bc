"""Histories on Beam: events grouped by user, ordered by time, given ``HistoryBuilder``'s column.

Each user's events meet on one worker (``GroupByKey``) and are sorted there; several
users at a time are then handed to ``HistoryBuilder.transform`` in that order, with
their position as the tie-break it uses (row order), so the histories are its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
import numpy as np

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import padding_value
from tfrs_kit.beam import _events
from tfrs_kit.beam._events import check_event, check_instance, required
from tfrs_kit.features._history import HistoryBuilder

__all__ = ["AddHistories"]

Event = Mapping[str, Any]


class AddHistories(beam.PTransform):
    """Adds ``HistoryBuilder``'s history column to a ``PCollection`` of events.

    Groups the events by user, orders each user's events by ``timestamp`` and
    emits every event as a dict with one more column, ``builder.name``: the list
    of the user's ``max_length`` most recent items strictly before it, most
    recent last, exactly as ``builder.transform`` adds it in memory. The other
    columns pass through unchanged.

    In memory, events with equal timestamps keep the log's row order; a
    distributed log has none, so ``tie_breaker`` names the column that orders
    them (such as each event's line number or a sequence id: with it, histories
    equal ``builder.transform`` on the log in that order). Without one, ties are
    ordered by item id, then by the rest of the event: deterministic on every
    runner, but not necessarily the order of a file they came from.

    Args:
        builder: The user, item and time columns, ``max_length`` and the history
            column's name; ``None``: ``HistoryBuilder()``.
        tie_breaker: The column that orders a user's events with equal
            timestamps; required when ``builder.timestamp`` is ``None``.

    Raises:
        TypeError: ``builder`` is not a ``HistoryBuilder``; or (when the pipeline
            runs) an event is not a dict.
        ValueError: Neither a timestamp nor a ``tie_breaker`` orders the events;
            or, when the pipeline runs, an event lacks a column or has a missing
            (None or NaN) user, item, timestamp or ``tie_breaker`` value.

    Example:
        >>> import apache_beam as beam
        >>> from apache_beam.testing.util import assert_that, equal_to
        >>> import tfrs_kit as tk
        >>> from tfrs_kit.beam import AddHistories
        >>> events = [{"user_id": "a", "item_id": "x", "timestamp": 1},
        ...           {"user_id": "a", "item_id": "y", "timestamp": 2},
        ...           {"user_id": "b", "item_id": "x", "timestamp": 1}]
        >>> with beam.Pipeline() as pipeline:
        ...     rows = (pipeline | beam.Create(events)
        ...             | AddHistories(builder=tk.HistoryBuilder(max_length=5)))
        ...     _ = assert_that(rows | beam.Map(lambda row: (row["item_id"], row["history"])),
        ...                 equal_to([("x", []), ("y", ["x"]), ("x", [])]))
    """

    def __init__(self, *, builder: HistoryBuilder | None = None,
                 tie_breaker: str | None = None) -> None:
        super().__init__()
        self.builder = check_instance("builder", builder or HistoryBuilder(), HistoryBuilder,
                                      "tk.HistoryBuilder(user_id='user', item_id='item')")
        if tie_breaker is not None:
            check_instance("tie_breaker", tie_breaker, str, "'event_id'")
        elif self.builder.timestamp is None:
            raise invalid_argument(
                "tie_breaker", "name the column that orders each user's events when "
                "HistoryBuilder(timestamp=None)", tie_breaker,
                hint="A distributed log has no row order: pass tie_breaker='event_id' (a "
                "column with each event's position), or give the builder a timestamp.",
            )
        self.tie_breaker = tie_breaker

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return (
            events
            | "Key by user" >> beam.Map(_keyed_by_user, self.builder.user_id)
            | "Group by user" >> beam.GroupByKey()
            | "Order by time" >> beam.Map(_in_order, self.builder, self.tie_breaker)
            | "Batch users" >> beam.BatchElements(max_batch_size=_events.BATCH_ROWS,
                                                  element_size_fn=len)
            | "Add histories" >> beam.FlatMap(_with_histories, self.builder))


def _keyed_by_user(event: Any, user_id: str) -> tuple[Any, Event]:
    return required(check_event(event), user_id, setting="user_id", what="ids"), event


def _in_order(group: tuple[Any, Iterable[Event]], builder: HistoryBuilder,
              tie_breaker: str | None) -> list[Event]:
    """One user's events, sorted as ``HistoryBuilder`` sorts them (time, then order)."""
    user, events = group
    keyed = [(_sort_key(event, builder, tie_breaker), event) for event in events]
    try:
        keyed.sort(key=lambda pair: pair[0])
    except TypeError as error:
        column = builder.timestamp or tie_breaker
        raise invalid_argument(
            f"events[{column!r}]", "hold values of one comparable type (all numbers or all "
            "strings)", f"values of user {user!r} that do not compare ({error})",
            error=TypeError,
        ) from None
    return [event for _, event in keyed]


def _sort_key(event: Event, builder: HistoryBuilder, tie_breaker: str | None) -> tuple[Any, ...]:
    item = required(event, builder.item_id, setting="item_id", what="ids")
    if item == padding_value("int64" if isinstance(item, int) else "string"):
        raise invalid_argument(
            f"events[{builder.item_id!r}]", f"hold no {item!r}: it pads histories", item,
            hint="Give that item another id in every table.",
        )
    key: list[Any] = []
    if builder.timestamp is not None:
        key.append(required(event, builder.timestamp, setting="timestamp", what="timestamps"))
    if tie_breaker is not None:
        key.append(required(event, tie_breaker, setting="tie_breaker", what="values"))
    else:  # deterministic wherever the events come from
        key += [item, repr(sorted(event.items(), key=lambda pair: pair[0]))]
    return tuple(key)


def _with_histories(users: list[list[Event]], builder: HistoryBuilder) -> Iterator[dict[str, Any]]:
    """Each event of these users (each user's events in order) with its history."""
    events = [event for user_events in users for event in user_events]
    if not events:  # BatchElements sized by element_size_fn may emit an empty batch
        return
    # Users as their position in the batch, and no timestamp: HistoryBuilder then keeps
    # each user's events in the order given, which is already time then tie-break.
    in_order = HistoryBuilder(user_id=builder.user_id, item_id=builder.item_id, timestamp=None,
                              max_length=builder.max_length, name=builder.name)
    table = {
        builder.user_id: np.repeat(np.arange(len(users)), [len(u) for u in users]),
        builder.item_id: [event[builder.item_id] for event in events],
    }
    histories = in_order.transform(table)[builder.name]
    for event, history in zip(events, histories, strict=True):
        yield {**event, builder.name: history.tolist()}
