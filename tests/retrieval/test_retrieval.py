"""The two-tower model learns a known answer, and refuses bad input clearly."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from checkerboard_models import id_model as _model
from checkerboard_models import recall_at_1 as _recall_at_1

import tfrs_kit as tk
from tfrs_kit.data._tensors import to_tensors
from tfrs_kit.retrieval._negatives import NegativePool
from tfrs_kit.retrieval._task import FastRetrieval


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


def test_fit_learns_the_candidate_frequencies_of_the_logq_correction():
    log = {"user_id": ["a", "b", "a", "c", "b"], "item_id": ["x", "y", "y", "x", "x"]}
    model = _model(log, num_random_negatives=1)
    assert model.candidate_frequencies_ is None
    with pytest.raises(tk.NotFittedError, match="Call `fit`"):
        model._prepare(model._read(log, "x"))
    model.fit(log, epochs=1, batch_size=2, verbose=0)
    assert model.candidate_frequencies_.to_dict() == pytest.approx({"x": 0.6, "y": 0.4})
    prepared = model._prepare(model._read({"user_id": ["a", "b"], "item_id": ["y", "new"]},
                                          "validation_data"))
    # An id never seen in fit counts as seen once among the table's 2 rows.
    np.testing.assert_allclose(prepared["tfrs_kit_sampling_probability"], [0.4, 0.5])
    pool_ids = model._negatives.features["item_id"].numpy().astype(str)
    pool = dict(zip(pool_ids, model._negatives.probability.numpy(), strict=True))
    assert pool == pytest.approx({"x": 0.6, "y": 0.4})


def test_missing_feature_column_is_named(checkerboard):
    with pytest.raises(ValueError, match=r"`x` must have a column 'item_id'"):
        _model(checkerboard).fit({"user_id": checkerboard["user_id"]}, verbose=0)


def test_missing_ids_are_refused():
    log = {"user_id": ["a", "b"], "item_id": np.array(["x", None], dtype=object)}
    model = _model({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    with pytest.raises(ValueError, match=r"no missing \(None or NaN\) ids"):
        model.fit(log, verbose=0)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"batch_size": 0}, ValueError, r"`batch_size` must be an integer >= 1\. Received: batch_"),
    ({"batch_size": 256.0}, TypeError, "`batch_size` must be an integer >= 1"),
    ({"epochs": 0}, ValueError, r"`epochs` must be an integer >= 1\. Received: epochs=0"),
    ({"epochs": True}, TypeError, "`epochs` must be an integer >= 1"),
    ({"seed": -1}, ValueError, "`seed` must be an integer >= 0 or None"),
    ({"seed": "1"}, TypeError, "`seed` must be an integer >= 0 or None"),
])
def test_bad_fit_settings(checkerboard, kwargs, error, message):
    model = _model(checkerboard)
    with pytest.raises(error, match=message):
        model.fit(checkerboard, **kwargs)
    assert model.candidate_frequencies_ is None and model.optimizer is None  # nothing done


def test_towers_must_be_towers(checkerboard):
    with pytest.raises(TypeError, match="`query_tower` must be a tfrs_kit Tower"):
        tk.TwoTowerRetrieval("user_id", "item_id")  # type: ignore[arg-type]


def test_unknown_users_in_the_recommender_adapter(checkerboard):
    recommender = _model(checkerboard).as_recommender(checkerboard)
    with pytest.raises(ValueError, match="users whose query features are known"):
        recommender.score(np.array(["nobody"]))


@tf.keras.utils.register_keras_serializable(package="tfrs_kit_tests")
class _ScaledTower(tk.Tower):
    """A custom tower with a setting of its own: towers must round-trip by class."""

    def __init__(self, vocabularies=None, *, scale=1.0, **kwargs):
        super().__init__(vocabularies, **kwargs)
        self.scale = scale

    def call(self, features, training=None):
        return self.scale * super().call(features, training=training)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


# Every constructor argument, none at its default: a setting that get_config drops
# or mangles comes back different.
_SETTINGS = {
    "item_id": "item_id",  # not the candidate tower's first feature
    "temperature": 0.3,
    "remove_accidental_hits": True,
    "logq_correction": False,
    "num_hard_negatives": 5,
    "num_random_negatives": 4,
    "share_embeddings": {"history": "item_id"},
    "unique_candidates": False,
    "cross_replica_negatives": False,
    "name": "my_retrieval",
}


def _configured_model():
    log = {"user_id": np.array([f"u{i % 5}" for i in range(12)], dtype=object),
           "item_id": np.array([f"i{i % 7}" for i in range(12)], dtype=object),
           "genre": np.array([f"g{i % 3}" for i in range(12)], dtype=object)}
    log["history"] = tk.HistoryBuilder(timestamp=None).transform(log)["history"]
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id", "genre"]).alias(
        "history", "item_id", kind="multi")
    model = tk.TwoTowerRetrieval(
        _ScaledTower(vocabs, features=["user_id", "history"], output_dim=8, scale=3.0),
        tk.Tower(vocabs, features=["genre", "item_id"], output_dim=8, hidden_dims=[6]),
        **_SETTINGS)
    return model, log


def _loss_with_random_negatives(model, log, batch):
    model._negatives = NegativePool.build(log, item_id="item_id",
                                          features=["genre", "item_id"], frequencies=None)
    tf.random.set_seed(4)  # the same random negatives for every model
    return float(model.compute_loss(batch, training=True))


def test_config_round_trip_keeps_every_setting_and_the_loss():
    model, log = _configured_model()
    clone = tk.TwoTowerRetrieval.from_config(json.loads(json.dumps(model.get_config())))
    for key, value in _SETTINGS.items():
        assert getattr(clone, key) == value, key
    assert type(clone.query_tower) is _ScaledTower and clone.query_tower.scale == 3.0
    assert clone.candidate_tower.get_config() == model.candidate_tower.get_config()
    assert type(clone.task) is FastRetrieval
    settings = [{k: v for k, v in task.get_config().items() if k != "name"}
                for task in (clone.task, model.task)]
    assert settings[0] == settings[1]
    assert (clone.query_tower.encoders["history"].embedding
            is clone.candidate_tower.encoders["item_id"].embedding)

    batch = to_tensors(log, log)
    model(batch), clone(batch)  # builds both
    assert not np.allclose(clone(batch)[0], model(batch)[0])  # independent initial weights
    clone.set_weights(model.get_weights())
    for ours, theirs in zip(clone(batch), model(batch), strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    expected = _loss_with_random_negatives(model, log, batch)
    assert _loss_with_random_negatives(clone, log, batch) == pytest.approx(expected, rel=1e-6)
    without_settings = tk.TwoTowerRetrieval(model.query_tower, model.candidate_tower,
                                            item_id="item_id", logq_correction=False)
    assert _loss_with_random_negatives(without_settings, log, batch) != pytest.approx(expected)


def test_a_shared_feature_builds_no_lookup_table_of_its_own(monkeypatch):
    built = []
    lookup_layer = tk.Vocabulary.lookup_layer

    def counted(vocabulary, **kwargs):
        built.append(vocabulary.name)
        return lookup_layer(vocabulary, **kwargs)

    monkeypatch.setattr(tk.Vocabulary, "lookup_layer", counted)
    model, log = _configured_model()
    model(to_tensors(log, log))  # builds both towers
    # The history reads the item ids' table: one table per vocabulary, not one per feature.
    assert sorted(built) == ["genre", "item_id", "user_id"]
    history = model.query_tower.encoders["history"]
    assert history.lookup is model.candidate_tower.encoders["item_id"].lookup
    assert history.lookup(tf.constant(["i3"])).numpy().tolist() == [
        1 + model.candidate_tower.vocabularies["item_id"].tokens.index("i3")]


def test_keras_serialization_round_trip():
    model, log = _configured_model()
    model(to_tensors(log, log))
    serialized = json.loads(json.dumps(tf.keras.utils.serialize_keras_object(model)))
    assert serialized["registered_name"] == "tfrs_kit>TwoTowerRetrieval"
    restored = tf.keras.utils.deserialize_keras_object(serialized)
    assert type(restored) is tk.TwoTowerRetrieval
    assert restored.get_config() == model.get_config()
    assert restored.temperature == 0.3 and restored.num_random_negatives == 4


@pytest.mark.parametrize(("verbose", "expected"), [
    ("auto", "epoch lines"), (True, "epoch lines"), (2, "epoch lines"),
    (1, "step bar"), (False, ""), (0, ""),
])
def test_fit_verbose(checkerboard, capsys, verbose, expected):
    log = {name: column[:1000] for name, column in checkerboard.items()}
    model = _model(log)
    capsys.readouterr()
    history = model.fit(log, epochs=2, batch_size=250, verbose=verbose)
    out = capsys.readouterr().out
    assert "regularization_loss" not in history.history  # no regulariser: always 0
    assert "total_loss" not in history.history  # ... and the loss again
    if expected == "":
        assert out == ""
        return
    assert out.count("Epoch ") == 2 and "regularization_loss" not in out
    assert ("1/4 [" in out) == (expected == "step bar")  # Keras's per-step progress bar
    if expected == "epoch lines":
        assert [line.split(" - ")[0] for line in out.splitlines()] == [
            "Epoch 1/2", "4/4", "Epoch 2/2", "4/4"]


def test_regularization_loss_is_logged_when_there_is_one(checkerboard):
    vocabs = tk.VocabularyBuilder().fit(checkerboard)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4, l2=0.1),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    history = model.fit(checkerboard, batch_size=1000, validation_data=checkerboard, verbose=0)
    assert history.history["regularization_loss"][0] > 0
    assert history.history["val_regularization_loss"][0] > 0
    np.testing.assert_allclose(history.history["total_loss"], np.add(
        history.history["loss"], history.history["regularization_loss"]), rtol=1e-5)


@pytest.mark.parametrize(("verbose", "error"), [
    (3, ValueError), (-1, ValueError), ("yes", ValueError), (1.0, TypeError), (None, TypeError),
])
def test_fit_refuses_other_verbosities(checkerboard, verbose, error):
    model = _model(checkerboard)
    with pytest.raises(error, match=r"`verbose` must be 'auto', True, False or a Keras "
                                    r"verbosity 0, 1 or 2\. Received: verbose="):
        model.fit(checkerboard, verbose=verbose)
    assert model.optimizer is None  # refused before anything happened


@pytest.mark.parametrize(("verbose", "error"), [
    (0, TypeError), (2, TypeError), (None, TypeError), ("loud", ValueError),
])
def test_embeddings_take_auto_true_or_false(checkerboard, verbose, error):
    model = _model(checkerboard)
    for embed in (model.query_embeddings, model.candidate_embeddings):
        with pytest.raises(error, match=r"`verbose` must be 'auto', True or False\. Received"):
            embed(checkerboard, verbose=verbose)


def test_embeddings_show_progress_when_asked(checkerboard, capsys):
    model = _model(checkerboard)
    quiet = model.query_embeddings(checkerboard)  # "auto": 4,000 rows stay quiet
    assert capsys.readouterr().err == ""
    loud = model.query_embeddings(checkerboard, verbose=True, batch_size=1000)
    assert "100%" in capsys.readouterr().err
    np.testing.assert_allclose(loud, quiet, rtol=1e-6)
