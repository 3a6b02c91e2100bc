"""Scale: time per stage and peak memory on synthetic logs of growing size.

For each size (default 1e5, 1e6 and 1e7 interactions, with n/20 users and n/10 items,
so the largest has 1,000,000 items) a fresh process generates ``tk.datasets.synthetic``
and times: vocabulary (user and item ids), one training epoch (64-d id towers, batch
4096, logQ; the second epoch, so tracing is not counted), evaluation (full catalogue,
1,000 sampled users), index build (brute force over every item, at every size) and 1,000 queries.
It prints a table, the log-log growth slope of each stage (time ~ n^slope; 1.0 is
linear), the peak memory per size, and the largest size done.

    python benchmarks/scale.py [--sizes 100000 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

STAGES = ("vocabulary", "train_epoch", "evaluation", "index_build", "queries_1000")


def run_size(n: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    import tfrs_kit as tk

    data = tk.datasets.synthetic(n, num_users=max(5, n // 20), num_items=max(20, n // 10),
                                 seed=0)
    log = data.interactions[["user_id", "item_id", "timestamp"]]
    train, test = tk.evaluation.per_user_temporal_split(log, last_n=1)
    times = {}

    start = time.perf_counter()
    vocabularies = tk.VocabularyBuilder().fit(train, features=["user_id", "item_id"],
                                              verbose=False)
    times["vocabulary"] = time.perf_counter() - start

    tf.keras.utils.set_random_seed(0)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=["user_id"], output_dim=64),
                                 tk.Tower(vocabularies, features=["item_id"], output_dim=64))
    epochs: list[float] = []

    class EpochTimer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epochs.append(time.perf_counter() - self.start)

    model.fit(train, epochs=2, batch_size=4096, learning_rate=0.5, seed=0, verbose=0,
              callbacks=[EpochTimer()])
    times["train_epoch"] = epochs[-1]

    start = time.perf_counter()
    users = np.random.default_rng(0).choice(np.unique(test["user_id"]), size=1000,
                                            replace=False)
    sample = test[test["user_id"].isin(users)]
    recommender = model.as_recommender(train, users={"user_id": users}, items=data.items)
    tk.evaluate(recommender, sample, train=train, k=(10, 100), metrics=["recall", "ndcg"],
                verbose=False)
    times["evaluation"] = time.perf_counter() - start

    start = time.perf_counter()
    # Brute force at every size, so the growth curve compares like with like (the default
    # "auto" backend switches to ScaNN at 100k items; see benchmarks/index.py for ScaNN).
    index = tk.IndexBuilder(backend="brute_force", k_max=100).build(model, data.items[["item_id"]])
    index.recommend({"user_id": users[:1]}, k=10)  # builds the serving graph
    times["index_build"] = time.perf_counter() - start

    start = time.perf_counter()
    index.recommend({"user_id": users}, k=10)
    times["queries_1000"] = time.perf_counter() - start

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "users": data.num_users, "items": data.num_items, "times": times,
            "peak_gib": peak_gib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size:
        print(json.dumps(run_size(args.size)))
        return

    results = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--size", str(n)], capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            print(f"size {n:,} failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
            break
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"done {n:,} interactions ({r['users']:,} users, {r['items']:,} items), "
              f"peak {r['peak_gib']:.2f} GiB", flush=True)

    print(f"\n{'interactions':>13s}{'users':>10s}{'items':>10s}"
          + "".join(f"{s:>14s}" for s in STAGES) + f"{'peak GiB':>10s}")
    for r in results:
        print(f"{r['n']:13,d}{r['users']:10,d}{r['items']:10,d}"
              + "".join(f"{r['times'][s]:13.2f}s" for s in STAGES) + f"{r['peak_gib']:10.2f}")
    if len(results) >= 2:
        sizes = np.log([r["n"] for r in results])
        slopes = {s: np.polyfit(sizes, np.log([r["times"][s] for r in results]), 1)[0]
                  for s in STAGES}
        print(f"{'slope':>33s}" + "".join(f"{slopes[s]:14.2f}" for s in STAGES))
        print("SCALE " + " ".join(f"{s}_slope={v:.2f}" for s, v in slopes.items())
              + f" largest={results[-1]['n']}")


if __name__ == "__main__":
    main()
