"""Every accepted input becomes the same table; bad tables get clear errors."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrs_kit.data._table import select, to_table


def _expected(table):
    assert table["user"].tolist() == ["a", "b", "c"]
    assert table["n"].dtype == np.int64 and table["n"].tolist() == [1, 2, 3]
    assert [list(v) for v in table["tags"]] == [["x"], ["x", "y"], []]


def test_dataframe_dict_and_datasets_give_the_same_table():
    columns = {"user": ["a", "b", "c"], "n": [1, 2, 3], "tags": [["x"], ["x", "y"], []]}
    _expected(to_table(pd.DataFrame(columns)))
    _expected(to_table(columns))
    ragged = {"user": tf.constant(["a", "b", "c"]), "n": tf.constant([1, 2, 3]),
              "tags": tf.ragged.constant([["x"], ["x", "y"], []])}
    _expected(to_table(tf.data.Dataset.from_tensor_slices(ragged)))  # unbatched
    _expected(to_table(tf.data.Dataset.from_tensor_slices(ragged).batch(2)))  # batched


def test_bytes_are_decoded():
    assert to_table({"u": np.array([b"a", b"b"])})["u"].tolist() == ["a", "b"]


def test_empty_table_is_refused():
    with pytest.raises(ValueError, match=r"`data` must have at least one row"):
        to_table(pd.DataFrame({"user": []}))


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"equal length.*'a': 2, 'b': 1"):
        to_table({"a": [1, 2], "b": [1]})


def test_unknown_type_is_refused():
    with pytest.raises(TypeError, match=r"pandas DataFrame, a dict.*Received: data='list'"):
        to_table([1, 2, 3])


def test_unknown_column_suggests_the_closest():
    with pytest.raises(ValueError, match=r"Did you mean to rename 'user_id' to 'userid'"):
        to_table({"user_id": [1]}, columns=["userid"])


def test_a_column_named_by_an_argument_suggests_the_argument():
    """`item_id="movieid"` is fixed by `item_id='movie_id'`, not by renaming the data."""
    data = {"movie_id": [1], "user_id": [2]}
    with pytest.raises(ValueError, match=r"\(named by `item_id`\)\. Received: columns "
                       r"\['movie_id', 'user_id'\]\. Did you mean item_id='movie_id'\?$"):
        to_table(data, columns=["movieid"], settings={"movieid": "item_id"})
    with pytest.raises(ValueError, match=r"Did you mean item_id='movie_id'\?$"):
        select(to_table(data), ["movieid"], settings={"movieid": "item_id"})


def test_a_missing_history_points_to_history_builder():
    with pytest.raises(ValueError, match=r"must have a column 'history'.*HistoryBuilder.*"
                       r"history\.for_users\(train\)"):
        select(to_table({"user_id": [1]}), ["user_id", "history"])


def test_a_column_of_fixed_length_float_arrays_is_a_dense_vector():
    from tfrs_kit.data._tensors import to_tensors

    vectors = np.arange(12, dtype=np.float64).reshape(4, 3)
    frame = pd.DataFrame({"vector": list(vectors), "ragged": [[0.5], [1.0, 2.0], [], [3.0]],
                          "tags": [["a", "b"]] * 4, "history": [[1, 2]] * 4})
    tensors = to_tensors(to_table(frame), ["vector", "ragged", "tags", "history"])
    assert not isinstance(tensors["vector"], tf.RaggedTensor)
    assert tensors["vector"].dtype == tf.float32 and tensors["vector"].shape == (4, 3)
    np.testing.assert_array_equal(tensors["vector"].numpy(), vectors)
    # Lists of varying length, and lists of ids or strings (even of one length), stay ragged.
    assert all(isinstance(tensors[name], tf.RaggedTensor) for name in ("ragged", "tags",
                                                                        "history"))
