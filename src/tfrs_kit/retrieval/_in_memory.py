"""The first ingestion mode of ``fit``: the whole log read into memory, shuffled whole.

The other, ``_streamed``, reads shards of files as it trains.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit.data._table import Table, TableLike, num_rows

__all__ = ["hold_out", "read_in_memory"]


def read_in_memory(model: Any, x: TableLike, validation_data: TableLike | None,
                   validation_fraction: float | None, *,
                   seed: int | None) -> tuple[Table, TableLike | None]:
    """``fit``'s training table (read, with the logQ probabilities) and validation data.

    Learns the model's ``candidate_frequencies_`` from the whole of ``x``.
    """
    table = model._read(x, "x")
    model.candidate_frequencies_ = pd.Series(table[model.item_id]).value_counts(
        normalize=True)
    if validation_fraction is not None:
        table, validation_data = hold_out(table, validation_fraction, seed=seed)
    return model._prepare(table), validation_data


def hold_out(table: Table, fraction: float, *, seed: int | None) -> tuple[Table, Table]:
    """``table`` split at random into the rows to train on and ``fraction`` of them held out.

    >>> train, held_out = hold_out({"row": np.arange(1000)}, 0.2, seed=0)
    >>> len(train["row"]) + len(held_out["row"]), len(held_out["row"])
    (1000, 193)
    """
    held = np.random.default_rng(seed).random(num_rows(table)) < fraction
    return ({name: column[~held] for name, column in table.items()},
            {name: column[held] for name, column in table.items()})
