"""Files in: Parquet, CSV and TFRecord shards read as the DataFrame they were written from.

The reference is always the in-memory DataFrame the shards were written from, fed
to the same entry point; errors are checked for naming the shard, the column or
the line.
"""

import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.data import _files
from tfrs_kit.data._table import to_table

pytest.importorskip("pyarrow")


def _log(rows=60, seed=0):
    rng = np.random.default_rng(seed)
    genres = ["drama", "comedy", "action", "noir"]
    return pd.DataFrame({
        "user_id": rng.choice(["u1", "u2", "u3", "u4", "u5"], rows).astype(object),
        "item_id": rng.integers(0, 12, rows).astype(np.int64),
        "rating": rng.integers(1, 6, rows).astype(np.float64) / 2,
        "timestamp": np.arange(rows, dtype=np.int64) * 10 + 1000,
        "genres": [list(rng.choice(genres, rng.integers(0, 3), replace=False))
                   for _ in range(rows)],
        "title": rng.choice(["Toy Story (1995)", "Heat", "Up: the Movie", "toy heat"], rows),
    })


def _example(row):
    def feature(value):
        values = list(value) if isinstance(value, (list, np.ndarray)) else [value]
        if values and isinstance(values[0], str):
            return tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() for v in values]))
        if values and isinstance(values[0], (float, np.floating)):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    return tf.train.Example(features=tf.train.Features(
        feature={name: feature(value) for name, value in row.items()})).SerializeToString()


def _write(frame, folder, fmt, shards=3):
    """Writes ``frame`` as ``shards`` files of one format; returns their glob."""
    folder.mkdir(exist_ok=True)
    bounds = np.linspace(0, len(frame), shards + 1).astype(int)
    for i in range(shards):
        part = frame.iloc[bounds[i]:bounds[i + 1]]
        path = folder / f"part-{i:03d}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        elif fmt == "csv":
            part.to_csv(path, index=False)
        else:
            with tf.io.TFRecordWriter(str(path)) as writer:
                for row in part.to_dict("records"):
                    writer.write(_example(row))
    return str(folder / f"*.{fmt}")


def _same_tables(got, want, *, float32=False):
    assert list(got) == list(want)
    for name, column in want.items():
        assert len(got[name]) == len(column), name
        if column.dtype == object and len(column) and isinstance(column[0], np.ndarray):
            assert [list(v) for v in got[name]] == [list(v) for v in column], name
            assert all(isinstance(v, np.ndarray) for v in got[name]), name
            kinds = {v.dtype.kind for v in got[name] if len(v)}
            assert kinds == {v.dtype.kind for v in column if len(v)}, name
        elif column.dtype.kind == "f" and float32:
            np.testing.assert_allclose(got[name], column, rtol=1e-6)
        else:
            assert got[name].dtype == column.dtype, (name, got[name].dtype, column.dtype)
            assert got[name].tolist() == column.tolist(), name


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tfrecord"])
def test_shards_read_as_the_dataframe_they_came_from(fmt, tmp_path):
    frame = _log()
    if fmt == "csv":  # CSV holds no lists
        frame = frame.drop(columns="genres")
    if fmt == "tfrecord":  # a record cannot say "an empty list" apart from "no value"
        frame = frame[frame.genres.map(len) > 0]
    pattern = _write(frame, tmp_path / fmt, fmt)
    want = to_table(frame)
    got = to_table(pattern)
    if fmt == "tfrecord":  # Example features come back by name; floats as float32
        want = {name: want[name] for name in sorted(want)}
    _same_tables(got, want, float32=fmt == "tfrecord")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tfrecord"])
def test_only_the_requested_columns_are_read(fmt, tmp_path):
    frame = _log().drop(columns="genres")
    pattern = _write(frame, tmp_path / fmt, fmt, shards=2)
    got = _files.read_table(pattern, columns=["item_id", "user_id"])
    assert list(got) == ["item_id", "user_id"]
    assert got["item_id"].tolist() == frame.item_id.tolist()


def test_a_column_that_is_not_read_may_differ_between_shards(tmp_path):
    pd.DataFrame({"u": ["a"], "x": [1]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["b"], "x": ["one"]}).to_parquet(tmp_path / "b.parquet")
    assert _files.read_table(tmp_path, columns=["u"])["u"].tolist() == ["a", "b"]


def test_chunks_hold_rows_per_chunk_rows_and_add_up_to_the_table(tmp_path):
    frame = _log(25)
    pattern = _write(frame, tmp_path / "p", "parquet", shards=2)  # 12 + 13 rows
    chunks = list(_files.iter_tables(pattern, rows_per_chunk=5, columns=["item_id", "genres"]))
    assert [len(c["item_id"]) for c in chunks] == [5, 5, 2, 5, 5, 3]
    assert np.concatenate([c["item_id"] for c in chunks]).tolist() == frame.item_id.tolist()
    flat = [list(v) for c in chunks for v in c["genres"]]
    assert flat == [list(v) for v in frame.genres]


def test_csv_chunks_cross_arrow_blocks(tmp_path):
    frame = pd.DataFrame({"user_id": [f"user-{i:05d}" for i in range(3000)],
                          "item_id": np.arange(3000)})
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    chunks = list(_files.iter_tables(str(path), rows_per_chunk=1000))
    assert [len(c["item_id"]) for c in chunks] == [1000, 1000, 1000]
    assert np.concatenate([c["user_id"] for c in chunks]).tolist() == frame.user_id.tolist()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tfrecord"])
def test_streamed_chunks_hold_the_dataframes_rows(fmt, tmp_path):
    """iter_arrow (Parquet, CSV) and iter_records (TFRecord): the rows of the DataFrame,
    chunk by chunk, of one type per kind (Arrow chunks of all shards concatenate)."""
    import pyarrow as pa

    frame = _log(25)
    if fmt == "csv":
        frame = frame.drop(columns="genres")
    if fmt == "tfrecord":
        frame = frame[frame.genres.map(len) > 0]
    pattern = _write(frame, tmp_path / fmt, fmt, shards=2)
    paths = _files.resolve(pattern)
    kinds = _files.schema(paths)
    if fmt == "tfrecord":
        chunks = [c for p in paths for c in _files.iter_records(p, kinds, rows_per_chunk=5)]
        columns = {name: [v for c in chunks for v in _decoded(_values(c[name]))]
                   for name in kinds}
        sizes = [int(c["item_id"].shape[0]) for c in chunks]
    else:
        chunks = [c for p in paths for c in _files.iter_arrow(p, kinds, rows_per_chunk=5)]
        table = pa.concat_tables(chunks)
        columns = {name: table.column(name).to_pylist() for name in kinds}
        sizes = [c.num_rows for c in chunks]
    shards = np.diff(np.linspace(0, len(frame), 3).astype(int))  # as _write cuts them
    assert sizes == [min(5, n - start) for n in shards for start in range(0, n, 5)]
    for name in frame:
        want = [list(v) for v in frame[name]] if name == "genres" else frame[name].tolist()
        if name == "rating":
            np.testing.assert_allclose(columns[name], want, rtol=1e-6)
        else:
            assert columns[name] == want, name


def _values(tensor):
    return tensor.to_list() if isinstance(tensor, tf.RaggedTensor) else tensor.numpy().tolist()


def _decoded(values):
    if isinstance(values, list):
        return [_decoded(v) for v in values]
    return values.decode() if isinstance(values, bytes) else values


def test_arrow_chunks_have_one_type_per_kind_whatever_the_shard_stored(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "u": pa.array(["a", "b"]).dictionary_encode(),
        "r": pa.array([1, 2], pa.int32()),
        "tags": pa.array([["x"], None], pa.list_(pa.string())),
    }), tmp_path / "a.parquet")
    pq.write_table(pa.table({
        "u": pa.array([b"c"], pa.binary()),
        "r": pa.array([2.5]),
        "tags": pa.array([["y", "z"]], pa.large_list(pa.large_string())),
    }), tmp_path / "b.parquet")
    paths = _files.resolve(tmp_path)
    kinds = _files.schema(paths)
    assert kinds == {"u": "string", "r": "float", "tags": "list<string>"}
    table = pa.concat_tables([c for p in paths for c in _files.iter_arrow(p, kinds)])
    assert table.schema.types == [pa.string(), pa.float64(), pa.list_(pa.string())]
    assert table.to_pydict() == {"u": ["a", "b", "c"], "r": [1.0, 2.0, 2.5],
                                 "tags": [["x"], [], ["y", "z"]]}  # a missing list: empty
    with pytest.raises(ValueError, match=r"`data\['t'\]` must hold strings, numbers or lists "
                       r"of them to be streamed\. Received: timestamp values"):
        next(_files.iter_arrow(paths[0], {"t": "timestamp"}))


def test_resolve_sorts_expands_and_lists_a_directory(tmp_path):
    for name in ["b.parquet", "a.parquet", "_SUCCESS", ".a.parquet.crc", "sub/c.parquet"]:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    expected = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"),
                str(tmp_path / "sub" / "c.parquet")]
    assert _files.resolve(tmp_path) == expected
    assert _files.resolve([str(tmp_path / "b.parquet"), str(tmp_path / "*.parquet")]) == \
        expected[:2]
    assert _files.resolve(str(tmp_path / "**" / "*.parquet")) == expected


@pytest.mark.parametrize(("data", "expected"), [
    ("log.parquet", True), (os.path.join("a", "b.csv"), True), (["a.csv", "b.csv"], True),
    ({"a": [1]}, False), ([], False), ([1, 2], False), (pd.DataFrame({"a": [1]}), False),
])
def test_is_files(data, expected):
    assert _files.is_files(data) is expected


def test_schema_merges_int_and_float_shards(tmp_path):
    pd.DataFrame({"u": ["a"], "r": [1]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["b"], "r": [2.5]}).to_parquet(tmp_path / "b.parquet")
    assert _files.schema(tmp_path) == {"u": "string", "r": "float"}
    table = _files.read_table(tmp_path)
    assert table["r"].dtype == np.float64 and table["r"].tolist() == [1.0, 2.5]


# --- the entry points, from files and from the DataFrame -----------------------------------


def test_vocabularies_from_shards_equal_the_dataframes(tmp_path):
    frame = _log(200, seed=3)
    pattern = _write(frame, tmp_path / "p", "parquet", shards=4)
    features = {"user_id": "categorical", "item_id": "categorical", "genres": "multi",
                "title": "text", "rating": "numeric"}
    builder = tk.VocabularyBuilder(ngrams=2)
    assert builder.fit(pattern, features) == builder.fit(frame, features)


def test_history_from_files_equals_the_dataframes(tmp_path):
    frame = _log(80, seed=1)
    pattern = _write(frame, tmp_path / "p", "parquet")
    history = tk.HistoryBuilder(user_id="user_id", item_id="item_id", timestamp="timestamp")
    got, want = history.transform(pattern), history.transform(frame)
    assert [list(v) for v in got["history"]] == [list(v) for v in want["history"]]
    assert got["user_id"].tolist() == want["user_id"].tolist()


def test_evaluate_reads_the_test_log_and_train_from_files(tmp_path):
    frame = _log(120, seed=2)
    train, test = frame.iloc[:90], frame.iloc[90:]
    train_files = _write(train, tmp_path / "train", "parquet", shards=2)
    test_files = _write(test, tmp_path / "test", "csv", shards=2)
    model = tk.baselines.Popularity()
    want = tk.evaluate(model.fit(train), test, train=train, k=5).to_dict()
    got = tk.evaluate(model.fit(train_files), test_files, train=train_files, k=5).to_dict()
    assert got == want


def test_retrieval_fit_and_index_from_files_match_the_dataframe(tmp_path):
    frame = _log(120, seed=4)
    pattern = _write(frame, tmp_path / "p", "parquet")
    catalogue = frame[["item_id"]].drop_duplicates()
    items = _write(catalogue, tmp_path / "items", "parquet", shards=2)
    vocabs = tk.VocabularyBuilder().fit(pattern, ["user_id", "item_id"])

    def trained(data, items):
        tf.keras.utils.set_random_seed(0)
        model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                     tk.Tower(vocabs, features=["item_id"], output_dim=4))
        history = model.fit(data, epochs=2, batch_size=32, seed=0, verbose=0)
        index = tk.IndexBuilder(k_max=5).build(model, items, item_id="item_id")
        return history.history["loss"], index.recommend({"user_id": ["u1", "u2"]}, k=3)

    (loss, top), (ref_loss, ref_top) = trained(pattern, items), trained(frame, catalogue)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_array_equal(top.ids, ref_top.ids)


# --- bad input -----------------------------------------------------------------------------


def test_a_glob_that_matches_nothing(tmp_path):
    pattern = str(tmp_path / "logs" / "*.parquet")
    with pytest.raises(FileNotFoundError, match=r"`data` must name existing files\. "
                       r"Received: data='.*\*\.parquet', a pattern that matches no file"):
        to_table(pattern)


def test_a_path_that_does_not_exist_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`train` must name existing files.*gone\.csv"):
        to_table(str(tmp_path / "gone.csv"), argument="train")


def test_shards_with_different_schemas_name_both_files_and_the_column(tmp_path):
    pd.DataFrame({"u": ["a"], "item": [1]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["b"], "item": ["x"]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"one schema.*column 'item' holds int values in "
                       r"'.*a\.parquet' but string values in '.*b\.parquet'"):
        to_table(tmp_path)


def test_a_shard_with_an_extra_column_is_a_different_schema(tmp_path):
    pd.DataFrame({"u": ["a"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["b"], "x": [1]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"one schema.*b\.parquet' has the column 'x'"):
        to_table(tmp_path)


def test_a_column_missing_from_one_shard_names_that_shard(tmp_path):
    pd.DataFrame({"u": ["a"], "item": [1]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["b"]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"the shard '.*b\.parquet' lacks the column 'item'"):
        to_table(tmp_path, columns=["u", "item"])


def test_a_column_missing_from_every_shard_suggests_the_setting(tmp_path):
    pd.DataFrame({"user_id": ["a"], "item": [1]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"`train` must have a column 'item_id' \(named by "
                       r"`item_id`\).*Did you mean item_id='item'\?"):
        tk.evaluate(tk.baselines.Popularity(), str(tmp_path / "a.parquet"),
                    train=str(tmp_path / "a.parquet"))


def test_a_corrupt_parquet_file_is_named(tmp_path):
    pd.DataFrame({"u": ["a"]}).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ValueError, match=r"readable Parquet files.*shard '.*b\.parquet', "
                       r"which cannot be read"):
        to_table(tmp_path)


@pytest.mark.parametrize("cut", ["in the data", "in a header"])
def test_a_truncated_tfrecord_file_is_named(cut, tmp_path):
    pattern = _write(_log(10), tmp_path, "tfrecord", shards=1)
    path = tmp_path / "part-000.tfrecord"
    nine = _write(_log(10).iloc[:9], tmp_path / "nine", "tfrecord", shards=1)
    # TensorFlow itself reads a file cut inside a header as nine whole records.
    end = -9 if cut == "in the data" else os.path.getsize(nine.replace("*", "part-000")) + 5
    path.write_bytes(path.read_bytes()[:end])
    with pytest.raises(ValueError, match=r"readable TFRecord files.*part-000\.tfrecord'"):
        to_table(pattern)
    vocabs = tk.VocabularyBuilder().fit(_log(10), features=["user_id", "item_id"])
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    with pytest.raises(ValueError, match=r"readable TFRecord files.*part-000\.tfrecord'"):
        model.fit(pattern, batch_size=4, seed=0, shuffle_buffer=8, verbose=0)


@pytest.mark.parametrize(("text", "line", "why"), [
    ("u,item\na,1\nb,2,3\nc,4\n", 3, "3 fields where the header has 2"),
    ("u,item\na,1\nb,2\nc\n", 4, "1 fields where the header has 2"),
])
def test_a_bad_csv_row_names_the_file_and_line(text, line, why, tmp_path):
    (tmp_path / "good.csv").write_text("u,item\nz,9\n")
    (tmp_path / "log.csv").write_text(text)
    with pytest.raises(ValueError, match=rf"the shard '.*log\.csv', line {line}: {why}"):
        to_table(str(tmp_path / "*.csv"))


def test_an_unknown_suffix_lists_the_known_ones(tmp_path):
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(ValueError, match=r"Parquet, CSV or TFRecord files \(suffixes "
                       r"\.parquet, \.pq, \.csv, \.tfrecord, \.tfrecords\).*log\.json"):
        to_table(str(tmp_path / "log.json"))


def test_mixed_formats_are_refused(tmp_path):
    pd.DataFrame({"u": ["a"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["b"]}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"shards of one format.*csv.*parquet"):
        to_table(tmp_path)


def test_a_tfrecord_feature_with_a_second_value_later_is_named(tmp_path):
    path = tmp_path / "log.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(_files._TFRECORD_SAMPLE + 1):
            writer.write(_example({"u": "a", "item": [i] if i < _files._TFRECORD_SAMPLE
                                   else [1, 2]}))
    with pytest.raises(ValueError, match=r"feature 'item' holds one value per record.*"
                       r"2 values in a record of the shard '.*log\.tfrecord'"):
        to_table(str(path))


def test_without_pyarrow_the_error_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    (tmp_path / "a.parquet").write_bytes(b"")
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ImportError, match=r"pip install 'tfrs-kit\[parquet\]'"):
        to_table(str(tmp_path / "a.parquet"))


# --- vocabularies counted chunk by chunk ---------------------------------------------------


def test_vocabulary_counts_chunk_by_chunk_equal_the_in_memory_counts(tmp_path, monkeypatch):
    # Ties everywhere: five users, twelve items, four genres over 90 rows; chunks of 7 rows
    # (monkeypatched), so every count is a sum over chunks and shards.
    frame = _log(90, seed=5)
    pattern = _write(frame, tmp_path / "p", "parquet", shards=4)
    monkeypatch.setattr("tfrs_kit.features._vocabulary._CHUNK_ROWS", 7)
    monkeypatch.setattr("tfrs_kit.features._vocabulary._MERGE_EVERY", 3)
    monkeypatch.setattr("tfrs_kit.data._table.read_table", _never)  # the log is never whole
    features = {"user_id": "categorical", "item_id": "categorical", "genres": "multi",
                "title": "text", "rating": "numeric", "timestamp": "timestamp"}
    builder = tk.VocabularyBuilder(ngrams=2, max_tokens=3)
    got, want = builder.count(pattern, features), builder.count(frame, features)
    assert got.kinds == want.kinds and got.dtypes == want.dtypes
    for name in want.counts:
        assert got.counts[name].sort_index().to_dict() == want.counts[name].sort_index().to_dict()
    # From counts: the most frequent first, ties by token, cut at max_tokens.
    for name in ("user_id", "item_id", "genres", "title"):
        series = pd.Series(want.counts[name])
        order = sorted(series.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert builder.from_counts(got)[name].tokens == tuple(t for t, _ in order), name
        assert builder.from_counts(got)[name].counts == tuple(c for _, c in order), name
    assert builder.from_counts(got) == builder.from_counts(want)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_vocabularies_of_ids_inferred_from_files_equal_the_in_memory_ones(tmp_path, fmt):
    # Kinds left to inference; string and integer ids (counted in Arrow from files),
    # a whole-float id column and a boolean one (counted as NumPy counts them).
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({
        "user_id": rng.choice(["b", "a", "é", "B", "c"], 80).astype(object),
        "item_id": rng.integers(-3, 9, 80).astype(np.int64),
        "age": rng.choice([20.0, 30.0], 80),
        "flag": rng.choice([True, False], 80),
    })
    pattern = _write(frame, tmp_path / "p", fmt, shards=3)
    features = ["user_id", "item_id", "flag"]
    got = tk.VocabularyBuilder().fit(pattern, features, verbose=False)
    assert got == tk.VocabularyBuilder().fit(frame, features, verbose=False)
    assert got["item_id"].dtype == "int64" and got["user_id"].dtype == "string"
    ages = tk.VocabularyBuilder().fit(pattern, {"age": "categorical"}, verbose=False)
    assert ages == tk.VocabularyBuilder().fit(frame, {"age": "categorical"}, verbose=False)


def test_a_missing_id_in_a_shard_is_refused_as_in_memory(tmp_path):
    pd.DataFrame({"user_id": ["a", "b", "c"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"user_id": ["d", None, "e", None]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"`data\['user_id'\]` must hold no missing \(None or "
                       r"NaN\) values\. Received: data\['user_id'\]='2 missing, the first at "
                       r"position 1'"):
        tk.VocabularyBuilder().fit(str(tmp_path / "*.parquet"), ["user_id"], verbose=False)


def _never(*args, **kwargs):
    raise AssertionError("the whole log was read at once")


def test_recipe_fits_from_files_as_from_the_dataframe(tmp_path):
    data = tk.datasets.synthetic(600, num_users=30, num_items=20, seed=1)
    log = data.interactions[["user_id", "item_id", "timestamp", "item_year"]]
    pattern = _write(log, tmp_path / "log", "parquet")
    items = _write(data.items[["item_id", "item_year"]], tmp_path / "items", "csv", shards=1)

    def fitted(train, catalogue):
        recipe = tk.Recipe(rerank=False, item_features=["item_year"], time_budget=None,
                           max_trials=1, max_epochs=1, verbose=False)
        return recipe.fit(train, items=catalogue)

    got, want = fitted(pattern, items), fitted(log, data.items[["item_id", "item_year"]])
    assert got.settings == want.settings
    pd.testing.assert_frame_equal(got.candidates(), want.candidates())
    got_queries, want_queries = got.queries(), want.queries()
    assert got_queries.columns.tolist() == want_queries.columns.tolist()
    for column in want_queries:
        assert [np.asarray(v).tolist() for v in got_queries[column]] == \
            [np.asarray(v).tolist() for v in want_queries[column]], column


# --- the docs page runs ------------------------------------------------------------------


def _page_blocks(language):
    lines = (Path(__file__).resolve().parents[2] / "docs" / "files.md").read_text(
        encoding="utf-8").splitlines()
    blocks, inside = [], None
    for line in lines:
        if inside is None and line == f"```{language}":
            inside = []
        elif inside is not None and line == "```":
            blocks.append("\n".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


def test_the_docs_page_runs(tmp_path, monkeypatch, capsys, counting_clock):
    from tfrs_kit.cli import main

    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in _page_blocks("python"):
        exec(compile(block, "docs/files.md", "exec"), namespace)
    assert namespace["report"].to_dict()["TwoTowerRetrieval"]["recall@10"] > 0
    assert len(namespace["index"]) == 60
    commands = " ".join(_page_blocks("console")).replace("\\\n", " ").split("$ ")[1:]
    for command in commands:
        argv = shlex.split(command)[1:]
        if "--time-budget" in argv:  # the page's budget, cut for the test
            argv[argv.index("--time-budget") + 1] = "3"
        with counting_clock(0.25):  # the same trials and epochs however loaded the machine
            assert main([*argv, "--quiet"] if argv[0] != "recommend" else argv) == 0, command
    out = capsys.readouterr().out
    assert "model recall@10=" in out and out.rstrip().count("\n") > 5
