"""A custom tower that reads a feature without a vocabulary: a precomputed text embedding.

    python examples/vector_tower.py [--epochs 5]

Each item carries a fixed-length float vector (here made up from its title and
genres, standing in for the output of a pretrained sentence encoder). The tower
encodes the item id with its built-in encoder and projects the vector with a
learned dense layer. The vector needs no vocabulary, so the class sets
``requires_vocabularies = False`` and adds its spec to ``input_signature()``.
The vectors stay a DataFrame column of arrays: ``fit``, the index and
``recommend`` read such a column as a dense ``[batch, 32]`` tensor.
"""

import argparse
import tempfile

import numpy as np
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.testing import check_tower

VECTOR_DIM = 32


@tk.towers.register_tower("text_vector", package="examples")
class TextVectorTower(tk.Tower):
    """Built-in encoders for the features with vocabularies; a learned projection of each
    feature without one (a ``[batch, vector_dim]`` float vector)."""

    requires_vocabularies = False

    def __init__(self, vocabularies=None, *, vector_dim=VECTOR_DIM, **kwargs):
        super().__init__(vocabularies, **kwargs)
        self.vector_dim = vector_dim
        self.vector_features = [f for f in self.features if f not in self.vocabularies]
        self.projections = {f: tf.keras.layers.Dense(self.embedding_dim, name=f"{f}_projection")
                            for f in self.vector_features}

    def encode(self, features):
        parts = []
        for name in self.features:
            if name in self.encoders:  # a feature with a vocabulary: its built-in encoder
                parts.append(self.encoders[name](features[name]))
            else:  # a precomputed vector
                parts.append(self.projections[name](tf.cast(features[name], tf.float32)))
        return tf.concat(parts, axis=1)

    def input_signature(self):
        specs = super().input_signature()  # the features with vocabularies
        for name in self.vector_features:
            specs[name] = tf.TensorSpec([None, self.vector_dim], tf.float32, name=name)
        return specs

    def get_config(self):
        return {**super().get_config(), "vector_dim": self.vector_dim}


def text_vectors(items, dim=VECTOR_DIM, seed=0):
    """One vector per item: the mean of fixed random word vectors of its title and genres
    (what a pretrained sentence encoder would give, without downloading one)."""
    rng = np.random.default_rng(seed)
    words = {}
    vectors = []
    for title, genres in zip(items["item_title"], items["item_genres"], strict=True):
        tokens = [*title.lower().split(), *genres]
        for token in tokens:
            if token not in words:
                words[token] = rng.normal(size=dim)
        vectors.append(np.mean([words[t] for t in tokens], axis=0).astype(np.float32))
    return vectors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    data = tk.datasets.synthetic(10_000, seed=0)
    items = data.items.assign(text_vector=text_vectors(data.items))
    log = data.interactions.merge(items[["item_id", "text_vector"]], on="item_id")
    train, test = tk.evaluation.per_user_temporal_split(log)
    vocabs = tk.VocabularyBuilder().fit(train, features={"user_id": "categorical",
                                                         "item_id": "categorical"})

    # The conformance checks feed the tower as fit and the index do: passing them
    # means it trains and serves.
    check_tower(TextVectorTower, vocabs, features=["item_id", "text_vector"], output_dim=8)

    query = tk.Tower(vocabs, features=["user_id"], output_dim=32)
    candidate = TextVectorTower(vocabs, features=["item_id", "text_vector"], output_dim=32)
    model = tk.TwoTowerRetrieval(query, candidate)
    model.fit(train, epochs=args.epochs, seed=0, verbose=0)  # a column of arrays, as it is
    recommender = model.as_recommender(train, items=items)
    print(tk.evaluate({"id + text vector": recommender}, test, train=train, k=10,
                      metrics=["recall", "ndcg"]))

    with tempfile.TemporaryDirectory() as directory:
        index = tk.IndexBuilder(k_max=10).build(model, items)
        index.save(f"{directory}/index")
        top = tk.load_index(f"{directory}/index").recommend({"user_id": ["u0"]}, k=3)
        print("top 3 for u0 from the reloaded index:", top.ids[0].tolist())


if __name__ == "__main__":
    main()
