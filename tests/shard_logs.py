"""Logs written as Parquet shards for the tests that stream them, and a guard that they do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_shards(frame: pd.DataFrame, folder: Path, shards: int = 3) -> tuple[str, list[str]]:
    """``frame`` cut into ``shards`` consecutive Parquet files in ``folder``: their glob and
    their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(frame), shards + 1).astype(int)
    for i in range(shards):
        frame.iloc[bounds[i]:bounds[i + 1]].to_parquet(folder / f"part-{i}.parquet",
                                                       index=False)
    return str(folder / "*.parquet"), sorted(str(p) for p in folder.glob("*.parquet"))


def refuse_whole_reads(monkeypatch) -> None:
    """Makes every whole-table read of a file fail: what runs after this must stream."""

    def refuse(*args, **kwargs):
        raise AssertionError("the whole log was read into memory")

    monkeypatch.setattr("tfrs_kit.data._files.read_table", refuse)
    monkeypatch.setattr("tfrs_kit.data._table.read_table", refuse)
