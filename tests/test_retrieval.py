"""The two-tower model learns a known answer, and refuses bad input clearly."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk


def _model(log, **kwargs):
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"])
    return tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id"], output_dim=8),
        tk.Tower(vocabs, features=["item_id"], output_dim=8), **kwargs)


def _recall_at_1(model, log):
    recommender = model.as_recommender(log, user_id="user_id", item_id="item_id")
    users = np.unique(log["user_id"])
    top = recommender.item_ids[np.argmax(recommender.score(users), axis=1)]
    pairs = zip(users, top, strict=True)
    own_group = [int(u[1:]) % 2 == int(i[1:]) // 10 for u, i in pairs]
    return float(np.mean(own_group))


@pytest.mark.parametrize("options", [
    {}, {"logq_correction": True, "remove_accidental_hits": True, "temperature": 0.5}])
def test_checkerboard_recall_at_1_is_perfect(checkerboard, options):
    tf.keras.utils.set_random_seed(1)
    model = _model(checkerboard, **options)
    model.fit(pd.DataFrame(checkerboard), epochs=3, batch_size=128, seed=1, verbose=0)
    assert _recall_at_1(model, checkerboard) == 1.0


def test_an_untrained_model_is_not_perfect(checkerboard):
    tf.keras.utils.set_random_seed(1)
    assert _recall_at_1(_model(checkerboard), checkerboard) < 1.0


def test_fit_accepts_a_dataset_and_reports_validation_loss(checkerboard):
    model = _model(checkerboard)
    dataset = tf.data.Dataset.from_tensor_slices(checkerboard)
    history = model.fit(dataset, epochs=2, batch_size=256, validation_data=checkerboard,
                        verbose=0)
    assert len(history.history["val_loss"]) == 2
    assert history.history["loss"][1] < history.history["loss"][0]


def test_missing_feature_column_is_named(checkerboard):
    with pytest.raises(ValueError, match=r"`x` must have a column 'item_id'"):
        _model(checkerboard).fit({"user_id": checkerboard["user_id"]}, verbose=0)


def test_missing_ids_are_refused():
    log = {"user_id": ["a", "b"], "item_id": np.array(["x", None], dtype=object)}
    model = _model({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    with pytest.raises(ValueError, match=r"no missing \(None or NaN\) ids"):
        model.fit(log, verbose=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "`batch_size` must be a positive integer"),
    ({"epochs": 0}, "`epochs` must be a positive integer"),
])
def test_bad_fit_settings(checkerboard, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(checkerboard).fit(checkerboard, **kwargs)


def test_towers_must_be_towers(checkerboard):
    with pytest.raises(TypeError, match="`query_tower` must be a tfrs_kit Tower"):
        tk.TwoTowerRetrieval("user_id", "item_id")  # type: ignore[arg-type]


def test_unknown_users_in_the_recommender_adapter(checkerboard):
    recommender = _model(checkerboard).as_recommender(checkerboard)
    with pytest.raises(ValueError, match="users whose query features are known"):
        recommender.score(np.array(["nobody"]))
