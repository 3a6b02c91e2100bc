"""`candidate_id=` became `item_id=`: the new name works, the old one warns and does the same.

The models' id column is not the candidate tower's first feature here, so a keyword
that was dropped on the way would change the result.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit._validation import renamed_argument

LOG = {"user_id": np.array(["a", "b", "a", "c", "b", "c"], dtype=object),
       "item_id": np.array(["x", "y", "y", "x", "z", "z"], dtype=object),
       "genre": np.array(["g", "h", "h", "g", "h", "h"], dtype=object)}
OLD = r"`candidate_id` is deprecated: pass `item_id` instead"


@pytest.fixture(scope="module")
def vocabs():
    return tk.VocabularyBuilder().fit(LOG)


def _towers(vocabs):
    tf.keras.utils.set_random_seed(0)
    return (tk.Tower(vocabs, features=["user_id"], output_dim=4),
            tk.Tower(vocabs, features=["genre", "item_id"], output_dim=4))


@pytest.mark.parametrize("model_class", [tk.TwoTowerRetrieval, tk.Ranker, tk.ranking.Multitask])
def test_the_new_name_sets_the_id_column_without_a_warning(vocabs, model_class):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        model = model_class(*_towers(vocabs), item_id="item_id")
    assert model.item_id == model.candidate_id == "item_id"
    assert model.get_config()["item_id"] == "item_id"
    assert "candidate_id" not in model.get_config()
    assert model_class(*_towers(vocabs)).item_id == "genre"  # the default: the first feature


@pytest.mark.parametrize("model_class", [tk.TwoTowerRetrieval, tk.Ranker, tk.ranking.Multitask])
def test_the_old_name_warns_and_gives_the_same_model(vocabs, model_class):
    with pytest.warns(DeprecationWarning, match=OLD) as caught:
        old = model_class(*_towers(vocabs), candidate_id="item_id")
    assert caught[0].filename == __file__  # points at the caller's line
    new = model_class(*_towers(vocabs), item_id="item_id")
    assert old.item_id == "item_id"
    own = ("query_tower", "candidate_tower", "name")  # Keras names differ per instance
    assert ({k: v for k, v in old.get_config().items() if k not in own}
            == {k: v for k, v in new.get_config().items() if k not in own})


@pytest.mark.parametrize("model_class", [tk.TwoTowerRetrieval, tk.Ranker])
def test_both_names_at_once_are_refused(vocabs, model_class):
    with pytest.raises(ValueError, match=r"`candidate_id` must be left out when `item_id` is "
                                         r"given"):
        model_class(*_towers(vocabs), item_id="item_id", candidate_id="item_id")


@pytest.mark.parametrize("model_class", [tk.TwoTowerRetrieval, tk.Ranker])
def test_a_config_saved_before_the_rename_still_loads_silently(vocabs, model_class):
    config = model_class(*_towers(vocabs), item_id="item_id").get_config()
    config["candidate_id"] = config.pop("item_id")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        clone = model_class.from_config(config)
    assert clone.item_id == "item_id"


def test_the_retriever_trains_the_same_under_either_name(vocabs):
    losses = []
    for keyword in ("item_id", "candidate_id"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = tk.TwoTowerRetrieval(*_towers(vocabs), **{keyword: "item_id"})
        history = model.fit(LOG, epochs=2, batch_size=3, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
        assert sorted(model.candidate_frequencies_.index) == ["x", "y", "z"]  # ids, not genres
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)


def test_the_index_builder_and_with_candidates_take_either_name(vocabs):
    model = tk.TwoTowerRetrieval(*_towers(vocabs), item_id="genre")  # the index's id: item_id
    builder = tk.IndexBuilder(k_max=2)
    new = builder.build(model, LOG, item_id="item_id")
    with pytest.warns(DeprecationWarning, match=OLD):
        old = builder.build(model, LOG, candidate_id="item_id")
    assert list(old.ids) == list(new.ids) == ["y", "x", "z"]  # each id's last row, in order
    query = {"user_id": np.array(["a", "b"], dtype=object)}
    for got, want in zip(old.recommend(query, k=2), new.recommend(query, k=2), strict=True):
        np.testing.assert_array_equal(got, want)
    more = {"item_id": np.array(["w"], dtype=object), "genre": np.array(["g"], dtype=object)}
    with pytest.warns(DeprecationWarning, match=OLD):
        old_more = new.with_candidates(model, more, candidate_id="item_id")
    new_more = new.with_candidates(model, more, item_id="item_id")
    assert list(old_more.ids) == list(new_more.ids) == ["y", "x", "z", "w"]


def test_renamed_argument_returns_whichever_name_was_given():
    assert renamed_argument("item_id", "a", old="candidate_id", old_value=None) == "a"
    assert renamed_argument("item_id", None, old="candidate_id", old_value=None) is None
    with pytest.warns(DeprecationWarning, match=OLD):
        assert renamed_argument("item_id", None, old="candidate_id", old_value="b") == "b"
