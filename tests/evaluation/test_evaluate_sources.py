"""``tk.evaluate`` reads train and test files chunk by chunk, with the in-memory results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_kit.baselines import Popularity
from tfrs_kit.data import Shards
from tfrs_kit.evaluation import _interactions, evaluate

pytest.importorskip("pyarrow")

TRAIN = {"user_id": [1, 1, 2, 3, 3], "item_id": [10, 20, 30, 10, 30]}
TEST = {"user_id": [1, 2, 2, 1], "item_id": [30, 10, 40, 30]}  # 40: not in the catalogue


class FixedScores:
    """A Recommender with fixed scores per user."""

    def __init__(self, item_ids, scores):
        self.item_ids = np.asarray(item_ids)
        self._scores = {u: np.asarray(s, dtype=np.float64) for u, s in scores.items()}

    def score(self, user_ids):
        return np.stack([self._scores[u] for u in user_ids])


MODEL = FixedScores([10, 20, 30], {1: [3.0, 2.0, 1.0], 2: [1.0, 2.0, 3.0]})


def _write(table, folder, fmt, shards=2):
    folder.mkdir()
    frame = pd.DataFrame(table)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), shards)):
        path = folder / f"part-{i}.{fmt}"
        if fmt == "parquet":
            frame.iloc[part].to_parquet(path, index=False)
        else:
            frame.iloc[part].to_csv(path, index=False)
    return Shards(str(folder))


@pytest.fixture
def streamed(monkeypatch):
    """Chunks of two rows, and no file ever read whole."""
    def refuse(*args, **kwargs):
        raise AssertionError("a log was read into memory whole")

    monkeypatch.setattr(_interactions, "_CHUNK_ROWS", 2)
    monkeypatch.setattr("tfrs_kit.data._table.read_table", refuse)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_files_give_the_known_answer(tmp_path, streamed, fmt):
    train = _write(TRAIN, tmp_path / "train", fmt)
    test = _write(TEST, tmp_path / "test", fmt, shards=3)
    report = evaluate({"m": MODEL}, test, train=train, k=(1, 2),
                      metrics=["recall", "hit_rate", "top_k_accuracy"])
    # User 1 has seen 10 and 20: 30 comes first, a hit. User 2 has seen 30: 20 then 10,
    # one of its two relevant items (40 cannot be recommended).
    got = report.to_dict()["m"]
    assert got["recall@1"] == pytest.approx(0.5)
    assert got["recall@2"] == pytest.approx(0.75)
    assert got["hit_rate@2"] == pytest.approx(1.0)
    assert report.metadata["num_test_users"] == 2
    assert report.metadata["num_test_interactions"] == 4


def test_every_metric_equals_the_in_memory_one(tmp_path, streamed):
    rng = np.random.default_rng(0)
    train = {"user_id": np.array([f"u{u}" for u in rng.integers(0, 30, 400)], dtype=object),
             "item_id": np.array([f"i{i}" for i in rng.integers(0, 50, 400)], dtype=object)}
    test = {"user_id": np.array([f"u{u}" for u in rng.integers(0, 35, 120)], dtype=object),
            "item_id": np.array([f"i{i}" for i in rng.integers(0, 55, 120)], dtype=object)}
    model = Popularity().fit(train)
    metrics = ["recall", "precision", "ndcg", "map", "mrr", "hit_rate", "coverage", "novelty",
               "popularity", "top_k_accuracy"]
    memory = evaluate(model, test, train=train, k=(1, 5, 20), metrics=metrics)
    files = evaluate(model, _write(test, tmp_path / "test", "parquet", shards=4),
                     train=_write(train, tmp_path / "train", "parquet", shards=3),
                     k=(1, 5, 20), metrics=metrics)
    want, got = memory.to_dict()["Popularity"], files.to_dict()["Popularity"]
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert files.metadata == memory.metadata


def test_coded_ids_merge_chunks_into_one_sorted_set(streamed):
    values = np.array(["b", "a", "b", "c", "a", "d"], dtype=object)
    parts = [_interactions._code(values[i:i + 2], "x", "ids") for i in range(0, 6, 2)]
    coded = _interactions._merge(parts, sort=True)
    assert coded.uniques.tolist() == ["a", "b", "c", "d"]
    assert coded.uniques[coded.codes].tolist() == values.tolist()


def test_missing_ids_and_columns_in_files_are_named(tmp_path, streamed):
    train = _write(TRAIN, tmp_path / "train", "parquet")
    holes = _write({"user_id": [1.0, None, 2.0], "item_id": [10, 20, 30]},
                   tmp_path / "holes", "parquet", shards=1)
    with pytest.raises(ValueError, match=r"`test\['user_id'\]` must hold no missing"):
        evaluate({"m": MODEL}, holes, train=train, k=1)
    other = _write({"user": [1], "item_id": [10]}, tmp_path / "other", "parquet", shards=1)
    with pytest.raises(ValueError, match="user_id"):
        evaluate({"m": MODEL}, other, train=train, k=1)
