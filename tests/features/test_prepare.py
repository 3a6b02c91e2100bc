"""`prepare`: raw shards to vocabularies, histories, a validation slice and a sample, resumable.

Histories are checked against independent references (`HistoryBuilder` in memory,
and a plain Python loop on a tiny log), over logs of several shapes, split over
several shards and several buckets (the bucket size is made tiny here). Memory is
flat by design (one chunk, then one bucket: see the module docstrings and
docs/files.md); no test times or measures it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import tfrs_kit as tk
from tfrs_kit.features import _prepare, _prepare_log
from tfrs_kit.features._prepare import Prepared, prepare


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch):
    """About 300 events per bucket, so logs of a few thousand rows use several buckets."""
    monkeypatch.setattr(_prepare, "_BUCKET_ROWS", 300)
    monkeypatch.setattr(_prepare_log, "SLICE_ROWS", 128)  # several row groups per file


def _write_shards(frame: pd.DataFrame, folder, parts: int = 3, fmt: str = "parquet") -> str:
    os.makedirs(folder, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[rows]
        path = os.path.join(folder, f"part-{i}.{fmt}")
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        elif fmt == "csv":
            part.to_csv(path, index=False)
        else:
            _write_tfrecord(part, path)
    return str(folder)


def _write_tfrecord(frame: pd.DataFrame, path: str) -> None:
    import tensorflow as tf

    def feature(value):
        if isinstance(value, str):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    with tf.io.TFRecordWriter(path) as writer:
        for row in frame.to_dict("records"):
            features = {name: feature(value) for name, value in row.items()}
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=features)).SerializeToString())


def _log(n=3000, users=120, items=40, times=30, seed=0, string_users=True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    return pd.DataFrame({
        "user_id": np.array([f"u{u}" for u in user], dtype=object) if string_users else user,
        "item_id": rng.integers(0, items, n),
        "timestamp": rng.integers(0, times, n),  # few distinct times: many ties
        "event_id": np.arange(n),
    })


def _read(paths) -> pd.DataFrame:
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        return pd.DataFrame()
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def _histories(frame: pd.DataFrame, column="history") -> dict[int, tuple]:
    return {int(e): tuple(np.asarray(h).tolist()) for e, h in
            zip(frame["event_id"], frame[column], strict=True)}


def _reference(log: pd.DataFrame, length: int, timestamp="timestamp") -> dict[int, tuple]:
    rows = tk.HistoryBuilder(max_length=length, timestamp=timestamp).transform(log)
    return _histories(pd.DataFrame({"event_id": rows["event_id"], "history": rows["history"]}))


def _everything(prepared: Prepared) -> pd.DataFrame:
    return _read(prepared.train + ((prepared.validation,) if prepared.validation else ()))


SHAPES = {
    "many users, many ties": _log(),
    "integer users": _log(string_users=False, seed=1),
    "one user": _log(n=700, users=1, seed=2),
    "one item": _log(items=1, seed=3),
    "one instant": _log(times=1, seed=4),
    "long histories": _log(n=2000, users=5, times=10_000, seed=5),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_histories_match_history_builder(shape, tmp_path):
    log = SHAPES[shape]
    source = _write_shards(log, tmp_path / "raw")
    prepared = prepare(source, work_dir=tmp_path / "work", features=["event_id"],
                       history_length=7, validation_users=0.25, verbose=False)
    rows = _everything(prepared)
    assert sorted(rows["event_id"]) == list(range(len(log)))  # each event once
    assert _histories(rows) == _reference(log, 7)
    assert len(prepared.train) > 1 or prepared.users == 1  # several buckets were used
    latest = _read(prepared.latest)
    expected = tk.HistoryBuilder(max_length=7).for_users(log)
    assert {u: tuple(h) for u, h in zip(latest["user_id"], latest["history"], strict=True)} == {
        u: tuple(h.tolist()) for u, h in zip(expected["user_id"], expected["history"],
                                             strict=True)}
    assert (prepared.rows, prepared.users, prepared.items) == (
        len(log), log["user_id"].nunique(), log["item_id"].nunique())


@pytest.mark.parametrize("fmt", ["csv", "tfrecord"])
def test_csv_and_tfrecord_shards_give_the_same_histories(fmt, tmp_path):
    log = _log(n=800, users=30, seed=8)
    prepared = prepare(_write_shards(log, tmp_path / "raw", fmt=fmt), work_dir=tmp_path / "w",
                       features=["event_id"], history_length=5, validation_users=0.2,
                       verbose=False)
    assert _histories(_everything(prepared)) == _reference(log, 5)


def test_histories_match_a_plain_loop_on_a_tiny_log(tmp_path):
    log = pd.DataFrame({"user_id": ["a", "b", "a", "a", "b", "a", "c"],
                        "item_id": ["x", "y", "y", "z", "x", "w", "x"],
                        "timestamp": [5, 1, 1, 5, 1, 9, 0],
                        "event_id": range(7)})
    expected = {}
    for i, row in log.iterrows():  # earlier time, or same time and earlier in the file
        before = [j for j, other in log.iterrows() if other.user_id == row.user_id and
                  (other.timestamp, j) < (row.timestamp, i)]
        before.sort(key=lambda j: (log.timestamp[j], j))
        expected[i] = tuple(log.item_id[j] for j in before[-2:])
    source = _write_shards(log, tmp_path / "raw", parts=2)
    prepared = prepare(source, work_dir=tmp_path / "work", features=["event_id"],
                       history_length=2, validation_users=0, verbose=False)
    assert _histories(_everything(prepared)) == expected
    assert expected[5] == ("x", "z") and expected[3] == ("y", "x")  # a tie: file order


def test_validation_holds_out_each_sampled_users_latest_events(tmp_path):
    log = _log()
    source = _write_shards(log, tmp_path / "raw")
    prepared = prepare(source, work_dir=tmp_path / "work", features=["event_id"],
                       validation_users=10, validation_events=2, verbose=False)
    validation, train = _read(prepared.validation), _read(prepared.train)
    assert prepared.validation_users == 10 == validation["user_id"].nunique()
    assert len(validation) == prepared.validation_rows == 20
    assert not set(validation["event_id"]) & set(train["event_id"])
    ordered = log.sort_values(["timestamp", "event_id"], kind="stable")
    for user, rows in validation.groupby("user_id"):
        latest = ordered[ordered["user_id"] == user]["event_id"].tolist()[-2:]
        assert sorted(rows["event_id"]) == sorted(latest)


def test_samples_are_seeded_and_the_search_sample_restricts_training(tmp_path):
    source = _write_shards(_log(), tmp_path / "raw")
    runs = [prepare(source, work_dir=tmp_path / f"work{i}", features=["event_id"],
                    validation_users=0.1, sample_users=0.25, seed=seed, verbose=False)
            for i, seed in enumerate((0, 0, 1))]
    users = [set(_read(r.sample)["user_id"]) for r in runs]
    assert users[0] == users[1] != users[2]
    assert runs[0].sample_users == len(users[0]) == 30
    train, sample = _read(runs[0].train), _read(runs[0].sample)
    expected = train[train["user_id"].isin(users[0])]
    assert sorted(sample["event_id"]) == sorted(expected["event_id"])
    assert set(_read(runs[0].validation)["user_id"]) == set(_read(runs[1].validation)["user_id"])


def test_vocabularies_are_those_of_the_whole_log(tmp_path):
    log = _log()
    prepared = prepare(_write_shards(log, tmp_path / "raw"), work_dir=tmp_path / "work",
                       verbose=False)
    expected = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"])
    assert prepared.load_vocabularies() == expected.alias("history", "item_id", kind="multi")


def _times(kind: str, ticks: np.ndarray):
    seconds = 1_700_000_000 + ticks
    stamps = pd.to_datetime(seconds, unit="s")
    return {
        "int seconds": seconds,
        "int milliseconds": seconds * 1000,
        "float seconds": ticks * 0.5 - 3.0,  # negative and fractional too
        "datetime": stamps,
        "datetime with time zone": stamps.tz_localize("UTC").tz_convert("Asia/Tokyo"),
        "date-time strings": stamps.strftime("%Y-%m-%dT%H:%M:%S"),
        "strings with offsets": stamps.tz_localize("UTC").tz_convert("America/New_York")
        .strftime("%Y-%m-%dT%H:%M:%S%z"),
    }[kind]


@pytest.mark.parametrize("kind", ["int seconds", "int milliseconds", "float seconds", "datetime",
                                  "datetime with time zone", "date-time strings",
                                  "strings with offsets"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_time_representations_order_alike(kind, fmt, tmp_path):
    log = _log(n=600, users=20, times=50, seed=6)
    ticks = log["timestamp"].to_numpy()
    raw = log.assign(timestamp=_times(kind, ticks))
    prepared = prepare(_write_shards(raw, tmp_path / "raw", fmt=fmt), work_dir=tmp_path / "w",
                       features=["event_id"], history_length=4, validation_users=0,
                       verbose=False)
    assert _histories(_everything(prepared)) == _reference(log, 4)  # ordered by the ticks
    stored = _everything(prepared).sort_values("event_id")["timestamp"].to_numpy()
    if kind in ("int seconds", "int milliseconds", "float seconds"):
        np.testing.assert_array_equal(stored, raw["timestamp"].to_numpy())
    else:  # date-times: seconds since the epoch, what a "timestamp" feature reads
        np.testing.assert_array_equal(stored, 1_700_000_000 + ticks)


def test_no_timestamp_keeps_file_order(tmp_path):
    log = _log(n=500, users=10, seed=7)
    prepared = prepare(_write_shards(log.drop(columns="timestamp"), tmp_path / "raw"),
                       work_dir=tmp_path / "w", timestamp=None, features=["event_id"],
                       history_length=3, validation_users=0, verbose=False)
    assert _histories(_everything(prepared)) == _reference(log, 3, timestamp=None)


def _contents(prepared: Prepared) -> tuple:
    return (_read(prepared.train).sort_values("event_id").to_json(),
            _read(prepared.validation).to_json(), prepared.rows, prepared.train_rows)


def test_a_killed_run_resumes_and_reuses_finished_work(tmp_path, monkeypatch):
    source = _write_shards(_log(), tmp_path / "raw")
    settings = {"features": ["event_id"], "validation_users": 0.2, "verbose": False}
    clean = _contents(prepare(source, work_dir=tmp_path / "clean", **settings))
    real, calls = _prepare.write_bucket, []

    def dies_at_bucket_three(spill_file, bucket, *args):
        calls.append(bucket)
        if bucket == 3:
            raise KeyboardInterrupt  # as a kill: nothing after this runs
        return real(spill_file, bucket, *args)

    monkeypatch.setattr(_prepare, "write_bucket", dies_at_bucket_three)
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        prepare(source, work_dir=work, **settings)
    assert not (work / _prepare.MANIFEST).exists() and (work / "shards.partial").is_dir()
    with pytest.raises(ValueError, match="finished preparation"):
        Prepared.load(work)
    vocabulary_file = work / "vocabularies" / "vocabularies.json"
    written = vocabulary_file.stat().st_mtime_ns
    monkeypatch.setattr(_prepare, "write_bucket", lambda *a: calls.append(a[1]) or real(*a))
    calls.clear()
    resumed = prepare(source, work_dir=work, **settings)
    assert calls and min(calls) == 3  # buckets 0-2 were reused
    assert vocabulary_file.stat().st_mtime_ns == written
    assert _contents(resumed) == clean
    assert not (work / "spill").exists() and not (work / "shards.partial").exists()


def test_a_full_disk_names_the_work_dir_and_a_rerun_finishes(tmp_path, monkeypatch):
    import errno

    source = _write_shards(_log(), tmp_path / "raw")
    settings = {"features": ["event_id"], "validation_users": 0.2, "verbose": False}
    clean = _contents(prepare(source, work_dir=tmp_path / "clean", **settings))
    real = _prepare.write_bucket

    def full_at_bucket_two(spill_file, bucket, *args):
        if bucket == 2:
            raise OSError(errno.ENOSPC, "No space left on device", spill_file)
        return real(spill_file, bucket, *args)

    monkeypatch.setattr(_prepare, "write_bucket", full_at_bucket_two)
    work = tmp_path / "work"
    with pytest.raises(OSError, match=r"`work_dir` must be on a disk with room.*GB free "
                                      r"now.*reuses the stages that finished") as raised:
        prepare(source, work_dir=work, **settings)
    assert raised.value.errno == errno.ENOSPC and str(work) in str(raised.value)
    assert not (work / _prepare.MANIFEST).exists()
    monkeypatch.setattr(_prepare, "write_bucket", real)
    assert _contents(prepare(source, work_dir=work, **settings)) == clean


_KILLED_RUN = """
import sys, time
from tfrs_kit.features import _prepare, _prepare_log
_prepare._BUCKET_ROWS, _prepare_log.SLICE_ROWS = 300, 128
real = _prepare.write_bucket
def slow(*args):
    time.sleep(0.3)  # time for the test to kill it between buckets
    return real(*args)
_prepare.write_bucket = slow
_prepare.prepare(sys.argv[1], work_dir=sys.argv[2], features=["event_id"], verbose=False)
"""


def test_a_run_killed_with_sigkill_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    source = _write_shards(_log(), tmp_path / "raw")
    clean = _contents(prepare(source, work_dir=tmp_path / "clean", features=["event_id"],
                              verbose=False))
    work = tmp_path / "work"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, source, str(work)])
    marker = work / "shards.partial" / "bucket-00002.json"
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.returncode == -signal.SIGKILL:  # killed mid-way, as intended
        assert not (work / _prepare.MANIFEST).exists()
    assert _contents(prepare(source, work_dir=work, features=["event_id"],
                             verbose=False)) == clean


def test_half_written_stages_are_never_used(tmp_path):
    source = _write_shards(_log(), tmp_path / "raw")
    settings = {"features": ["event_id"], "verbose": False}
    work = tmp_path / "work"
    clean = _contents(prepare(source, work_dir=work, **settings))
    # As if killed before the manifest, with the shards' marker missing and a spill
    # stage cut short (its bucket files emptied).
    os.remove(work / _prepare.MANIFEST)
    os.remove(work / "shards" / _prepare.COMPLETE)
    shutil.rmtree(work / "shards" / "train")
    os.makedirs(work / "spill.partial")
    (work / "spill.partial" / "bucket-00000.arrow").write_bytes(b"")
    assert _contents(prepare(source, work_dir=work, **settings)) == clean
    assert Prepared.load(work) == prepare(source, work_dir=work, **settings)


def test_a_work_dir_of_another_log_or_settings_fails_clearly(tmp_path):
    log = _log()
    first = _write_shards(log, tmp_path / "raw")
    other = _write_shards(log.iloc[:2000], tmp_path / "other")
    work = tmp_path / "work"
    prepare(first, work_dir=work, verbose=False)
    with pytest.raises(ValueError, match=r"`work_dir`.*another log.*new work_dir.*overwrite=True"):
        prepare(other, work_dir=work, verbose=False)
    with pytest.raises(ValueError, match=r"history_length=50 \(now 9\)"):
        prepare(first, work_dir=work, history_length=9, verbose=False)
    os.utime(os.path.join(first, "part-0.parquet"), ns=(1, 1))
    with pytest.raises(ValueError, match="changed since"):
        prepare(first, work_dir=work, verbose=False)
    replaced = prepare(other, work_dir=work, overwrite=True, verbose=False)
    assert replaced.rows == 2000
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="new or empty directory"):
        prepare(first, work_dir=foreign, verbose=False)
    with pytest.raises(ValueError, match="`work_dir` must be outside the source"):
        prepare(tmp_path, work_dir=work, verbose=False)  # work/ holds Parquet files


def test_manifest_describes_the_preparation(tmp_path):
    source = _write_shards(_log(), tmp_path / "raw")
    prepared = prepare(source, work_dir=tmp_path / "w", sample_users=5, verbose=False)
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["format_version"] == _prepare.FORMAT_VERSION
    assert manifest["settings"]["sample_users"] == 5
    assert [s["path"] for s in manifest["source"]] == sorted(
        str(p) for p in (tmp_path / "raw").iterdir())
    assert manifest["columns"] == {"user_id": "string", "item_id": "int", "timestamp": "int"}
    assert manifest["counts"]["train_rows"] == prepared.train_rows
    assert Prepared.load(tmp_path / "w") == prepared
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.rows = 1  # type: ignore[misc]


def test_degenerate_logs(tmp_path):
    single = pd.DataFrame({"user_id": [f"u{i}" for i in range(50)], "item_id": 1,
                           "timestamp": 0, "event_id": range(50)})
    source = _write_shards(single, tmp_path / "raw")
    with pytest.raises(ValueError, match=r"`validation_users`.*more than 1 event.*"
                                         r"validation_users=0"):
        prepare(source, work_dir=tmp_path / "a", verbose=False)
    prepared = prepare(source, work_dir=tmp_path / "b", features=["event_id"],
                       validation_users=0, verbose=False)
    assert prepared.validation is None and prepared.train_rows == 50
    assert all(len(h) == 0 for h in _read(prepared.train)["history"])
    # Two events per user, all held out but one each: every user trains on one event.
    pairs = pd.concat([single, single.assign(event_id=single["event_id"] + 50)])
    both = prepare(_write_shards(pairs, tmp_path / "pairs"), work_dir=tmp_path / "c",
                   validation_users=1.0, verbose=False)
    assert (both.validation_users, both.validation_rows, both.train_rows) == (50, 50, 50)


def test_bad_inputs_fail_clearly(tmp_path):
    log = _log(n=200)
    missing = log.astype({"user_id": object})
    missing.loc[5, "user_id"] = None
    with pytest.raises(ValueError, match=r"`data\['user_id'\]` must hold no missing.*part-0"):
        prepare(_write_shards(missing, tmp_path / "m"), work_dir=tmp_path / "w1",
                verbose=False)
    padded = log.assign(item_id=log["item_id"].astype(str))
    padded.loc[3, "item_id"] = ""
    with pytest.raises(ValueError, match="pads lists of ids"):
        prepare(_write_shards(padded, tmp_path / "p"), work_dir=tmp_path / "w2",
                verbose=False)
    source = _write_shards(log, tmp_path / "raw")
    with pytest.raises(ValueError, match="item_id='item"):
        prepare(source, work_dir=tmp_path / "w3", item_id="item", verbose=False)
    with pytest.raises(ValueError, match="`history` must name a column the source does not"):
        prepare(source, work_dir=tmp_path / "w4", history="event_id", verbose=False)
    with pytest.raises(TypeError, match="features"):
        prepare(source, work_dir=tmp_path / "w5", features="event_id", verbose=False)
    with pytest.raises(ValueError, match="`history_length`"):
        prepare(source, work_dir=tmp_path / "w6", history_length=0, verbose=False)
    with pytest.raises(ValueError, match="`sample_users` must be at most"):
        prepare(source, work_dir=tmp_path / "w7", sample_users=10_000, verbose=False)
