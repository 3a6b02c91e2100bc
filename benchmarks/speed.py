"""Speed: tfrs_kit against the TensorFlow Recommenders quickstart, stage by stage.

Both sides do the same job on MovieLens 100K (the P1 training split): build the user and
movie vocabularies, train 64-d id embeddings with in-batch softmax (Adagrad 0.5, batch
4096, 3 epochs), build a brute-force index over all movies and ask it for one user's top 3.
The reference is the TFRS quickstart as published (``StringLookup.adapt`` over a
``tf.data`` pipeline, a ``FactorizedTopK`` metric inside ``fit``, ``BruteForce`` index);
the kit uses ``VocabularyBuilder``, ``TwoTowerRetrieval`` and ``IndexBuilder``. Each side
runs in a fresh process, timed per stage; afterwards (untimed) both are scored on P1
recall@10 so that speed is not bought with quality.

The quickstart rows are what a quickstart user runs, but they are not like for like: the
``FactorizedTopK`` metric scores the whole catalogue at every training step, and ``adapt``
streams each id through ``tf.data``, while the kit computes no metric in ``fit`` and counts
ids with NumPy. So the reference process also times, after the quickstart, the fastest way
TF itself allows: vocabularies from ``StringLookup(vocabulary=np.unique(...))`` and the same
model trained without the metric (rows ``vocabulary (fast)`` and ``training (no metric)``).

    python benchmarks/speed.py --data-dir ../shared/data/ml-100k [--repeats 2]

The last line reads ``SPEED end_to_end=...x vocab=...x train=...x index=...x
train_like_for_like=...x vocab_like_for_like=...x`` (reference time / kit time; the best of
``--repeats`` fresh runs of each side; the like-for-like ratios divide the fast reference
rows by the kit's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("import", "data", "vocabulary", "training", "index", "query")
LIKE_FOR_LIKE = {"vocabulary_fast": "vocabulary", "training_no_metric": "training"}


def _load(data_dir: Path):
    import pandas as pd

    import tfrs_kit as tk

    ratings = pd.read_csv(data_dir / "u.data", sep="\t",
                          names=["user_id", "movie_id", "rating", "timestamp"])
    train, test = tk.evaluation.per_user_temporal_split(ratings, item_id="movie_id")
    for frame in (train, test):
        frame["user_id"] = frame["user_id"].astype(str)
        frame["movie_id"] = frame["movie_id"].astype(str)
    movies = pd.read_csv(data_dir / "u.item", sep="|", header=None, encoding="latin-1")[0]
    return train, test, movies.astype(str).to_numpy()


def reference(data_dir: Path) -> dict:
    """The TFRS quickstart, on the P1 training split."""
    times = {}
    start = time.perf_counter()
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    times["import"] = time.perf_counter() - start

    start = time.perf_counter()
    train, test, movie_ids = _load(data_dir)  # imports tfrs_kit: the split only
    ratings = tf.data.Dataset.from_tensor_slices(
        {"user_id": train["user_id"].to_numpy(), "movie_id": train["movie_id"].to_numpy()})
    movies = tf.data.Dataset.from_tensor_slices(movie_ids)
    times["data"] = time.perf_counter() - start

    start = time.perf_counter()
    tf.keras.utils.set_random_seed(42)
    user_ids_vocabulary = tf.keras.layers.StringLookup(mask_token=None)
    user_ids_vocabulary.adapt(ratings.map(lambda x: x["user_id"]))
    movie_ids_vocabulary = tf.keras.layers.StringLookup(mask_token=None)
    movie_ids_vocabulary.adapt(movies)
    times["vocabulary"] = time.perf_counter() - start

    start = time.perf_counter()
    MovieLensModel = _quickstart_model(tfrs)
    user_model = tf.keras.Sequential([
        user_ids_vocabulary,
        tf.keras.layers.Embedding(user_ids_vocabulary.vocabulary_size(), 64)])
    movie_model = tf.keras.Sequential([
        movie_ids_vocabulary,
        tf.keras.layers.Embedding(movie_ids_vocabulary.vocabulary_size(), 64)])
    task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(
        movies.batch(128).map(movie_model)))
    model = MovieLensModel(user_model, movie_model, task)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.5))
    model.fit(ratings.batch(4096), epochs=3, verbose=0)
    times["training"] = time.perf_counter() - start

    start = time.perf_counter()
    index = tfrs.layers.factorized_top_k.BruteForce(model.user_model)
    index.index_from_dataset(movies.batch(100).map(lambda m: (m, model.movie_model(m))))
    index(np.array(["42"]))  # the first call builds the index's graph
    times["index"] = time.perf_counter() - start

    start = time.perf_counter()
    _, ids = index(np.array(["42"]))
    top3 = [i.decode() for i in ids[0, :3].numpy()]
    times["query"] = time.perf_counter() - start

    times.update(_reference_like_for_like(tfrs, train, movie_ids))

    class Scorer:
        item_ids = movie_ids
        embeddings = movie_model(movie_ids).numpy()

        def score(self, users):
            return user_model(np.asarray(users).astype(str)).numpy() @ self.embeddings.T

    return {"times": times, "top3": top3, "recall@10": _recall(Scorer(), train, test)}


def _quickstart_model(tfrs):
    """The quickstart's model class, word for word."""

    class MovieLensModel(tfrs.Model):
        def __init__(self, user_model, movie_model, task):
            super().__init__()
            self.user_model, self.movie_model, self.task = user_model, movie_model, task

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]),
                             self.movie_model(features["movie_id"]))

    return MovieLensModel


def _reference_like_for_like(tfrs, train, movie_ids) -> dict:
    """The quickstart's vocabularies and training the fastest way TF allows, timed."""
    import numpy as np
    import tensorflow as tf

    times = {}
    start = time.perf_counter()
    tf.keras.utils.set_random_seed(42)
    user_ids_vocabulary = tf.keras.layers.StringLookup(
        mask_token=None, vocabulary=np.unique(train["user_id"].to_numpy()))
    movie_ids_vocabulary = tf.keras.layers.StringLookup(
        mask_token=None, vocabulary=np.unique(movie_ids))
    times["vocabulary_fast"] = time.perf_counter() - start

    start = time.perf_counter()
    MovieLensModel = _quickstart_model(tfrs)
    ratings = tf.data.Dataset.from_tensor_slices(
        {"user_id": train["user_id"].to_numpy(), "movie_id": train["movie_id"].to_numpy()})
    model = MovieLensModel(
        tf.keras.Sequential([user_ids_vocabulary, tf.keras.layers.Embedding(
            user_ids_vocabulary.vocabulary_size(), 64)]),
        tf.keras.Sequential([movie_ids_vocabulary, tf.keras.layers.Embedding(
            movie_ids_vocabulary.vocabulary_size(), 64)]),
        tfrs.tasks.Retrieval())  # no FactorizedTopK: the kit computes no metric in fit either
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.5))
    model.fit(ratings.batch(4096), epochs=3, verbose=0)
    times["training_no_metric"] = time.perf_counter() - start
    return times


def kit(data_dir: Path) -> dict:
    """The same job with tfrs_kit."""
    times = {}
    start = time.perf_counter()
    import tfrs_kit as tk

    times["import"] = time.perf_counter() - start

    start = time.perf_counter()
    train, test, movie_ids = _load(data_dir)
    times["data"] = time.perf_counter() - start

    start = time.perf_counter()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(42)
    vocabularies = tk.VocabularyBuilder().fit(train, features=["user_id", "movie_id"])
    times["vocabulary"] = time.perf_counter() - start

    start = time.perf_counter()
    model = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=["user_id"], output_dim=64),
                                 tk.Tower(vocabularies, features=["movie_id"], output_dim=64))
    model.fit(train, epochs=3, batch_size=4096, learning_rate=0.5, seed=42, verbose=0)
    times["training"] = time.perf_counter() - start

    start = time.perf_counter()
    index = tk.IndexBuilder(k_max=100).build(model, {"movie_id": movie_ids})
    index.recommend({"user_id": ["42"]}, k=3)  # the first call builds the graph
    times["index"] = time.perf_counter() - start

    start = time.perf_counter()
    top3 = index.recommend({"user_id": ["42"]}, k=3).ids[0].tolist()
    times["query"] = time.perf_counter() - start

    recommender = model.as_recommender(train, items={"movie_id": movie_ids})
    return {"times": times, "top3": top3, "recall@10": _recall(recommender, train, test)}


def _recall(recommender, train, test) -> float:
    import tfrs_kit as tk

    report = tk.evaluate(recommender, test, train=train, k=10, item_id="movie_id",
                         metrics=["recall"])
    return next(iter(report.to_dict().values()))["recall@10"]


def _run_side(side: str, data_dir: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, __file__, "--side", side, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k", type=Path)
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh runs per side; the best time per stage is kept")
    parser.add_argument("--side", choices=["reference", "kit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        result = (reference if args.side == "reference" else kit)(args.data_dir)
        print(json.dumps(result))
        return

    runs = {side: [] for side in ("reference", "kit")}
    for _ in range(args.repeats):
        for side in runs:  # interleaved, so load changes hit both sides alike
            runs[side].append(_run_side(side, args.data_dir))
    best = {side: {stage: min(r["times"][stage] for r in results) for stage in results[0]["times"]}
            for side, results in runs.items()}
    for side in best:
        best[side]["end_to_end"] = sum(best[side][stage] for stage in STAGES)
    for fast, stage in LIKE_FOR_LIKE.items():
        best["kit"][fast] = best["kit"][stage]  # the kit's only way is already the fast one

    print(f"{'stage':20s}{'reference s':>14s}{'tfrs_kit s':>12s}{'ratio':>9s}")
    for stage in (*STAGES, "end_to_end", *LIKE_FOR_LIKE):
        ref, ours = best["reference"][stage], best["kit"][stage]
        print(f"{stage:20s}{ref:14.2f}{ours:12.2f}{ref / ours:8.1f}x")
    for side, results in runs.items():
        print(f"{side:10s} P1 recall@10={results[0]['recall@10']:.4f} "
              f"top-3 for user 42: {results[0]['top3']}")
    ratio = {k: best["reference"][k] / best["kit"][k]
             for k in ("end_to_end", "vocabulary", "training", "index", *LIKE_FOR_LIKE)}
    print(f"SPEED end_to_end={ratio['end_to_end']:.1f}x vocab={ratio['vocabulary']:.1f}x "
          f"train={ratio['training']:.1f}x index={ratio['index']:.1f}x "
          f"train_like_for_like={ratio['training_no_metric']:.1f}x "
          f"vocab_like_for_like={ratio['vocabulary_fast']:.1f}x")


if __name__ == "__main__":
    main()
