"""``tk.recipe.update``: the latest saved version updated with new events, saved as the next."""

from __future__ import annotations

import os
from pathlib import Path

from tfrs_kit._errors import invalid_argument
from tfrs_kit.data._table import TableLike
from tfrs_kit.recipe._load import load_recipe
from tfrs_kit.recipe._store import complete_versions, locked, not_saved
from tfrs_kit.recipe._update import (
    DEFAULT_EPOCHS,
    DEFAULT_RECHOOSE,
    DEFAULT_REPLAY,
    DEFAULT_REPLAY_WINDOW,
    DEFAULT_TOLERANCE,
    DEFAULT_WARM_SWEEPS,
    UpdateReport,
)

__all__ = ["update"]


def update(path: str | os.PathLike[str], new_events: TableLike, *,
           replay: float = DEFAULT_REPLAY, epochs: int = DEFAULT_EPOCHS,
           tolerance: float = DEFAULT_TOLERANCE, force: bool = False, k_max: int = 100,
           wait: float = 60.0, rechoose: bool = DEFAULT_RECHOOSE,
           warm_sweeps: int = DEFAULT_WARM_SWEEPS,
           replay_window: float = DEFAULT_REPLAY_WINDOW) -> UpdateReport:
    """Updates the latest version saved in ``path`` with ``new_events``; saves a new one.

    Loads the version ``path/latest`` names, runs :meth:`tfrs_kit.Recipe.update`
    and, when the guard passes (or ``force``), saves the updated Recipe as the next
    version and moves ``latest`` to it. Refused, nothing is written.

    Args:
        path: A folder :meth:`tfrs_kit.Recipe.save` (or ``tfrs-kit train``) wrote.
        new_events: The new interactions, in the columns the model was trained on.
        replay: Older events sampled into the fine-tuning per new event.
        epochs: Fine-tuning epochs.
        tolerance: The largest relative drop of the guard's metric allowed.
        force: Publish even when the guard refuses.
        k_max: The most items the saved index returns per query.
        wait: Seconds to wait for another process updating or saving ``path`` (the
            folder is locked from the load to the save).
        rechoose: Choose the blend's weights again (see :meth:`tfrs_kit.Recipe.update`).
        warm_sweeps: The blend's iALS sweeps from the serving factors (see
            :meth:`tfrs_kit.Recipe.update`).
        replay_window: The latest share of the older events the replay is drawn from.

    Example:
        >>> import tempfile, tfrs_kit as tk
        >>> log = tk.datasets.synthetic(300, num_users=20, num_items=15, seed=0).interactions
        >>> log = log.sort_values("timestamp")
        >>> folder = tempfile.mkdtemp()
        >>> recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=1, rerank=False,
        ...                    verbose=False)
        >>> recipe.fit(log.head(240)).save(folder)
        1
        >>> tk.recipe.update(folder, log.tail(60), epochs=1, tolerance=1.0).version
        2

    Returns:
        The :class:`UpdateReport` (``version``: the number saved).

    Raises:
        UpdateRejected: The guard refused the update (``latest`` unchanged).
        ValueError: ``new_events`` is empty, lacks a column of the model's or holds
            only events already in its log, or ``path`` holds no saved Recipe
            (another tool wrote it).
        TypeError: An id or time column of another type than the model's.
        TimeoutError: Another process held ``path`` for more than ``wait`` seconds.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise invalid_argument("path", "be a folder path", path, error=TypeError)
    root = Path(path)
    if not complete_versions(root):  # checked first: the lock would create the folder
        raise not_saved("path", root)
    # Locked from the load to the save: a second update waits (up to ``wait``) and then
    # starts from this one's version, so neither is lost.
    with locked(root, wait=wait):
        recipe = load_recipe(root)
        recipe.update(new_events, replay=replay, epochs=epochs, tolerance=tolerance,
                      force=force, dir=root, k_max=k_max, wait=wait, rechoose=rechoose,
                      warm_sweeps=warm_sweeps, replay_window=replay_window)
    report: UpdateReport = recipe.update_report_
    return report
