"""`tfrs_kit.beam.prepare` on the DirectRunner: the work directory `features.prepare` writes.

The known answer is `tfrs_kit.features.prepare` on the same tiny generated log (a few
hundred events over three Parquet shards, with timestamp ties, several buckets):
every file of the Beam-prepared directory must hold the same content (rows compared
sorted, since only their order may differ), and `Recipe.fit` must train from it
without preparing again.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam")

from prepared_logs import SETTINGS, assert_same_preparation, log_frame, parquet_shards, rows

import tfrs_kit as tk
from tfrs_kit import beam as tk_beam
from tfrs_kit.features import _prepare
from tfrs_kit.features._prepare import Prepared

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True)
def small_buckets(monkeypatch):
    """About 100 events per bucket: the logs here use several buckets."""
    monkeypatch.setattr(_prepare, "_BUCKET_ROWS", 100)


@pytest.mark.parametrize("string_users", [True, False], ids=["string ids", "integer ids"])
def test_the_same_work_directory_as_features_prepare(string_users, tmp_path):
    source = parquet_shards(log_frame(string_users=string_users), tmp_path / "raw")
    reference = tk.features.prepare(source, work_dir=tmp_path / "local", **SETTINGS)
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    assert len(reference.train) > 1 and reference.validation and reference.sample
    assert_same_preparation(ours, reference)
    assert_same_preparation(Prepared.load(tmp_path / "beam"), reference)


def test_two_worker_processes_and_date_time_strings(tmp_path):
    log = log_frame(n=300, users=25, seed=1)
    start = pd.Timestamp("2024-03-01T00:00:00Z")
    log["timestamp"] = [(start + pd.Timedelta(hours=int(h))).isoformat()
                        for h in log["timestamp"]]
    source = parquet_shards(log, tmp_path / "raw")
    reference = tk.features.prepare(source, work_dir=tmp_path / "local", **SETTINGS)
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS,
                           options=["--direct_num_workers=2",
                                    "--direct_running_mode=multi_processing"])
    assert rows(reference.train)["timestamp"].dtype == np.int64  # seconds, as normalised
    assert_same_preparation(ours, reference)


def test_features_prepare_reuses_it_and_another_logs_work_dir_fails(tmp_path, monkeypatch):
    source = parquet_shards(log_frame(n=200, users=20, seed=2), tmp_path / "raw")
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    manifest = os.path.join(ours.work_dir, "manifest.json")
    before = os.stat(manifest).st_mtime_ns

    def refused(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(_prepare, "_vocabulary_stage", refused)
    again = tk.features.prepare(source, work_dir=tmp_path / "beam", **SETTINGS)
    assert again == ours and os.stat(manifest).st_mtime_ns == before
    other = parquet_shards(log_frame(n=200, users=20, seed=9), tmp_path / "other")
    with pytest.raises(ValueError, match="another log"):
        tk_beam.prepare(other, work_dir=tmp_path / "beam", **SETTINGS)
    with pytest.raises(ValueError, match="other settings"):
        tk_beam.prepare(source, work_dir=tmp_path / "beam", **{**SETTINGS, "seed": 4})
    assert os.stat(manifest).st_mtime_ns == before


def test_a_stopped_run_resumes_without_using_half_written_files(tmp_path):
    source = parquet_shards(log_frame(n=200, users=20, seed=4), tmp_path / "raw")
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
    assert_same_preparation(tk_beam.prepare(source, work_dir=tmp_path / "beam", **SETTINGS),
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
    source = parquet_shards(log, tmp_path / "raw")
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

    log = log_frame(n=300, users=30, seed=6).assign(score=np.random.default_rng(6).random(300))
    source = parquet_shards(log, tmp_path / "raw")
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
