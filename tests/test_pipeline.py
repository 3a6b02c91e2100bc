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
from tfrs_kit._tensors import make_dataset, spans
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
    from tfrs_kit.retrieval._pipeline import file_dataset

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
    from tfrs_kit.retrieval._pipeline import _own_shards

    paths = [f"part-{i}" for i in range(5)]
    got, steps = _own_shards(paths, [100, 100, 100, 100, 40], 64, _Cluster(spec, *task))
    assert got == [paths[i] for i in mine]
    assert steps == 200 * 2 // 64  # the worker with fewer rows (200) fills 6 global batches
    with pytest.raises(ValueError, match=r"`x` must name at least one shard per worker"):
        _own_shards(paths[:1], [100], 64, _Cluster(spec, *task))


@pytest.mark.slow
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
