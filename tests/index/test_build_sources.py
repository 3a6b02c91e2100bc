"""``IndexBuilder.build`` embeds candidates in files chunk by chunk, as it does a table."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.index import _builder

pytest.importorskip("pyarrow")


def _log():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 12, 300)
    items = rng.integers(0, 40, 300)
    return {"user_id": np.array([f"u{u}" for u in users], dtype=object),
            "item_id": np.array([f"i{i}" for i in items], dtype=object),
            "genre": np.array([f"g{i % 5}" for i in items], dtype=object)}


def _model(log):
    tf.keras.utils.set_random_seed(5)
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id", "genre"])
    return tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id"], output_dim=8),
        tk.Tower(vocabs, features=["item_id", "genre"], output_dim=8))


def _catalogue():
    """40 candidates, some twice (the last row counts), with a column no tower reads."""
    ids = [f"i{i}" for i in range(40)] + ["i3", "i17", "i3"]
    return pd.DataFrame({"item_id": ids, "genre": [f"g{int(i[1:]) % 5}" for i in ids],
                         "unused": np.arange(len(ids))})


def _write(frame, folder, shards):
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(frame)), shards)):
        frame.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    return tk.data.Shards(str(folder))


@pytest.mark.parametrize("shards", [1, 3])
def test_an_index_built_from_files_equals_the_in_memory_one(tmp_path, monkeypatch, shards):
    log, catalogue = _log(), _catalogue()
    model = _model(log)
    memory = tk.IndexBuilder(k_max=10).build(model, catalogue, verbose=False)
    source = _write(catalogue, tmp_path / "items", shards)
    monkeypatch.setattr(_builder, "_CHUNK_ROWS", 7)  # many chunks, duplicates across them
    monkeypatch.setattr("tfrs_kit.data._table.read_table", _refuse)  # never all candidates
    for candidates in (source, list(source.paths)):
        files = tk.IndexBuilder(k_max=10).build(model, candidates, verbose=False)
        assert files.ids.tolist() == memory.ids.tolist()
        queries = {"user_id": np.unique(log["user_id"])}
        got, want = files.recommend(queries, k=10), memory.recommend(queries, k=10)
        assert got.ids.tolist() == want.ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)


def _refuse(*args, **kwargs):
    raise AssertionError("the candidates were read into one table")


def test_files_read_only_the_columns_the_tower_needs(tmp_path, monkeypatch):
    from tfrs_kit.data import _files

    read = []
    original = _files.iter_tables

    def spy(data, **kwargs):
        read.append(kwargs.get("columns"))
        return original(data, **kwargs)

    monkeypatch.setattr(_builder, "iter_tables", spy)
    source = _write(_catalogue(), tmp_path / "items", 2)
    tk.IndexBuilder(k_max=5).build(_model(_log()), source, verbose=False)
    assert read == [["item_id", "genre"]]


def test_with_candidates_from_files_equals_the_table(tmp_path):
    log, catalogue = _log(), _catalogue()
    model = _model(log)
    index = tk.IndexBuilder(k_max=5).build(model, catalogue.iloc[:20], verbose=False)
    source = _write(catalogue.iloc[15:], tmp_path / "items", 2)
    from_files = index.with_candidates(model, source)
    in_memory = index.with_candidates(model, catalogue.iloc[15:])
    assert from_files.ids.tolist() == in_memory.ids.tolist()
    queries = {"user_id": ["u1", "u2"]}
    np.testing.assert_allclose(from_files.recommend(queries, k=5).scores,
                               in_memory.recommend(queries, k=5).scores, rtol=1e-5)


def test_integer_ids_in_files_and_missing_columns(tmp_path):
    frame = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": [1, 2, 2],
                          "genre": ["g1", "g2", "g2"]})
    model = _model({name: frame[name].to_numpy() for name in frame})
    with pytest.raises(ValueError, match="genre"):
        tk.IndexBuilder(k_max=2).build(model, _write(frame[["item_id"]], tmp_path / "a", 1),
                                       verbose=False)
    index = tk.IndexBuilder(k_max=2).build(model, _write(frame, tmp_path / "b", 2),
                                           verbose=False)
    assert index.ids.tolist() == [1, 2]
    assert index.recommend({"user_id": ["a"]}, k=2).ids.dtype == np.int64
