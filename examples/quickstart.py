"""Quickstart: a two-tower retrieval model on MovieLens 100K, evaluated and served.

The same job as TensorFlow Recommenders' basic retrieval tutorial, plus honest
evaluation and a saved index:

    python examples/quickstart.py --data-dir path/to/ml-100k   # MovieLens 100K
    python examples/quickstart.py                              # synthetic data

Without ``--data-dir`` it runs offline, in seconds, on ``tk.datasets.synthetic``.
"""

import argparse
import tempfile

import tfrs_kit as tk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", help="a GroupLens ml-100k folder or ml-100k.zip")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

# 1. Data: the interaction log, and the catalogue of items with their features.
if args.data_dir:
    data = tk.datasets.movielens("100k", data_dir=args.data_dir)
else:
    data = tk.datasets.synthetic(20_000, seed=0)
# The data set's schema names its columns ("movie_id" on MovieLens); the split's
# frames carry it, so the steps below read it from them.
train, test = tk.evaluation.per_user_temporal_split(data)
user, item = data.schema.user_id, data.schema.item_id

# 2. Features: each event's preceding items (its history), and vocabularies.
history = tk.HistoryBuilder()
rows = history.transform(train)
vocabs = tk.VocabularyBuilder().fit(
    rows, features={user: "categorical", item: "categorical", "history": "multi"})

# 3. Model: a query tower and a candidate tower, trained with in-batch softmax.
model = tk.TwoTowerRetrieval(
    tk.Tower(vocabs, features=[user, "history"]),
    tk.Tower(vocabs, features=[item]),
    logq_correction=True)
model.fit(rows, epochs=args.epochs, seed=0, verbose=0)

# 4. Evaluation: rank the whole catalogue for every test user, against popularity.
users = history.for_users(train)
popularity = tk.baselines.Popularity().fit(train)
report = tk.evaluate(
    {"two-tower": model.as_recommender(train, user_id=user, users=users),
     "popularity": popularity},
    test, train=train, k=10, metrics=["recall", "ndcg", "coverage"])
print(report)

# 5. Serving: an index of every item, queried with raw features, saved, reloaded.
index = tk.IndexBuilder(k_max=100).build(model, data.items)
first_user = {name: column[:1] for name, column in users.items()}
print("top 3:", index.recommend(first_user, k=3).ids[0])
with tempfile.TemporaryDirectory() as directory:
    index.save(f"{directory}/index")
    reloaded = tk.load_index(f"{directory}/index")
    print("reloaded:", reloaded.recommend(first_user, k=3).ids[0])
