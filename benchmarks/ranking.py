"""Retrieve, then rank: retrieval alone against the cascade (retrieve N, re-rank).

MovieLens 100K on protocol P1 (per-user temporal holdout, 20% of each user's latest ratings)
and on P1 with a 10% holdout; full catalogue, train items excluded; mean of ``--seeds`` seeds.

* retrieval  the default recipe of benchmarks/quality.py (user id + last 50 items)
* cascade    its top ``--retrieve-k`` re-ranked by a ``tk.Ranker`` that also reads the
             user features (gender, age bucket, occupation), the movie's genres and title
             and the retriever's score, trained on the retriever's own top candidates as
             hard negatives (by default on each user's latest 20% of train, scored by a
             retriever trained on the other 80%: ``--stack-fraction``)
* baselines  those of benchmarks/quality.py; the best by ndcg@10 is shown

Single-query serving latency of both artifacts (brute force, k=10), median over
``--queries`` users, is measured in the same run: the artifact's ``recommend`` function
called with one user's ready tensors (the latency ratio), and ``Index.recommend`` with the
Python conversion of the row (printed per seed).

    python benchmarks/ranking.py --data-dir ../shared/data/ml-100k [--quick]

The last line (P1, mean over seeds) is ``RANKING retrieval_ndcg@10=... cascade_ndcg@10=...
lift=<cascade/retrieval>x latency_ratio=<cascade/retrieval>x``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import tensorflow as tf
from quality import ABLATIONS, BASELINES, DEFAULT, ITEM, KINDS, USER_FEATURES, train_two_tower

import tfrs_kit as tk
from tfrs_kit.index._inputs import query_tensor

RANKER_QUERY = ["user_id", "history", *USER_FEATURES]
RANKER_CANDIDATE = [ITEM, "movie_genres", "movie_title"]
KEYS = ("recall@10", "ndcg@10", "ndcg@100")


def late_rows(train, fraction):
    """Each user's latest ``ceil(fraction * n)`` training rows (a mask over ``train``'s rows)."""
    order = train.assign(number=train[ITEM].astype(int)).sort_values(
        ["user_id", "timestamp", "number"], kind="stable")
    from_end = order.groupby("user_id").cumcount(ascending=False)
    size = order.groupby("user_id")["user_id"].transform("size")
    return (from_end < np.ceil(fraction * size)).reindex(train.index).to_numpy()


def train_ranker(data, train, retriever, args, seed):
    """The ranker, trained on a retriever's top ``retrieve_k`` as hard negatives.

    With ``--stack-fraction`` the ranker learns from each user's latest training rows,
    scored by a helper retriever trained on the earlier ones only (a retriever scores its
    own training rows higher than it will score future positives); the cascade then
    serves with ``retriever``, trained on all.
    """
    tf.keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    train = train.reset_index(drop=True)
    rows = tk.HistoryBuilder(item_id=ITEM, max_length=50).transform(train)
    vocabularies = tk.VocabularyBuilder(ngrams=1).fit(
        rows, features={name: KINDS[name] for name in {*RANKER_QUERY, *RANKER_CANDIDATE}})
    seen = None
    if args.stack_fraction:
        late = late_rows(train, args.stack_fraction)
        retriever, _, _ = train_two_tower(data, train[~late], epochs=args.epochs, seed=seed,
                                          **ABLATIONS[DEFAULT])
        rows = {name: column[late] for name, column in rows.items()}
        seen = train.loc[~late, ["user_id", ITEM]]
    ranker = tk.Ranker(
        tk.Tower(vocabularies, features=RANKER_QUERY, output_dim=args.dim),
        tk.Tower(vocabularies, features=RANKER_CANDIDATE, output_dim=args.dim),
        loss=args.loss, cross_layers=args.cross_layers, hidden_dims=(64, 32),
        retrieval_score=args.retrieval_score)
    ranker.fit(rows, retriever=retriever, candidates=data.items, negatives=args.negatives,
               hard_fraction=args.hard_fraction, retrieve_k=args.retrieve_k, seen=seen,
               epochs=args.ranker_epochs, batch_size=256, learning_rate=args.learning_rate,
               seed=seed, verbose=0)
    return ranker, time.perf_counter() - start


def single_query_ms(index, users, queries):
    """Median ms of one user's top 10: (``Index.recommend``, its SavedModel function alone).

    The first includes the Python conversion of the query row; the second calls the
    ``recommend`` function the artifact serves with ready tensors, as a server would.
    """
    rows = users[list(index.query_features)].iloc[:queries]
    k = tf.constant(10, tf.int32)
    empty = tf.zeros([1, 0], dtype=index._id_dtype)
    inputs = [{name: query_tensor(name, rows[name].to_numpy()[i:i + 1], index._query_specs[name],
                                  kind=index._kind(name)) for name in rows}
              for i in range(len(rows))]
    index.recommend(rows.iloc[:1], k=10)  # traces the serving function
    api, function = [], []
    for i in range(len(rows)):
        start = time.perf_counter()
        index.recommend(rows.iloc[i:i + 1], k=10)
        api.append(time.perf_counter() - start)
        start = time.perf_counter()
        index._functions.recommend(inputs[i], k, empty)["ids"].numpy()
        function.append(time.perf_counter() - start)
    return 1000 * float(np.median(api)), 1000 * float(np.median(function))


def run_split(data, train, test, args, seed):
    """ndcg/recall of retrieval, the cascade and the baselines; latency of both artifacts."""
    retriever, users, fit_s = train_two_tower(data, train, epochs=args.epochs, seed=seed,
                                              **ABLATIONS[DEFAULT])
    ranker, rank_s = train_ranker(data, train, retriever, args, seed)
    models = {name: make().fit(train, item_id=ITEM) for name, make in BASELINES.items()}
    models["retrieval"] = retriever.as_recommender(train, users=users, items=data.items)
    models["cascade"] = ranker.cascade(retriever, retrieve_k=args.retrieve_k).as_recommender(
        train, item_id=ITEM, users=users, items=data.items)
    report = tk.evaluate(models, test, train=train, k=(10, 100), item_id=ITEM,
                         metrics=["recall", "ndcg"]).to_dict()
    builder = tk.IndexBuilder(k_max=10, backend="brute_force")
    # Index.recommend takes int64 for the vocabularies' int64 tokens, not bool or whole
    # floats, which fit converts (left to the index's owners; noted in the report).
    users = users.assign(user_gender=users["user_gender"].astype("int64"),
                         bucketized_user_age=users["bucketized_user_age"].astype("int64"))
    indexes = {"retrieval": builder.build(retriever, data.items),
               "cascade": builder.build(retriever, data.items, ranker=ranker,
                                        retrieve_k=args.retrieve_k)}
    timings = {name: single_query_ms(index, users, args.queries)
               for name, index in indexes.items()}
    latency = {name: function for name, (_, function) in timings.items()}
    print(f"  seed {seed}: fit retrieval {fit_s:.0f}s, ranker {rank_s:.0f}s; "
          f"ndcg@10 retrieval {report['retrieval']['ndcg@10']:.4f} "
          f"cascade {report['cascade']['ndcg@10']:.4f}; single-query ms (SavedModel function, "
          f"Index.recommend): retrieval {timings['retrieval'][1]:.2f}, "
          f"{timings['retrieval'][0]:.2f}; cascade {timings['cascade'][1]:.2f}, "
          f"{timings['cascade'][0]:.2f}", flush=True)
    return report, latency


def summarise(title, runs):
    """Prints the mean table of one split; returns (mean scores, mean latencies)."""
    scores = pd.DataFrame({name: pd.DataFrame([r[0][name] for r in runs]).mean()
                           for name in runs[0][0]}).T
    latency = pd.DataFrame([r[1] for r in runs]).mean()
    best = max(BASELINES, key=lambda name: scores.loc[name, "ndcg@10"])
    print(f"\n{title} (mean of {len(runs)} seeds)")
    print(f"{'model':16s}" + "".join(f"{key:>12s}" for key in KEYS) + f"{'latency_ms':>12s}")
    for name in ("retrieval", "cascade", best):
        shown = f"{latency[name]:12.2f}" if name in latency else f"{'':>12s}"
        print(f"{name:16s}" + "".join(f"{scores.loc[name, key]:12.4f}" for key in KEYS) + shown)
    lift = scores.loc["cascade", "ndcg@10"] / scores.loc["retrieval", "ndcg@10"]
    print(f"  cascade/retrieval ndcg@10 {lift:.3f}x, latency "
          f"{latency['cascade'] / latency['retrieval']:.2f}x; best baseline {best}")
    return scores, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="retriever epochs")
    parser.add_argument("--ranker-epochs", type=int, default=3)
    parser.add_argument("--retrieve-k", type=int, default=100)
    parser.add_argument("--negatives", type=int, default=8)
    parser.add_argument("--hard-fraction", type=float, default=0.5)
    parser.add_argument("--loss", default="listwise", choices=["pointwise", "listwise"])
    parser.add_argument("--cross-layers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.005)
    parser.add_argument("--retrieval-score", action=argparse.BooleanOptionalAction,
                        default=True, help="the ranker also reads the retriever's score")
    parser.add_argument("--stack-fraction", type=float, default=0.2,
                        help="the ranker learns from each user's latest share of train, "
                        "scored by a retriever trained on the rest (0: all of train, scored "
                        "by the served retriever)")
    parser.add_argument("--queries", type=int, default=200, help="single queries timed")
    parser.add_argument("--quick", action="store_true", help="one seed, P1 only")
    args = parser.parse_args()
    data = tk.datasets.movielens("100k", data_dir=args.data_dir)
    log = data.interactions.assign(movie_number=data.interactions[ITEM].astype(int))

    def split(**kwargs):
        train, test = tk.evaluation.per_user_temporal_split(log, item_id="movie_number", **kwargs)
        return train.drop(columns="movie_number"), test.drop(columns="movie_number")

    splits = [("P1: per-user temporal holdout 20%", 0.2)]
    if not args.quick:
        splits.append(("P1 with a 10% holdout", 0.1))
    seeds = range(1 if args.quick else args.seeds)
    results = []
    for title, fraction in splits:
        print(f"{title}", flush=True)
        train, test = split(test_fraction=fraction)
        results.append(summarise(title, [run_split(data, train, test, args, s) for s in seeds]))
    scores, latency = results[0]
    retrieval, cascade = scores.loc["retrieval", "ndcg@10"], scores.loc["cascade", "ndcg@10"]
    print(f"\nRANKING retrieval_ndcg@10={retrieval:.4f} cascade_ndcg@10={cascade:.4f} "
          f"lift={cascade / retrieval:.3f}x "
          f"latency_ratio={latency['cascade'] / latency['retrieval']:.2f}x")


if __name__ == "__main__":
    main()
