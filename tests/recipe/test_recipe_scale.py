"""``Recipe.fit`` on files over ``in_memory_rows``: prepared on disk, searched on a sample,
trained streamed; it then serves like the in-memory Recipe.

Tiny shards (4,000 events) with ``in_memory_rows=0`` force the out-of-core path; one
fitted Recipe is shared by the module's tests.
"""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk
from shard_logs import write_shards
from tfrs_kit.data._files import estimated_rows
from tfrs_kit.recipe import _scale, _source

pytest.importorskip("pyarrow")

FAST = {"time_budget": None, "max_trials": 1, "max_epochs": 2, "verbose": False,
        "in_memory_rows": 0}


def _checkerboard(n=4000, seed=0, per_group=100):
    """The suite's checkerboard, with times: two user groups, each picking only from its
    own half of the items (``per_group`` items: enough that each user has unseen ones)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, n)
    items = (users % 2) * per_group + rng.integers(0, per_group, n)
    return pd.DataFrame({"user_id": [f"u{u}" for u in users],
                         "item_id": [f"i{i}" for i in items],
                         "timestamp": np.arange(n, dtype=np.int64)})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A Recipe fitted out of core, with no in-memory reader of the log allowed."""
    folder = tmp_path_factory.mktemp("scale")
    log = _checkerboard()
    pattern, _ = write_shards(log, folder / "log")
    patch = pytest.MonkeyPatch()

    def refused(*args, **kwargs):
        raise AssertionError("the log was read into memory")

    patch.setattr("tfrs_kit.recipe._fit_memory.to_frame", refused)
    patch.setattr("tfrs_kit.recipe._fit_memory.prepare_data", refused)
    patch.setattr("tfrs_kit.data._files.read_table", refused)
    try:
        recipe = tk.Recipe(work_dir=folder / "work", **FAST).fit(pattern)
    finally:
        patch.undo()
    return recipe, log, pattern, folder


def test_fits_out_of_core_and_serves(fitted):
    recipe, log, _, _ = fitted
    report = recipe.report
    assert list(report.stages) == ["prepare", "search", "blend factors", "final",
                                  "serving tables", "blend"]
    assert len(report.trials) == 1
    assert 1 <= report.epochs <= 2  # the validation-chosen epoch, at most max_epochs
    assert "planned epoch(s) streamed over" in report.note
    assert f"after epoch {report.epochs}" in report.note
    assert "time:" in str(report)
    vocabularies = recipe.model.vocabularies_
    assert set(vocabularies["user_id"].tokens) == set(log["user_id"])
    assert set(vocabularies["item_id"].tokens) == set(log["item_id"])
    assert sorted(recipe.queries()["user_id"]) == sorted(set(log["user_id"]))
    assert sorted(recipe.candidates()["item_id"]) == sorted(set(log["item_id"]))
    seen = recipe._seen()  # each interaction, as the in-memory Recipe's
    assert sorted(seen.itertuples(index=False)) == sorted(log.itertuples(index=False))
    top = recipe.build_index(k_max=5).recommend(recipe.queries().head(3), k=5)
    assert np.asarray(top.ids).shape == (3, 5)
    test = _checkerboard(200, seed=1)
    result = tk.evaluate(recipe, test, train=log, metrics=["recall"], k=10)
    assert result.models == ("Recipe",)


def test_seen_ids_are_codes_that_mask_and_survive_a_save(fitted, tmp_path, capsys):
    """The interactions are held as categorical codes (what keeps a 1e8-event Recipe in
    memory); each user's own items are still left out of their top k, before and after
    a save, and the command line evaluates the saved model against them."""
    from tfrs_kit.cli import main

    recipe, log, _, _ = fitted
    seen = recipe._seen()
    assert all(isinstance(seen[n].dtype, pd.CategoricalDtype) for n in ("user_id", "item_id"))
    users = sorted(set(log["user_id"]))
    own = log.groupby("user_id")["item_id"].agg(set)
    top = [list(ids) for ids in recipe.recommend(users, k=20).ids]
    assert all(not own[user] & set(ids) for user, ids in zip(users, top, strict=True))
    recipe.save(tmp_path / "model")
    loaded = tk.load(tmp_path / "model")
    assert [list(ids) for ids in loaded.recommend(users, k=20).ids] == top
    test = _checkerboard(200, seed=1)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    assert main(["evaluate", str(tmp_path / "model"), str(tmp_path / "test.parquet"),
                 "--quiet"]) == 0
    assert "recall" in capsys.readouterr().out


def test_learns_the_checkerboard(fitted):
    """Each group's users get their own half of the items first (the known answer: all
    of the top 10, seen items excluded); the held-out events score above zero."""
    recipe, log, _, _ = fitted
    users = sorted(set(log["user_id"]))
    top = recipe.recommend(users, k=10)
    own = [int(item[1:]) // 100 == int(user[1:]) % 2
           for user, items in zip(users, top.ids, strict=True) for item in items]
    assert np.mean(own) >= 0.95
    assert recipe.model and "ndcg@10 0.0000 on" not in recipe.report.note


def test_a_rerun_with_the_work_dir_reuses_the_preparation(fitted, monkeypatch):
    recipe, _, pattern, folder = fitted
    manifest = folder / "work" / "manifest.json"
    before = os.stat(manifest).st_mtime_ns

    def refused(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr("tfrs_kit.features._prepare._vocabulary_stage", refused)
    again = tk.Recipe(work_dir=folder / "work", **FAST).fit(pattern)
    assert os.stat(manifest).st_mtime_ns == before
    assert json.loads(manifest.read_text())["counts"]["rows"] == 4000
    assert again.settings == recipe.settings


def test_a_temporary_work_dir_is_removed_and_first_only_is_streamed(tmp_path, monkeypatch):
    log = _checkerboard(1500)
    pattern, _ = write_shards(log, tmp_path / "log", shards=2)
    created = []

    def mkdtemp(prefix=""):
        created.append(tmp_path / f"{prefix}work")
        created[-1].mkdir()
        return str(created[-1])

    monkeypatch.setattr(_scale.tempfile, "mkdtemp", mkdtemp)
    tk.Recipe(**FAST).fit(pattern)
    assert created and not created[0].exists()
    # The chosen settings train on each pair's first event: shards without repeats.
    base = _scale.base_settings
    monkeypatch.setattr(_scale, "base_settings", lambda *args, **kwargs: dataclasses.replace(
        base(*args, **kwargs), first_only=True))
    recipe = tk.Recipe(work_dir=tmp_path / "work", **FAST).fit(pattern)
    assert recipe.settings.first_only
    kept = pd.concat([pd.read_parquet(path) for path in
                      (tmp_path / "work" / "first_only").glob("*.parquet")])
    assert not kept.duplicated(["user_id", "item_id"]).any()
    assert len(kept) == len(pd.read_parquet(tmp_path / "work" / "shards" / "train")
                            .drop_duplicates(["user_id", "item_id"]))


def test_first_only_keeps_each_pairs_earliest_event_across_read_batches(tmp_path, monkeypatch):
    """Known answer: of each (user, item) pair, the row with the earliest time, then the
    shortest history; read two rows at a time, so pairs straddle the batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = tmp_path / "shards" / "part-0.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({
        "user_id": ["a", "a", "b", "a", "b", "a", "b"],
        "item_id": ["x", "y", "x", "x", "x", "y", "y"],
        "timestamp": [5, 1, 2, 3, 2, 1, 9],
        "history": [["p"], [], ["q", "r"], ["s"], ["q"], ["t"], []]}), shard)
    (tmp_path / "manifest.json").write_text("{}")
    prepared = type("Prepared", (), {"work_dir": str(tmp_path), "train": [str(shard)]})()
    monkeypatch.setattr(_scale, "_BATCH_ROWS", 2)
    columns = type("Columns", (), {"user_id": "user_id", "item_id": "item_id",
                                   "timestamp": "timestamp", "history": "history"})()
    [written] = _scale._first_only(prepared, columns)
    kept = pq.read_table(written).to_pylist()
    # (a, x): time 3 (row 3) before 5; (a, y): time 1 twice, the empty history (row 1);
    # (b, x): time 2 twice, the shorter history (row 4); (b, y): its only event.
    assert kept == [
        {"user_id": "a", "item_id": "y", "timestamp": 1, "history": []},
        {"user_id": "a", "item_id": "x", "timestamp": 3, "history": ["s"]},
        {"user_id": "b", "item_id": "x", "timestamp": 2, "history": ["q"]},
        {"user_id": "b", "item_id": "y", "timestamp": 9, "history": []}]


def test_the_ranking_stage_is_skipped_out_of_core_and_refused_when_forced(fitted, tmp_path):
    recipe, _, pattern, _ = fitted  # rerank="auto", the default
    assert not recipe.report.rerank.kept and "out of core" in recipe.report.rerank.reason
    assert recipe.cascade_ is None and "out of core" in str(recipe.report)
    with pytest.raises(ValueError, match=r"rerank.*out of core.*in_memory_rows=0"):
        tk.Recipe(work_dir=tmp_path / "work", **{**FAST, "rerank": True}).fit(pattern)
    assert not (tmp_path / "work").exists()  # refused before the preparation


def test_the_path_is_chosen_by_the_rows_of_files(tmp_path):
    log = _checkerboard(300)
    pattern, _ = write_shards(log, tmp_path / "log")
    assert estimated_rows(sorted(map(str, (tmp_path / "log").glob("*")))) == 300
    assert not _source.out_of_core(pattern, 300)
    assert _source.out_of_core(pattern, 299)
    assert not _source.out_of_core(log, 0)  # a table in memory stays in memory
    # Files on a remote file system are prepared on Beam, whatever their size.
    assert _source.out_of_core(["s3://bucket/log/part-0.parquet"], 10**9)
    with pytest.raises(ValueError, match="in_memory_rows"):
        tk.Recipe(in_memory_rows=-1)
    with pytest.raises(TypeError, match="work_dir"):
        tk.Recipe(work_dir=3)


def test_the_command_line_trains_out_of_core_and_exports(tmp_path, monkeypatch, capsys):
    from tfrs_kit.cli import main

    log = _checkerboard(2000)
    pattern, _ = write_shards(log, tmp_path / "log", shards=2)
    monkeypatch.setattr(_scale, "DEFAULT_IN_MEMORY_ROWS", 0)

    def refused(*args, **kwargs):
        raise AssertionError("the log was read into memory")

    monkeypatch.setattr("tfrs_kit.cli._files.read_log", refused)
    argv = ["train", pattern, "--user", "user_id", "--item", "item_id", "--time", "timestamp",
            "--time-budget", "8", "--export", str(tmp_path / "model"), "--quiet"]
    assert main(argv) == 0
    assert (tmp_path / "model.work" / "manifest.json").exists()  # kept for a rerun
    loaded = tk.load(tmp_path / "model")
    assert sorted(loaded.queries()["user_id"]) == sorted(set(log["user_id"]))
    assert len(loaded.recommend("u1", k=3).ids[0]) == 3
    assert list(loaded.report.stages) == ["prepare", "search", "blend factors", "final",
                                          "serving tables", "blend"]
    assert "Exported to" in capsys.readouterr().out


def test_read_gives_the_frame_pandas_reads(tmp_path):
    """``_read`` casts each shard's strings before joining them (no copy of the whole
    log): the frame is the one pandas reads from the shards, the users filter too."""
    log = _checkerboard(300)
    paths = []
    for number, part in enumerate((log.iloc[:120], log.iloc[120:])):
        paths.append(str(tmp_path / f"part-{number}.parquet"))
        part.to_parquet(paths[-1], index=False)
    expected = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    pd.testing.assert_frame_equal(_scale._read(paths, list(log.columns)), expected)
    users = ["u1", "u4"]
    chosen = _scale._read(paths, ["user_id", "item_id"], users=users)
    pd.testing.assert_frame_equal(
        chosen, expected[expected.user_id.isin(users)][["user_id", "item_id"]]
        .reset_index(drop=True))
