"""``Ranker.fit`` streams labelled rows from ``tk.data.Shards``: the in-memory fit's
answer, a bounded window in memory, and errors that name the shard."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from shard_logs import refuse_whole_reads, write_shards

pytest.importorskip("pyarrow")

CANDIDATE = ("item_id", "item_year", "item_genres")


@pytest.fixture(scope="module")
def data():
    return tk.datasets.synthetic(400, num_users=40, num_items=60, seed=5)


@pytest.fixture(scope="module")
def log(data):
    frame = data.interactions[["user_id", "user_segment", "item_id", "item_year",
                               "item_genres", "rating"]].copy()
    frame["item_genres"] = [list(g) for g in frame["item_genres"]]
    # An item's features change over the log: training must take each item's last row
    # (the catalogue), as the in-memory groups do, not the row's own.
    frame.loc[frame.index[:50], "item_year"] = 1900
    frame["weight"] = np.random.default_rng(0).uniform(0.2, 2.0, len(frame))
    return frame


@pytest.fixture(scope="module")
def vocabs(log):
    return tk.VocabularyBuilder().fit(log[["user_id", "user_segment", "item_id", "item_year",
                                           "item_genres"]])


def _ranker(vocabs):
    tf.keras.utils.set_random_seed(7)
    return tk.Ranker(tk.Tower(vocabs, features=["user_id", "user_segment"], output_dim=4),
                     tk.Tower(vocabs, features=list(CANDIDATE), output_dim=4),
                     cross_layers=1, hidden_dims=[8])


def _write(frame, folder, shards):
    write_shards(pd.DataFrame(frame), folder, shards)
    return tk.data.Shards(str(folder))


def _fit(vocabs, x, monkeypatch=None, **settings):
    ranker = _ranker(vocabs)
    if monkeypatch is not None:
        refuse_whole_reads(monkeypatch)
    history = ranker.fit(x, label="rating", negatives=0, seed=3, verbose=0, **settings)
    if monkeypatch is not None:
        monkeypatch.undo()
    return history.history["loss"], ranker


def _scores(ranker, data):
    return ranker.score(data.users[["user_id", "user_segment"]][:10], data.items[:20])


def test_streaming_one_shard_in_order_equals_training_in_memory(data, log, vocabs, tmp_path,
                                                                 monkeypatch):
    # The same batches in the same order from the same initial weights and the same
    # ops: measured bit-equal. rtol 1e-6 only allows for a build that orders float32
    # ops differently; an item's first row instead of its last (the catalogue's) moves
    # the loss by ~30%, one extra Adam step per epoch by ~2% in the second epoch.
    source = _write(log, tmp_path / "log", shards=1)
    memory, in_memory = _fit(vocabs, log, epochs=2, batch_size=32, shuffle=False)
    stream, streamed = _fit(vocabs, source, monkeypatch, epochs=2, batch_size=32,
                            shuffle=False, shuffle_buffer=1000)
    np.testing.assert_allclose(stream, memory, rtol=1e-6)
    np.testing.assert_allclose(_scores(streamed, data), _scores(in_memory, data),
                               rtol=1e-6, atol=1e-6)


def test_a_shuffled_stream_whose_window_holds_every_row_trains_as_in_memory(
        data, log, vocabs, tmp_path, monkeypatch):
    # One batch of every row per epoch: the shuffled order changes the mean loss and its
    # gradient only through float32 summation order, at most ~n * eps / 2 = 400 * 6e-8
    # = 2.4e-5 relative (measured: 7e-8 on the losses, 6e-8 on scores of size 0.5).
    source = _write(log, tmp_path / "log", shards=3)
    settings = dict(epochs=3, batch_size=len(log), candidates=data.items,
                    sample_weight="weight")
    memory, in_memory = _fit(vocabs, log, **settings)
    stream, streamed = _fit(vocabs, source, monkeypatch, **settings)  # Shards: 65,536 rows
    np.testing.assert_allclose(stream, memory, rtol=3e-5)
    assert stream[-1] < stream[0]
    np.testing.assert_allclose(_scores(streamed, data), _scores(in_memory, data),
                               rtol=3e-5, atol=3e-5)


def test_memory_holds_a_window_not_the_log(log, vocabs, tmp_path, monkeypatch):
    import tfrs_kit.data._stream as stream

    big = pd.concat([log] * 10, ignore_index=True)  # 4,000 rows in 4 shards
    source = _write(big, tmp_path / "log", shards=4)
    arranged = []
    arrange = stream._arrange

    def recording(tables, order, rng):
        arranged.append(len(order))
        return arrange(tables, order, rng)

    monkeypatch.setattr(stream, "_arrange", recording)
    monkeypatch.setattr("tfrs_kit.ranking._streamed._ROWS_PER_CHUNK", 50)
    losses, _ = _fit(vocabs, source, epochs=1, batch_size=64, shuffle_buffer=200)
    monkeypatch.undo()
    assert sum(arranged) >= len(big)  # every row went through a window
    # The most rows held at once: a window, a batch left over, a round of 4 chunks.
    assert max(arranged) <= 200 + 64 + 4 * 50 < len(big) // 5
    assert np.isfinite(losses).all()


def test_a_shard_without_the_label_is_named(log, vocabs, tmp_path):
    source = _write(log, tmp_path / "log", shards=2)
    pd.read_parquet(source.paths[1]).drop(columns="rating").to_parquet(source.paths[1])
    with pytest.raises(ValueError, match=r"the shard '.*part-1\.parquet' lacks the column "
                                         r"'rating'"):
        _ranker(vocabs).fit(source, label="rating", negatives=0, verbose=0)


def test_shards_that_disagree_on_a_column_are_named(log, vocabs, tmp_path):
    source = _write(log, tmp_path / "log", shards=2)
    second = pd.read_parquet(source.paths[1])
    second["rating"] = second["rating"].astype(str)
    second.to_parquet(source.paths[1])
    with pytest.raises(ValueError, match=r"'rating' holds float values in '.*part-0\.parquet' "
                                         r"but string values in '.*part-1\.parquet'"):
        _ranker(vocabs).fit(source, label="rating", negatives=0, verbose=0)


def test_a_missing_label_in_a_later_shard_is_named_with_its_row(log, vocabs, tmp_path):
    source = _write(log, tmp_path / "log", shards=2)
    second = pd.read_parquet(source.paths[1])
    second.loc[second.index[7], "rating"] = np.nan
    second.to_parquet(source.paths[1])
    with pytest.raises(ValueError, match=r"`x\['rating'\]` must hold a finite label.*1 bad "
                                         r"value\(s\) in the shard '.*part-1\.parquet', the "
                                         r"first at its row 7"):
        _ranker(vocabs).fit(source, label="rating", negatives=0, verbose=0)


def test_sampled_negatives_read_shards_whole_and_say_so(log, vocabs, tmp_path):
    source = _write(log.iloc[:60], tmp_path / "log", shards=2)
    ranker = _ranker(vocabs)
    with pytest.warns(UserWarning, match="reads the tk.data.Shards log whole: sampled "
                                         "negatives need"):
        history = ranker.fit(source, negatives=2, epochs=1, verbose=0)
    assert ranker.group_size_ == 3 and len(history.history["loss"]) == 1
    with pytest.raises(ValueError, match=r"`shuffle_buffer` must be None unless the ranker's "
                                         r"fit can stream"):
        ranker.fit(source, negatives=2, shuffle_buffer=100, verbose=0)
    with pytest.raises(ValueError, match=r"`shuffle_buffer` must be None unless x names files"):
        ranker.fit(log, label="rating", negatives=0, shuffle_buffer=100, verbose=0)
