"""`tfrs_kit.beam.prepare` on the DirectRunner: the work directory `features.prepare` writes.

The known answer is `tfrs_kit.features.prepare` on the same tiny generated log (a few
hundred events over three Parquet shards, with timestamp ties, several buckets):
every file of the Beam-prepared directory must hold the same content (rows compared
sorted, since only their order may differ), and `Recipe.fit` must train from it
without preparing again.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam")

import tfrs_kit as tk
from tfrs_kit import beam as tk_beam
from tfrs_kit.features import _prepare
from tfrs_kit.features._prepare import Prepared

pytestmark = pytest.mark.slow

SETTINGS = {"features": ["event_id", "genre"], "history_length": 4,
            "validation_users": 0.2, "validation_events": 2, "sample_users": 0.3, "seed": 3,
            "verbose": False}


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch):
    """About 100 events per bucket: the logs here use several buckets."""
    monkeypatch.setattr(_prepare, "_BUCKET_ROWS", 100)


def _log(n=400, users=40, string_users=True, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in user] if string_users else user,
        "item_id": rng.integers(0, 30, n),
        "timestamp": rng.integers(0, 20, n),  # few distinct times: ties in file order
        "event_id": np.arange(n),
        "genre": rng.choice(["drama", "comedy", "noir"], n),
    })


def _shards(frame: pd.DataFrame, folder) -> str:
    os.makedirs(folder)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_parquet(os.path.join(folder, f"part-{i}.parquet"), index=False)
    return str(folder)


def _rows(paths) -> pd.DataFrame:
    """Rows of Parquet files, order-free: sorted, lists as tuples."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        return pd.DataFrame()
    frame = pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)
    frame = frame.map(lambda v: tuple(np.asarray(v).tolist()) if isinstance(
        v, (list, np.ndarray)) else v)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _assert_same_preparation(ours: Prepared, reference: Prepared) -> None:
    assert ours.work_dir != reference.work_dir
    for name in ("rows", "users", "items", "train_rows", "validation_rows",
                 "validation_users", "sample_rows", "sample_users", "history"):
        assert getattr(ours, name) == getattr(reference, name), name
    for part in ("train", "sample", "latest"):
        pd.testing.assert_frame_equal(_rows(getattr(ours, part)), _rows(getattr(reference, part)))
    assert (ours.validation is None) == (reference.validation is None)
    if ours.validation:
        pd.testing.assert_frame_equal(_rows(ours.validation), _rows(reference.validation))
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
    for key in ("counts", "settings", "columns", "format_version", "num_buckets", "source"):
        assert manifests[0][key] == manifests[1][key], key
    # Every file named by the manifest is there, at the same relative path.
    assert manifests[0]["paths"] == manifests[1]["paths"]


@pytest.mark.parametrize("string_users", [True, False], ids=["string ids", "integer ids"])
def test_the_same_work_directory_as_features_prepare(string_users, tmp_path):
    source = _shards(_log(string_users=string_users), tmp_path / "raw")
    reference = tk.features.prepare(source, work_dir=tmp_path / "local", **SETTINGS)
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    assert len(reference.train) > 1 and reference.validation and reference.sample
    _assert_same_preparation(ours, reference)
    _assert_same_preparation(Prepared.load(tmp_path / "beam"), reference)


def test_two_worker_processes_and_date_time_strings(tmp_path):
    log = _log(n=300, users=25, seed=1)
    start = pd.Timestamp("2024-03-01T00:00:00Z")
    log["timestamp"] = [(start + pd.Timedelta(hours=int(h))).isoformat()
                        for h in log["timestamp"]]
    source = _shards(log, tmp_path / "raw")
    reference = tk.features.prepare(source, work_dir=tmp_path / "local", **SETTINGS)
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS,
                           options=["--direct_num_workers=2",
                                    "--direct_running_mode=multi_processing"])
    assert _rows(reference.train)["timestamp"].dtype == np.int64  # seconds, as normalised
    _assert_same_preparation(ours, reference)


def test_features_prepare_reuses_it_and_another_logs_work_dir_fails(tmp_path, monkeypatch):
    source = _shards(_log(n=200, users=20, seed=2), tmp_path / "raw")
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    manifest = os.path.join(ours.work_dir, "manifest.json")
    before = os.stat(manifest).st_mtime_ns

    def refused(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(_prepare, "_vocabulary_stage", refused)
    again = tk.features.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    assert again == ours and os.stat(manifest).st_mtime_ns == before
    other = _shards(_log(n=200, users=20, seed=9), tmp_path / "other")
    with pytest.raises(ValueError, match="another log"):
        tk_beam.prepare(other, work_dir=tmp_path / "beam", **SETTINGS)
    with pytest.raises(ValueError, match="other settings"):
        tk_beam.prepare(source, work_dir=tmp_path / "beam", **{**SETTINGS, "seed": 4})
    assert os.stat(manifest).st_mtime_ns == before


def test_a_stopped_run_resumes_without_using_half_written_files(tmp_path):
    source = _shards(_log(n=200, users=20, seed=4), tmp_path / "raw")
    reference = tk.features.prepare(source, work_dir=tmp_path / "local", **SETTINGS)
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    # As if stopped while writing the shards: the stage's marker and the manifest gone,
    # one bucket's rows cut short but its marker kept out.
    os.remove(os.path.join(ours.work_dir, "manifest.json"))
    shards = os.path.join(ours.work_dir, "shards")
    os.remove(os.path.join(shards, _prepare.COMPLETE))
    os.remove(os.path.join(shards, "buckets.json"))
    os.remove(os.path.join(shards, "bucket-00000.json"))
    first = os.path.join(shards, "train", "part-00000.parquet")
    pq.write_table(pq.read_table(first).slice(0, 1), first)
    os.replace(shards, f"{shards}.partial")
    _assert_same_preparation(tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS),
                             reference)


def test_options_must_be_pipeline_options_or_flags(tmp_path):
    with pytest.raises(TypeError, match="options"):
        tk_beam.prepare(str(tmp_path), work_dir=tmp_path / "w", options="--runner=x")


def test_recipe_and_the_command_line_prepare_on_beam(tmp_path, monkeypatch, capsys):
    """`Recipe(beam_runner=...)` and `tfrs-kit train --beam-runner` prepare the log on
    Beam (the local preparation refused) and train from the shards it writes; a later
    fit without a runner reuses that work_dir."""
    from tfrs_kit.cli import main
    from tfrs_kit.recipe import _scale

    rng = np.random.default_rng(5)
    user = rng.integers(0, 60, 1200)
    log = pd.DataFrame({"user_id": [f"u{u}" for u in user],
                        "item_id": [f"i{(u % 4) * 10 + k}" for u, k in
                                    zip(user, rng.integers(0, 10, 1200), strict=True)],
                        "timestamp": np.arange(1200)})
    source = _shards(log, tmp_path / "raw")
    fast = {"in_memory_rows": 0, "time_budget": None, "max_trials": 1, "max_epochs": 1,
            "verbose": False}

    def refused(*args, **kwargs):
        raise AssertionError("prepared locally")

    monkeypatch.setattr(_prepare, "_vocabulary_stage", refused)
    recipe = tk.Recipe(work_dir=tmp_path / "beam", beam_runner="DirectRunner",
                       **fast).fit(source)
    assert Prepared.load(tmp_path / "beam").rows == 1200 and recipe.model is not None
    manifest = tmp_path / "beam" / "manifest.json"
    before = os.stat(manifest).st_mtime_ns
    again = tk.Recipe(work_dir=tmp_path / "beam", **fast).fit(source)  # reused as it is
    assert os.stat(manifest).st_mtime_ns == before and again.settings == recipe.settings
    with pytest.raises(ValueError, match="`beam_options` must come with a beam_runner"):
        tk.Recipe(beam_options=["--direct_num_workers=2"])
    monkeypatch.setattr(_scale, "DEFAULT_IN_MEMORY_ROWS", 0)
    argv = ["train", source, "--user", "user_id", "--item", "item_id", "--time", "timestamp",
            "--time-budget", "8", "--export", str(tmp_path / "model"), "--quiet",
            "--beam-runner", "DirectRunner", "--beam-options=--direct_num_workers=1"]
    assert main(argv) == 0
    assert Prepared.load(tmp_path / "model.work").rows == 1200
    assert len(tk.load(tmp_path / "model").recommend("u1", k=3).ids[0]) == 3


def test_counts_summed_in_any_order_equal_the_sum_in_shard_order(tmp_path):
    """The combiner's result is `features.prepare`'s (shards summed in order) whatever
    order and grouping the runner adds and merges the shards' counts in."""
    from tfrs_kit.beam._prepare import _SumInShardOrder
    from tfrs_kit.features._counting import sum_counts

    log = _log(n=300, users=30, seed=6).assign(score=np.random.default_rng(6).random(300))
    source = _shards(log, tmp_path / "raw")
    wanted = {"user_id": "categorical", "item_id": "categorical", "score": "numeric"}
    shards = [tk.VocabularyBuilder().count(os.path.join(source, f"part-{i}.parquet"), wanted,
                                           verbose=False) for i in range(3)]
    expected = sum_counts(shards)
    combine = _SumInShardOrder()
    late = combine.add_input(combine.create_accumulator(), (2, shards[2]))
    early = combine.add_input(combine.add_input(combine.create_accumulator(), (1, shards[1])),
                              (0, shards[0]))
    got = combine.extract_output(combine.merge_accumulators([late, early]))
    for name in ("user_id", "item_id"):
        pd.testing.assert_series_equal(got.counts[name], expected.counts[name])
        assert list(got.counts[name].index) != sorted(got.counts[name].index)  # not by id
    np.testing.assert_array_equal(got.numeric["score"], expected.numeric["score"])
    assert tk.VocabularyBuilder().from_counts(got) == tk.VocabularyBuilder().from_counts(expected)
