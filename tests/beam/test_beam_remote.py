"""`tfrs_kit.beam.prepare` and `Recipe(beam_runner=...)` on a log in an object store.

The store is `object_store.ObjectStore` (`kitstore://`): a Beam file system with the
rules of GCS or S3 (no directories; an object appears whole when its writer closes),
so the code path is the one a `gs://` log takes on Dataflow: the driver lists and
describes the shards through Beam's `FileSystems`, each worker copies the shard it
reads, and the workers write to a staging folder the driver copies from. The known
answer is `tfrs_kit.features.prepare` on the same shards on the local disk.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("apache_beam")

import object_store
from prepared_logs import SETTINGS, assert_same_preparation, log_frame, parquet_shards

import tfrs_kit as tk
from tfrs_kit import beam as tk_beam
from tfrs_kit.beam import _prepare as beam_prepare
from tfrs_kit.features import _prepare
from tfrs_kit.features._prepare import Prepared

pytestmark = pytest.mark.slow
TEMP = ["--temp_location=kitstore://bucket/tmp"]


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    """An empty store, and about 100 events per bucket (several buckets)."""
    monkeypatch.setattr(object_store, "ROOT", str(tmp_path / "store"))
    monkeypatch.setattr(_prepare, "_BUCKET_ROWS", 100)
    os.makedirs(tmp_path / "store")
    return tmp_path / "store"


def _uploaded(local_folder, store) -> str:
    """The shards of ``local_folder`` copied into the store: their URL prefix."""
    shutil.copytree(local_folder, store / "bucket" / "log")
    (store / "bucket" / "log" / "_SUCCESS").write_text("")  # not a shard: left out
    return "kitstore://bucket/log"


def _objects(store, prefix: str) -> list[str]:
    folder = store / prefix
    return [] if not folder.exists() else [
        os.path.relpath(os.path.join(root, n), folder)
        for root, _, names in os.walk(folder) for n in names]


@pytest.mark.parametrize("where", ["temp_location", "local staging"])
def test_a_log_in_an_object_store_gives_the_local_preparation(where, tmp_path, store,
                                                                 monkeypatch):
    local = parquet_shards(log_frame(), tmp_path / "raw")
    reference = tk.features.prepare(local, work_dir=tmp_path / "local", **SETTINGS)
    uploads = []
    upload = beam_prepare.upload
    monkeypatch.setattr(beam_prepare, "upload",
                        lambda source, target: uploads.append(target) or upload(source, target))
    staging = ({"options": TEMP} if where == "temp_location"
               else {"staging": str(tmp_path / "staging")})
    ours = tk_beam.prepare(_uploaded(local, store), work_dir=tmp_path / "beam", **staging,
                           **SETTINGS)
    assert_same_preparation(ours, reference, same_source=False)
    # The workers wrote to the staging folder only (every bucket, its marker after its
    # files), and it is gone once the work directory is complete.
    root = "kitstore://bucket/tmp/" if where == "temp_location" else str(tmp_path / "staging")
    assert uploads and all(t.startswith(root) for t in uploads)
    markers = {os.path.basename(t)[7:12]: i for i, t in enumerate(uploads)
               if os.path.basename(t).startswith("bucket-")}
    assert len(markers) == len(reference.train) > 1
    for i, target in enumerate(uploads):
        if "/part-" in target:
            assert i < markers[target.rsplit("part-", 1)[1][:5]], target
    assert _objects(store, "bucket/tmp") == [] and _objects(tmp_path, "staging") == []
    with open(os.path.join(ours.work_dir, "manifest.json"), encoding="utf-8") as f:
        assert '"kitstore://bucket/log/part-0.parquet"' in f.read()


def test_a_driver_stopped_after_the_workers_resumes_from_the_staged_buckets(
        tmp_path, store, monkeypatch):
    local = parquet_shards(log_frame(n=200, users=20, seed=4), tmp_path / "raw")
    reference = tk.features.prepare(local, work_dir=tmp_path / "local", **SETTINGS)
    source = _uploaded(local, store)

    calls = []

    def stopped(*args):  # the driver stops once the workers staged every bucket
        calls.append(args)
        if len(calls) == 2:  # the fetch after the pipeline (the first: before it)
            raise KeyboardInterrupt

    monkeypatch.setattr(beam_prepare, "_fetch_buckets", stopped)
    with pytest.raises(KeyboardInterrupt):
        tk_beam.prepare(source, work_dir=tmp_path / "beam", options=TEMP, **SETTINGS)
    assert any(n.endswith(".json") for n in _objects(store, "bucket/tmp"))
    monkeypatch.undo()
    monkeypatch.setattr(object_store, "ROOT", str(store))
    monkeypatch.setattr(_prepare, "_BUCKET_ROWS", 100)

    def refused(*args, **kwargs):
        raise AssertionError("a shard read again")

    monkeypatch.setattr(beam_prepare, "_bucketed_rows", refused)
    ours = tk_beam.prepare(source, work_dir=tmp_path / "beam", options=TEMP, **SETTINGS)
    assert_same_preparation(ours, reference, same_source=False)


def test_a_recipe_and_the_command_line_train_on_a_log_in_an_object_store(tmp_path, store,
                                                                          capsys):
    from tfrs_kit.cli import main

    local = parquet_shards(log_frame(n=600, users=40, seed=5), tmp_path / "raw")
    source = _uploaded(local, store) + "/*.parquet"
    fast = {"in_memory_rows": 10**9, "time_budget": None, "max_trials": 1, "max_epochs": 1,
            "verbose": False}  # a remote log is prepared on Beam whatever its size
    with pytest.raises(ValueError, match="`beam_runner` must name a Beam runner"):
        tk.Recipe(**fast).fit(source)
    recipe = tk.Recipe(work_dir=tmp_path / "work", beam_runner="DirectRunner",
                       beam_options=TEMP, **fast).fit(source)
    assert Prepared.load(tmp_path / "work").rows == 600
    assert len(recipe.recommend("u1", k=3).ids[0]) == 3
    argv = ["train", source, "--user", "user_id", "--item", "item_id", "--time", "timestamp",
            "--time-budget", "8", "--export", str(tmp_path / "model"),
            "--beam-runner", "DirectRunner", f"--beam-options={TEMP[0]}"]
    assert main(argv) == 0
    assert "on a remote file system, trained out of core" in capsys.readouterr().err
    assert Prepared.load(tmp_path / "model.work").rows == 600


def test_bad_remote_sources(tmp_path, store):
    local = parquet_shards(log_frame(n=100, users=10), tmp_path / "raw")
    source = _uploaded(local, store)
    with pytest.raises(ValueError, match="name shards on one file system"):
        tk_beam.prepare([source, local], work_dir=tmp_path / "w", **SETTINGS)
    with pytest.raises(FileNotFoundError, match="names no shard"):
        tk_beam.prepare("kitstore://bucket/nothing/*.parquet", work_dir=tmp_path / "w",
                        **SETTINGS)
    with pytest.raises(TypeError, match="`staging` must be a folder"):
        tk_beam.prepare(source, work_dir=tmp_path / "w", staging=3, **SETTINGS)


def test_a_full_disk_while_fetching_names_the_work_dir_and_a_rerun_finishes(
        tmp_path, store, monkeypatch):
    import errno

    local = parquet_shards(log_frame(n=200, users=20, seed=7), tmp_path / "raw")
    reference = tk.features.prepare(local, work_dir=tmp_path / "local", **SETTINGS)
    source = _uploaded(local, store)
    real = beam_prepare.download

    def full(remote, target):
        if "/shards/" in remote:
            raise OSError(errno.ENOSPC, "No space left on device", target)
        real(remote, target)

    monkeypatch.setattr(beam_prepare, "download", full)
    work = tmp_path / "beam"
    with pytest.raises(OSError, match=r"`work_dir` must be on a disk with room.*GB free"):
        tk_beam.prepare(source, work_dir=work, options=TEMP, **SETTINGS)
    assert not (work / _prepare.MANIFEST).exists()
    monkeypatch.setattr(beam_prepare, "download", real)
    assert_same_preparation(tk_beam.prepare(source, work_dir=work, options=TEMP, **SETTINGS),
                            reference, same_source=False)
