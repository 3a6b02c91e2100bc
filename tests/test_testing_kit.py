"""tfrs_kit.testing: every registered tower and data source passes; broken ones fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from registry_isolation import isolated_registries
from tfrs_kit.datasets import InteractionDataset
from tfrs_kit.testing import (
    ConformanceError,
    check_dataset,
    check_tower,
    default_vocabularies,
)

ML_100K = {
    "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
    "u.item": "1|Toy Story (1995)|01-Jan-1995|||0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|Heat (1995)|01-Jan-1995|||0|1|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|1|0\n",
    "u.data": "1\t1\t5\t874965758\n2\t2\t3\t876893171\n1\t2\t4\t878542960\n",
}


def _dataset_kwargs(name: str, tmp_path: Path) -> dict:
    """The arguments each built-in data source needs to load offline; plugins get none."""
    if name == "synthetic":
        return {"num_interactions": 500}
    if name == "movielens":
        folder = tmp_path / "ml-100k"
        folder.mkdir()
        for file, text in ML_100K.items():
            (folder / file).write_text(text, encoding="latin-1")
        return {"variant": "100k", "data_dir": folder}
    return {}


# --- the generated tests over the whole registry ------------------------------------------


@pytest.mark.parametrize("name", tk.towers.available_towers())
def test_every_registered_tower_conforms(name):
    check_tower(tk.towers.get_tower(name), output_dim=8)


@pytest.mark.parametrize("name", tk.datasets.available_datasets())
def test_every_registered_data_source_conforms(name, tmp_path):
    check_dataset(name, **_dataset_kwargs(name, tmp_path))


def test_towers_pass_with_other_settings():
    vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b", "c"], "n": [1.0, 2.0, 3.0]})
    check_tower(tk.Tower, vocabs, features=["user_id"], output_dim=4)  # a plain embedding
    check_tower(tk.Tower, output_dim=8, l2=0.01, max_length=1, hidden_dims=[4])
    check_tower(tk.towers.CrossTower, vocabs, output_dim=4, num_cross_layers=1,
                projection_dim=2, hidden_dims=[6], dropout=0.5, normalize=True,
                inputs={"user_id": ["c", "a"], "n": [2.5, 0.0]})


def test_a_registered_tower_without_vocabularies_conforms():
    with isolated_registries():

        @tk.towers.register_tower("length", package="kit_tests")
        class LengthTower(tk.Tower):
            requires_vocabularies = False

            def encode(self, features):
                return tf.cast(tf.strings.length(features["raw"]), tf.float32)[:, None]

            def input_signature(self):
                return {"raw": tf.TensorSpec([None], tf.string, name="raw")}

        check_tower(LengthTower, features=["raw"], output_dim=3)


VECTOR_DIM = 6


class _TextVectorTower(tk.Tower):
    """Item ids (with a vocabulary) beside a precomputed text embedding (without one)."""

    requires_vocabularies = False

    def encode(self, features):
        parts = [self.encoders[name](features[name]) for name in self.features
                 if name in self.encoders]
        return tf.concat([*parts, tf.cast(features["text_vector"], tf.float32)], axis=1)

    def input_signature(self):
        specs = super().input_signature()  # the features with vocabularies
        specs["text_vector"] = tf.TensorSpec([None, VECTOR_DIM], tf.float32, name="text_vector")
        return specs


def _vector_log(seed=0):
    """Users who each read one of two topics; an item's vector says its topic."""
    rng = np.random.default_rng(seed)
    topic = np.arange(20) % 2
    vectors = rng.normal(size=(20, VECTOR_DIM)).astype(np.float32) * 0.1
    vectors[:, 0] += np.where(topic == 1, 1.0, -1.0)
    items = pd.DataFrame({"item_id": np.arange(20), "text_vector": list(vectors)})
    users = rng.integers(0, 30, 600)
    picks = 2 * rng.integers(0, 10, 600) + users % 2  # user u reads topic u % 2
    log = pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": picks})
    return log.merge(items, on="item_id"), items


@pytest.mark.parametrize("side", ["candidate", "query"])
def test_a_vector_tower_that_passes_check_tower_trains_and_serves(side, tmp_path):
    """What check_tower certifies must also work in fit, IndexBuilder, recommend and load."""
    with isolated_registries():
        tk.towers.register_tower("text_vector", package="kit_tests")(_TextVectorTower)
        ids = tk.VocabularyBuilder().fit({"item_id": [1, 2, 3]})
        check_tower(_TextVectorTower, ids, features=["item_id", "text_vector"], output_dim=4)

        log, items = _vector_log()  # on the query side, a row's vector is the user's context
        vocabs = tk.VocabularyBuilder().fit(log, features={"user_id": "categorical",
                                                           "item_id": "categorical"})
        vector_tower = _TextVectorTower(
            vocabs, features=["item_id" if side == "candidate" else "user_id", "text_vector"],
            output_dim=4)
        plain = tk.Tower(vocabs, features=["user_id" if side == "candidate" else "item_id"],
                         output_dim=4)
        query, candidate = (plain, vector_tower) if side == "candidate" else (vector_tower,
                                                                              plain)
        model = tk.TwoTowerRetrieval(query, candidate)
        model.fit(log, epochs=2, batch_size=128, seed=0, verbose=0)  # a column of arrays

        catalogue = items if side == "candidate" else items[["item_id"]]
        index = tk.IndexBuilder(k_max=5).build(model, catalogue)
        queries = log.drop_duplicates("user_id").head(4).reset_index(drop=True)
        query_columns = {name: queries[name] for name in query.features}
        # The known answer: the full dot-product ranking of the towers' own embeddings.
        scores = (model.query_embeddings(query_columns, verbose=False)
                  @ model.candidate_embeddings(catalogue, verbose=False).T)
        expected = catalogue["item_id"].to_numpy()[np.argsort(-scores, axis=1)[:, :3]]
        np.testing.assert_array_equal(index.recommend(query_columns, k=3).ids, expected)
        index.save(tmp_path / "index")
        reloaded = tk.load_index(tmp_path / "index")
        np.testing.assert_array_equal(reloaded.recommend(query_columns, k=3).ids, expected)


# --- broken towers fail with a message naming the check -----------------------------------


def _registered(cls: type) -> type:
    return tk.towers.register_tower(cls.__name__.lower(), package="kit_tests")(cls)


class _Scaled(tk.Tower):
    """Forgets its `scale` in get_config."""

    def __init__(self, vocabularies=None, *, scale=1.0, **kwargs):
        super().__init__(vocabularies, **kwargs)
        self.scale = scale

    def call(self, features, training=None):
        return super().call(features, training=training) * self.scale


class _StoresAMethod(tk.Tower):
    def get_config(self):
        return {**super().get_config(), "activation": self.encode}


class _Noisy(tk.Tower):
    def encode(self, features):
        x = super().encode(features)
        return x + tf.random.normal(tf.shape(x))


class _RawAge(tk.Tower):
    """Passes the raw number through: NaN stays NaN."""

    def encode(self, features):
        return tf.concat([super().encode(features), features["age"][:, None]], axis=1)


class _NoSignature(tk.Tower):
    requires_vocabularies = False

    def encode(self, features):
        return tf.cast(tf.strings.length(features["raw"]), tf.float32)[:, None]


class _DenseListsOnly(tk.Tower):
    """Reads its lists as padded dense tensors only: serving works, fit's ragged batches fail."""

    def encode(self, features):
        padded = tf.convert_to_tensor(features["genres"])
        count = tf.reduce_sum(tf.cast(padded != "", tf.float32), axis=1, keepdims=True)
        return tf.concat([super().encode(features), count], axis=1)


class _Truncated(tk.Tower):
    def call(self, features, training=None):
        return super().call(features, training=training)[:, :1]


class _Float64(tk.Tower):
    def call(self, features, training=None):
        return tf.cast(super().call(features, training=training), tf.float64)


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (_Scaled, {"scale": 3.0}, r"'config round trip' check: the rebuilt tower, given the "
     r"original's weights, gives other outputs\. Store every constructor argument"),
    (_StoresAMethod, {}, r"'config round trip' check: get_config\(\) must hold only JSON values "
     r"\(store settings, not methods"),
    (_Noisy, {}, r"'determinism' check: the same input gave different outputs"),
    (_RawAge, {}, r"'out-of-vocabulary' check: unseen values, empty lists and NaN .* must give "
     r"a finite"),
    (_NoSignature, {"features": ["raw"]}, r"'input_signature' check: it has no spec for the "
     r"features \['raw'\] .* overrides input_signature\(\): specs = super\(\)"),
    (_DenseListsOnly, {}, r"'output' check: calling the tower on a batch as fit feeds it .* "
     r"raised"),
    (_Truncated, {}, r"'output' check: the output shape must be \[batch, output_dim\] = \[3, 8\]\. "
     r"It is \[3, 1\]"),
    (_Float64, {}, r"'output' check: the output dtype must be float32\. It is float64"),
    (tk.Tower, {"trainable": False}, r"'trainable' check: no gradient reaches any trainable "
     r"weight"),
    (tk.Tower, {"output_dim": 0}, r"'construct' check: .* raised ValueError: `output_dim` must "
     r"be an integer >= 1"),
])
def test_broken_towers_fail_the_check_they_break(cls, kwargs, message):
    with isolated_registries():
        if cls is not tk.Tower:
            _registered(cls)
        with pytest.raises(ConformanceError, match=message):
            check_tower(cls, **{"output_dim": 8, **kwargs})


def test_an_unregistered_tower_is_told_to_register():
    class Unregistered(tk.Tower):
        pass

    with pytest.raises(ConformanceError, match=r"'Keras serialisation' check: Unregistered is not "
                       r"registered .* @tfrs_kit\.towers\.register_tower\('a_name'\)"):
        check_tower(Unregistered, output_dim=8)


def test_check_tower_wants_a_tower_class():
    tower = tk.Tower(default_vocabularies(), features=["user_id"])
    with pytest.raises(TypeError, match="Pass the class, not an instance"):
        check_tower(tower)
    with pytest.raises(ValueError, match=r"`inputs` must hold every feature .* "
                       r"It lacks \['item_id', .*'timestamp'\]"):
        check_tower(tk.Tower, inputs={"user_id": ["u1"]})


def test_conformance_errors_are_assertion_errors():
    assert issubclass(ConformanceError, AssertionError)


# --- data sources ---------------------------------------------------------------------------


def _data(**changes) -> InteractionDataset:
    fields = dict(
        interactions=pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "ts": [1, 2]}),
        items=pd.DataFrame({"item": ["x", "y"]}),
        users=pd.DataFrame({"user": ["a", "b"]}),
        user_id="user", item_id="item", timestamp="ts", name="tiny",
    )
    fields.update(changes)
    return InteractionDataset(**fields)


def test_a_valid_dataset_and_loader_pass():
    check_dataset(_data())
    check_dataset(lambda n=2: _data(), n=2)


@pytest.mark.parametrize(("changes", "message"), [
    ({"items": pd.DataFrame({"item": ["x", "y", "x"]})},
     r"'ids' check: `items` must have one row per id; 1 ids repeat, such as 'x'"),
    ({"users": pd.DataFrame({"user": ["a", "b", "b"]})}, r"`users` must have one row per id"),
    ({"items": pd.DataFrame({"item": ["x"]})},
     r"every interaction's 'item' must be in `items`; 1 are not, such as 'y'"),
    ({"users": pd.DataFrame({"user": ["a"]})}, r"every interaction's 'user' must be in `users`"),
    ({"interactions": pd.DataFrame({"user": ["a", None], "item": ["x", "y"], "ts": [1, 2]})},
     r"`interactions\['user'\]` must hold no missing ids; 1 are missing, the first at row 1"),
    ({"interactions": pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "ts": [1.5, 2.0]})},
     r"'roles' check: the timestamp column 'ts' must hold integer seconds"),
    ({"items": pd.DataFrame({"item": [1, 2]})},
     r"`items\['item'\]` holds integer ids but `interactions\['item'\]` string ids"),
    ({"items": pd.DataFrame({"item": [1.0, 2.0]})}, r"must hold string or integer ids"),
    ({"item_features": ("genre",), "items": pd.DataFrame({"item": ["x", "y"],
                                                          "genre": ["g", "h"]})},
     r"'roles' check: `interactions` must have the columns \['genre'\]"),
    ({"interactions": pd.DataFrame({"user": [], "item": [], "ts": []})},
     r"`interactions` must not be empty"),
    ({"name": ""}, r"`name` must be a non-empty string"),
])
def test_broken_datasets_fail_the_check_they_break(changes, message):
    with pytest.raises(ConformanceError, match=message):
        check_dataset(_data(**changes))


def test_broken_loaders_fail_clearly():
    with pytest.raises(ConformanceError, match=r"'load' check: it must return an "
                       r"InteractionDataset, not DataFrame"):
        check_dataset(lambda: pd.DataFrame())
    with pytest.raises(ConformanceError, match=r"'load' check: calling it with \{'n': 1\} raised "
                       r"TypeError"):
        check_dataset(lambda: _data(), n=1)
    with pytest.raises(ValueError, match="`kwargs` must be empty when `obj` is an "
                       "InteractionDataset"):
        check_dataset(_data(), n=1)
    with pytest.raises(TypeError, match="`obj` must be an InteractionDataset"):
        check_dataset(np.zeros(3))
