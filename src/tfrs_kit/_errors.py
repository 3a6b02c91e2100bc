"""One error style for the whole package.

Every message names the argument, states the rule, shows the value received and,
where it can, says what to do: "`k` must be between 1 and 100. Received: k=500."
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "NotFittedError", "closest", "invalid_argument", "missing_column", "unknown_name",
]


class NotFittedError(RuntimeError):
    """Raised when an object is used before ``fit`` or ``build`` produced its state."""


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid_argument(
    argument: str, rule: str, received: Any, *, hint: str | None = None, error: type = ValueError
) -> Exception:
    """Builds (does not raise) an error in the package's style.

    Args:
        argument: The name of the offending argument, as the user wrote it.
        rule: What the argument must be, completing "`argument` must ...".
        received: The value received; shown with ``repr`` (shortened).
        hint: What to do about it, appended as a sentence.
        error: The exception class.

    Returns:
        The exception, for the caller to ``raise``.
    """
    message = f"`{argument}` must {rule}. Received: {argument}={_short_repr(received)}."
    if hint:
        message += f" {hint}"
    return error(message)


def closest(name: Any, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (for "Did you mean ...?"), or None."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return close[0] if close else None


def unknown_name(argument: str, name: Any, known: Iterable[str], *,
                 what: str = "name") -> ValueError:
    """An error for a name that is not among ``known``, with the closest match."""
    known = sorted(str(k) for k in known)
    message = f"`{argument}` must be a known {what}. Received: {argument}={name!r}."
    close = closest(name, known)
    if close:
        message += f" Did you mean {close!r}?"
    shown = ", ".join(repr(k) for k in known[:30])
    more = f" (and {len(known) - 30} more)" if len(known) > 30 else ""
    message += f" Known: {shown}{more}." if known else " None is known yet."
    return ValueError(message)


def missing_column(argument: str, column: str, available: Iterable[str], *,
                   role: str = "", setting: str | None = None) -> ValueError:
    """An error for a table that lacks a column it needs, with the fix.

    Args:
        argument: The table's argument name.
        column: The column it lacks.
        available: The columns it has.
        role: What the column is for, shown in brackets.
        setting: The keyword argument that named the column (``"item_id"``), if
            one did: the fix is then that argument, ``item_id='movie_id'``, not
            renaming the user's column.

    Example:
        >>> print(missing_column("train", "movieid", ["movie_id", "user_id"],
        ...                      setting="item_id"))
        `train` must have a column 'movieid' (named by `item_id`). Received: columns \
['movie_id', 'user_id']. Did you mean item_id='movie_id'?
        >>> print(missing_column("data", "history", ["user_id"]))  # doctest: +ELLIPSIS
        `data` must have a column 'history'. Received: columns ['user_id']. A history \
column is built by tfrs_kit.HistoryBuilder ...
    """
    available = [str(c) for c in available]
    what = role or (f"named by `{setting}`" if setting else "")
    needed = f"have a column {column!r}" + (f" ({what})" if what else "")
    message = f"`{argument}` must {needed}. Received: columns {sorted(available)[:30]}."
    close = closest(column, available)
    if setting and close:
        message += f" Did you mean {setting}={close!r}?"
    elif setting:
        message += (f" `{setting}` names this column: pass {setting}='...' with the name of "
                    "your column that holds it.")
    elif close:
        message += f" Did you mean to rename {close!r} to {column!r}?"
    if "history" in column.lower():
        message += _HISTORY_HINT
    return ValueError(message)


_HISTORY_HINT = (
    " A history column is built by tfrs_kit.HistoryBuilder (history = tk.HistoryBuilder()): "
    "`history.transform(train)` adds it to the training rows, and `history.for_users(train)` "
    "gives each user's latest one, the query rows of "
    "`model.as_recommender(train, users=history.for_users(train))`, which tk.evaluate scores."
)
