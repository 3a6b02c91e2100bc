"""Protocol P1 (docs/benchmarks.md) for every baseline and for the TFRS quickstart recipe.

MovieLens 100K, per-user temporal holdout (last ceil(20%) of each user's ratings are test),
full ranking of the catalogue with each user's training items excluded.

    python benchmarks/baselines.py --data-dir ../shared/data/ml-100k [--speed] [--plot out.png]

Hyperparameters of every baseline are chosen by ``tfrs_kit.baselines.tune`` on a
validation split carved out of the training data the same way (the last 20% of each
user's training ratings), by ndcg@10, over ``default_grid`` (extended where the best value
is on an edge); the test set is never used for tuning. ImplicitALS and BPR need the
``implicit`` extra and are left out without it. ``--speed`` also times ``evaluate`` on a
synthetic 100,000 users x 50,000 items problem.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd

import tfrs_kit  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfrs_kit.baselines import (
    BPR,
    EASE,
    ImplicitALS,
    ItemKNN,
    Popularity,
    RP3beta,
    UserKNN,
    tune,
)
from tfrs_kit.evaluation import Report, evaluate, per_user_temporal_split

BASELINES = [ItemKNN, UserKNN, EASE, RP3beta, ImplicitALS, BPR]
NEEDS_IMPLICIT = (ImplicitALS, BPR)
P1_KEYS = ("recall@10", "ndcg@10", "recall@100", "ndcg@100", "coverage@10", "ild@10")


def load_movielens(data_dir: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """u.data as a DataFrame, and u.item's genre flags as one multi-valued column."""
    ratings = pd.read_csv(data_dir / "u.data", sep="\t",
                          names=["user_id", "item_id", "rating", "timestamp"])
    items = pd.read_csv(data_dir / "u.item", sep="|", header=None, encoding="latin-1")
    flags = items.iloc[:, -19:].to_numpy()
    genres = np.empty(len(items), dtype=object)
    genres[:] = [np.flatnonzero(row) for row in flags]
    return ratings, {"item_id": items[0].to_numpy(), "genres": genres}


class QuickstartTFRS:
    """The TFRS basic-retrieval tutorial with id-only towers, as a Recommender.

    StringLookup vocabularies, 64-d embeddings for users and movies, ``tfrs.tasks.Retrieval``
    (no metric while training), Adagrad(0.5), batch 4096, 3 epochs. The catalogue is
    every movie in u.item, as in the tutorial.
    """

    def __init__(self, movie_ids: np.ndarray, *, dim: int = 64, epochs: int = 3,
                 batch_size: int = 4096, learning_rate: float = 0.5, seed: int = 42) -> None:
        self.item_ids = np.asarray(movie_ids)
        self.dim, self.epochs, self.batch_size = dim, epochs, batch_size
        self.learning_rate, self.seed = learning_rate, seed

    def fit(self, train: pd.DataFrame) -> QuickstartTFRS:
        import tensorflow as tf
        import tensorflow_recommenders as tfrs

        tf.keras.utils.set_random_seed(self.seed)
        users = train["user_id"].astype(str).to_numpy()
        movies = train["item_id"].astype(str).to_numpy()
        user_lookup = tf.keras.layers.StringLookup()
        user_lookup.adapt(np.unique(users))
        movie_lookup = tf.keras.layers.StringLookup()
        movie_lookup.adapt(self.item_ids.astype(str))
        user_model = tf.keras.Sequential([
            tf.keras.Input(shape=(), dtype=tf.string), user_lookup,
            tf.keras.layers.Embedding(user_lookup.vocabulary_size(), self.dim)])
        movie_model = tf.keras.Sequential([
            tf.keras.Input(shape=(), dtype=tf.string), movie_lookup,
            tf.keras.layers.Embedding(movie_lookup.vocabulary_size(), self.dim)])

        class Retrieval(tfrs.Model):
            def __init__(self) -> None:
                super().__init__()
                self.user_model, self.movie_model = user_model, movie_model
                self.task = tfrs.tasks.Retrieval()

            def compute_loss(self, features, training=False):
                return self.task(self.user_model(features["user_id"]),
                                 self.movie_model(features["movie_id"]))

        model = Retrieval()
        model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=self.learning_rate))
        dataset = (tf.data.Dataset.from_tensor_slices({"user_id": users, "movie_id": movies})
                   .shuffle(len(users), seed=self.seed, reshuffle_each_iteration=True)
                   .batch(self.batch_size).cache())
        model.fit(dataset, epochs=self.epochs, verbose=0)
        self._user_model = user_model
        self._item_embeddings = movie_model(self.item_ids.astype(str)).numpy()
        return self

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        queries = self._user_model(np.asarray(user_ids).astype(str)).numpy()
        return queries @ self._item_embeddings.T


def speed_check(n_users: int, n_items: int, dim: int = 64) -> None:
    """Times evaluate() on a synthetic dot-product model: n_users x n_items, 10 train and
    2 test interactions per user with Zipf-like item popularity."""
    rng = np.random.default_rng(0)

    class DotProduct:
        item_ids = np.arange(n_items)
        users = rng.standard_normal((n_users, dim), dtype=np.float32)
        items = rng.standard_normal((n_items, dim), dtype=np.float32)

        def score(self, user_ids):
            return self.users[user_ids] @ self.items.T

    popular = (rng.zipf(1.2, size=n_users * 12) - 1) % n_items
    train = {"user_id": np.repeat(np.arange(n_users), 10), "item_id": popular[: n_users * 10]}
    test = {"user_id": np.repeat(np.arange(n_users), 2), "item_id": popular[n_users * 10:]}
    start = time.perf_counter()
    evaluate(DotProduct(), test, train=train, k=(10, 100))
    seconds = time.perf_counter() - start
    print(f"SPEED evaluate users={n_users} items={n_items} train={n_users * 10} "
          f"test={n_users * 2} k=(10,100) scoring=64-d dot product seconds={seconds:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--no-tune", action="store_true", help="use default hyperparameters")
    parser.add_argument("--speed", action="store_true", help="also time 100k users x 50k items")
    parser.add_argument("--speed-users", type=int, default=100_000)
    parser.add_argument("--speed-items", type=int, default=50_000)
    parser.add_argument("--plot", type=Path, help="save metric-vs-K curves (needs matplotlib)")
    args = parser.parse_args()

    ratings, genres = load_movielens(args.data_dir)
    train, test = per_user_temporal_split(ratings, test_fraction=0.2)
    print(f"P1 split: {len(train)} train / {len(test)} test ratings, "
          f"{test['user_id'].nunique()} test users, {ratings['item_id'].nunique()} items")

    candidates: dict[str, object] = {"Popularity": Popularity()}
    for cls in BASELINES:
        name = cls.__name__
        if cls in NEEDS_IMPLICIT and importlib.util.find_spec("implicit") is None:
            print(f"skipped {name}: needs `pip install \"tfrs-kit[implicit]\"`")
            continue
        if args.no_tune:
            candidates[name] = cls()
            continue
        start = time.perf_counter()
        _, result = tune(cls, train, metric="ndcg@10", validation_fraction=0.2)
        candidates[name] = cls(**result.best_params)
        edge = f", best still on the grid's edge for {result.at_edge}" if result.at_edge else ""
        print(f"tuned {candidates[name]!r}: validation ndcg@10={result.best_score:.4f} "
              f"over {len(result.scores)} points ({time.perf_counter() - start:.1f}s){edge}")
    candidates["TFRS-quickstart"] = QuickstartTFRS(genres["item_id"])

    rows: dict[str, dict[str, float]] = {}
    for name, model in candidates.items():
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        report = evaluate({name: model}, test, train=train, k=(10, 100),
                          item_features=genres, diversity_feature="genres")
        eval_s = time.perf_counter() - start
        rows[name] = {**report[name], "fit_s": fit_s, "eval_s": eval_s}
    report = Report(rows)
    print()
    print(report)
    print()
    for name, values in rows.items():
        metrics = " ".join(f"{key}={values[key]:.4f}" for key in P1_KEYS)
        print(f"P1 {name} {metrics} fit_s={values['fit_s']:.2f}")
    if args.plot:
        print(f"plot: {report.plot(args.plot, metrics=['recall', 'ndcg', 'coverage'])}")
    if args.speed:
        speed_check(args.speed_users, args.speed_items)


if __name__ == "__main__":
    main()
