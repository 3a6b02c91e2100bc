"""Feature-rich towers: history, genres, title text and numbers on both sides.

    python examples/feature_towers.py

Compares an id-only two-tower model (matrix factorisation) with towers that also
read each user's history, age and segment, and each item's genres, title words
and release year, on the built-in synthetic data (whose features carry signal).
"""

import argparse

import pandas as pd

import tfrs_kit as tk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--size", type=int, default=20_000, help="number of events")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

data = tk.datasets.synthetic(args.size, seed=0)
train, test = tk.evaluation.per_user_temporal_split(data.interactions)
history = tk.HistoryBuilder(max_length=50)
rows = history.transform(train)

# One vocabulary per feature; its kind picks the tower's encoder:
#   categorical -> an embedding    multi -> mean of embeddings (genres, history)
#   text -> mean of word (and bigram) embeddings
#   numeric -> standardised value + embedding of its quantile bucket
vocabs = tk.VocabularyBuilder(ngrams=2, num_buckets=10).fit(rows, features={
    "user_id": "categorical", "history": "multi", "user_age": "numeric",
    "user_segment": "categorical",
    "item_id": "categorical", "item_genres": "multi", "item_title": "text",
    "item_year": "numeric",
})
print(vocabs["item_title"].tokens[:8], "...")

QUERY = ["user_id", "history", "user_age", "user_segment"]
CANDIDATE = ["item_id", "item_genres", "item_title", "item_year"]


def two_tower(query: list[str], candidate: list[str], **options):
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=query, **options),
                                 tk.Tower(vocabs, features=candidate, **options),
                                 logq_correction=True)
    model.fit(rows, epochs=args.epochs, seed=0, verbose=0)
    return model


id_only = two_tower(["user_id"], ["item_id"])
rich = two_tower(QUERY, CANDIDATE, output_dim=64, embedding_dim=32,
                 hidden_dims=(128,))

# Each user's query features: the latest history joined with the user's columns.
users = pd.DataFrame(history.for_users(train)).merge(data.users, on="user_id")
report = tk.evaluate(
    {"id-only (MF)": id_only.as_recommender(train),
     "features": rich.as_recommender(train, users=users, items=data.items)},
    test, train=train, k=(10, 100), metrics=["recall", "ndcg", "coverage"])
print(report)
