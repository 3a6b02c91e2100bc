"""Retrieve, then rank: a ranker trained on the retriever's candidates, evaluated and served.

    python examples/ranking.py [--epochs 5]

The retriever finds a few hundred candidates fast; the ranker, which reads richer
features and crosses them, orders those few. Both stages are evaluated together
and exported as one SavedModel.
"""

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import tensorflow as tf

import tfrs_kit as tk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()
tf.keras.utils.set_random_seed(0)

data = tk.datasets.synthetic(5_000, seed=0)
train, test = tk.evaluation.per_user_temporal_split(data.interactions, test_fraction=0.2)
vocabs = tk.VocabularyBuilder().fit(train, features=[
    "user_id", "user_segment", "item_id", "item_genres", "item_year"])

# Stage 1: a two-tower retriever on ids (see the quickstart).
retriever = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=32),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=32))
retriever.fit(train, epochs=args.epochs, batch_size=256, seed=0, verbose=0)

# Stage 2: a ranker on more features, with DCN-v2 crosses between the two sides, that
# also reads the retriever's score of each pair. Its negatives are the retriever's own
# top 50 for each user (hard) and random items.
ranker = tk.Ranker(
    tk.Tower(vocabs, features=["user_id", "user_segment"], output_dim=16),
    tk.Tower(vocabs, features=["item_id", "item_genres", "item_year"], output_dim=16),
    loss="listwise", cross_layers=2, hidden_dims=[32], retrieval_score=True)
ranker.fit(train, retriever=retriever, candidates=data.items, negatives=8,
           hard_fraction=0.5, retrieve_k=50, epochs=args.epochs, seed=0, verbose=0)

# tk.evaluate scores the cascade like any recommender: retrieve 50, re-rank them.
cascade = ranker.cascade(retriever, retrieve_k=50)
report = tk.evaluate({"retrieval": retriever, "cascade": cascade}, test, train=train,
                     k=10, metrics=["recall", "ndcg"])
print(report)

# One artifact: retrieve 50, re-rank, return the top 10, exclusions applied.
index = tk.IndexBuilder(k_max=10).build(retriever, data.items, ranker=ranker,
                                        retrieve_k=50)
print(index)
user = data.users.iloc[:1]
seen = [list(train.loc[train["user_id"] == user["user_id"].iloc[0], "item_id"])]
print("top 5:", index.recommend(user, k=5, exclude=seen).ids[0].tolist())

with tempfile.TemporaryDirectory() as scratch:
    export = Path(scratch) / "cascade"
    index.save(export)
    # The serving process needs TensorFlow only; the request carries both stages'
    # query features (here user_id and user_segment).
    server = textwrap.dedent(f"""
        import tensorflow as tf
        served = tf.saved_model.load({str(export / "saved_model")!r})
        out = served.signatures["serving_default"](
            user_id=tf.constant([{user["user_id"].iloc[0]!r}]),
            user_segment=tf.constant([{user["user_segment"].iloc[0]!r}]))
        print("cascade served by TensorFlow alone:", out["ids"][0, :5].numpy().astype(str).tolist())
    """)
    subprocess.run([sys.executable, "-c", server], check=True)
