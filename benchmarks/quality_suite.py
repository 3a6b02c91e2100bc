"""Quality on any dataset: tk.Recipe against every baseline, on logs of different shapes.

Protocol (docs/benchmarks.md, "Quality on any dataset"): per-user temporal split (each
user's latest ceil(20%) interactions are test), full-catalogue ranking with training items
masked, every model scored by the same ``tk.evaluate`` call. Settings of every model are
chosen on a validation slice carved from the training data only: the Recipe by its own search
(``time_budget`` seconds), each baseline by ``tk.baselines.tune`` on its default grid.
The Recipe is the default one (``rerank="auto"``): its ranking stage runs only where the
budget holds it (MovieLens 100K P1 at the default 45 s: skipped on 3 seeds of 3);
``benchmarks/ranking.py`` measures the stage. Numbers are means over seeds (the seed of
the synthetic data and of the models).

Datasets: MovieLens 100K under P1 (20% holdout), a 10% holdout and leave-last-one-out
(``--data-dir``), and the five synthetic shapes of ``benchmarks/suite_logs.py``.

    python benchmarks/quality_suite.py --data-dir ../shared/data/ml-100k
    python benchmarks/quality_suite.py --datasets drift short --seeds 0   # a subset
    python benchmarks/quality_suite.py --tune-once   # baselines tuned on seed 0's slice only

One line per dataset, then the summary line:

    SUITE dataset=<name> recipe_recall@10=... recipe_ndcg@10=... best_baseline=<name> ...
    SUITE wins=<datasets where the Recipe is >= the best baseline on both>/<all> p1_recall@10=...
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from suite_logs import LOGS, SuiteLog

import tfrs_kit as tk
from tfrs_kit import baselines

KEYS = ("recall@10", "ndcg@10")
BASELINES = ["Popularity", "ItemKNN", "UserKNN", "EASE", "RP3beta", "ImplicitALS", "BPR"]
# Smaller than tune's default grids, so the suite runs in an hour on 2 cores; tune still
# extends any grid whose best value lands on its edge.
GRIDS = {
    "ItemKNN": {"neighbors": [50, 100, 200], "shrinkage": [0.0, 10.0]},
    "UserKNN": {"neighbors": [20, 50, 100], "shrinkage": [0.0, 10.0]},
    "EASE": {"l2": [50.0, 200.0, 500.0, 1000.0, 2000.0]},
    "RP3beta": {"alpha": [0.5, 1.0], "beta": [0.2, 0.4, 0.6], "neighbors": [100, 200]},
    "ImplicitALS": {"factors": [64], "regularization": [0.01, 0.1, 1.0], "alpha": [1.0, 10.0]},
    "BPR": {"factors": [64], "learning_rate": [0.01, 0.05], "regularization": [0.001, 0.01]},
}
EASE_MAX_ITEMS = 12_000  # EASE inverts an items x items matrix: O(items^3)
USERKNN_MAX_USERS = 10_000  # its tuning scores every user against every user per grid point
ML_SPLITS = {  # name: split arguments of per_user_temporal_split
    "ml100k_p1": {"test_fraction": 0.2},
    "ml100k_holdout10": {"test_fraction": 0.1},
    "ml100k_last_one": {"last_n": 1},
}


def movielens(data_dir: str) -> SuiteLog:
    data = tk.datasets.movielens("100k", data_dir=data_dir)
    # Renamed columns: the frames must not carry the data set's schema (movie_id) along.
    log = data.interactions.rename(columns={"movie_id": "item_id"})
    log.attrs.clear()
    # P1 breaks timestamp ties by numeric item id.
    log = log.assign(item_id=log["item_id"].astype(int))
    items = data.items.rename(columns={"movie_id": "item_id"})
    items.attrs.clear()
    items = items.assign(item_id=items["item_id"].astype(int))
    return SuiteLog("movielens", log[["user_id", "item_id", "timestamp"]],
                    items[["item_id", "movie_genres"]],
                    data.users[["user_id", "user_gender", "bucketized_user_age",
                                "user_occupation_text"]])


def features(log: SuiteLog) -> tuple[list[str], list[str]]:
    item = [c for c in log.items.columns if c != "item_id"]
    item += [c for c in log.interactions.columns
             if c not in ("user_id", "item_id", "timestamp") and c not in item]
    user = [] if log.users is None else [c for c in log.users.columns if c != "user_id"]
    return item, user


def available_baselines() -> list[str]:
    try:
        import implicit  # noqa: F401
    except ImportError:
        print("implicit is not installed: ImplicitALS and BPR are left out "
              '(pip install "tfrs-kit[implicit]")', file=sys.stderr)
        return [b for b in BASELINES if b not in ("ImplicitALS", "BPR")]
    return BASELINES


def run_one(log: SuiteLog, split: dict, seed: int, time_budget: float, names: list[str],
            cache: dict) -> tuple[dict[str, dict[str, float]], dict[str, float], str]:
    """The Recipe and every baseline on one seed. Baselines depend on the log alone
    (their seeds are fixed), so on a log that is the same for every seed (MovieLens) they
    are fitted once and their scores reused from ``cache``."""
    train, test = tk.evaluation.per_user_temporal_split(log.interactions, **split)
    item_features, user_features = features(log)
    start = time.perf_counter()
    recipe = tk.Recipe(item_features=item_features, user_features=user_features,
                       time_budget=time_budget, seed=seed, verbose=False)
    recipe.fit(train, items=log.items, users=log.users)
    seconds = {"Recipe": time.perf_counter() - start}
    scores = tk.evaluate({"Recipe": recipe}, test, train=train, k=10,
                         metrics=["recall", "ndcg"], verbose=False).to_dict()
    if id(log) not in cache.get("scores", {}):
        scores_and_times, cache["params"] = fit_baselines(log, train, test, names,
                                                          tuned=cache.get("params"))
        cache["scores"] = {id(log): scores_and_times}
    baseline_scores, baseline_seconds = cache["scores"][id(log)]
    return ({**scores, **baseline_scores}, {**seconds, **baseline_seconds},
            recipe.report.chosen.describe())


def fit_baselines(log: SuiteLog, train: pd.DataFrame, test: pd.DataFrame, names: list[str],
                  tuned: dict[str, dict] | None = None
                  ) -> tuple[tuple[dict[str, dict[str, float]], dict[str, float]],
                             dict[str, dict]]:
    """Every baseline tuned on a validation slice of ``train`` (or, with ``tuned``, fitted
    with the parameters chosen before), scored on ``test``; and the parameters used."""
    models, seconds, params = {}, {}, {}
    for name in names:
        if name == "EASE" and train["item_id"].nunique() > EASE_MAX_ITEMS:
            print(f"  EASE left out on {log.name}: a dense {EASE_MAX_ITEMS}+ item Gram "
                  "matrix does not fit this machine's time", file=sys.stderr)
            continue
        if name == "UserKNN" and train["user_id"].nunique() > USERKNN_MAX_USERS:
            print(f"  UserKNN left out on {log.name}: tuning it over "
                  f"{USERKNN_MAX_USERS}+ users does not fit this machine's time",
                  file=sys.stderr)
            continue
        start = time.perf_counter()
        try:
            if tuned is not None and name in tuned:
                models[name] = refit(getattr(baselines, name), tuned[name], train)
            else:
                # timestamp: Popularity's default grid tries windows of the latest events.
                models[name], result = baselines.tune(getattr(baselines, name), train,
                                                      grid=GRIDS.get(name),
                                                      timestamp="timestamp")
                params[name] = result.best_params
        except Exception as error:  # a baseline that cannot fit this log is left out, loudly
            print(f"  {name} left out on {log.name}: {type(error).__name__}: {error}",
                  file=sys.stderr)
            continue
        seconds[name] = time.perf_counter() - start
    report = tk.evaluate(models, test, train=train, k=10, metrics=["recall", "ndcg"],
                         verbose=False)
    return (report.to_dict(), seconds), (tuned if tuned is not None else params)


def refit(model_class, params: dict, train: pd.DataFrame):
    """``model_class(**params)`` fitted on ``train`` (the time column to a fit that reads
    one, as ``tune`` does)."""
    model = model_class(**params)
    if "timestamp" in inspect.signature(model.fit).parameters:
        return model.fit(train, timestamp="timestamp")
    return model.fit(train)


def run_dataset(name: str, make, split: dict, seeds: list[int], time_budget: float,
                names: list[str], tune_once: bool = False) -> dict[str, dict[str, float]]:
    runs, times, cache = [], [], {}
    for seed in seeds:
        log = make(seed)
        scores, seconds, chosen = run_one(log, split, seed, time_budget, names, cache)
        if not tune_once:
            cache.pop("params", None)
        runs.append(scores)
        times.append(seconds)
        print(f"  {name} seed {seed}: Recipe chose {chosen}; "
              + ", ".join(f"{m} {s['recall@10']:.4f}/{s['ndcg@10']:.4f}"
                          for m, s in scores.items()), flush=True)
    models = [m for m in runs[0] if all(m in r for r in runs)]
    mean = {m: {k: float(np.mean([r[m][k] for r in runs])) for k in KEYS} for m in models}
    for m in mean:
        mean[m]["std_ndcg@10"] = float(np.std([r[m]["ndcg@10"] for r in runs]))
        mean[m]["fit_s"] = float(np.mean([t[m] for t in times]))
    return mean


def print_dataset(name: str, mean: dict[str, dict[str, float]]) -> bool:
    frame = pd.DataFrame(mean).T.sort_values("ndcg@10", ascending=False)
    print(f"\n{name}\n{frame.round(4).to_string()}")
    best = max((m for m in mean if m != "Recipe"), key=lambda m: mean[m]["ndcg@10"])
    recipe = mean["Recipe"]
    print(f"SUITE dataset={name} recipe_recall@10={recipe['recall@10']:.4f} "
          f"recipe_ndcg@10={recipe['ndcg@10']:.4f} best_baseline={best} "
          f"best_recall@10={mean[best]['recall@10']:.4f} "
          f"best_ndcg@10={mean[best]['ndcg@10']:.4f}", flush=True)
    return all(recipe[k] >= mean[best][k] for k in KEYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k")
    parser.add_argument("--datasets", nargs="*", default=None,
                        help=f"among {[*ML_SPLITS, *LOGS]}")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--time-budget", type=float, default=45.0)
    parser.add_argument("--tune-once", action="store_true",
                        help="tune the baselines on the first seed's validation slice only "
                             "and refit them with those parameters on the other seeds' logs")
    args = parser.parse_args()
    names = available_baselines()
    datasets = {}
    if Path(args.data_dir).exists():
        ml = movielens(args.data_dir)
        datasets.update({n: (lambda seed, ml=ml: ml, s) for n, s in ML_SPLITS.items()})
    datasets.update({n: (lambda seed, g=g: g(seed=seed), {"test_fraction": 0.2})
                     for n, g in LOGS.items()})
    chosen = args.datasets or list(datasets)
    wins, p1 = 0, float("nan")
    for name in chosen:
        make, split = datasets[name]
        mean = run_dataset(name, make, split, args.seeds, args.time_budget, names,
                           tune_once=args.tune_once)
        wins += print_dataset(name, mean)
        if name == "ml100k_p1":
            p1 = mean["Recipe"]["recall@10"]
    print(f"SUITE wins={wins}/{len(chosen)} p1_recall@10={p1:.4f}")


if __name__ == "__main__":
    main()
