"""Quality: the tfrs_kit two-tower recipe against the classical baselines (protocol P1).

MovieLens 100K, per-user temporal holdout (docs/benchmarks.md, P1): the last ceil(20%) of each
user's ratings are test; every model ranks the whole catalogue with the user's training
items excluded. One table holds the baselines, the default recipe and its ablations:

* ids only        user id / movie id towers, no logQ (matrix factorisation, TFRS-style)
* + logQ          the same with logQ correction (the library default)
* + history       the query tower also reads the user's last 50 items before each event
                  (the default recipe)
* + content       the candidate tower also reads genres and title words
* + user features the query tower also reads gender, age bucket and occupation

The default recipe is then rerun on P1 with a 10% holdout and on leave-last-one-out (each
against the best baseline of that split), and on P0 (random 80/20 split with seed 42,
top-100 categorical accuracy, seen items not excluded) against the TFRS quickstart recipe.

    python benchmarks/quality.py --data-dir ../shared/data/ml-100k [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.baselines import EASE, ItemKNN, Popularity, UserKNN

ITEM = "movie_id"
KINDS = {"user_id": "categorical", ITEM: "categorical", "history": "multi",
         "movie_genres": "multi", "movie_title": "text", "user_gender": "categorical",
         "bucketized_user_age": "categorical", "user_occupation_text": "categorical"}
USER_FEATURES = ["user_gender", "bucketized_user_age", "user_occupation_text"]
ABLATIONS = {
    "ids only": dict(query=["user_id"], candidate=[ITEM], logq=False),
    "+ logQ": dict(query=["user_id"], candidate=[ITEM]),
    "+ history (default)": dict(query=["user_id", "history"], candidate=[ITEM]),
    "+ content": dict(query=["user_id", "history"],
                      candidate=[ITEM, "movie_genres", "movie_title"]),
    "+ user features": dict(query=["user_id", "history", *USER_FEATURES],
                            candidate=[ITEM, "movie_genres", "movie_title"]),
}
DEFAULT = "+ history (default)"
BASELINES = {  # hyperparameters chosen on a validation split by benchmarks/baselines.py
    "Popularity": lambda: Popularity(),
    "ItemKNN": lambda: ItemKNN(neighbors=200),
    "UserKNN": lambda: UserKNN(neighbors=20, shrinkage=10.0),
    "EASE": lambda: EASE(l2=500.0),
}
P1_KEYS = ("recall@10", "ndcg@10", "recall@100", "ndcg@100", "coverage@10", "ild@10")


def train_two_tower(data, train, *, query, candidate, logq=True, epochs=5, seed=0,
                    learning_rate=0.05, batch_size=1024):
    """Trains the recipe on ``train``; returns (model, users table for scoring, fit seconds)."""
    tf.keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    history = tk.HistoryBuilder(item_id=ITEM, max_length=50)
    rows = history.transform(train)
    vocabularies = tk.VocabularyBuilder(ngrams=1).fit(
        rows, features={name: KINDS[name] for name in {*query, *candidate}})
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabularies, features=query, output_dim=64),
        tk.Tower(vocabularies, features=candidate, output_dim=64),
        logq_correction=logq,
    )
    model.fit(rows, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
              seed=seed, verbose=0)
    fit_s = time.perf_counter() - start
    users = pd.DataFrame(history.for_users(train)).merge(data.users, on="user_id", how="left")
    return model, users, fit_s


def p1_table(data, train, test, *, epochs, ablations):
    item_features = data.items[[ITEM, "movie_genres"]]
    rows, fit_times = {}, {}
    for name, make in BASELINES.items():
        start = time.perf_counter()
        rows[name] = make().fit(train, item_id=ITEM)
        fit_times[name] = time.perf_counter() - start
    for name in ablations:
        model, users, fit_times[name] = train_two_tower(data, train, epochs=epochs,
                                                        **ABLATIONS[name])
        rows[name] = model.as_recommender(train, users=users, items=data.items)
    report = tk.evaluate(rows, test, train=train, k=(10, 100), item_id=ITEM,
                         item_features=item_features, diversity_feature="movie_genres",
                         metrics=["recall", "ndcg", "coverage", "ild"])
    return report.to_dict(), fit_times


def best_baseline(results):
    return max(BASELINES, key=lambda name: results[name]["recall@10"])


def print_p1(title, results, fit_times):
    print(f"\n{title}")
    header = f"{'model':22s}" + "".join(f"{key:>13s}" for key in P1_KEYS) + f"{'fit_s':>9s}"
    print(header)
    for name, scores in results.items():
        print(f"{name:22s}" + "".join(f"{scores[key]:13.4f}" for key in P1_KEYS)
              + f"{fit_times[name]:9.2f}")


def p0(data, *, epochs):
    """TFRS tutorial protocol: top-100 categorical accuracy, nothing excluded."""
    log = data.interactions.sample(frac=1.0, random_state=42).reset_index(drop=True)
    train, test = log.iloc[:80_000], log.iloc[80_000:]
    out = {}
    tf.keras.utils.set_random_seed(42)
    vocabularies = tk.VocabularyBuilder().fit(train, features=["user_id", ITEM])
    quickstart = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=["user_id"]),
                                      tk.Tower(vocabularies, features=[ITEM]),
                                      logq_correction=False)
    quickstart.fit(train, epochs=3, batch_size=4096, learning_rate=0.5, seed=42, verbose=0)
    models = {"TFRS quickstart": quickstart.as_recommender(train, items=data.items)}
    model, users, _ = train_two_tower(data, train, epochs=epochs, **ABLATIONS[DEFAULT])
    models["tfrs_kit default"] = model.as_recommender(train, users=users, items=data.items)
    report = tk.evaluate(models, test, train=train, k=100, item_id=ITEM,
                         metrics=["top_k_accuracy"]).to_dict()
    for name, scores in report.items():
        out[name] = scores["top_k_accuracy@100"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="only the baselines and the default recipe on P1")
    args = parser.parse_args()
    data = tk.datasets.movielens("100k", data_dir=args.data_dir)
    # P1 breaks timestamp ties by item id as a number (movie ids are strings here).
    log = data.interactions.assign(movie_number=data.interactions[ITEM].astype(int))

    def split(**kwargs):
        train, test = tk.evaluation.per_user_temporal_split(log, item_id="movie_number", **kwargs)
        return train.drop(columns="movie_number"), test.drop(columns="movie_number")

    train, test = split(test_fraction=0.2)
    ablations = [DEFAULT] if args.quick else list(ABLATIONS)
    results, fit_times = p1_table(data, train, test, epochs=args.epochs, ablations=ablations)
    print_p1("P1: per-user temporal holdout 20%, full catalogue, train items excluded",
             results, fit_times)
    kit = results[DEFAULT]
    best = best_baseline(results)

    if not args.quick:
        for title, kwargs in (
            ("P1 with a 10% holdout", dict(test_fraction=0.1)),
            ("P1 with leave-last-one-out", dict(last_n=1)),
        ):
            tr, te = split(**kwargs)
            other, other_fit = p1_table(data, tr, te, epochs=args.epochs, ablations=[DEFAULT])
            print_p1(title, other, other_fit)
            ob = best_baseline(other)
            print(f"  default recipe vs best baseline ({ob}): recall@10 "
                  f"{other[DEFAULT]['recall@10']:.4f} vs {other[ob]['recall@10']:.4f}, ndcg@10 "
                  f"{other[DEFAULT]['ndcg@10']:.4f} vs {other[ob]['ndcg@10']:.4f}")
        accuracy = p0(data, epochs=args.epochs)
        print("\nP0: random 80/20 split (seed 42), top-100 categorical accuracy")
        for name, value in accuracy.items():
            print(f"  {name:20s} {value:.4f}")

    print(f"\nQUALITY kit recall@10={kit['recall@10']:.4f} ndcg@10={kit['ndcg@10']:.4f} "
          f"coverage@10={kit['coverage@10']:.4f} best_baseline={best} "
          f"recall@10={results[best]['recall@10']:.4f} ndcg@10={results[best]['ndcg@10']:.4f}")


if __name__ == "__main__":
    main()
