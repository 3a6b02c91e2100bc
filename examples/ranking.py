"""Retrieve, then rank: a ranker trained on the retriever's own lists, evaluated and served.

    python examples/ranking.py [--epochs 5] [--size 5000]

The retriever finds a few dozen candidates fast; the ranker, which reads more
features, re-orders those few. `tk.Cascade.fit` trains it in one call on the
lists a retriever (that never saw those rows) hands it, as a correction to
retrieval's order. Both stages are evaluated together and exported as one
SavedModel.
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
parser.add_argument("--size", type=int, default=5_000, help="number of events")
args = parser.parse_args()
tf.keras.utils.set_random_seed(0)

data = tk.datasets.synthetic(args.size, seed=0)
train, test = tk.evaluation.per_user_temporal_split(data.interactions, test_fraction=0.2)
history = tk.HistoryBuilder(item_id="item_id", max_length=20)  # each user's latest items
vocabs = tk.VocabularyBuilder().fit(history.transform(train),
                                    features=["user_id", "history", "item_id"])


# Stage 1: a two-tower retriever on the user, their history and the item id, trained on
# all of train: the one the cascade serves with.
retriever = tk.TwoTowerRetrieval(
    tk.Tower(vocabs, features=["user_id", "history"], output_dim=32),
    tk.Tower(vocabs, features=["item_id"], output_dim=32))
retriever.fit(history.transform(train), epochs=args.epochs, batch_size=256, seed=0, verbose=0)

# Stage 2 in one call. Inside: a helper retriever of the same settings learns from all
# but each user's latest 20% of train; the ranker learns to re-order the helper's top
# 50 for those latest rows (hard negatives: what it will be asked to sort), reading the
# users' and items' features, the items' popularity, the retrieval score and the
# similarity to the user's last 1, 5, 20 items; the blend z + w * ranker is chosen by
# ndcg@10 on held-out users (w = 0: retrieval alone).
cascade = tk.Cascade.fit(retriever, train, items=data.items, users=data.users,
                         history=history, retrieve_k=50, epochs=args.epochs)
print("validation ndcg@10 by (retrieval, ranker) weight:",
      {blend: round(ndcg, 4) for blend, ndcg in cascade.ranker.blend_ndcg_.items()})

# tk.evaluate scores the cascade like any recommender: retrieve 50 (train items
# excluded), re-rank them. cascade.users_ holds each user's latest query row.
users, items = cascade.users_, cascade.items_
report = tk.evaluate(
    {"retrieval": retriever.as_recommender(train, users=users, items=items),
     "cascade": cascade.as_recommender(train, users=users, items=items)},
    test, train=train, k=10, metrics=["recall", "ndcg"])
print(report)

# One artifact: retrieve 50, re-rank, return the top 10, exclusions applied; it
# records retrieve_k.
index = tk.IndexBuilder(k_max=10).build(cascade, data.items)
print(index, "retrieve_k:", index.retrieve_k)
user = users.iloc[:1]
seen = [list(train.loc[train["user_id"] == user["user_id"].iloc[0], "item_id"])]
top = index.recommend(user, k=5, exclude=seen, explain=True)
print("top 5:", top.ids[0].tolist())
why = top.explanations[0][0]  # the history items most like the first, and the blend
print(f"{top.ids[0, 0]} because of {why.history.tolist()}; shares {why.shares}")

with tempfile.TemporaryDirectory() as scratch:
    export = Path(scratch) / "cascade"
    index.save(export)
    # The serving process needs TensorFlow only; the request carries both stages'
    # query features (here user_id, history, user_age and user_segment).
    server = textwrap.dedent(f"""
        import tensorflow as tf
        served = tf.saved_model.load({str(export / "saved_model")!r})
        out = served.signatures["serving_default"](
            user_id=tf.constant([{user["user_id"].iloc[0]!r}]),
            history=tf.constant([{list(user["history"].iloc[0])!r}]),
            user_age=tf.constant([{int(user["user_age"].iloc[0])}], tf.int64),
            user_segment=tf.constant([{user["user_segment"].iloc[0]!r}]))
        print("cascade served by TensorFlow alone:", out["ids"][0, :5].numpy().astype(str).tolist())
    """)
    subprocess.run([sys.executable, "-c", server], check=True)
