"""HistoryBuilder's settings (its histories are tested in tests/recipe/test_recipe.py)."""

import numpy as np
import pytest
import tensorflow as tf

import tfrs_kit as tk


@pytest.mark.parametrize(("max_length", "error"), [
    (0, ValueError), (-3, ValueError), (True, TypeError), (2.0, TypeError), (None, TypeError),
])
def test_max_length_is_an_integer_of_at_least_one(max_length, error):
    with pytest.raises(error, match=r"`max_length` must be an integer >= 1\. Received: "
                       rf"max_length={max_length!r}\."):
        tk.HistoryBuilder(max_length=max_length)


def test_max_length_keeps_the_most_recent_items():
    log = {"user_id": ["a"] * 4, "item_id": ["w", "x", "y", "z"], "timestamp": [4, 1, 2, 3]}
    builder = tk.HistoryBuilder(max_length=2)
    assert builder.max_length == 2
    assert [h.tolist() for h in builder.transform(log)["history"]] == [
        ["y", "z"], [], ["x"], ["x", "y"]]
    assert builder.for_users(log)["history"][0].tolist() == ["z", "w"]


def test_histories_that_are_all_empty_keep_the_item_ids_type():
    from tfrs_kit.data._tensors import to_tensors

    log = {"user_id": np.arange(4), "item_id": np.arange(4) * 3, "timestamp": np.arange(4)}
    history = to_tensors(tk.HistoryBuilder().transform(log), ["history"])["history"]
    assert history.dtype == tf.int64 and history.row_lengths().numpy().tolist() == [0] * 4
