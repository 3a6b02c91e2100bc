"""Tiny raw logs as Parquet shards, and the check that two work directories hold the same
preparation (what `tfrs_kit.beam.prepare` must equal: `tfrs_kit.features.prepare`)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tfrs_kit.features._prepare import Prepared

SETTINGS = {"features": ["event_id", "genre"], "history_length": 4,
            "validation_users": 0.2, "validation_events": 2, "sample_users": 0.3, "seed": 3,
            "verbose": False}


def log_frame(n=400, users=40, string_users=True, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in user] if string_users else user,
        "item_id": rng.integers(0, 30, n),
        "timestamp": rng.integers(0, 20, n),  # few distinct times: ties in file order
        "event_id": np.arange(n),
        "genre": rng.choice(["drama", "comedy", "noir"], n),
    })


def parquet_shards(frame: pd.DataFrame, folder) -> str:
    os.makedirs(folder)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_parquet(os.path.join(folder, f"part-{i}.parquet"), index=False)
    return str(folder)


def rows(paths) -> pd.DataFrame:
    """Rows of Parquet files, order-free: sorted, lists as tuples."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        return pd.DataFrame()
    frame = pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)
    frame = frame.map(lambda v: tuple(np.asarray(v).tolist()) if isinstance(
        v, (list, np.ndarray)) else v)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def assert_same_preparation(ours: Prepared, reference: Prepared, *,
                            same_source: bool = True) -> None:
    assert ours.work_dir != reference.work_dir
    for name in ("rows", "users", "items", "train_rows", "validation_rows",
                 "validation_users", "sample_rows", "sample_users", "history"):
        assert getattr(ours, name) == getattr(reference, name), name
    for part in ("train", "sample", "latest"):
        pd.testing.assert_frame_equal(rows(getattr(ours, part)), rows(getattr(reference, part)))
    assert (ours.validation is None) == (reference.validation is None)
    if ours.validation:
        pd.testing.assert_frame_equal(rows(ours.validation), rows(reference.validation))
    with open(ours.vocabularies, encoding="utf-8") as a, \
            open(reference.vocabularies, encoding="utf-8") as b:
        assert json.load(a) == json.load(b)
    for users in ("validation", "sample"):
        ours_path, reference_path = (os.path.join(p.work_dir, "vocabularies", f"{users}.parquet")
                                     for p in (ours, reference))
        assert os.path.exists(ours_path) == os.path.exists(reference_path)
        if os.path.exists(reference_path):
            assert (pq.read_table(ours_path).column("user").to_pylist()
                    == pq.read_table(reference_path).column("user").to_pylist())
    manifests = []
    for prepared in (ours, reference):
        with open(os.path.join(prepared.work_dir, "manifest.json"), encoding="utf-8") as f:
            manifests.append(json.load(f))
    for key in ("counts", "settings", "columns", "format_version", "num_buckets",
                *(("source",) if same_source else ())):
        assert manifests[0][key] == manifests[1][key], key
    # Every file named by the manifest is there, at the same relative path.
    assert manifests[0]["paths"] == manifests[1]["paths"]
