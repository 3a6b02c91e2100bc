"""What the Recipe chooses among, measured alone: history encoders and item content.

Fixed settings (no search), so each knob is seen by itself, on the P1 protocol (per-user
temporal split, each user's latest ceil(20%) are test, training items masked):

* history: none vs the mean-pooled bag vs the order-aware ``SequenceEncoder``, on
  MovieLens 100K (``--data-dir``) and the ``drift`` and ``short`` logs of
  ``benchmarks/suite_logs.py``;
* content, on the ``content`` log (category and brand decide who buys): ids only;
  features concatenated and projected (``Tower(combine="concat")``); added to the id
  (``combine="sum"``) with 20% id dropout; the same with the features *shuffled* across
  items (no signal: must not cost much); and a cold-item split (the test items never
  appear in training), where content-only candidate embeddings must beat popularity.

    python benchmarks/ablations.py --data-dir ../shared/data/ml-100k [--seeds 0 1 2]

Lines ``ABLATION <study> dataset=<name> <variant>_ndcg@10=... ...``, means over seeds.
Test users absent from the training split (``short`` has some) are left out: a
two-tower model built by hand scores the users it has query features for.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import tensorflow as tf
from quality_suite import movielens
from suite_logs import LOGS

import tfrs_kit as tk


def two_tower(train, items, *, history="mean", features=(), combine="sum", id_dropout=0.0,
              epochs=5, seed=0):
    """A recommender of fixed settings trained on ``train`` (item features from ``items``)."""
    tf.keras.utils.set_random_seed(seed)
    builder = tk.HistoryBuilder(max_length=50)
    rows = builder.transform(train) if history != "none" else dict(train)
    lookup = items.set_index("item_id")
    for name in features:
        rows[name] = lookup[name].reindex(np.asarray(rows["item_id"])).to_numpy()
    kinds = {"user_id": "categorical", "item_id": "categorical",
             **({"history": "multi"} if history != "none" else {}),
             **{name: "categorical" for name in features}}
    vocabs = tk.VocabularyBuilder().fit(rows, features=kinds, verbose=False)
    query = ["user_id"] + (["history"] if history != "none" else [])
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=query,
                 sequence_features=["history"] if history == "sequence" else []),
        tk.Tower(vocabs, features=["item_id", *features], combine=combine,
                 feature_dropout={"item_id": id_dropout} if id_dropout else None))
    model.fit(rows, epochs=epochs, seed=seed, verbose=0)
    users = builder.for_users(train) if history != "none" else {
        "user_id": pd.unique(train["user_id"])}
    return model.as_recommender(train, users=users, items=items[["item_id", *features]])


def scores(recommender, train, test):
    # A two-tower recommender scores the users it has query features for: those in train.
    test = test[test["user_id"].isin(train["user_id"])]
    report = tk.evaluate(recommender, test, train=train, k=10, metrics=["recall", "ndcg"],
                         verbose=False)
    return dict(report[report.models[0]])


def mean_line(study, dataset, runs):
    means = {f"{v}_{k}": np.mean([r[v][k] for r in runs]) for v in runs[0] for k in
             ("ndcg@10", "recall@10")}
    print(f"ABLATION {study} dataset={dataset} "
          + " ".join(f"{k}={v:.4f}" for k, v in means.items()), flush=True)


def history_study(logs, seeds):
    for name, make in logs.items():
        runs = []
        for seed in seeds:
            log = make(seed)
            train, test = tk.evaluation.per_user_temporal_split(log.interactions)
            runs.append({h: scores(two_tower(train, log.items, history=h, seed=seed),
                                   train, test) for h in ("none", "mean", "sequence")})
        mean_line("history", name, runs)


def content_study(seeds):
    runs, cold = [], []
    for seed in seeds:
        log = LOGS["content"](seed=seed)
        items = log.items[["item_id", "category", "brand"]]
        shuffled = items.assign(**{c: np.random.default_rng(seed).permutation(items[c].to_numpy())
                                   for c in ("category", "brand")})
        train, test = tk.evaluation.per_user_temporal_split(log.interactions)
        features = ("category", "brand")
        runs.append({
            "ids": scores(two_tower(train, items, seed=seed), train, test),
            "concat": scores(two_tower(train, items, features=features, combine="concat",
                                       seed=seed), train, test),
            "sum": scores(two_tower(train, items, features=features, id_dropout=0.2,
                                    seed=seed), train, test),
            "noise": scores(two_tower(train, shuffled, features=features, id_dropout=0.2,
                                      seed=seed), train, test),
        })
        warm, cold_test = tk.evaluation.cold_start_item_split(log.interactions, seed=seed)
        cold.append({
            "content": scores(two_tower(warm, items, features=features, id_dropout=0.2,
                                        seed=seed), warm, cold_test),
            "popularity": scores(tk.baselines.Popularity().fit(warm), warm, cold_test),
        })
    mean_line("content", "content", runs)
    mean_line("cold_items", "content", cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="*", default=["ml100k_p1", "drift", "short"],
                        help="the logs of the history study")
    parser.add_argument("--no-content", action="store_true", help="skip the content study")
    args = parser.parse_args()
    logs = {n: (lambda seed, g=LOGS[n]: g(seed=seed)) for n in ("drift", "short")}
    if Path(args.data_dir).exists():
        ml = movielens(args.data_dir)
        logs = {"ml100k_p1": lambda seed: ml, **logs}
    history_study({n: logs[n] for n in args.datasets if n in logs}, args.seeds)
    if not args.no_content:
        content_study(args.seeds)


if __name__ == "__main__":
    main()
