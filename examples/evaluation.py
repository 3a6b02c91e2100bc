"""Evaluation and baselines: one split, every model, one report.

    python examples/evaluation.py
    python examples/evaluation.py --data-dir path/to/ml-100k   # P1 on MovieLens

Ranks the whole catalogue for every test user (each user's training items
excluded) and compares the two-tower model with popularity, item- and user-based
nearest neighbours and EASE on the same split.
"""

import argparse

import tfrs_kit as tk
from tfrs_kit import baselines, evaluation

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", help="a GroupLens ml-100k folder")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

data = (tk.datasets.movielens("100k", data_dir=args.data_dir) if args.data_dir
        else tk.datasets.synthetic(20_000, seed=0))
USER, ITEM = data.user_id, data.item_id
log = data.interactions

# Splits: pick the one that matches how the model will be used.
train, test = evaluation.per_user_temporal_split(log, test_fraction=0.2,
                                                 user_id=USER, item_id=ITEM)
# evaluation.leave_last_one_out(log, ...)      each user's last event is the test
# evaluation.temporal_split(log, ...)          one global cut-off time
# evaluation.random_split(log, ...)            the TFRS tutorials' split
# evaluation.cold_start_user_split(log, ...)   users never seen (or ..._item_split)
print(f"train {len(train):,} / test {len(test):,} interactions")

# The two-tower model: user id + history -> item id.
history = tk.HistoryBuilder(user_id=USER, item_id=ITEM)
rows = history.transform(train)
vocabs = tk.VocabularyBuilder().fit(
    rows, features={USER: "categorical", ITEM: "categorical", "history": "multi"})
model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=[USER, "history"]),
                             tk.Tower(vocabs, features=[ITEM]),
                             logq_correction=True)
model.fit(rows, epochs=args.epochs, seed=0, verbose=0)

# Baselines share one interface: fit(train, user_id=, item_id=), score(user_ids).
fit = {"user_id": USER, "item_id": ITEM}
models = {
    "two-tower": model.as_recommender(train, user_id=USER,
                                      users=history.for_users(train)),
    "popularity": baselines.Popularity().fit(train, **fit),
    "item-knn": baselines.ItemKNN(neighbors=100).fit(train, **fit),
    "user-knn": baselines.UserKNN(neighbors=50).fit(train, **fit),
    "ease": baselines.EASE(l2=300.0).fit(train, **fit),
}
genres = next(c for c in data.item_features if "genres" in c)
report = tk.evaluate(models, test, train=train, k=(10, 100),
                     user_id=USER, item_id=ITEM,
                     metrics=["recall", "ndcg", "coverage", "novelty", "ild"],
                     item_features=data.items, diversity_feature=genres)
print(report)                          # a text table: metrics x models
print(report.to_markdown(precision=3))  # for a README or a pull request
best = max(report.models, key=lambda name: report[name]["ndcg@10"])
print(f"best by ndcg@10: {best} ({report[best]['ndcg@10']:.3f})")

# The metric functions also work on their own, on ranked lists of ids.
print(evaluation.recall_at_k([["a", "b", "c"]], [["c", "d"]], k=3))
