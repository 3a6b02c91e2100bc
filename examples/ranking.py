"""Retrieve, then rank: a ranker trained on the retriever's own lists, evaluated and served.

    python examples/ranking.py [--epochs 5]

The retriever finds a few dozen candidates fast; the ranker, which reads more
features, re-orders those few. It learns from the lists a retriever hands it,
as a correction to retrieval's order. Both stages are evaluated together and
exported as one SavedModel.
"""

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
import tensorflow as tf

import tfrs_kit as tk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()
tf.keras.utils.set_random_seed(0)

data = tk.datasets.synthetic(5_000, seed=0)
train, test = tk.evaluation.per_user_temporal_split(data.interactions, test_fraction=0.2)
history = tk.HistoryBuilder(item_id="item_id", max_length=20)  # each user's latest items
vocabs = tk.VocabularyBuilder().fit(history.transform(train), features=[
    "user_id", "history", "user_segment", "item_id", "item_genres", "item_year"])


def retriever_on(log):
    """Stage 1: a two-tower retriever on the user, their history and the item id."""
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "history"], output_dim=32),
        tk.Tower(vocabs, features=["item_id"], output_dim=32))
    model.fit(history.transform(log), epochs=args.epochs, batch_size=256, seed=0, verbose=0)
    return model


def query_rows(log):
    """One row per user: their latest history in `log` and their features."""
    return pd.DataFrame(history.for_users(log)).merge(data.users, on="user_id")


# Stage 2 learns from the lists a retriever makes: a helper retriever trained on all
# but each user's latest 20% of train; its top 50 for each user (their earlier items
# left out) are the lists, the latest 20% the positives to put first.
earlier, later = tk.evaluation.per_user_temporal_split(train, test_fraction=0.2)
helper = retriever_on(earlier)
ranker = tk.Ranker(
    tk.Tower(vocabs, features=["user_segment"], output_dim=16),
    tk.Tower(vocabs, features=["item_id", "item_genres", "item_year"], output_dim=16),
    loss="listwise", cross_layers=1, hidden_dims=[16],
    retrieval_score=True,          # a residual on retrieval's (list-standardised) score
    history_feature="history")     # and the cosine with the user's last 1, 5, 20 items
ranker.fit_lists(query_rows(earlier), later, retriever=helper, candidates=data.items,
                 seen=earlier[["user_id", "item_id"]], retrieve_k=50,
                 epochs=args.epochs, seed=0, verbose=0)
# The cascade orders by z + w * ranker, w chosen by ndcg@10 on held-out users (w = 0:
# retrieval alone).
print("validation ndcg@10 by (retrieval, ranker) weight:",
      {blend: round(ndcg, 4) for blend, ndcg in ranker.blend_ndcg_.items()})

# Serve with a retriever trained on all of train; tk.evaluate scores the cascade like
# any recommender: retrieve 50 (train items excluded), re-rank them.
retriever = retriever_on(train)
users = query_rows(train)
cascade = ranker.cascade(retriever, retrieve_k=50)
report = tk.evaluate(
    {"retrieval": retriever.as_recommender(train, users=users, items=data.items),
     "cascade": cascade.as_recommender(train, users=users, items=data.items)},
    test, train=train, k=10, metrics=["recall", "ndcg"])
print(report)

# One artifact: retrieve 50, re-rank, return the top 10, exclusions applied.
index = tk.IndexBuilder(k_max=10).build(retriever, data.items, ranker=ranker,
                                        retrieve_k=50)
print(index)
user = users.iloc[:1]
seen = [list(train.loc[train["user_id"] == user["user_id"].iloc[0], "item_id"])]
print("top 5:", index.recommend(user, k=5, exclude=seen).ids[0].tolist())

with tempfile.TemporaryDirectory() as scratch:
    export = Path(scratch) / "cascade"
    index.save(export)
    # The serving process needs TensorFlow only; the request carries both stages'
    # query features (here user_id, history and user_segment).
    server = textwrap.dedent(f"""
        import tensorflow as tf
        served = tf.saved_model.load({str(export / "saved_model")!r})
        out = served.signatures["serving_default"](
            user_id=tf.constant([{user["user_id"].iloc[0]!r}]),
            history=tf.constant([{list(user["history"].iloc[0])!r}]),
            user_segment=tf.constant([{user["user_segment"].iloc[0]!r}]))
        print("cascade served by TensorFlow alone:", out["ids"][0, :5].numpy().astype(str).tolist())
    """)
    subprocess.run([sys.executable, "-c", server], check=True)
