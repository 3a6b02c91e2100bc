"""Two days of a small synthetic log, for the update tests: the first 800 events in
time order, and the next 200."""

from __future__ import annotations

import pandas as pd

import tfrs_kit as tk


def two_days(seed: int, *, ids_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``synthetic(1_000, num_users=60, num_items=40, seed=seed)`` in time order, cut
    after 800 events; ``ids_only``: the user, item (strings as objects) and time only."""
    data = tk.datasets.synthetic(1_000, num_users=60, num_items=40, seed=seed)
    log = data.interactions.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if ids_only:
        log = log[["user_id", "item_id", "timestamp"]].astype({"item_id": object})
    return log.iloc[:800].reset_index(drop=True), log.iloc[800:].reset_index(drop=True)
