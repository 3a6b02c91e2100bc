"""Brute force against ScaNN, measured in the same run: build time, queries per second, recall.

Two catalogues:

1. MovieLens 100K: an id-only two-tower model (matrix factorisation) trained for a few
   epochs through the public API; both indexes built with ``tk.IndexBuilder`` and queried
   with ``Index.recommend`` (raw user ids in, so the query tower is included).
2. A synthetic catalogue of 1,000,000 clustered 64-d embeddings (a few thousand Gaussian
   clusters; queries drawn near random clusters), searched through the same backend
   searchers the index serves with (``tfrs_kit.index._backends``), embeddings in, top-k out.

QPS "batched" sends queries in batches of ``--batch`` (brute force also caps a batch so its
score matrix stays near 256 MB); "single" sends one query per call. ScaNN's recall@k is the
share of brute force's exact top k it returns. The speed-up is ScaNN's batched QPS over brute
force's batched QPS on the synthetic catalogue.

    python benchmarks/index.py --data-dir ../shared/data/ml-100k
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf  # tf.keras loads lazily: tfrs_kit still selects Keras 2

import tfrs_kit as tk  # selects Keras 2 before tf.keras is first used
from tfrs_kit.index import _backends


def recall(got: np.ndarray, expected: np.ndarray) -> float:
    """The mean share of each row of ``expected`` found in the same row of ``got``."""
    shares = [len(set(g) & set(e)) / len(e) for g, e in zip(got, expected, strict=True)]
    return float(np.mean(shares))


def timed(function, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def movielens(data_dir: Path, epochs: int, seed: int) -> None:
    ratings = pd.read_csv(data_dir / "u.data", sep="\t",
                          names=["user_id", "item_id", "rating", "timestamp"])
    log = {"user_id": ratings["user_id"].to_numpy(), "item_id": ratings["item_id"].to_numpy()}
    tf.keras.utils.set_random_seed(seed)
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=64),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=64))
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    _, seconds = timed(model.fit, log, epochs=epochs, batch_size=4096, seed=seed, verbose=0)
    items = {"item_id": np.unique(log["item_id"])}
    users = {"user_id": np.unique(log["user_id"])}
    print(f"movielens-100k: {len(users['user_id'])} users, {len(items['item_id'])} items, "
          f"trained {epochs} epochs in {seconds:.1f}s")
    results = {}
    for backend in ("brute_force", "scann"):
        index, build = timed(tk.IndexBuilder(backend=backend, k_max=100).build, model, items)
        index.recommend({"user_id": users["user_id"][:2]}, k=100)  # trace once
        top, seconds = timed(index.recommend, users, k=100)
        single_users = users["user_id"][:200]
        start = time.perf_counter()
        for user in single_users:
            index.recommend({"user_id": [user]}, k=10)
        single = len(single_users) / (time.perf_counter() - start)
        results[backend] = top.ids
        print(f"movielens-100k {backend:<11} build={build:6.2f}s "
              f"qps_batched={len(users['user_id']) / seconds:9.0f} qps_single={single:7.0f}")
    exact, approx = results["brute_force"], results["scann"]
    print(f"movielens-100k scann recall@10={recall(approx[:, :10], exact[:, :10]):.4f} "
          f"recall@100={recall(approx, exact):.4f}")


def clustered(items: int, queries: int, dim: int, clusters: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    embeddings = np.empty((items, dim), dtype=np.float32)
    for start in range(0, items, 100_000):  # in slices, to keep the temporaries small
        stop = min(start + 100_000, items)
        members = rng.integers(0, clusters, stop - start)
        embeddings[start:stop] = centers[members] + 0.3 * rng.normal(size=(stop - start, dim))
    near = rng.integers(0, clusters, queries)
    query = (centers[near] + 0.3 * rng.normal(size=(queries, dim))).astype(np.float32)
    return embeddings, query


def _search_all(searcher: _backends.Searcher, queries: tf.Tensor,
                k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The searcher's top k, nothing excluded."""
    return searcher.search(queries, k, tf.zeros([tf.shape(queries)[0], 0], tf.int64))


def synthetic(args: argparse.Namespace) -> None:
    embeddings, queries = clustered(args.items, args.queries, args.dim, args.clusters, args.seed)
    print(f"synthetic: {args.items} items x {args.dim} dims in {args.clusters} clusters, "
          f"{args.queries} queries")
    variable = tf.Variable(embeddings, trainable=False)
    k = 100
    results, qps = {}, {}
    for name in ("brute_force", "scann"):
        backend = _backends.get_backend(name, None, args.items)
        params = backend.resolve(args.items, args.dim, k)
        searcher, build = timed(backend.make_searcher, variable, params)
        search = tf.function(
            functools.partial(_search_all, searcher), autograph=False,
            input_signature=[tf.TensorSpec([None, args.dim], tf.float32),
                             tf.TensorSpec([], tf.int32)])
        _, first = timed(search, queries[:1], tf.constant(k))  # trace; ScaNN loads its state
        batch = min(args.batch, backend.max_batch(params, args.items) or args.batch)
        start = time.perf_counter()
        parts = [search(queries[i:i + batch], tf.constant(k))[1].numpy()
                 for i in range(0, len(queries), batch)]
        batched = len(queries) / (time.perf_counter() - start)
        singles = queries[: args.single_queries]
        start = time.perf_counter()
        for row in range(len(singles)):
            search(singles[row:row + 1], tf.constant(10))
        single = len(singles) / (time.perf_counter() - start)
        results[name], qps[name] = np.concatenate(parts), batched
        shown = {key: params[key] for key in ("num_leaves", "num_leaves_to_search",
                                              "num_reordering_candidates") if key in params}
        print(f"synthetic {name:<11} build={build:6.2f}s first_call={first:5.2f}s "
              f"qps_batched={batched:9.0f} (batch {batch}) qps_single={single:7.0f} {shown}")
    exact, approx = results["brute_force"], results["scann"]
    at10, at100 = recall(approx[:, :10], exact[:, :10]), recall(approx, exact)
    speedup = qps["scann"] / qps["brute_force"]
    print(f"synthetic scann recall@10={at10:.4f} recall@100={at100:.4f} "
          f"speedup(batched qps)={speedup:.1f}x")
    print(f"INDEX items={args.items} scann_recall@100={at100:.4f} speedup={speedup:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--single-queries", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-movielens", action="store_true")
    args = parser.parse_args()
    _backends.import_scann()  # fail early with the install hint
    if not args.skip_movielens:
        movielens(args.data_dir, args.epochs, args.seed)
    synthetic(args)


if __name__ == "__main__":
    print = functools.partial(print, flush=True)  # progress shows when piped
    main()
