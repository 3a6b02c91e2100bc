"""tk.data.Shards: a log on disk named once, accepted wherever files are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk
from tfrs_kit.data._table import to_table


@pytest.fixture
def folder(tmp_path):
    days = [pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "y", "z"],
                          "timestamp": [1, 2, 3]}),
            pd.DataFrame({"user_id": ["c"], "item_id": ["x"], "timestamp": [4]})]
    for number, day in enumerate(days):
        day.to_parquet(tmp_path / f"day-{number}.parquet", index=False)
    (tmp_path / "_SUCCESS").write_text("")  # a marker Spark writes: not a shard
    return tmp_path


def test_shards_are_resolved_once_sorted_and_read_in_that_order(folder):
    source = tk.data.Shards(folder)
    assert [p.rsplit("/", 1)[-1] for p in source.paths] == ["day-0.parquet", "day-1.parquet"]
    assert len(source) == 2 and source.format == "parquet"
    assert source.columns() == {"user_id": "string", "item_id": "string", "timestamp": "int"}
    chunks = list(source.chunks(columns=["item_id"], rows=2))
    assert [c["item_id"].tolist() for c in chunks] == [["x", "y"], ["z"], ["x"]]
    assert tk.data.Shards(source) == source and hash(tk.data.Shards(source)) == hash(source)
    assert "day-0.parquet" in repr(source) and "1 more" in repr(source)


def test_shards_go_wherever_files_go(folder):
    source = tk.data.Shards(str(folder / "*.parquet"))
    table = to_table(source, columns=["user_id", "item_id"])
    assert table["user_id"].tolist() == ["a", "b", "a", "c"]
    by_path = tk.VocabularyBuilder().fit(str(folder), features=["item_id"])
    by_source = tk.VocabularyBuilder().fit(source, features=["item_id"])
    assert by_source["item_id"].tokens == by_path["item_id"].tokens == ("x", "y", "z")
    split_train, split_test = tk.evaluation.leave_last_one_out(
        pd.DataFrame(to_table(source)))
    latest = sorted(zip(split_test["user_id"], split_test["item_id"], strict=True))
    assert latest == [("a", "z"), ("b", "y"), ("c", "x")]  # each user's latest
    assert len(split_train) == 1 and np.all(split_train["item_id"] == "x")


def test_shards_are_immutable_and_bad_paths_fail_at_once(folder):
    source = tk.data.Shards(folder)
    with pytest.raises(AttributeError, match="immutable"):
        source.paths = ()
    with pytest.raises(FileNotFoundError, match="matches no file"):
        tk.data.Shards(str(folder / "*.csv"))
    with pytest.raises(TypeError, match="`paths` must be a path"):
        tk.data.Shards(42)
    (folder / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="suffixes"):
        tk.data.Shards(str(folder / "notes.txt"))


def test_training_pipelines_run_without_tf_data_autotuning(tmp_path):
    """Autotuning's model thread makes deleting a training iterator wait for its
    sleep (measured 4 to 36 s when a streamed training was cut mid-epoch): the
    in-memory and the streamed training datasets are built with it off."""
    from tfrs_kit.data._stream import file_dataset
    from tfrs_kit.data._tensors import make_dataset

    table = {"user_id": np.array(["a", "b", "c"]), "item_id": np.array(["x", "y", "x"])}
    in_memory = make_dataset(table, ["user_id", "item_id"], batch_size=2, shuffle=True, seed=0)
    pd.DataFrame(table).to_parquet(tmp_path / "part-0.parquet", index=False)
    streamed, _ = file_dataset([str(tmp_path / "part-0.parquet")], ["user_id", "item_id"],
                               batch_size=2, shuffle=True, seed=0, shuffle_buffer=4)
    for dataset in (in_memory, streamed):
        assert dataset.options().autotune.enabled is False
        assert sum(int(batch["user_id"].shape[0]) for batch in dataset) == 3
