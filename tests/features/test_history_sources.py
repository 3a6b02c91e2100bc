"""``HistoryBuilder`` on ``tk.data.Shards``: ``for_users`` out of core, the in-memory answer."""

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk
from tfrs_kit.features import _history_files

pytest.importorskip("pyarrow")


def _log(n=300, seed=0, ints=False):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, n)
    items = rng.integers(0, 40, n)
    return pd.DataFrame({
        "user_id": users if ints else [f"u{u}" for u in users],
        "item_id": items + 1 if ints else [f"i{i}" for i in items],
        "timestamp": rng.integers(0, 30, n),  # many ties: row order breaks them
    })


def _write(frame, folder, shards=3):
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(frame)), shards)):
        frame.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    return tk.data.Shards(str(folder))


def _as_lists(table, user_id="user_id", name="history"):
    return list(table[user_id].tolist()), [list(h) for h in table[name]]


@pytest.fixture
def out_of_core(monkeypatch):
    """Several buckets, small gathers, and no log read whole."""
    def refuse(*args, **kwargs):
        raise AssertionError("the log was read into memory whole")

    monkeypatch.setattr(_history_files, "_num_buckets", lambda paths: 3)
    monkeypatch.setattr(_history_files, "_GATHERED_VALUES", 8)
    monkeypatch.setattr("tfrs_kit.data._table.read_table", refuse)
    monkeypatch.setattr("tfrs_kit.data._files.read_table", refuse)


@pytest.mark.parametrize("ints", [False, True])
@pytest.mark.parametrize("options", [{}, {"timestamp": None}, {"max_length": 1}])
def test_for_users_of_shards_equals_the_in_memory_builder(tmp_path, out_of_core, ints,
                                                          options):
    log = _log(ints=ints)
    builder = tk.HistoryBuilder(max_length=options.get("max_length", 4),
                                **{k: v for k, v in options.items() if k != "max_length"})
    want = builder.for_users(log)
    got = builder.for_users(_write(log, tmp_path / "log"))
    assert _as_lists(got) == _as_lists(want)
    assert got["user_id"].dtype == want["user_id"].dtype


def test_for_users_of_shards_knows_the_answer(tmp_path, out_of_core):
    log = pd.DataFrame({"user": ["b", "a", "a", "b", "a"], "item": ["x", "y", "z", "w", "v"],
                        "t": [5, 3, 1, 5, 2]})
    builder = tk.HistoryBuilder(user_id="user", item_id="item", timestamp="t", max_length=2,
                                name="recent")
    got = builder.for_users(_write(log, tmp_path / "log", shards=2))
    # b: x then w (equal times keep the log's order); a: z, v, y by time. Users in order
    # of their earliest event's row: b's is row 0, a's (time 1) row 2.
    assert _as_lists(got, "user", "recent") == (["b", "a"], [["x", "w"], ["v", "y"]])


def test_transform_of_shards_reads_them_and_matches(tmp_path):
    log = _log(n=60)
    builder = tk.HistoryBuilder(max_length=3)
    want = builder.transform(log)
    got = builder.transform(_write(log, tmp_path / "log"))
    assert [list(h) for h in got["history"]] == [list(h) for h in want["history"]]


def test_shards_with_missing_ids_are_refused(tmp_path):
    log = pd.DataFrame({"user_id": ["a", None], "item_id": ["x", "y"], "timestamp": [1, 2]})
    with pytest.raises(ValueError, match="missing ids"):
        tk.HistoryBuilder().for_users(_write(log, tmp_path / "log", shards=1))
