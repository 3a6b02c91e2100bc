"""Bad input ends in a clear error naming the argument, or in a defined answer: never in a
silent wrong answer or an internal TensorFlow/NumPy traceback (docs/reliability.md)."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit import evaluation

LOG = {"user_id": ["a", "b", "a", "c"], "item_id": ["x", "y", "y", "z"],
       "age": [20.0, 35.0, 20.0, 50.0]}


@pytest.fixture(scope="module")
def vocabs():
    return tk.VocabularyBuilder().fit(LOG, features={"user_id": "categorical",
                                                     "item_id": "categorical", "age": "numeric"})


@pytest.fixture(scope="module")
def model(vocabs):
    tf.keras.utils.set_random_seed(0)
    return tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id", "age"], output_dim=4),
                                tk.Tower(vocabs, features=["item_id"], output_dim=4))


@pytest.fixture(scope="module")
def index(model):
    return tk.IndexBuilder(k_max=3, backend="brute_force").build(model,
                                                                {"item_id": ["x", "y", "z"]})


def _int_index(backend="brute_force"):
    vocabs = (tk.VocabularyBuilder().fit({"user": [1, 2]})
              | tk.VocabularyBuilder().fit({"item": [10, 20, 30]}))
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user"], output_dim=4),
                                 tk.Tower(vocabs, features=["item"], output_dim=4))
    return tk.IndexBuilder(k_max=3, backend=backend).build(model, {"item": [10, 20, 30]})


# --- infinite and missing numbers --------------------------------------------------------


def test_inf_in_a_numeric_feature_is_an_error_naming_the_column(model, vocabs):
    bad = dict(LOG, age=[20.0, np.inf, 20.0, 50.0])
    with pytest.raises(ValueError, match=r"`data\['age'\]` must hold finite numbers"):
        tk.VocabularyBuilder().fit(bad, features={"age": "numeric"})
    with pytest.raises(ValueError, match=r"`x\['age'\]` must hold finite numbers.*row 1"):
        model.fit(bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`data\['age'\]` must hold finite numbers"):
        model.query_tower.embed({"user_id": ["a"], "age": [-np.inf]})


def test_inf_in_the_catalogue_is_an_error_naming_the_column():
    vocabs = (tk.VocabularyBuilder().fit({"user_id": ["a"]})
              | tk.VocabularyBuilder().fit({"item_id": ["x", "y"], "price": [1.0, 2.0]}))
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id", "price"], output_dim=4))
    with pytest.raises(ValueError, match=r"`data\['price'\]` must hold finite numbers"):
        tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"], "price": [1.0, np.inf]})


def test_inf_in_a_query_is_an_error(index):
    with pytest.raises(ValueError, match=r"`query_features\['age'\]` must hold finite numbers"):
        index.recommend({"user_id": ["a"], "age": [np.inf]}, k=1)


def test_nan_in_a_numeric_feature_is_a_missing_value(model, index):
    # Defined behaviour: NaN reads as missing (the mean, in its own bucket): finite answers.
    embeddings = model.query_tower.embed({"user_id": ["a", "a"], "age": [np.nan, 20.0]})
    assert np.isfinite(embeddings).all()
    assert not np.allclose(embeddings[0], embeddings[1])
    scores = index.recommend({"user_id": ["a"], "age": [np.nan]}, k=3).scores
    assert np.isfinite(scores).all()


def test_numbers_given_as_strings_fail_before_tensorflow(model, vocabs, index):
    as_strings = dict(LOG, age=np.array(["20", "35", "20", "50"], dtype=object))
    with pytest.raises(TypeError, match=r"`data\['age'\]` must hold numbers"):
        tk.VocabularyBuilder().fit(as_strings, features={"age": "numeric"})
    with pytest.raises(TypeError, match=r"`x\['age'\]` must hold numbers for the numeric"):
        model.fit(as_strings, epochs=1, verbose=0)
    with pytest.raises(TypeError, match=r"`data\['age'\]` must hold numbers"):
        model.query_tower.embed({"user_id": ["a"], "age": np.array(["20"], dtype=object)})
    with pytest.raises(TypeError, match=r"`query_features\['age'\]` must hold numbers"):
        index.recommend({"user_id": ["a"], "age": np.array(["20"], dtype=object)}, k=1)


def test_fit_stops_with_an_error_when_the_loss_becomes_nan(vocabs):
    tf.keras.utils.set_random_seed(0)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=1e30))  # weights explode
    with pytest.raises(FloatingPointError, match=r"fit stopped: the training loss became "
                                                 r"(nan|inf) at epoch \d+, step \d+"):
        model.fit(LOG, epochs=20, batch_size=2, verbose=0)


# --- missing ids ----------------------------------------------------------------------


def test_none_ids_in_queries_exclusions_and_similar_items(index):
    with pytest.raises(ValueError, match=r"`query_features\['user_id'\]` must hold no missing "
                                         r"\(None or NaN\) ids.*row 1"):
        index.recommend({"user_id": ["a", None], "age": [1.0, 2.0]}, k=1)
    with pytest.raises(ValueError, match=r"`exclude` must hold no missing"):
        index.recommend({"user_id": ["a"], "age": [1.0]}, k=1, exclude=[["x", None]])
    with pytest.raises(ValueError, match=r"`item_ids` must hold no missing"):
        index.similar_items(["x", None], k=1)


def test_none_ids_in_evaluate(model):
    train = {"user_id": ["a", "b"], "item_id": ["x", "y"], "age": [1.0, 2.0]}
    with pytest.raises(ValueError, match=r"`test\['user_id'\]` must hold no missing"):
        tk.evaluate(model, {"user_id": ["a", None], "item_id": ["x", "y"]}, train=train, k=1)
    test = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", np.nan]})
    with pytest.raises(ValueError, match=r"`test\['item_id'\]` must hold no missing"):
        tk.evaluate(model, test, train=train, k=1)


@pytest.mark.parametrize("split", ["per_user_temporal_split", "leave_last_one_out",
                                   "cold_start_user_split"])
def test_none_ids_in_splits(split):
    log = pd.DataFrame({"user_id": ["a", None, "a", "b", "b", "c"],
                        "item_id": ["x", "y", "z", "x", "y", "z"],
                        "timestamp": [1, 2, 3, 4, 5, 6]})
    with pytest.raises(ValueError, match=r"`data\['user_id'\]` must hold no missing"):
        getattr(evaluation, split)(log)


# --- fewer candidates than k, and the padding ids -----------------------------------------


@pytest.mark.parametrize("backend", ["brute_force", "scann"])
def test_slots_left_empty_by_exclusions_hold_the_padding_id(model, backend):
    if backend == "scann":
        pytest.importorskip("scann")
    index = tk.IndexBuilder(k_max=3, backend=backend).build(model, {"item_id": ["x", "y", "z"]})
    top = index.recommend({"user_id": ["a", "b"], "age": [1.0, 2.0]}, k=3,
                          exclude=[["x", "y"], ["x", "y", "z"]])
    assert top.ids.tolist() == [["z", "", ""], ["", "", ""]]
    assert np.isfinite(top.scores[0, 0]) and np.isneginf(top.scores[0, 1:]).all()
    assert np.isneginf(top.scores[1]).all()
    ints = _int_index(backend)
    top = ints.recommend({"user": [1]}, k=3, exclude=[[10, 30]])
    assert top.ids.tolist() == [[20, -1, -1]]


def test_padding_values_are_refused_as_ids():
    vocabs = (tk.VocabularyBuilder().fit({"user_id": ["a"]})
              | tk.VocabularyBuilder().fit({"item_id": ["x", ""]}))
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    with pytest.raises(ValueError, match=r"`candidates\['item_id'\]` must hold no ''"):
        tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", ""]})
    vocabs = (tk.VocabularyBuilder().fit({"user": [1]})
              | tk.VocabularyBuilder().fit({"item": [5, -1]}))
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user"], output_dim=4),
                                 tk.Tower(vocabs, features=["item"], output_dim=4))
    with pytest.raises(ValueError, match=r"`candidates\['item'\]` must hold no -1"):
        tk.IndexBuilder(k_max=2).build(model, {"item": [5, -1]})
    with pytest.raises(ValueError, match=r"must hold no '' in a list-valued feature"):
        tk.VocabularyBuilder().fit({"history": [np.array(["x", ""]), np.array(["y"])]})
    with pytest.raises(ValueError, match=r"must hold no -1 in a list-valued feature"):
        tk.VocabularyBuilder().fit({"history": [np.array([3, -1]), np.array([4])]})
    with pytest.raises(ValueError, match=r"`data\['item_id'\]` must hold no '': it pads"):
        tk.HistoryBuilder(timestamp=None).transform({"user_id": ["a", "a"],
                                                     "item_id": ["x", ""]})


def test_mixed_candidate_ids_are_a_type_error(model):
    with pytest.raises(TypeError, match="ids of one kind"):
        tk.IndexBuilder(k_max=2).build(
            model, {"item_id": np.array(["x"] * 3000 + [7], dtype=object)})


def test_ids_of_the_other_kind_say_so(index):
    with pytest.raises(TypeError, match=r"`item_ids` must hold string ids.*5 has type int"):
        index.similar_items([5], k=1)
    with pytest.raises(TypeError, match=r"`exclude` must hold string ids"):
        index.recommend({"user_id": ["a"], "age": [1.0]}, k=1, exclude=[[5]])
    ints = _int_index()
    with pytest.raises(TypeError,
                       match=r"`item_ids` must hold number ids.*such as 10; '10' has type str"
                             r".*with int\(\)"):
        ints.similar_items(["10"], k=1)
    with pytest.raises(TypeError, match="be a list of candidate ids"):
        index.similar_items("x", k=1)
    assert ints.similar_items([np.int64(10)], k=1).ids.shape == (1, 1)


def test_missing_timestamps_are_an_error_not_a_sort_order():
    log = {"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"], "timestamp": [np.nan, 1, 2]}
    for split in (evaluation.per_user_temporal_split, evaluation.temporal_split):
        with pytest.raises(ValueError, match=r"`data\['timestamp'\]` must hold no missing"):
            split(log, test_fraction=0.34)
    with pytest.raises(ValueError, match=r"`data\['timestamp'\]` must hold no missing"):
        tk.HistoryBuilder().transform(log)


def test_ids_of_the_other_kind_than_their_vocabulary(model, index):
    # 1 is not "1": every such id would be out of vocabulary, or fail inside TensorFlow.
    with pytest.raises(TypeError, match=r"`data\['user_id'\]` must hold string ids like its "
                                        r"vocabulary"):
        model.query_tower.embed({"user_id": [1, 2], "age": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"`x\['user_id'\]` must hold string ids"):
        model.fit(dict(LOG, user_id=[1, 2, 1, 3]), epochs=1, verbose=0)
    with pytest.raises(TypeError, match=r"`query_features\['user_id'\]` must hold string ids"):
        index.recommend({"user_id": [1], "age": [1.0]}, k=1)
    ints = _int_index()
    with pytest.raises(TypeError, match=r"`query_features\['user'\]` must hold number ids"):
        ints.recommend({"user": ["1"]}, k=1)
    with pytest.raises(TypeError, match=r"`exclude` must hold one list of ids per query"):
        index.recommend({"user_id": ["a"], "age": [1.0]}, k=1, exclude=[None])


def test_numbers_beyond_float32_are_refused_like_inf(model, index):
    # 1e300 is finite in float64 but inf in the towers' float32: NaN scores, silently.
    with pytest.raises(ValueError, match=r"`data\['age'\]` must hold finite numbers"):
        model.query_tower.embed({"user_id": ["a"], "age": [1e300]})
    with pytest.raises(ValueError, match=r"`query_features\['age'\]` must hold finite"):
        index.recommend({"user_id": ["a"], "age": [-1e39]}, k=1)


def test_plain_lists_keep_their_values_so_mixed_and_missing_ids_are_seen(model):
    # NumPy would turn [1, "a"] into ["1", "a"] and ["x", nan] into ["x", "nan"].
    with pytest.raises(TypeError, match="ids of one type"):
        tk.VocabularyBuilder().fit({"id": [1, "a"]})
    train = {"user_id": ["a", "b"], "item_id": ["x", "y"], "age": [1.0, 2.0]}
    with pytest.raises(TypeError, match=r"`test\['user_id'\]` must hold user ids of one kind"):
        tk.evaluate(model, {"user_id": ["a", 3], "item_id": ["x", "y"]}, train=train, k=1)
    with pytest.raises(ValueError, match=r"`test\['item_id'\]` must hold no missing"):
        tk.evaluate(model, {"user_id": ["a", "b"], "item_id": ["x", np.nan]}, train=train, k=1)


def test_integer_ids_are_never_truncated_or_wrapped():
    ints = _int_index()
    with pytest.raises(TypeError, match=r"`exclude` must hold int64 ids"):
        ints.recommend({"user": [1]}, k=3, exclude=[[10.5]])  # NumPy would exclude 10
    with pytest.raises(TypeError, match=r"`item_ids` must hold whole-number ids"):
        ints.similar_items([10.5], k=1)
    whole = ints.recommend({"user": [1]}, k=3, exclude=[[10.0]])  # a whole float is the id
    assert 10 not in whole.ids[0] and whole.ids[0, -1] == -1
    huge = np.array([2**63 + 5, 7], dtype=np.uint64)  # int64 would wrap it to a negative id
    with pytest.raises(ValueError, match=r"must hold integers below 2\*\*63"):
        tk.VocabularyBuilder().fit({"item": huge})
