"""Retrieve, then rank: tk.Recipe with and without its ranking stage, on P1 and the quality suite.

For each dataset and seed, one ``tk.Recipe(rerank=True, time_budget=None)`` fit (the
search and the first stage do not depend on ``rerank`` without a wall-clock budget, so
the Recipe "without" is the same fit with its ranking stage left out: a paired
comparison). Test ndcg@10 is scored by ``tk.evaluate`` with and without the stage:

* ``forced``  the ranking stage always served (``rerank=True``);
* ``auto``    served only when it lifted the validation metric inside the training
              data by more than the validation users' noise margin (what
              ``rerank="auto"`` keeps; the test split is never looked at).

Datasets: MovieLens 100K under P1 (``--data-dir``; each user's latest 20% is test) and
the five synthetic shapes of ``benchmarks/suite_logs.py`` (per-user temporal 20%),
scaled by ``--scale`` (their users and items; ``--quick``: 0.25). Single-query latency
(median over ``--queries`` users, brute force, k=10) of the Recipe's exported cascade
against its retrieval index alone, in the same run, on P1; explanation faithfulness
through the explanations' own function (``tfrs_kit.recipe._faithfulness``) on P1.

    python benchmarks/ranking.py --data-dir ../shared/data/ml-100k [--quick]
    python benchmarks/ranking.py --hand   # the hand-built cascade over a plain retriever

The last line (means over seeds; lifts are ratios of mean ndcg@10) is
``RERANK p1_lift=<auto, P1> min_suite_lift=<lowest auto lift over the suite shapes>
latency_ratio=<cascade/retrieval> faithfulness=<share of users>``. ``--hand`` runs the
earlier benchmark instead: a two-tower retriever against its hand-built cascade
(``RANKING ...`` last line; see ``hand_main``).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

# First, before TensorFlow loads (here or in quality.py): tfrs_kit then loads it without
# its C++ start-up lines (tfrs_kit._keras), which it leaves alone once TensorFlow is
# loaded or TF_CPP_MIN_LOG_LEVEL is set (level 2 still prints cuInit's error line).
import tfrs_kit as tk

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import tensorflow as tf
from quality import ABLATIONS, BASELINES, DEFAULT, ITEM, KINDS, USER_FEATURES, train_two_tower
from quality_suite import features as suite_features
from quality_suite import movielens as suite_movielens
from suite_logs import LOGS

from tfrs_kit.index._inputs import query_tensor
from tfrs_kit.recipe import _rerank

RANKER_QUERY = list(USER_FEATURES)
RANKER_CANDIDATE = ["item_log_count", "item_log_recent", "item_log_age", "item_mean_rating"]
KEYS = ("recall@10", "ndcg@10", "ndcg@100")


def late_rows(train, fraction):
    """Each user's latest ``ceil(fraction * n)`` training rows (a mask over ``train``'s rows)."""
    order = train.assign(number=train[ITEM].astype(int)).sort_values(
        ["user_id", "timestamp", "number"], kind="stable")
    from_end = order.groupby("user_id").cumcount(ascending=False)
    size = order.groupby("user_id")["user_id"].transform("size")
    return (from_end < np.ceil(fraction * size)).reindex(train.index).to_numpy()


ITEM_STATISTICS = ["item_log_count", "item_log_recent", "item_log_age", "item_mean_rating"]


def item_statistics(items, log, *, window_days=30, prior=5):
    """``items`` with what the log says of each item, as numeric ranker features.

    log(1 + events), log(1 + events in the log's last ``window_days``), log(1 + days
    since its first event) and its mean rating shrunk towards the log's mean by
    ``prior`` pseudo-ratings. A retriever's dot product sees none of it directly.
    """
    end = log["timestamp"].max()
    grouped = log.groupby(ITEM)
    recent = log[log["timestamp"] > end - window_days * 86400].groupby(ITEM).size()
    ratings = grouped["user_rating"].agg(["sum", "size"])
    mean = log["user_rating"].mean()
    stats = pd.DataFrame({
        "item_log_count": np.log1p(grouped.size()),
        "item_log_recent": np.log1p(recent),
        "item_log_age": np.log1p((end - grouped["timestamp"].min()) / 86400),
        "item_mean_rating": (ratings["sum"] + prior * mean) / (ratings["size"] + prior),
    })
    out = items.merge(stats, left_on=ITEM, right_index=True, how="left")
    fill = {"item_log_count": 0.0, "item_log_recent": 0.0, "item_log_age": 0.0,
            "item_mean_rating": mean}
    return out.fillna(fill).astype({name: "float32" for name in ITEM_STATISTICS})


def ranker_towers(rows, items, args):
    """The ranker's query and candidate towers (``--ranker-query``, ``--ranker-candidate``)."""
    kinds = {**KINDS, **dict.fromkeys(ITEM_STATISTICS, "numeric")}
    categorical = {name: kinds[name] for name in {*args.ranker_query, *args.ranker_candidate}
                   if name not in ITEM_STATISTICS}
    numeric = {name: "numeric" for name in args.ranker_candidate if name in ITEM_STATISTICS}
    vocabularies = tk.VocabularyBuilder(ngrams=1).fit(rows, features=categorical)
    if numeric:
        vocabularies = vocabularies | tk.VocabularyBuilder().fit(items, features=numeric)
    return (tk.Tower(vocabularies, features=args.ranker_query, output_dim=args.dim),
            tk.Tower(vocabularies, features=args.ranker_candidate, output_dim=args.dim))


def train_ranker(data, train, retriever, args, seed):
    """The ranker and the items table (with statistics) the cascade serves with.

    ``--lists`` (default): a helper retriever learns from all but each user's latest
    ``--stack-fraction`` of train; the ranker learns to re-order the helper's top
    ``--retrieve-k`` lists for those latest rows (``Ranker.fit_lists``, item statistics of
    the earlier rows), with the blend weight chosen on held-out users; the cascade then
    serves with ``retriever``, trained on all of train. ``--no-lists``: ``Ranker.fit`` on
    sampled hard and random negatives.
    """
    tf.keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    train = train.reset_index(drop=True)
    rows = tk.HistoryBuilder(item_id=ITEM, max_length=50).transform(train)
    items = item_statistics(data.items, train)
    late = late_rows(train, args.stack_fraction)
    helper, helper_users, _ = train_two_tower(data, train[~late], epochs=args.epochs, seed=seed,
                                              **ABLATIONS[DEFAULT])
    tf.keras.utils.set_random_seed(seed)
    ranker = tk.Ranker(*ranker_towers(rows, items, args), item_id=ITEM, loss=args.loss,
                       cross_layers=args.cross_layers, hidden_dims=args.hidden_dims,
                       retrieval_score=args.retrieval_score,
                       history_feature="history" if args.lists and args.recent else None,
                       recent=args.recent or (1,))
    settings = dict(retrieve_k=args.retrieve_k, epochs=args.ranker_epochs,
                    learning_rate=args.learning_rate, seed=seed, verbose=0)
    if args.lists:
        ranker.fit_lists(helper_users, train[late], retriever=helper,
                         candidates=item_statistics(data.items, train[~late]),
                         seen=train.loc[~late, ["user_id", ITEM]], batch_size=32, **settings)
    else:
        rows = {name: column[late] for name, column in rows.items()}
        ranker.fit(rows, retriever=helper, candidates=items, negatives=args.negatives,
                   hard_fraction=args.hard_fraction, seen=train.loc[~late, ["user_id", ITEM]],
                   batch_size=256, **settings)
    return ranker, items, time.perf_counter() - start


def single_query_ms(indexes, users, queries):
    """Median ms of one user's top 10 per index: (``Index.recommend``, its SavedModel function).

    The first includes the Python conversion of the query row; the second calls the
    ``recommend`` function the artifact serves with ready tensors, as a server would.
    The indexes take turns on each query, so a busy machine slows them alike.
    """
    k = tf.constant(10, tf.int32)
    timings = {}
    for name, index in indexes.items():
        rows = users[list(index.query_features)].iloc[:queries]
        inputs = [{column: query_tensor(column, rows[column].to_numpy()[i:i + 1],
                                        index._query_specs[column], kind=index._kind(column))
                   for column in rows} for i in range(len(rows))]
        index.recommend(rows.iloc[:1], k=10)  # traces the serving function
        timings[name] = (rows, inputs, tf.zeros([1, 0], dtype=index._id_dtype), [], [])
    for i in range(queries):
        for name, index in indexes.items():
            rows, inputs, empty, api, function = timings[name]
            start = time.perf_counter()
            index.recommend(rows.iloc[i:i + 1], k=10)
            api.append(time.perf_counter() - start)
            start = time.perf_counter()
            index._functions.recommend(inputs[i], k, empty)["ids"].numpy()
            function.append(time.perf_counter() - start)
    return {name: (1000 * float(np.median(api)), 1000 * float(np.median(function)))
            for name, (_, _, _, api, function) in timings.items()}


def run_split(data, train, test, args, seed):
    """ndcg/recall of retrieval, the cascade and the baselines; latency of both artifacts."""
    retriever, users, fit_s = train_two_tower(data, train, epochs=args.epochs, seed=seed,
                                              **ABLATIONS[DEFAULT])
    ranker, items, rank_s = train_ranker(data, train, retriever, args, seed)
    models = {name: make().fit(train, item_id=ITEM) for name, make in BASELINES.items()}
    models["retrieval"] = retriever.as_recommender(train, users=users, items=data.items)
    models["cascade"] = ranker.cascade(retriever, retrieve_k=args.retrieve_k).as_recommender(
        train, item_id=ITEM, users=users, items=items)
    report = tk.evaluate(models, test, train=train, k=(10, 100), item_id=ITEM,
                         metrics=["recall", "ndcg"]).to_dict()
    builder = tk.IndexBuilder(k_max=10, backend="brute_force")
    # Index.recommend takes int64 for the vocabularies' int64 tokens, not bool or whole
    # floats, which fit converts (left to the index's owners; noted in the report).
    users = users.assign(user_gender=users["user_gender"].astype("int64"),
                         bucketized_user_age=users["bucketized_user_age"].astype("int64"))
    indexes = {"retrieval": builder.build(retriever, data.items),
               "cascade": builder.build(retriever, items, ranker=ranker,
                                        retrieve_k=args.retrieve_k)}
    timings = single_query_ms(indexes, users, min(args.queries, len(users)))
    latency = {name: function for name, (_, function) in timings.items()}
    blend = (f"blend {float(ranker.retrieval_weight.numpy()):g} z + "
             f"{float(ranker.ranker_weight.numpy()):g} ranker; ")
    print(f"  seed {seed}: fit retrieval {fit_s:.0f}s, ranker {rank_s:.0f}s; {blend}"
          f"ndcg@10 retrieval {report['retrieval']['ndcg@10']:.4f} "
          f"cascade {report['cascade']['ndcg@10']:.4f}; single-query ms (SavedModel function, "
          f"Index.recommend): retrieval {timings['retrieval'][1]:.2f}, "
          f"{timings['retrieval'][0]:.2f}; cascade {timings['cascade'][1]:.2f}, "
          f"{timings['cascade'][0]:.2f}", flush=True)
    share = explanation_share(indexes["retrieval"], users)
    if share is not None:
        print(f"  seed {seed}: explanations faithful for {share:.0%} of users (removing the top "
              "explaining history item lowers the score more than a random one)", flush=True)
    return report, latency


def explanation_share(index, users, most=500):
    """The share of users whose top explanation is faithful; None if no history is read."""
    from tfrs_kit.index._explain import explanation_faithfulness

    try:
        return explanation_faithfulness(index, users.iloc[:most], seed=0)
    except ValueError:  # the retriever reads no history to explain by
        return None


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


def hand_main(argv) -> None:
    """The hand-built cascade over a plain two-tower retriever (the ``RANKING`` line)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="retriever epochs")
    parser.add_argument("--ranker-epochs", type=int, default=10)
    parser.add_argument("--retrieve-k", type=int, default=50)
    parser.add_argument("--negatives", type=int, default=8)
    parser.add_argument("--hard-fraction", type=float, default=0.5)
    parser.add_argument("--loss", default="listwise", choices=["pointwise", "listwise"])
    parser.add_argument("--cross-layers", type=int, default=0)
    parser.add_argument("--hidden-dims", type=int, nargs="*", default=[])
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--recent", type=int, nargs="*", default=[1, 2, 3, 5, 10, 20],
                        help="history lengths of the ranker's history similarities (none: "
                        "no history_feature; --lists only)")
    parser.add_argument("--retrieval-score", action=argparse.BooleanOptionalAction,
                        default=True, help="the ranker also reads the retriever's score")
    parser.add_argument("--stack-fraction", type=float, default=0.2,
                        help="the ranker learns from each user's latest share of train, "
                        "scored by a retriever trained on the rest (0: all of train, scored "
                        "by the served retriever)")
    parser.add_argument("--lists", action=argparse.BooleanOptionalAction, default=True,
                        help="train on the helper retriever's lists (Ranker.fit_lists)")
    parser.add_argument("--ranker-query", nargs="+", default=RANKER_QUERY)
    parser.add_argument("--ranker-candidate", nargs="+", default=RANKER_CANDIDATE)
    parser.add_argument("--queries", type=int, default=200, help="single queries timed")
    parser.add_argument("--quick", action="store_true", help="one seed, P1 only")
    args = parser.parse_args(argv)
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
    parts = []
    for prefix, (scores, latency) in zip(("", "holdout10_"), results, strict=False):
        retrieval, cascade = scores.loc["retrieval", "ndcg@10"], scores.loc["cascade", "ndcg@10"]
        parts.append(f"{prefix}retrieval_ndcg@10={retrieval:.4f} "
                     f"{prefix}cascade_ndcg@10={cascade:.4f} "
                     f"{prefix}lift={cascade / retrieval:.3f}x "
                     f"{prefix}latency_ratio={latency['cascade'] / latency['retrieval']:.2f}x")
    print("\nRANKING " + " ".join(parts))


def recipe_run(log, seed, args):
    """One Recipe fit with its ranking stage: test ndcg@10 with and without it, and its report."""
    train, test = tk.evaluation.per_user_temporal_split(log.interactions, test_fraction=0.2)
    item_features, user_features = suite_features(log)
    recipe = tk.Recipe(item_features=item_features, user_features=user_features,
                       time_budget=args.time_budget, max_trials=args.max_trials, seed=seed,
                       rerank=True, verbose=False)
    margins = []  # the noise margin "auto" compares the validation gain with
    measure = _rerank.lift_margin
    _rerank.lift_margin = lambda differences: margins.append(measure(differences)) or margins[-1]
    start = time.perf_counter()
    try:
        recipe.fit(train, items=log.items, users=log.users)
    finally:
        _rerank.lift_margin = measure
    seconds = time.perf_counter() - start

    def ndcg():
        report = tk.evaluate({"Recipe": recipe}, test, train=train, k=10, metrics=["ndcg"],
                             verbose=False)
        return report.to_dict()["Recipe"]["ndcg@10"]

    cascade = recipe.cascade_
    with_stage = ndcg()
    recipe.cascade_ = None
    without = ndcg()
    recipe.cascade_ = cascade
    choice = recipe.report.rerank
    gain = choice.score - choice.base
    return {"with": with_stage, "without": without, "kept": bool(margins) and gain > margins[-1],
            "validation": choice.score / choice.base, "retrieve_k": choice.retrieve_k,
            "margin": margins[-1] if margins else float("nan"), "gain": gain,
            "fit_s": seconds, "rerank_s": choice.seconds}, recipe


def recipe_latency(recipe, queries):
    """Median single-query ms of the Recipe's cascade index and of its retrieval alone."""
    cascade_index = recipe.build_index(k_max=10, backend="brute_force")
    kept, recipe.cascade_ = recipe.cascade_, None
    retrieval_index = recipe.build_index(k_max=10, backend="brute_force")
    recipe.cascade_ = kept
    users = recipe.queries()
    timings = single_query_ms({"retrieval": retrieval_index, "cascade": cascade_index}, users,
                              min(queries, len(users)))
    columns = recipe.columns
    if columns.history in cascade_index.query_features:
        items = recipe.candidates()[columns.item_id].to_numpy()
        print("  cascade, single queries of one user with histories of growing lengths, "
              "twice (items:ms): " + new_history_ms(cascade_index, users, items, columns.history),
              flush=True)
    return {name: function for name, (_, function) in timings.items()}


def new_history_ms(index, users, items, history, widths=(5, 100, 200, 400, 800)):
    """One user's single query with histories of growing lengths (random ``items``), then
    each again: a length the served program has not met must not stall it (compiling)."""
    rng = np.random.default_rng(0)
    row = users[list(index.query_features)].iloc[:1].reset_index(drop=True)
    out = []
    for width in (*widths, *widths):
        query = row.copy()
        query[history] = pd.Series([rng.choice(items, width)], dtype=object)
        start = time.perf_counter()
        index.recommend(query, k=10)
        out.append(f"{width}:{1000 * (time.perf_counter() - start):.0f}")
    return " ".join(out)


def faithfulness(recipe):
    """The explanations' own faithfulness measure of the Recipe (nan where not available)."""
    import importlib.util

    for module in ("tfrs_kit.recipe._faithfulness", "tfrs_kit.recipe._explain"):
        explanation_faithfulness = getattr(importlib.import_module(module) if
                                           importlib.util.find_spec(module) else None,
                                           "explanation_faithfulness", None)
        if explanation_faithfulness is not None:
            break
    else:
        print("  faithfulness: the explanations' explanation_faithfulness(recipe) is not "
              "available: nan", flush=True)
        return float("nan")
    try:
        return float(explanation_faithfulness(recipe, seed=0, max_users=500))
    except (ValueError, TypeError) as error:
        print(f"  faithfulness: {type(error).__name__}: {error}: nan", flush=True)
        return float("nan")


def datasets(args):
    """Name -> (seed -> SuiteLog): P1 (the same log for every seed) and the suite shapes."""
    out = {}
    if Path(args.data_dir).exists():
        ml = suite_movielens(str(args.data_dir))
        for table in (ml.interactions, ml.items, ml.users):
            table.attrs = {}  # the columns are renamed: no schema of the original names
        out["ml100k_p1"] = lambda seed: ml
    for name, make in LOGS.items():
        sizes = inspect.signature(make).parameters
        scaled = {key: max(50, int(sizes[key].default * args.scale))
                  for key in ("n_users", "n_items")}
        out[name] = lambda seed, make=make, scaled=scaled: make(seed=seed, **scaled)
    return {name: make for name, make in out.items()
            if not args.datasets or name in args.datasets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="the suite shapes' users and items, times this")
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="the Recipe's time_budget (default none: a paired comparison)")
    parser.add_argument("--max-trials", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200, help="single queries timed")
    parser.add_argument("--quick", action="store_true", help="one seed, shapes at scale 0.25")
    parser.add_argument("--hand", action="store_true", help="the hand-built cascade instead")
    parser.add_argument("--components", action=argparse.BooleanOptionalAction, default=True,
                        help="the ranker reads the blend's score components apart")
    parser.add_argument("--next-items", action=argparse.BooleanOptionalAction, default=True,
                        help="the ranker reads a next-item model's scores")
    args, rest = parser.parse_known_args()
    if args.hand:
        return hand_main([a for a in sys.argv[1:] if a != "--hand"])
    if rest:
        parser.error(f"unrecognised arguments: {rest}")
    if args.quick:
        args.seeds, args.scale = 1, min(args.scale, 0.25)
    _rerank._COMPONENTS, _rerank._NEXT_ITEMS = args.components, args.next_items
    print(f"seeds {args.seeds}, suite scale {args.scale:g}, time_budget {args.time_budget}, "
          f"max_trials {args.max_trials}", flush=True)
    lifts, latency, faithful = {}, [], []
    for name, make in datasets(args).items():
        runs = []
        for seed in range(args.seeds):
            run, recipe = recipe_run(make(seed), seed, args)
            runs.append(run)
            print(f"  {name} seed {seed}: ndcg@10 with {run['with']:.4f} without "
                  f"{run['without']:.4f}; validation lift {run['validation']:.3f} at "
                  f"retrieve_k {run['retrieve_k']} (gain {run['gain']:+.4f}, noise margin "
                  f"{run['margin']:.4f}: auto keeps: {run['kept']}); fit "
                  f"{run['fit_s']:.0f}s, of which rerank {run['rerank_s']:.0f}s", flush=True)
            if name == "ml100k_p1":
                latency.append(recipe_latency(recipe, args.queries))
                faithful.append(faithfulness(recipe))
        without = np.mean([r["without"] for r in runs])
        forced = np.mean([r["with"] for r in runs]) / without
        auto = np.mean([r["with"] if r["kept"] else r["without"] for r in runs]) / without
        lifts[name] = auto
        print(f"{name}: ndcg@10 without {without:.4f}; lift forced {forced:.3f}, auto "
              f"{auto:.3f} (kept on {sum(r['kept'] for r in runs)}/{len(runs)} seeds)",
              flush=True)
    p1 = lifts.pop("ml100k_p1", float("nan"))
    suite = min(lifts.values()) if lifts else float("nan")
    ratio = (np.mean([t["cascade"] for t in latency]) / np.mean([t["retrieval"] for t in latency])
             if latency else float("nan"))
    share = float(np.mean(faithful)) if faithful else float("nan")
    print(f"\nRERANK p1_lift={p1:.3f} min_suite_lift={suite:.3f} latency_ratio={ratio:.2f} "
          f"faithfulness={share:.2f}")


if __name__ == "__main__":
    main()
