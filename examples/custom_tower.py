"""A custom tower: subclass ``tk.Tower``, override ``encode``, register it by name.

    python examples/custom_tower.py [--epochs 5]

This tower adds its features' embeddings instead of concatenating them (the
additive model of factorisation machines). The built-in encoders, dense layers,
projection, normalisation, saving and serving all still apply. A tower that
reads features without vocabularies also sets ``requires_vocabularies = False``
and overrides ``input_signature`` (see ``examples/vector_tower.py``).
"""

import argparse
import tempfile

import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.testing import check_tower


@tk.towers.register_tower("sum", package="examples")
class SumTower(tk.Tower):
    """Sums the embeddings of its features: one ``embedding_dim`` vector per row."""

    def encode(self, features):
        parts = [self.encoders[name](features[name]) for name in self.features]
        return tf.add_n(parts)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

# The conformance checks the built-in towers pass: config, SavedModel, OOV input ...
check_tower(SumTower, output_dim=8)
print("registered towers:", tk.towers.available_towers())

data = tk.datasets.synthetic(10_000, seed=0)
train, test = tk.evaluation.per_user_temporal_split(data.interactions)
history = tk.HistoryBuilder()
rows = history.transform(train)
vocabs = tk.VocabularyBuilder().fit(rows, features={
    "user_id": "categorical", "history": "multi",
    "item_id": "categorical", "item_genres": "multi", "item_year": "numeric"})

query = SumTower(vocabs, features=["user_id", "history"], output_dim=32)
candidate = SumTower(vocabs, features=["item_id", "item_genres", "item_year"],
                     output_dim=32)
model = tk.TwoTowerRetrieval(query, candidate, logq_correction=True)
model.fit(rows, epochs=args.epochs, seed=0, verbose=0)

recommender = model.as_recommender(train, users=history.for_users(train),
                                   items=data.items)
print(tk.evaluate({"sum towers": recommender}, test, train=train, k=10,
                  metrics=["recall", "ndcg"]))

# Found by name, and rebuilt from its config like the built-in tower ...
clone = tk.towers.get_tower("sum").from_config(query.get_config())
print(type(clone).__name__, clone.features, clone.output_dim)

# ... and serves from a saved index.
with tempfile.TemporaryDirectory() as directory:
    index = tk.IndexBuilder(k_max=10).build(model, data.items)
    index.save(f"{directory}/index")
    users = history.for_users(train)
    print(tk.load_index(f"{directory}/index").recommend(
        {name: column[:1] for name, column in users.items()}, k=3).ids)
