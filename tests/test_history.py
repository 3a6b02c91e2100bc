"""HistoryBuilder's settings (its histories are tested in tests/test_recipe.py)."""

import pytest

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
