"""The one container every loader returns: interactions plus item and user tables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_choice
from tfrs_kit.data._schema import Schema, with_schema

__all__ = ["InteractionDataset"]


@dataclasses.dataclass(frozen=True, eq=False)
class InteractionDataset:
    """An interaction log with its item and user tables, and the roles of their columns.

    ``interactions`` has one row per event, with the user's and the item's features
    joined onto it, so it can be fed to both towers directly. Its :attr:`schema` names
    these roles once: the three tables carry it (``attrs["tfrs_kit.schema"]``), so the
    splits, :func:`~tfrs_kit.evaluation.evaluate`, the baselines,
    :class:`~tfrs_kit.HistoryBuilder` and :class:`~tfrs_kit.Recipe` find the columns
    without being told. ``items`` and ``users``
    hold one row per item and per user (the candidate corpus and the query side).

    String columns use pandas' string dtype; multi-valued columns (genres) are
    ``object`` columns whose elements are read-only 1-D NumPy arrays, shared between
    rows of the same item.

    Attributes:
        interactions: One row per event: ids, timestamp, and the joined features.
        items: One row per item: the item id column and the item feature columns.
        users: One row per user: the user id column and the user feature columns.
        user_id: Name of the user id column.
        item_id: Name of the item id column.
        timestamp: Name of the timestamp column (int64 seconds), or None.
        user_features: Feature columns (not the id) that describe users.
        item_features: Feature columns (not the id) that describe items.
        name: A short name for reports, such as ``"movielens-100k"``.

    Example:
        >>> import pandas as pd
        >>> events = pd.DataFrame({"user": ["a", "b"], "item": ["x", "x"], "ts": [1, 2]})
        >>> data = InteractionDataset(
        ...     interactions=events,
        ...     items=pd.DataFrame({"item": ["x"]}),
        ...     users=pd.DataFrame({"user": ["a", "b"]}),
        ...     user_id="user", item_id="item", timestamp="ts", name="tiny")
        >>> data
        InteractionDataset(name='tiny', interactions=2, users=2, items=1, user_features=(), item_features=())
        >>> data.item_columns
        ('item',)
        >>> data.schema.item_id, data.interactions.attrs["tfrs_kit.schema"]["item_id"]
        ('item', 'item')
    """  # noqa: E501

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    user_id: str
    item_id: str
    timestamp: str | None = None
    user_features: tuple[str, ...] = ()
    item_features: tuple[str, ...] = ()
    name: str = "interactions"

    def __post_init__(self) -> None:
        for field in ("interactions", "items", "users"):
            frame = getattr(self, field)
            if not isinstance(frame, pd.DataFrame):
                raise invalid_argument(
                    field, "be a pandas DataFrame", type(frame).__name__, error=TypeError
                )
        # Accept lists for convenience; store tuples so the dataclass stays immutable.
        object.__setattr__(self, "user_features", tuple(self.user_features))
        object.__setattr__(self, "item_features", tuple(self.item_features))
        schema = self.schema  # checks the roles' names
        self._check_columns("interactions", self.interactions, self._interaction_columns())
        self._check_columns("items", self.items, self.item_columns)
        self._check_columns("users", self.users, self.user_columns)
        for field in ("interactions", "items", "users"):
            # A shallow copy: the caller's frames keep their attrs, no data is copied.
            frame = getattr(self, field).copy(deep=False)
            object.__setattr__(self, field, with_schema(frame, schema))

    @property
    def schema(self) -> Schema:
        """The roles of the columns, as a :class:`~tfrs_kit.Schema`."""
        return Schema(user_id=self.user_id, item_id=self.item_id, timestamp=self.timestamp,
                      user_features=self.user_features, item_features=self.item_features)

    def _interaction_columns(self) -> tuple[str, ...]:
        timestamp = (self.timestamp,) if self.timestamp is not None else ()
        return (self.user_id, self.item_id, *timestamp)

    @staticmethod
    def _check_columns(field: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
        known = [str(c) for c in frame.columns]
        for column in columns:
            check_choice(f"{field} column", column, known, what="column")

    @property
    def user_columns(self) -> tuple[str, ...]:
        """The user id column followed by the user feature columns (query-side inputs)."""
        return (self.user_id, *self.user_features)

    @property
    def item_columns(self) -> tuple[str, ...]:
        """The item id column followed by the item feature columns (candidate-side inputs)."""
        return (self.item_id, *self.item_features)

    @property
    def num_interactions(self) -> int:
        """The number of events (rows of ``interactions``)."""
        return len(self.interactions)

    @property
    def num_users(self) -> int:
        """The number of users (rows of ``users``)."""
        return len(self.users)

    @property
    def num_items(self) -> int:
        """The number of items (rows of ``items``)."""
        return len(self.items)

    def __repr__(self) -> str:
        return (
            f"InteractionDataset(name={self.name!r}, interactions={self.num_interactions:,}, "
            f"users={self.num_users:,}, items={self.num_items:,}, "
            f"user_features={self.user_features}, item_features={self.item_features})"
        )


def read_only_rows(rows: list[np.ndarray]) -> np.ndarray:
    """An object column of read-only 1-D arrays (rows are shared between events)."""
    column = np.empty(len(rows), dtype=object)
    # Assigned one by one: `column[:] = rows` would build a 2-D array when all rows
    # happen to have the same length.
    for index, row in enumerate(rows):
        row.flags.writeable = False
        column[index] = row
    return column


def split_rows(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cuts a flat array into an object column of consecutive rows of ``lengths``."""
    return read_only_rows(np.split(values, np.cumsum(lengths)[:-1]))
