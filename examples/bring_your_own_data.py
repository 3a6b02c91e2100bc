"""Bring your own data: a pandas log whose columns have other names.

    python examples/bring_your_own_data.py                      # a made-up shop log
    python examples/bring_your_own_data.py --csv purchases.csv \
        --user customer --item product --time bought_at \
        --item-features category price                         # your own CSV

tfrs_kit never needs a special format: any DataFrame, dict of arrays or
``tf.data.Dataset`` works, and every step takes the column names as arguments.
"""

import argparse

import numpy as np
import pandas as pd

import tfrs_kit as tk


def shop_log() -> pd.DataFrame:
    """A made-up purchase log: integer customers, product codes, datetimes."""
    events = tk.datasets.synthetic(10_000, seed=0).interactions
    return pd.DataFrame({
        "customer": events["user_id"].str[1:].astype(int),        # 17, not "u17"
        "product": "SKU-" + events["item_id"].str[1:],
        "bought_at": pd.to_datetime(events["timestamp"], unit="s"),
        "category": events["item_genres"].map(lambda genres: genres[0]),
        "price": (5 + events["item_year"] % 50).astype(np.float32),
    })


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--csv", help="a CSV file with one row per interaction")
parser.add_argument("--user", default="customer", help="the user id column")
parser.add_argument("--item", default="product", help="the item id column")
parser.add_argument("--time", default="bought_at", help="the time column")
parser.add_argument("--item-features", nargs="*", default=None,
                    help="columns that describe the item (default: category and price "
                    "for the made-up log, none for a CSV)")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()
USER, ITEM, TIME = args.user, args.item, args.time

log = pd.read_csv(args.csv, parse_dates=[TIME]) if args.csv else shop_log()
print(f"{len(log):,} events, {log[USER].nunique():,} users, "
      f"{log[ITEM].nunique():,} items")

# Every step takes the column names: the split, the history and the towers.
train, test = tk.evaluation.per_user_temporal_split(log, user_id=USER, item_id=ITEM,
                                                    timestamp=TIME)
history = tk.HistoryBuilder(user_id=USER, item_id=ITEM, timestamp=TIME)
rows = history.transform(train)

# Item features are named, never guessed: a column such as a rating or a quantity
# describes the interaction, not the item, and must stay out of the item tower. Each
# feature's kind is inferred: lists are "multi", floats "numeric", anything else
# "categorical".
if args.item_features is not None:
    item_features = args.item_features
else:
    item_features = [] if args.csv else ["category", "price"]
vocabs = tk.VocabularyBuilder().fit(
    rows, features=[USER, ITEM, "history", *item_features])

model = tk.TwoTowerRetrieval(
    tk.Tower(vocabs, features=[USER, "history"]),
    tk.Tower(vocabs, features=[ITEM, *item_features]),
    item_id=ITEM, logq_correction=True)
model.fit(rows, epochs=args.epochs, seed=0, verbose=0)
print("candidate features:", list(model.candidate_tower.features))

users = history.for_users(train)
report = tk.evaluate(
    {"two-tower": model.as_recommender(train, user_id=USER, users=users),
     "popularity": tk.baselines.Popularity().fit(train, user_id=USER,
                                                 item_id=ITEM)},
    test, train=train, k=10, user_id=USER, item_id=ITEM, metrics=["recall", "ndcg"])
print(report)

# The catalogue: one row per item with its latest features.
catalogue = train.drop_duplicates(ITEM, keep="last")[[ITEM, *item_features]]
index = tk.IndexBuilder(k_max=10).build(model, catalogue)
print(index)
first = {name: column[:1] for name, column in users.items()}
top = index.recommend(first, k=5)
print(f"top 5 for {USER}={first[USER][0]}:", top.ids[0].tolist())
