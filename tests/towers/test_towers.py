"""Towers: shapes, every built-in encoder, custom towers, and round trips."""

import numpy as np
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.features._counting import tokenize

LOG = {
    "user": ["a", "b", "a"],
    "item": np.array([3, 4, 3]),
    "genres": [["x"], ["x", "y"], []],
    "title": ["Toy Story", "Heat", "Toy Story"],
    "age": [10.0, 20.0, np.nan],
}
KINDS = {"user": "categorical", "item": "categorical", "genres": "multi", "title": "text",
         "age": "numeric"}


@pytest.fixture(scope="module")
def vocabs():
    return tk.VocabularyBuilder(ngrams=2).fit(LOG, features=KINDS)


def _batch():
    return {"user": tf.constant(["a", "never-seen"]), "item": tf.constant([3, 99], tf.int64),
            "genres": tf.ragged.constant([["x", "y"], []]), "title": tf.constant(["toy", "?"]),
            "age": tf.constant([10.0, np.nan])}


def test_every_built_in_encoder_gives_the_output_size(vocabs):
    tower = tk.Tower(vocabs, features=list(KINDS), output_dim=6, hidden_dims=[8])
    out = tower(_batch())
    assert out.shape == (2, 6)
    assert np.all(np.isfinite(out.numpy()))  # OOV ids, empty lists and NaN are defined


def test_multi_valued_accepts_padded_dense_input(vocabs):
    tower = tk.Tower(vocabs, features=["genres"], output_dim=4)
    ragged = tower({"genres": tf.ragged.constant([["x", "y"], []])}).numpy()
    dense = tower({"genres": tf.constant([["x", "y"], ["", ""]])}).numpy()
    np.testing.assert_allclose(ragged, dense)
    np.testing.assert_allclose(dense[1], 0.0)  # an empty list encodes as zeros


def test_single_id_tower_is_a_plain_embedding_table(vocabs):
    tower = tk.Tower(vocabs, features=["user"], output_dim=5)
    tower({"user": tf.constant(["a"])})
    assert tower.projection is None
    assert [w.shape for w in tower.trainable_weights] == [(3, 5)]  # 2 users + 1 OOV bucket


def test_normalize_gives_unit_vectors(vocabs):
    out = tk.Tower(vocabs, features=["user", "title"], output_dim=4, normalize=True)(_batch())
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=1), 1.0, rtol=1e-5)


def test_config_round_trip_gives_the_same_architecture(vocabs):
    tower = tk.Tower(vocabs, features=list(KINDS), output_dim=6, hidden_dims=[8], dropout=0.1)
    clone = tk.Tower.from_config(tower.get_config())
    tower(_batch())
    clone(_batch())
    clone.set_weights(tower.get_weights())
    np.testing.assert_allclose(clone(_batch()).numpy(), tower(_batch()).numpy(), rtol=1e-6)
    assert clone.get_config() == tower.get_config()


def test_saved_model_round_trip(vocabs, tmp_path):
    tower = tk.Tower(vocabs, features=list(KINDS), output_dim=6)
    signature = tower.input_signature()
    batch = {"user": tf.constant(["a", "zz"]), "item": tf.constant([3, 99], tf.int64),
             "genres": tf.constant([["x", "y"], ["", ""]]), "title": tf.constant(["toy", "?"]),
             "age": tf.constant([10.0, np.nan])}
    expected = tower(batch).numpy()
    module = tf.Module()
    module.tower = tower
    module.serve = tf.function(lambda f: tower(f), input_signature=[signature])
    tf.saved_model.save(module, str(tmp_path / "tower"))
    restored = tf.saved_model.load(str(tmp_path / "tower"))
    np.testing.assert_allclose(restored.serve(batch).numpy(), expected, rtol=1e-6)


def test_custom_tower_overrides_encode(vocabs):
    class LengthTower(tk.Tower):
        """Encodes the title's length, a feature without a vocabulary, beside the user."""

        requires_vocabularies = False

        def encode(self, features):
            length = tf.cast(tf.strings.length(features["raw_title"]), tf.float32)[:, None]
            return tf.concat([self.encoders["user"](features["user"]), length], axis=1)

        def input_signature(self):
            specs = super().input_signature()  # only the features with vocabularies
            specs["raw_title"] = tf.TensorSpec([None], tf.string, name="raw_title")
            return specs

    tower = LengthTower(vocabs, features=["user", "raw_title"], output_dim=3)
    assert sorted(tower.encoders) == ["user"]
    batch = {"user": tf.constant(["a", "b"]), "raw_title": tf.constant(["abc", ""])}
    assert tower(batch).shape == (2, 3)
    specs = tower.input_signature()
    assert specs == {"user": tf.TensorSpec([None], tf.string, name="user"),
                     "raw_title": tf.TensorSpec([None], tf.string, name="raw_title")}


def test_a_subclass_needs_vocabularies_unless_it_says_otherwise(vocabs):
    class Overridden(tk.Tower):
        def encode(self, features):
            return tf.strings.to_number(features["raw"])[:, None]

    with pytest.raises(ValueError, match=r"known feature with a vocabulary\. Received: "
                       r"features='raw'\..* If Overridden reads 'raw' without a vocabulary, set "
                       r"`requires_vocabularies = False` on the class\."):
        Overridden(vocabs, features=["raw"])
    with pytest.raises(ValueError, match=r"Received: features='usr'\. Did you mean 'user'\? "
                       r"Known: [^.]*\.$"):  # no hint for the built-in towers
        tk.towers.CrossTower(vocabs, features=["usr"])


def test_only_the_built_in_encode_makes_a_plain_embedding_table(vocabs):
    class Doubled(tk.Tower):
        def encode(self, features):
            x = super().encode(features)
            return tf.concat([x, x], axis=1)

    tower = Doubled(vocabs, features=["user"], output_dim=5)
    assert tower({"user": tf.constant(["a"])}).shape == (1, 5)
    assert tower.projection is not None
    assert tk.Tower(vocabs, features=["user"], output_dim=5).projection is None


def test_text_encoder_splits_text_as_the_vocabulary_does():
    texts = ["Toy Story (1995)", "WALL\u00b7E: a_b-c!", "Caf\u00e9's [x]{y}~z", "x"]
    vocabs = tk.VocabularyBuilder(ngrams=2).fit({"t": texts}, features={"t": "text"})
    tower = tk.Tower(vocabs, features=["t"], output_dim=4)  # a plain table: no projection
    out = tower({"t": tf.constant(texts)}).numpy()
    table = tower.encoders["t"].embedding.embeddings.numpy()
    indices = [vocabs["t"].index(tokenize(text, ngrams=2)) for text in texts]
    assert all(np.all(i > 0) for i in indices)  # every token and bigram is in the vocabulary
    np.testing.assert_allclose(out, [table[i].mean(axis=0) for i in indices], rtol=1e-6)


def test_feature_names_become_valid_layer_names():
    vocabs = tk.VocabularyBuilder().fit({"user id/v2": ["a", "b"]})
    tower = tk.Tower(vocabs, features=["user id/v2"], output_dim=4)
    assert tower({"user id/v2": tf.constant(["a"])}).shape == (1, 4)
    assert tower.encoders["user id/v2"].name == "user_id_v2_encoder"


def test_missing_feature_at_call_names_it(vocabs):
    tower = tk.Tower(vocabs, features=["user", "item"], output_dim=4)
    with pytest.raises(ValueError, match=r"without \['item'\]"):
        tower({"user": tf.constant(["a"])})


def test_unknown_feature_suggests_the_closest(vocabs):
    with pytest.raises(ValueError, match="Did you mean 'user'"):
        tk.Tower(vocabs, features=["usr"])


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"features": "user"}, TypeError, r"Did you mean features=\['user'\]"),
    ({"features": []}, ValueError, r"`features` must be a non-empty list of feature names"),
    ({"output_dim": 0}, ValueError, r"`output_dim` must be an integer >= 1\. Received: "
     r"output_dim=0\."),
    ({"output_dim": 4.0}, TypeError, r"`output_dim` must be an integer >= 1"),
    ({"embedding_dim": True}, TypeError, r"`embedding_dim` must be an integer >= 1 or None"),
    ({"hidden_dims": [8, 0]}, ValueError, r"`hidden_dims\[1\]` must be an integer >= 1"),
    ({"hidden_dims": 8}, TypeError, r"Did you mean hidden_dims=\[8\]"),
    ({"dropout": 1.5}, ValueError, r"`dropout` must be a finite number >= 0\.0 and < 1\.0"),
    ({"dropout": "0.1"}, TypeError, r"`dropout` must be a finite number"),
    ({"l2": float("nan")}, ValueError, r"`l2` must be a finite number >= 0\.0"),
    ({"max_length": 0}, ValueError, r"`max_length` must be an integer >= 1 or None"),
])
def test_bad_settings(vocabs, kwargs, error, message):
    with pytest.raises(error, match=message):
        tk.Tower(vocabs, **{"features": ["user"], **kwargs})


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"num_cross_layers": 0}, ValueError, r"`num_cross_layers` must be an integer >= 1\. "),
    ({"num_cross_layers": "2"}, TypeError, r"`num_cross_layers` must be an integer >= 1"),
    ({"projection_dim": 2.0}, TypeError, r"`projection_dim` must be an integer >= 1 or None"),
])
def test_bad_cross_settings(vocabs, kwargs, error, message):
    with pytest.raises(error, match=message):
        tk.towers.CrossTower(vocabs, features=["user", "age"], **kwargs)


def test_vocabularies_of_another_type_are_refused(vocabs):
    with pytest.raises(TypeError, match=r"`vocabularies` must be Vocabularies, their dict or "
                       r"None\. Received: vocabularies='list'"):
        tk.Tower([vocabs["user"]], features=["user"])


def test_settings_are_stored_as_plain_python_values(vocabs):
    tower = tk.Tower(vocabs.to_dict(), features=("user", "item"), output_dim=np.int64(4),
                     hidden_dims=np.array([3]), dropout=0, l2=np.float32(0.5))
    assert tower.vocabularies == vocabs
    assert (tower.features, tower.output_dim, tower.embedding_dim) == (("user", "item"), 4, 4)
    assert (tower.hidden_dims, tower.dropout, tower.l2) == ((3,), 0.0, 0.5)
    assert [type(v) for v in (tower.output_dim, tower.hidden_dims[0], tower.l2)] == [
        int, int, float]


def test_categorical_tower_casts_whole_floats_and_booleans():
    vocabs = tk.VocabularyBuilder().fit({"age": np.array([25.0, 35.0]), "male": [True, False]},
                                        features={"age": "categorical", "male": "categorical"})
    tower = tk.Tower(vocabs, features=["age", "male"], output_dim=3)
    out = tower({"age": tf.constant([25.0, 99.0]), "male": tf.constant([True, False])})
    assert out.shape == (2, 3)


def _lookup_embedding(tower, feature, values):
    encoder = tower.encoders[feature]
    return encoder.embedding(encoder.lookup(tf.constant(values))).numpy()


def test_sum_combination_adds_the_feature_embeddings_without_projection():
    vocabs = tk.VocabularyBuilder().fit({"item_id": ["a", "b", "c"], "brand": ["x", "x", "y"]})
    tower = tk.Tower(vocabs, features=["item_id", "brand"], output_dim=4, combine="sum")
    out = tower({"item_id": tf.constant(["a", "c"]), "brand": tf.constant(["x", "y"])}).numpy()
    expected = (_lookup_embedding(tower, "item_id", ["a", "c"])
                + _lookup_embedding(tower, "brand", ["x", "y"]))
    assert tower.projection is None
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    concat = tk.Tower(vocabs, features=["item_id", "brand"], output_dim=4)
    assert concat.projection is not None  # concatenation needs a projection back to 4
    with pytest.raises(ValueError, match="`combine` must be one of 'concat', 'sum'"):
        tk.Tower(vocabs, features=["item_id"], combine="add")


def test_feature_dropout_zeroes_a_feature_for_a_share_of_training_rows_only():
    ids = [f"i{n}" for n in range(400)]
    vocabs = tk.VocabularyBuilder().fit({"item_id": ids, "brand": ["x"] * 400})
    tower = tk.Tower(vocabs, features=["item_id", "brand"], output_dim=4, combine="sum",
                     feature_dropout={"item_id": 0.5})
    batch = {"item_id": tf.constant(ids), "brand": tf.constant(["x"] * 400)}
    brand = _lookup_embedding(tower, "brand", ["x"] * 400)
    served = tower(batch, training=False).numpy()
    np.testing.assert_allclose(served, _lookup_embedding(tower, "item_id", ids) + brand,
                               rtol=1e-6)
    trained = tower(batch, training=True).numpy()
    dropped = np.all(np.isclose(trained, brand), axis=1)
    assert 120 < dropped.sum() < 280  # about half of 400 rows lost their id
    with pytest.raises(ValueError, match="`feature_dropout` must be a known feature"):
        tk.Tower(vocabs, features=["item_id"], feature_dropout={"brand": 0.1})
    with pytest.raises(ValueError, match=r"`feature_dropout\['item_id'\]` must be"):
        tk.Tower(vocabs, features=["item_id"], feature_dropout={"item_id": 1.0})


def test_new_tower_settings_round_trip_through_the_config():
    vocabs = tk.VocabularyBuilder().fit({"item_id": ["a", "b"], "brand": ["x", "y"],
                                         "history": [["a"], ["a", "b"]]},
                                        features={"item_id": "categorical",
                                                  "brand": "categorical", "history": "multi"})
    tower = tk.Tower(vocabs, features=["item_id", "brand", "history"], output_dim=4,
                     combine="sum", feature_dropout={"item_id": 0.25},
                     sequence_features=["history"])
    clone = tk.Tower.from_config(tower.get_config())
    assert (clone.combine, clone.feature_dropout, clone.sequence_features) == (
        "sum", {"item_id": 0.25}, ("history",))
    assert type(clone.encoders["history"]).__name__ == "SequenceEncoder"


@pytest.mark.parametrize(("verbose", "error"), [
    (0, TypeError), (2, TypeError), (None, TypeError), (1.0, TypeError), ("loud", ValueError),
])
def test_embed_takes_auto_true_or_false(vocabs, verbose, error):
    tower = tk.Tower(vocabs, features=["user"], output_dim=4)
    with pytest.raises(error, match=r"`verbose` must be 'auto', True or False\. Received: "):
        tower.embed({"user": ["a"]}, verbose=verbose)


def test_embed_takes_numpy_bools(vocabs, capsys):
    tower = tk.Tower(vocabs, features=["user"], output_dim=4)
    tower.embed({"user": ["a", "b"]}, verbose=np.True_)
    assert "Embedding with" in capsys.readouterr().err
    tower.embed({"user": ["a", "b"]}, verbose=np.False_)
    assert capsys.readouterr().err == ""


def _sequence_tower(max_length=4):
    vocabs = tk.VocabularyBuilder().fit({"history": [["a", "b", "c", "d", "e", "f"]]},
                                        features={"history": "multi"})
    return tk.Tower(vocabs, features=["history"], output_dim=8, max_length=max_length,
                    sequence_features=["history"])


def test_sequence_encoder_reads_order_and_only_the_most_recent_items():
    tower = _sequence_tower(max_length=4)
    encode = lambda rows: tower(  # noqa: E731
        {"history": tf.ragged.constant(rows, dtype=tf.string)}).numpy()
    long, recent = encode([["a", "b", "c", "d", "e", "f"]]), encode([["c", "d", "e", "f"]])
    np.testing.assert_allclose(long, recent, rtol=1e-5)  # only the last 4 items count
    assert not np.allclose(encode([["c", "d", "e", "f"]]), encode([["d", "c", "e", "f"]]))
    np.testing.assert_array_equal(encode([[]]), np.zeros((1, 8)))  # no history: zeros
    padded = tower({"history": tf.constant([["c", "d", "", ""]])}).numpy()
    np.testing.assert_allclose(padded, encode([["c", "d"]]), rtol=1e-5)  # "" is padding
    assert type(tower.encoders["history"]).__name__ == "SequenceEncoder"
    assert tower.encoders["history"].max_length == 4


def test_sequence_features_must_be_lists_the_tower_reads():
    vocabs = tk.VocabularyBuilder().fit({"user_id": ["a"], "history": [["x"]]},
                                        features={"user_id": "categorical", "history": "multi"})
    with pytest.raises(ValueError, match="`sequence_features` must name multi-valued"):
        tk.Tower(vocabs, features=["user_id"], sequence_features=["user_id"])
    with pytest.raises(ValueError, match="`sequence_features` must name multi-valued"):
        tk.Tower(vocabs, features=["user_id"], sequence_features=["history"])
    with pytest.raises(TypeError, match=r"sequence_features=\['history'\]"):
        tk.Tower(vocabs, features=["history"], sequence_features="history")


def test_a_single_batch_is_embedded_without_a_pipeline_as_the_pipeline_would(
        vocabs, monkeypatch):
    """A table of at most ``batch_size`` rows is called on its columns as tensors (no
    ``tf.data`` pipeline built); the rows, lists and NaN come out as the batched
    ``predict`` path gives them."""
    from tfrs_kit.towers import _tower

    tower = tk.Tower(vocabs, features=list(KINDS), output_dim=6, hidden_dims=[8])
    batched = tower.embed(LOG, batch_size=2)  # two batches: the predict loop
    assert batched.shape == (3, 6)

    def no_pipeline(*args, **kwargs):
        raise AssertionError("a single batch built a tf.data pipeline")

    monkeypatch.setattr(_tower, "make_dataset", no_pipeline)
    np.testing.assert_allclose(tower.embed(LOG), batched, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tower.embed(LOG), tower(_rows(LOG)).numpy(), rtol=1e-6)


def _rows(log):
    return {"user": tf.constant(log["user"]), "item": tf.constant(log["item"], tf.int64),
            "genres": tf.ragged.constant(log["genres"]), "title": tf.constant(log["title"]),
            "age": tf.constant(log["age"], tf.float32)}
