"""The front door at scale: `tfrs-kit train` on raw event shards against tuned iALS.

For each size (default 1e6 and 1e7 events) this script writes a raw synthetic log as
Parquet shards in time order (columns ``user_id``, ``item_id``, ``timestamp`` only: no
history, nothing precomputed), several clusters of taste, tastes that drift from one
cluster to another over each user's life, a long tail of items inside each cluster and
a global popularity that changes eight times over the log. Each user's latest event is
held out (every user has at least three); the rest is the training log.

Every size has the same users and items (``--users``, default 50,000, and ``--items``,
default 20,000: a 1e6-event log's), so the sizes differ in rows only and
``memory_ratio`` measures what the issue asks of memory: flat in rows, growing with the
users and the catalogue only. ``--grow`` gives n/20 users and n/50 items instead (a
catalogue ten times larger at 1e7: the ratio then measures both).

Then, in the same run, on the same split:

* ``tfrs-kit train TRAIN --time-budget B`` runs as a subprocess (``--budgets``, default
  120 s at 1e6 and 900 s at 1e7); its wall time is measured here and its peak RSS
  (Linux's ``VmHWM``, TensorFlow included) by the subprocess itself, at its end
  (``wait4``'s ``ru_maxrss`` would start at this process's own peak, the generated log);
* iALS (``tk.baselines.ImplicitALS``, the ``implicit`` library) is tuned in this
  process on the same validation rule the Recipe uses at scale: the latest training
  event of ``--eval-users`` sampled users is held out, every point of a grid (factors 64
  and 128, regularization 0.1 and 1, alpha 1, 4 and 16: 12 points, 15 iterations) is fitted
  on the rest and scored by ndcg@10 on those users, and the best is refitted on the whole
  training log (``tk.baselines.tune`` would score every training user at every point);
* both are scored by ``tk.evaluate`` on ``--eval-users`` sampled users (recall@10 and
  ndcg@10, training items masked). The Recipe is scored through the index it exported,
  as it serves: its top 100 per user, seen items excluded.

One line per size, then the last line::

    RECIPE_SCALE memory_ratio=<peak 1e7 / peak 1e6> budget_ratio=<wall / budget at 1e7>
        quality_ratio=<Recipe recall@10 / iALS recall@10 at 1e7> peak_gib=<at 1e7>

(the ratios compare the largest size with the smallest run).

    python benchmarks/recipe_scale.py [--sizes 1000000 10000000] [--budgets 120 900]
        [--dir /tmp/recipe_scale] [--eval-users 10000] [--seed 0] [--skip-ials]
        [--reuse-ials-choice] [--users 50000] [--items 20000] [--grow]

``--reuse-ials-choice`` tunes iALS's grid at the first size only and fits its chosen
point once at the others (the 12-point grid at 1e7 takes hours on two cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARD_ROWS = 1_000_000
EPOCHS_OF_POPULARITY = 8  # the global popularity ranking changes this often over the log
POPULARITY_SHARE = 0.15  # events that follow the global popularity, not the user's taste
SPAN_S = 3 * 365 * 86_400  # the log covers three years


def shape(n: int, users: int | None, items: int | None) -> tuple[int, int, int]:
    """Users, items and taste clusters of an n-event log: those given, or (``None``)
    n/20 users and n/50 items."""
    users = max(n // 20, 10) if users is None else min(users, n // 3)
    items = max(n // 50, 50) if items is None else items
    return users, items, int(np.clip(np.sqrt(items) / 2, 4, 64))


def generate(n: int, seed: int, users: int, items: int,
             clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User numbers, item numbers and timestamps of ``n`` raw events, by user then time."""
    rng = np.random.default_rng(seed)
    lengths = 3 + rng.multinomial(n - 3 * users, rng.dirichlet(np.full(users, 1.5)))
    user = np.repeat(np.arange(users, dtype=np.int32), lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    position = np.arange(n) - np.repeat(first, lengths)
    life = position / np.repeat(np.maximum(lengths - 1, 1), lengths)  # 0 .. 1 per user
    start = rng.uniform(0, 0.6 * SPAN_S, users)
    duration = rng.uniform(0.05, 0.4, users) * SPAN_S
    timestamp = (np.repeat(start, lengths) + life * np.repeat(duration, lengths)
                 + rng.uniform(0, 3600, n)).astype(np.int64)
    del position, first
    # Tastes drift: early events from the user's first cluster, late ones from the second.
    taste = rng.integers(0, clusters, (users, 2))
    late = rng.random(n) < life
    cluster = taste[user, late.astype(np.int64)]
    del late, life
    item_cluster = rng.permutation(np.arange(items) % clusters)  # no cluster is empty
    by_cluster = np.argsort(item_cluster, kind="stable")
    sizes = np.bincount(item_cluster, minlength=clusters)
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    rank = np.floor(sizes[cluster] * rng.random(n) ** 3).astype(np.int64)  # a long tail
    item = by_cluster[offsets[cluster] + np.minimum(rank, sizes[cluster] - 1)]
    del rank, cluster
    popular = rng.random(n) < POPULARITY_SHARE
    era = np.minimum(timestamp[popular] * EPOCHS_OF_POPULARITY // SPAN_S,
                     EPOCHS_OF_POPULARITY - 1)
    rankings = np.stack([rng.permutation(items) for _ in range(EPOCHS_OF_POPULARITY)])
    zipf = np.minimum(rng.zipf(1.3, int(popular.sum())) - 1, items - 1)
    item[popular] = rankings[era, zipf]
    order = np.lexsort((timestamp, user))
    return user[order], item[order].astype(np.int32), timestamp[order]


def split_and_write(n: int, seed: int, folder: Path, eval_users: int,
                    sizes: tuple[int, int, int]) -> dict:
    """Writes the training shards (time order) and the sampled users' held-out events."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    user, item, timestamp = generate(n, seed, *sizes)
    last = np.r_[np.flatnonzero(np.diff(user)), n - 1]  # each user's latest event
    is_test = np.zeros(n, bool)
    is_test[last] = True

    def ids(prefix: str, numbers: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")

    train_folder = folder / "train"
    shutil.rmtree(folder, ignore_errors=True)
    train_folder.mkdir(parents=True)
    rows = np.flatnonzero(~is_test)
    rows = rows[np.argsort(timestamp[rows], kind="stable")]  # a raw log arrives in time order
    for number, begin in enumerate(range(0, len(rows), SHARD_ROWS)):
        part = rows[begin:begin + SHARD_ROWS]
        pq.write_table(pa.table({"user_id": ids("u", user[part]), "item_id": ids("i", item[part]),
                                 "timestamp": pa.array(timestamp[part])}),
                       train_folder / f"part-{number:05d}.parquet")
    chosen = np.random.default_rng(seed + 1).choice(len(last), min(eval_users, len(last)),
                                                    replace=False)
    test = np.sort(last[chosen])
    pq.write_table(pa.table({"user_id": ids("u", user[test]), "item_id": ids("i", item[test]),
                             "timestamp": pa.array(timestamp[test])}), folder / "test.parquet")
    users, items, clusters = sizes
    return {"train_rows": len(rows), "users": users, "items": items, "clusters": clusters}


def train(folder: Path, budget: float) -> dict:
    """``tfrs-kit train`` in a subprocess: wall time, peak RSS and exit status."""
    export = folder / "model"
    peak_file = folder / "train_peak_gib.txt"
    # The child writes its own peak (VmHWM): wait4's ru_maxrss starts at this process's
    # peak (Linux keeps it through exec), the log generated here, 6+ GiB at 1e8.
    child = ("import sys\nfrom tfrs_kit.cli import main\n"
             "from tfrs_kit.recipe._fit_progress import peak_gib\n"
             "try:\n    code = main()\nfinally:\n"
             f"    open({str(peak_file)!r}, 'w').write(str(peak_gib()))\n"
             "sys.exit(code)")
    command = [sys.executable, "-c", child, "train", str(folder / "train"), "--user", "user_id",
               "--item", "item_id", "--time", "timestamp", "--time-budget", str(budget),
               "--export", str(export)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    process.wait()
    wall = time.perf_counter() - start
    (folder / "train.log").write_text(output)
    if process.returncode != 0:
        print(output[-4000:], file=sys.stderr)
        raise SystemExit(f"tfrs-kit train exited with {process.returncode}")
    return {"wall_s": wall, "peak_gib": float(peak_file.read_text()), "export": export}


class ServedIndex:
    """The exported index as a ``tk.evaluation.Recommender``: its top 100 per user (seen
    items excluded), scored by rank; every other item scores lower than all of them."""

    display_name = "Recipe"

    def __init__(self, export: Path, train_frame) -> None:
        import pandas as pd

        import tfrs_kit as tk

        if (export / "latest").exists():  # Recipe.save's folder: its latest version
            export = export / "versions" / (export / "latest").read_text().strip()
        self.index = tk.load_index(export / "index")
        self.queries = pd.read_parquet(export / "queries.parquet").set_index("user_id",
                                                                              drop=False)
        items = "candidates" if (export / "candidates.parquet").exists() else "items"
        self.item_ids = np.asarray(pd.read_parquet(export / f"{items}.parquet").iloc[:, 0])
        self.position = pd.Series(np.arange(len(self.item_ids)), index=self.item_ids)
        self.seen = train_frame.groupby("user_id")["item_id"].agg(list)

    def score(self, user_ids) -> np.ndarray:
        users = list(user_ids)
        top = self.index.recommend(self.queries.loc[users].reset_index(drop=True), k=100,
                                   exclude=[self.seen.get(u, []) for u in users])
        scores = np.full((len(users), len(self.item_ids)), -1e9, np.float32)
        ranks = np.arange(100, 0, -1, dtype=np.float32)
        for row, ids in enumerate(top.ids):
            found = np.asarray(top.scores[row]) > -np.inf
            scores[row, self.position[np.asarray(ids)[found]].to_numpy()] = ranks[found]
        return scores


IALS_GRID = {"factors": [64, 128], "regularization": [0.1, 1.0], "alpha": [1.0, 4.0, 16.0]}


def tune_ials(train_frame, eval_users: int, seed: int, chosen: dict | None = None):
    """iALS with the grid point that scores best on sampled users' latest training event
    (``chosen``: that point, not tuned again: fitted once on the whole log)."""
    import itertools

    import tfrs_kit as tk
    from tfrs_kit import baselines

    if chosen is not None:
        return baselines.ImplicitALS(**chosen, iterations=15, seed=seed).fit(train_frame), chosen
    ordered = train_frame.sort_values(["user_id", "timestamp"], kind="stable")
    latest = ordered.drop_duplicates("user_id", keep="last")
    sample = latest.sample(min(eval_users, len(latest)), random_state=seed)
    fit_part = train_frame.drop(index=sample.index)
    best, best_score = None, -1.0
    for values in itertools.product(*IALS_GRID.values()):
        params = dict(zip(IALS_GRID, values, strict=True))
        model = baselines.ImplicitALS(**params, iterations=15, seed=seed).fit(fit_part)
        ndcg = tk.evaluate(model, sample, train=fit_part, k=10, metrics=["ndcg"],
                           verbose=False).to_dict()["ImplicitALS"]["ndcg@10"]
        if ndcg > best_score:
            best, best_score = params, ndcg
    return baselines.ImplicitALS(**best, iterations=15, seed=seed).fit(train_frame), best


def score(folder: Path, export: Path, skip_ials: bool, eval_users: int, seed: int,
          ials: dict | None = None) -> dict:
    """recall@10 and ndcg@10 of the Recipe (as served) and of tuned iALS, same split."""
    import pandas as pd

    import tfrs_kit as tk
    test = pd.read_parquet(folder / "test.parquet")
    # iALS trains on every row; else only the test users' rows are read (what is masked):
    # the whole log as pandas strings would not fit in memory at 1e8 events.
    train_frame = pd.read_parquet(folder / "train", filters=None if not skip_ials else [
        ("user_id", "in", test.user_id.unique().tolist())])
    models = {"Recipe": ServedIndex(export, train_frame[train_frame.user_id.isin(test.user_id)])}
    tune_s = float("nan")
    if not skip_ials:
        start = time.perf_counter()
        models["iALS"], chosen = tune_ials(train_frame, eval_users, seed, ials)
        print(f"iALS {'reused' if ials else 'chose'} {chosen}", flush=True)
        tune_s = time.perf_counter() - start
    report = tk.evaluate(models, test, train=train_frame, k=10, metrics=["recall", "ndcg"],
                         verbose=False).to_dict()
    return {"recipe_recall": report["Recipe"]["recall@10"],
            "recipe_ndcg": report["Recipe"]["ndcg@10"],
            "ials_recall": report.get("iALS", {}).get("recall@10", float("nan")),
            "ials_ndcg": report.get("iALS", {}).get("ndcg@10", float("nan")),
            "ials_tune_s": tune_s, "ials_params": None if skip_ials else chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--budgets", type=float, nargs="+", default=[120.0, 900.0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/recipe_scale"))
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ials", action="store_true")
    parser.add_argument("--reuse-ials-choice", action="store_true",
                        help="tune iALS's grid at the first size only; at the others fit "
                             "its chosen point once (the grid at 1e7 takes hours on 2 cores)")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--grow", action="store_true",
                        help="n/20 users and n/50 items at each size instead of --users "
                             "and --items")
    args = parser.parse_args()
    if len(args.budgets) != len(args.sizes):
        parser.error("--budgets needs one value per size")
    runs = []
    for n, budget in zip(args.sizes, args.budgets, strict=True):
        folder = args.dir / f"n{n}"
        start = time.perf_counter()
        sizes = shape(n, None, None) if args.grow else shape(n, args.users, args.items)
        shape_info = split_and_write(n, args.seed, folder, args.eval_users, sizes)
        write_s = time.perf_counter() - start
        run = {"n": n, "budget_s": budget, "write_s": write_s, **shape_info,
               **train(folder, budget)}
        reused = runs[0]["ials_params"] if runs and args.reuse_ials_choice else None
        run.update(score(folder, run.pop("export"), args.skip_ials, args.eval_users,
                         args.seed, reused))
        runs.append(run)
        print(f"RECIPE_SCALE_SIZE n={n} users={run['users']} items={run['items']} "
              f"budget_s={budget:g} wall_s={run['wall_s']:.1f} "
              f"budget_ratio={run['wall_s'] / budget:.3f} peak_gib={run['peak_gib']:.2f} "
              f"recipe_recall@10={run['recipe_recall']:.4f} "
              f"recipe_ndcg@10={run['recipe_ndcg']:.4f} "
              f"ials_recall@10={run['ials_recall']:.4f} ials_ndcg@10={run['ials_ndcg']:.4f} "
              f"ials_tune_s={run['ials_tune_s']:.0f} shards_written_s={write_s:.0f}",
              flush=True)
        (folder / "result.json").write_text(json.dumps(run, indent=2, default=float))
    small, large = runs[0], runs[-1]
    print(f"RECIPE_SCALE memory_ratio={large['peak_gib'] / small['peak_gib']:.2f} "
          f"budget_ratio={large['wall_s'] / large['budget_s']:.3f} "
          f"quality_ratio={large['recipe_recall'] / large['ials_recall']:.3f} "
          f"peak_gib={large['peak_gib']:.2f}")


if __name__ == "__main__":
    main()
