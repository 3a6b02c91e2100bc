"""The input pipeline: histories gathered per batch from spans, text tokenised once.

Each test compares the pipeline's batches (or a model trained on them) with an
independent reference: histories recomputed row by row in plain Python, text
tokenised by a Python re-implementation, or a model fed the old way (per-row copies,
raw strings).
"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.data._tensors import make_dataset, spans
from tfrs_kit.retrieval._pipeline import text_encodings


def _log(n=300, users=12, items=40, *, seed=0, string_items=True):
    rng = np.random.default_rng(seed)
    item = rng.integers(0, items, n)
    return {
        "user_id": np.array([f"u{u}" for u in rng.integers(0, users, n)], dtype=object),
        "item_id": (np.array([f"i{i}" for i in item], dtype=object) if string_items
                     else item.astype(np.int64)),
        "timestamp": rng.integers(0, 30, n),  # many ties: row order breaks them
    }


def _reference_histories(log, max_length):
    """Each row's preceding items (by time, then row), the last max_length, in plain Python."""
    rows = range(len(log["user_id"]))
    out = []
    for row in rows:
        before = sorted((log["timestamp"][r], r) for r in rows
                        if log["user_id"][r] == log["user_id"][row]
                        and (log["timestamp"][r], r) < (log["timestamp"][row], row))
        out.append([log["item_id"][r] for _, r in before][-max_length:] if before else [])
    return out


def _batches(table, column, **kwargs):
    """{row: list} from every batch of make_dataset (rows tagged by a `row` column)."""
    table = {**table, "row": np.arange(len(table[column]))}
    seen = {}
    for batch in make_dataset(table, ["row", column], **kwargs):
        for row, values in zip(batch["row"].numpy(), batch[column].to_list(), strict=True):
            seen[int(row)] = [v.decode() if isinstance(v, bytes) else v for v in values]
    return seen


@pytest.mark.parametrize("string_items", [True, False])
def test_history_batches_equal_the_per_row_histories(string_items):
    log = _log(string_items=string_items)
    table = tk.HistoryBuilder(max_length=4).transform(log)
    expected = _reference_histories(log, 4)
    got = _batches(table, "history", batch_size=7, shuffle=True, seed=3)
    assert [got[r] for r in range(len(expected))] == expected


def test_a_history_is_stored_as_spans_not_per_row_copies():
    log = _log(n=400, users=4)  # 100 events per user: histories of 20, nearly all full
    column = tk.HistoryBuilder(max_length=20).transform(log)["history"]
    shared = spans(column)
    assert shared is not None
    assert len(shared.codes) == 400  # the sorted items once, not 400 x ~20 values
    assert shared.lengths.tolist() == [len(h) for h in column]


def test_filtered_and_concatenated_histories_keep_their_rows():
    log, other = _log(seed=1), _log(seed=2, users=5)
    builder = tk.HistoryBuilder(max_length=3)
    first, second = builder.transform(log), builder.transform(other)
    keep = np.arange(len(log["user_id"])) % 3 != 0
    column = np.concatenate([first["history"][keep][::-1], second["history"]])
    expected = ([h for h, k in zip(_reference_histories(log, 3), keep, strict=True) if k][::-1]
                + _reference_histories(other, 3))
    assert spans(column) is not None
    got = _batches({"history": column}, "history", batch_size=16)
    assert [got[r] for r in range(len(expected))] == expected


def test_lists_that_are_not_shared_views_are_read_row_by_row():
    base = np.array(["a", "b", "c", "d"], dtype=object)
    column = np.empty(4, dtype=object)
    column[:] = [base[::-1], base[1:3], np.array(["x"], dtype=object), base[:0]]
    assert spans(column) is None  # a reversed view: no span of one array
    got = _batches({"tags": column}, "tags", batch_size=3)
    assert [got[r] for r in range(4)] == [["d", "c", "b", "a"], ["b", "c"], ["x"], []]


def test_users_latest_histories_come_through_the_pipeline():
    log = _log(seed=4)
    users = tk.HistoryBuilder(max_length=5).for_users(log)
    expected = {}
    for row in np.lexsort((np.arange(len(log["user_id"])), log["timestamp"])):
        expected.setdefault(log["user_id"][row], []).append(log["item_id"][row])
    got = _batches(users, "history", batch_size=4)
    assert [got[r] for r in range(len(users["user_id"]))] == [
        expected[u][-5:] for u in users["user_id"]]


def _history_model(vocabs):
    return tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "history"], output_dim=8),
        tk.Tower(vocabs, features=["item_id"], output_dim=8))


def test_training_on_history_spans_equals_training_on_per_row_copies():
    log = _log(n=500)
    train = tk.HistoryBuilder(max_length=6).transform(log)
    copies = train["history"].copy()
    copies[:] = [np.array(h, copy=True) for h in copies]  # rows of their own: the old path
    assert spans(copies) is None
    vocabs = tk.VocabularyBuilder().fit(train, features={
        "user_id": "categorical", "item_id": "categorical", "history": "multi"})
    weights = []
    for history in (train["history"], copies):
        tf.keras.utils.set_random_seed(7)
        model = _history_model(vocabs)
        model.fit({**train, "history": history}, epochs=2, batch_size=64, seed=5, verbose=0)
        weights.append(model.get_weights())
    for spans_weight, copies_weight in zip(*weights, strict=True):
        np.testing.assert_array_equal(spans_weight, copies_weight)


def test_embedding_users_from_history_spans_equals_per_row_copies():
    log = _log(n=400, users=30)
    builder = tk.HistoryBuilder(max_length=6)
    vocabs = tk.VocabularyBuilder().fit(builder.transform(log), features={
        "user_id": "categorical", "item_id": "categorical", "history": "multi"})
    tf.keras.utils.set_random_seed(2)
    model = _history_model(vocabs)
    users = builder.for_users(log)
    copies = users["history"].copy()
    copies[:] = [np.array(h, copy=True) for h in copies]
    assert spans(users["history"]) is not None and spans(copies) is None
    for batch_size in (7, 1000):  # through the predict loop, and one eager call
        np.testing.assert_array_equal(
            model.query_embeddings(users, batch_size=batch_size),
            model.query_embeddings({**users, "history": copies}, batch_size=batch_size))


def _tokens(text, ngrams):
    """The text encoder's tokens, re-implemented: lower case, ASCII punctuation to spaces,
    words, then the 2-grams, 3-grams ... of the words."""
    words = re.sub(r"[!-/:-@\[-`{-~]", " ", text.lower()).split()
    grams = [" ".join(words[i:i + n]) for n in range(2, ngrams + 1)
             for i in range(len(words) - n + 1)]
    return words + grams


_TITLES = ["Toy Story (1995)", "toy soldiers", "Story of a Toy: the story", "Heat", "",
           "Unknown Words Here", "Toy Story (1995)"]


def _text_log(n=240, seed=0):
    rng = np.random.default_rng(seed)
    item = rng.integers(0, 6, n)  # title 6 stays out of the vocabulary's text
    return {"user_id": np.array([f"u{u}" for u in rng.integers(0, 10, n)], dtype=object),
            "item_id": np.array([f"i{i}" for i in item], dtype=object),
            "title": np.array([_TITLES[i] for i in item], dtype=object)}


def _text_vocabs(log):
    return tk.VocabularyBuilder(ngrams=2).fit(log, features={
        "user_id": "categorical", "item_id": "categorical", "title": "text"})


def test_text_batches_hold_each_rows_token_indices():
    log = _text_log()
    vocabs = _text_vocabs(log)
    tower = tk.Tower(vocabs, features=["item_id", "title"], output_dim=4)
    tokenize = text_encodings([tower])["title"]
    table = {"title": np.array(_TITLES, dtype=object), "row": np.arange(len(_TITLES))}
    tokens = list(vocabs["title"].tokens)
    got = {}
    for batch in make_dataset(table, ["row", "title"], batch_size=3,
                              encode_once={"title": tokenize}):
        got.update(zip(batch["row"].numpy().tolist(), batch["title"].to_list(), strict=True))
    for row, title in enumerate(_TITLES):  # index 0 is the out-of-vocabulary bucket
        expected = [tokens.index(t) + 1 if t in tokens else 0 for t in _tokens(title, 2)]
        assert got[row] == expected, title


def test_a_text_encoder_embeds_its_tokens_as_it_embeds_the_text():
    vocabs = _text_vocabs(_text_log())
    tower = tk.Tower(vocabs, features=["title"], output_dim=4)
    encoder = tower.encoders["title"]
    text = tf.constant(_TITLES)
    np.testing.assert_array_equal(encoder(encoder.tokenize(text)).numpy(), encoder(text).numpy())


def test_training_with_text_tokenised_once_equals_tokenising_every_step(monkeypatch):
    log = _text_log()
    vocabs = _text_vocabs(log)
    weights = []
    for once in (True, False):
        tf.keras.utils.set_random_seed(3)
        model = tk.TwoTowerRetrieval(
            tk.Tower(vocabs, features=["user_id"], output_dim=8),
            tk.Tower(vocabs, features=["item_id", "title"], output_dim=8))
        assert set(model._encode_once()) == {"title"}
        if not once:  # the reference: raw strings into every step, as before
            monkeypatch.setattr(model, "_encode_once", dict)
        model.fit(log, epochs=2, batch_size=32, seed=1, validation_data=log, verbose=0)
        weights.append(model.get_weights())
    for once_weight, every_step_weight in zip(*weights, strict=True):
        np.testing.assert_array_equal(once_weight, every_step_weight)


def test_a_custom_tower_gets_the_raw_text():
    class Custom(tk.Tower):
        def encode(self, features):
            return super().encode(features)

    vocabs = _text_vocabs(_text_log())
    plain = tk.Tower(vocabs, features=["title"], output_dim=4)
    custom = Custom(vocabs, features=["title"], output_dim=4)
    assert set(text_encodings([plain])) == {"title"}
    assert text_encodings([custom]) == {}
    assert text_encodings([plain, custom]) == {}  # one raw reader is enough to keep the text


# --- streaming from shards -----------------------------------------------------------------


def _shards(table, folder, shards):
    import pandas as pd

    folder.mkdir()
    frame = pd.DataFrame({name: list(column) if column.dtype == object and len(column)
                          and isinstance(column[0], np.ndarray) else column
                          for name, column in table.items()})
    bounds = np.linspace(0, len(frame), shards + 1).astype(int)
    for i in range(shards):
        frame.iloc[bounds[i]:bounds[i + 1]].to_parquet(folder / f"part-{i}.parquet",
                                                       index=False)
    return str(folder / "*.parquet")


def _content_log():
    log = _text_log(n=300)
    rows = np.arange(300)
    log["timestamp"] = rows // 3
    return tk.HistoryBuilder(max_length=5).transform(log)


def _content_model(vocabs, **kwargs):
    return tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "history"], output_dim=8),
        tk.Tower(vocabs, features=["item_id", "title"], output_dim=8), **kwargs)


@pytest.mark.parametrize("options", [{}, {"num_random_negatives": 4}])
def test_streaming_one_shard_in_order_equals_training_in_memory(tmp_path, options):
    pytest.importorskip("pyarrow")
    log = _content_log()
    files = _shards(log, tmp_path / "log", shards=1)
    vocabs = tk.VocabularyBuilder(ngrams=2).fit(log, features={
        "user_id": "categorical", "item_id": "categorical", "title": "text",
        "history": "multi"})
    results = []
    for data, stream in ((log, None), (files, 1000)):
        tf.keras.utils.set_random_seed(11)
        model = _content_model(vocabs, **options)
        history = model.fit(data, epochs=2, batch_size=32, shuffle=False, seed=1,
                            shuffle_buffer=stream, validation_data=log, verbose=0)
        results.append((history.history, model.get_weights(), model.candidate_frequencies_))
    (memory, memory_weights, memory_freq), (stream, stream_weights, stream_freq) = results
    assert stream_freq.sort_index().to_dict() == memory_freq.sort_index().to_dict()
    if not options:  # random negatives draw differently: the losses differ, not the pipeline
        np.testing.assert_allclose(stream["loss"], memory["loss"], rtol=1e-5)
        np.testing.assert_allclose(stream["val_loss"], memory["val_loss"], rtol=1e-5)
        for got, want in zip(stream_weights, memory_weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_streamed_epoch_reads_every_row_once_in_a_new_order(tmp_path):
    pytest.importorskip("pyarrow")
    from tfrs_kit.data._stream import file_dataset

    table = {"row": np.arange(500), "tags": tk.HistoryBuilder(max_length=3).transform(
        _log(n=500))["history"]}
    files = _shards(table, tmp_path / "log", shards=4)
    dataset, steps = file_dataset(sorted(map(str, tmp_path.glob("log/*.parquet"))),
                                  ["row", "tags"], batch_size=64, shuffle=True, seed=2,
                                  shuffle_buffer=100)
    assert steps is None  # one worker: an epoch is one pass
    epochs = [np.concatenate([b["row"].numpy() for b in dataset]) for _ in range(2)]
    for rows in epochs:
        assert sorted(rows.tolist()) == list(range(500))
    assert epochs[0].tolist() != epochs[1].tolist()
    expected = [list(h) for h in table["tags"]]
    for batch in dataset.take(2):
        for row, tags in zip(batch["row"].numpy(), batch["tags"].to_list(), strict=True):
            assert [t.decode() for t in tags] == expected[row]
    assert files


def test_streaming_needs_files_and_a_validation_table(tmp_path):
    pytest.importorskip("pyarrow")
    log = _text_log()
    files = _shards(log, tmp_path / "log", shards=2)
    vocabs = _text_vocabs(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    with pytest.raises(ValueError, match=r"`shuffle_buffer` must be None unless x names files"):
        model.fit(log, shuffle_buffer=10, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_fraction` must be None when streaming"):
        model.fit(files, shuffle_buffer=10, validation_fraction=0.1, verbose=0)
    with pytest.raises(ValueError, match=r"`shuffle_buffer` must be an integer >= 1"):
        model.fit(files, shuffle_buffer=0, verbose=0)


class _Cluster:
    """A strategy's cluster resolver, as MultiWorkerMirroredStrategy has one."""

    def __init__(self, spec, task_type, task_id):
        self.cluster_resolver = self
        self._spec, self.task_type, self.task_id = spec, task_type, task_id

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._spec)


@pytest.mark.parametrize(("spec", "task", "mine"), [
    ({"worker": ["h:1", "h:2"]}, ("worker", 0), [0, 2, 4]),
    ({"worker": ["h:1", "h:2"]}, ("worker", 1), [1, 3]),
    ({"chief": ["h:0"], "worker": ["h:1"]}, ("chief", 0), [0, 2, 4]),
    ({"chief": ["h:0"], "worker": ["h:1"]}, ("worker", 0), [1, 3]),
])
def test_each_worker_streams_its_own_shards(spec, task, mine):
    from tfrs_kit.data._stream import _own_shards

    paths = [f"part-{i}" for i in range(5)]
    got, steps = _own_shards(paths, [100, 100, 100, 100, 40], 64, _Cluster(spec, *task))
    assert got == [paths[i] for i in mine]
    assert steps == 200 * 2 // 64  # the worker with fewer rows (200) fills 6 global batches
    with pytest.raises(ValueError, match=r"`x` must name at least one shard per worker"):
        _own_shards(paths[:1], [100], 64, _Cluster(spec, *task))


@pytest.mark.slow
@pytest.mark.process
def test_two_workers_streaming_their_own_shards_train_like_one_worker(tmp_path):
    """Four shards of 256 rows, batches of 128: one worker's batch holds the first 32 rows
    of each shard; each of two workers reads two shards, 64 rows a step, the same rows."""
    import json
    import pathlib
    import socket
    import subprocess
    import sys

    pytest.importorskip("pyarrow")
    helper = pathlib.Path(__file__).parent / "distributed_helpers" / "stream.py"
    log = tk.datasets.synthetic(2001, seed=3).interactions[["user_id", "item_id"]][:1024]
    files = _shards({c: log[c].to_numpy() for c in log}, tmp_path / "log", shards=4)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")

    def run(out, extra=(), config=None):
        return subprocess.Popen(
            [sys.executable, str(helper), "--files", files, "--out", str(out), *extra],
            env={**env, **({"TF_CONFIG": config} if config else {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = [run(tmp_path / "one.npz")] + [
        run(tmp_path / f"w{i}.npz", ["--multi-worker"],
            json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        for i in range(2)]
    try:
        for process in processes:
            output, _ = process.communicate(timeout=240)
            assert process.returncode == 0, output[-4000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    with np.load(tmp_path / "one.npz") as one:
        for index in range(2):
            with np.load(tmp_path / f"w{index}.npz") as worker:
                assert int(worker["replicas"]) == 2
                np.testing.assert_allclose(worker["loss"], one["loss"], rtol=1e-4)
                np.testing.assert_allclose(worker["query"], one["query"], atol=1e-4)
                np.testing.assert_allclose(worker["candidate"], one["candidate"], atol=1e-4)


def _reference_batches(shards, *, rng, batch_size, window, rows_per_chunk):
    """The documented order, in plain Python lists: the shards (in a new order when
    shuffling) read four at a time, one chunk of each open shard per round (a shard that
    has none left is dropped in that round and replaced in the next), each round's rows
    taken one of each chunk in turn; then windows of at least ``window`` rows (``batch_size``
    unshuffled) shuffled and cut into batches, the rest carried into the next window."""
    files = list(shards) if rng is None else [shards[i] for i in rng.permutation(len(shards))]
    queue = [[list(f[i:i + rows_per_chunk]) for i in range(0, len(f), rows_per_chunk)]
             for f in files]
    readers, pending, batches = [], [], []

    def cut(rows, final):
        if rng is not None:
            rows = [rows[i] for i in rng.permutation(len(rows))]
        full = len(rows) if final else len(rows) // batch_size * batch_size
        batches.extend(rows[s:s + batch_size] for s in range(0, full, batch_size))
        return rows[full:]

    while queue or readers:
        while queue and len(readers) < 4:
            readers.append(queue.pop(0))
        chunks = []
        for reader in list(readers):
            if reader:
                chunks.append(reader.pop(0))
            else:
                readers.remove(reader)
        pending += [c[i] for i in range(max(map(len, chunks), default=0))
                    for c in chunks if i < len(c)]
        if chunks and len(pending) >= (window if rng is not None else batch_size):
            pending = cut(pending, final=False)
    if pending:
        cut(pending, final=True)
    return batches


def _row_shards(folder, sizes, fmt="parquet"):
    """Shards of consecutive row numbers, of these sizes; their paths and their rows."""
    folder.mkdir()
    bounds = np.cumsum([0, *sizes])
    shards = [list(range(bounds[i], bounds[i + 1])) for i in range(len(sizes))]
    for i, rows in enumerate(shards):
        _write_rows({"row": np.array(rows, np.int64)}, folder / f"part-{i}.{fmt}")
    return [str(folder / f"part-{i}.{fmt}") for i in range(len(sizes))], shards


def _write_rows(columns, path):
    """A table as one Parquet, CSV or TFRecord file (lists as lists, types as given)."""
    import pandas as pd

    if path.suffix != ".tfrecord":
        frame = pd.DataFrame({n: list(c) if c.dtype == object else c for n, c in columns.items()})
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return
    kinds = {name: _feature_kind(column) for name, column in columns.items()}
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in range(len(next(iter(columns.values())))):
            features = {name: _feature(columns[name][row], kind) for name, kind in kinds.items()}
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=features)).SerializeToString())


def _feature_kind(column):
    flat = [v for row in column for v in (row if isinstance(row, (list, np.ndarray)) else [row])]
    first = flat[0] if flat else ""
    return "bytes" if isinstance(first, str) else (
        "float" if isinstance(first, (float, np.floating)) else "int")


def _feature(value, kind):
    values = list(value) if isinstance(value, (list, np.ndarray)) else [value]
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


@pytest.mark.parametrize("shuffle", [True, False])
def test_streamed_batches_follow_the_documented_order(tmp_path, shuffle):
    pytest.importorskip("pyarrow")
    from tfrs_kit.data._stream import file_dataset

    # Five shards of uneven sizes: shards end in different rounds and a fifth one enters.
    paths, shards = _row_shards(tmp_path / "log", [23, 7, 31, 12, 18])
    dataset, _ = file_dataset(paths, ["row"], batch_size=8, shuffle=shuffle, seed=4,
                              shuffle_buffer=20, rows_per_chunk=5)
    for epoch in range(2):
        got = [b["row"].numpy().tolist() for b in dataset]
        rng = np.random.default_rng([4, epoch]) if shuffle else None
        assert got == _reference_batches(shards, rng=rng, batch_size=8, window=20,
                                         rows_per_chunk=5)


def _mixed_table(n, seed=0):
    """Every kind a stream carries: ids (non-ASCII, empty), ints, floats, lists (empty too)."""
    rng = np.random.default_rng(seed)
    words = np.array(["a", "bé", "", "a longer tag", "ü-ñ"], dtype=object)
    return {
        "row": np.arange(n, dtype=np.int64),
        "user": np.array([f"u{u}é" for u in rng.integers(0, 9, n)], dtype=object),
        "score": rng.normal(size=n),
        "tags": _lists([list(rng.choice(words, rng.integers(0, 4))) for _ in range(n)]),
        "codes": _lists([list(rng.integers(0, 99, rng.integers(0, 3))) for _ in range(n)]),
    }


def _lists(rows):
    column = np.empty(len(rows), dtype=object)
    column[:] = [np.array(r, dtype=object if r and isinstance(r[0], str) else None)
                 if r else np.array([], dtype=object) for r in rows]
    return column


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tfrecord"])
def test_streamed_batches_hold_the_rows_of_every_format(tmp_path, fmt):
    """Each batch row equals the table's row, whatever the format; the reference is the
    table the shards were written from."""
    pytest.importorskip("pyarrow")
    from tfrs_kit.data._stream import file_dataset

    table = _mixed_table(90)
    if fmt == "csv":  # no lists in CSV, and an empty field is a missing value
        table = {n: table[n] for n in ("row", "user", "score")}
    (tmp_path / "log").mkdir()
    bounds = [0, 20, 55, 90]
    paths = [tmp_path / "log" / f"part-{i}.{fmt}" for i in range(3)]
    for i, path in enumerate(paths):
        _write_rows({n: c[bounds[i]:bounds[i + 1]] for n, c in table.items()}, path)
    dataset, _ = file_dataset([str(p) for p in paths], list(table), batch_size=16,
                              shuffle=True, seed=1, shuffle_buffer=30, rows_per_chunk=7)
    seen = []
    for batch in dataset:
        assert batch["row"].dtype == tf.int64 and batch["score"].dtype == tf.float32
        for i, row in enumerate(batch["row"].numpy()):
            seen.append(row)
            assert batch["user"][i].numpy().decode() == table["user"][row]
            assert batch["score"][i].numpy() == np.float32(table["score"][row])
            if "tags" in table:
                assert [t.decode() for t in batch["tags"][i].numpy()] == list(table["tags"][row])
                assert batch["codes"][i].numpy().tolist() == list(table["codes"][row])
    assert sorted(seen) == list(range(90))


def test_streaming_makes_no_python_object_per_value(tmp_path, monkeypatch):
    """Rows go from the file to the batch in Arrow and NumPy arrays: the readers that
    build one Python object per value (iter_tables' columns) are never called."""
    pytest.importorskip("pyarrow")
    from tfrs_kit.data import _files
    from tfrs_kit.data._stream import file_dataset

    table = _mixed_table(60)
    path = tmp_path / "log.parquet"
    _write_rows(table, path)

    def per_value(*args, **kwargs):
        raise AssertionError("a column read into Python objects")

    monkeypatch.setattr(_files, "_column", per_value)
    monkeypatch.setattr(_files, "_split", per_value)
    dataset, _ = file_dataset([str(path)], list(table), batch_size=16, shuffle=True,
                              seed=0, shuffle_buffer=32)
    assert sum(int(b["row"].shape[0]) for b in dataset) == 60


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_candidate_counts_of_shards_equal_pandas_counts(tmp_path, fmt):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from tfrs_kit.data._stream import count_values

    rng = np.random.default_rng(3)
    ids = np.array([f"i{i}" for i in rng.integers(0, 15, 100)], dtype=object)
    (tmp_path / "log").mkdir()
    paths = [tmp_path / "log" / f"part-{i}.{fmt}" for i in range(3)]
    for path, part in zip(paths, np.array_split(ids, [30, 31]), strict=True):
        _write_rows({"item_id": part}, path)
    counts, rows = count_values([str(p) for p in paths], "item_id")
    want = pd.Series(ids).value_counts()
    assert rows == [30, 1, 69]
    assert counts.to_dict() == want.to_dict()
    order = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))  # most first, ties by id
    assert list(counts.items()) == order


@pytest.mark.parametrize("kind", ["string", "int"])
def test_candidate_counts_summed_over_many_shards_equal_a_plain_count(tmp_path, kind):
    # More shards than count_values holds before it sums the counts, and ties: the
    # order must still be most frequent first, ties by value (a plain-Python count).
    pytest.importorskip("pyarrow")
    from collections import Counter

    from tfrs_kit.data._stream import count_values

    rng = np.random.default_rng(5)
    drawn = rng.integers(0, 40, 700)
    ids = (np.array([f"i{i}" for i in drawn], dtype=object) if kind == "string"
           else drawn.astype(np.int64))
    paths = []
    for number, part in enumerate(np.array_split(ids, 35)):
        paths.append(str(tmp_path / f"part-{number:02d}.parquet"))
        _write_rows({"item_id": part}, tmp_path / f"part-{number:02d}.parquet")
    counts, rows = count_values(paths, "item_id")
    want = sorted(Counter(ids.tolist()).items(), key=lambda kv: (-kv[1], kv[0]))
    assert list(counts.items()) == want
    assert rows == [len(p) for p in np.array_split(ids, 35)]


@pytest.mark.parametrize("storage", ["arrow", "object", "int"])
def test_id_tensor_holds_the_ids_in_order(storage):
    import pandas as pd

    from tfrs_kit.data._stream import id_tensor

    ids = ["b", "", "é日", "a b", "b2"] if storage != "int" else [7, -1, 3]
    dtype = {"arrow": "string[pyarrow]", "object": object, "int": np.int64}[storage]
    index = pd.Index(ids, dtype=dtype)
    tensor = id_tensor(index[1:]) if storage == "arrow" else id_tensor(index)  # a slice too
    want = ids[1:] if storage == "arrow" else ids
    got = tensor.numpy().tolist()
    assert [v.decode() for v in got] == want if storage != "int" else got == want


def test_a_missing_candidate_id_in_a_later_shard_is_refused(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from tfrs_kit.data._stream import count_values

    pd.DataFrame({"item_id": ["a", "b"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"item_id": ["c", None, None]}).to_parquet(tmp_path / "b.parquet")
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    with pytest.raises(ValueError, match=r"`x\['item_id'\]` must hold no missing \(None or "
                       r"NaN\) ids\. Received: x\['item_id'\]=2 missing, the first at row 1"):
        count_values(paths, "item_id")


def test_a_bad_csv_line_met_while_streaming_names_the_shard_and_line(tmp_path):
    pytest.importorskip("pyarrow")
    from tfrs_kit.data._stream import file_dataset

    good = "".join(f"u{i},{i}\n" for i in range(150_000))  # past the block read for the schema
    (tmp_path / "a.csv").write_text("u,item\nz,1\n")
    (tmp_path / "b.csv").write_text(f"u,item\n{good}z,2,3\n")
    dataset, _ = file_dataset([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
                              ["u", "item"], batch_size=4096, shuffle=False, seed=None,
                              shuffle_buffer=8, rows_per_chunk=65536)
    with pytest.raises(Exception, match=r"`x` must name readable CSV files.*the shard "
                       r"'.*b\.csv', line 150002: 3 fields where the header has 2"):
        list(dataset)


def test_a_truncated_tfrecord_met_while_streaming_is_named(tmp_path):
    from tfrs_kit.data._stream import file_dataset

    path = tmp_path / "log.tfrecord"
    _write_rows({"row": np.arange(300, dtype=np.int64)}, path)
    path.write_bytes(path.read_bytes()[:-9])  # the first records, read for the schema, are whole
    dataset, _ = file_dataset([str(path)], ["row"], batch_size=64, shuffle=True, seed=0,
                              shuffle_buffer=64)
    with pytest.raises(Exception, match=r"`x` must name readable TFRecord files.*the shard "
                       r"'.*log\.tfrecord', which cannot be read"):
        list(dataset)
