"""Scale: time per stage and peak memory on synthetic logs of growing size.

For each size (default 1e5, 1e6 and 1e7 interactions, with n/20 users and n/10 items,
so the largest has 1,000,000 items) a fresh process generates ``tk.datasets.synthetic``
and times: vocabulary (user and item ids), one training epoch (64-d id towers, batch
4096, logQ; the second epoch, so tracing is not counted), evaluation (full catalogue,
1,000 sampled users), index build (brute force over every item, at every size) and 1,000 queries.
It prints a table, the log-log growth slope of each stage (time ~ n^slope; 1.0 is
linear), the peak memory per size, and the largest size done.

    python benchmarks/scale.py [--sizes 100000 1000000 10000000]

``--from-files`` measures training from Parquet shards instead: per size (default 1e6
and 1e7) a fresh process writes the synthetic log as shards of ``--shard-rows`` rows
(user, item and the ``HistoryBuilder`` history of the 50 items before each event; n/20
users and n/50 items, ``synthetic``'s default shape and issue 14's at 1e8: 5e6 users,
2e6 items; ``--rows-per-item 10`` gives the n/10 items of earlier runs), then
for each tower set (id-only; user id plus the history, mean-pooled, sharing the item
embedding) a fresh process builds the vocabularies from the shards (chunk by chunk) and
trains one epoch streamed from them (``fit(files, shuffle_buffer=65536)``, batch 4096,
64-d, logQ). The epoch is the whole ``fit`` call: the pass that counts the item ids,
the first step's tracing, then every step; its CPU seconds (all threads) are printed
too, the work done whatever else runs on the machine. ``--compare-memory`` adds, per
tower set, the same epoch from the same shards read into memory (``fit(files)``: mind
the memory of histories at 1e7). It prints per size and tower set the vocabulary and
epoch times, rows/s and the process's peak RSS (TensorFlow included), and last
``SCALE_FILES largest=... memory_ratio=<history peak RSS at largest / at the smallest>
history_speed_ratio=<history rows/s / id-only rows/s at largest> peak_gib=<at largest>``
(streamed runs only; a ratio whose tower set was not run, ``--towers history``, prints
``n/a``). The shards are written from the synthetic events as integers, never as a
table of Python strings, so 1e8 rows (``--sizes 100000000 --towers history``) take
about 10 GiB to write. ``--system-allocator`` trains with
``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1``: TensorFlow's default (oneDNN) CPU allocator is a
pool that never gives memory back, so the transients of initialising each embedding table
(about three times its size) stay in the peak.

    python benchmarks/scale.py --from-files [--sizes 1000000 10000000] [--dir /tmp/shards]
        [--compare-memory] [--rows-per-item 50] [--system-allocator] [--towers history]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAGES = ("vocabulary", "train_epoch", "evaluation", "index_build", "queries_1000")


def run_size(n: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    import tfrs_kit as tk

    users, items = shape(n, rows_per_item=10)
    data = tk.datasets.synthetic(n, num_users=users, num_items=items, seed=0)
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


def shape(n: int, rows_per_item: int) -> tuple[int, int]:
    """The users (n/20) and items (n/``rows_per_item``) of a synthetic log of n rows."""
    return max(5, n // 20), max(20, n // rows_per_item)


def synthetic_events(n: int, rows_per_item: int) -> tuple[np.ndarray, np.ndarray]:
    """The user and item numbers of ``tk.datasets.synthetic(n, seed=0)``'s events at
    :func:`shape`'s sizes, in its row order (by user, then time), without its tables:
    1e8 rows of Python strings would not fit in memory here. ``write_shards`` checks
    them against ``synthetic`` at 1e6 rows or fewer."""
    from tfrs_kit.datasets import _synthetic

    n, users, items, clusters = _synthetic._sizes(n, *shape(n, rows_per_item), None)
    rng = np.random.default_rng(0)  # drawn in synthetic's order: the same events
    world = _synthetic._World(rng, users, items, clusters, 0.2)
    counts = _synthetic._events_per_user(rng, n, users, items)
    return world.sample_events(rng, counts)


def write_shards(n: int, folder: Path, shard_rows: int, rows_per_item: int = 50) -> dict:
    """The synthetic log of ``n`` rows with histories (the 50 items before each event),
    as Parquet shards in ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    user, item = synthetic_events(n, rows_per_item)
    # Rows are by user, then time: a row's history is the items of the rows just before
    # it, back to the user's first row or 50 rows (HistoryBuilder's rule).
    first = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
    history_start = np.maximum(np.repeat(first, np.diff(np.r_[first, n])), np.arange(n) - 50)
    del first
    if n <= 1_000_000:
        _check_events(n, rows_per_item, user, item, history_start)
    users = pa.array(np.char.add("u", np.arange(user[-1] + 1).astype(str)))
    items = pa.array(np.char.add("i", np.arange(shape(n, rows_per_item)[1]).astype(str)))
    folder.mkdir(parents=True, exist_ok=True)
    for number, begin in enumerate(range(0, n, shard_rows)):
        rows = np.arange(begin, min(begin + shard_rows, n))
        lengths = rows - history_start[rows]
        offsets = np.r_[0, np.cumsum(lengths)]
        positions = np.arange(offsets[-1]) + np.repeat(history_start[rows] - offsets[:-1],
                                                       lengths)
        shard = pa.table({
            "user_id": users.take(pa.array(user[rows])),
            "item_id": items.take(pa.array(item[rows])),
            "history": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                                items.take(pa.array(item[positions]))),
        })
        pq.write_table(shard, folder / f"part-{number:05d}.parquet")
    size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    return {"n": n, "seconds": time.perf_counter() - start, "gib_on_disk": size / 2**30,
            "mean_history": float(np.mean(np.arange(n) - history_start))}


def _check_events(n: int, rows_per_item: int, user: np.ndarray, item: np.ndarray,
                  history_start: np.ndarray) -> None:
    """The events are ``tk.datasets.synthetic``'s and the histories ``HistoryBuilder``'s."""
    import tfrs_kit as tk

    users, items = shape(n, rows_per_item)
    data = tk.datasets.synthetic(n, num_users=users, num_items=items, seed=0)
    log = {c: data.interactions[c].to_numpy() for c in ("user_id", "item_id", "timestamp")}
    assert np.array_equal(log["user_id"], np.char.add("u", user.astype(str)).astype(object))
    assert np.array_equal(log["item_id"], np.char.add("i", item.astype(str)).astype(object))
    expected = tk.HistoryBuilder(max_length=50).transform(log)["history"]
    rows = np.random.default_rng(0).choice(n, size=min(n, 20_000), replace=False)
    for row in rows:
        assert expected[row].tolist() == log["item_id"][history_start[row]:row].tolist(), row


def train_from_files(folder: Path, towers: str, in_memory: bool = False) -> dict:
    """One epoch streamed from the shards (or read into memory from them), in this
    (fresh) process; times and peak RSS."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    import tfrs_kit as tk

    files = str(folder / "*.parquet")
    start = time.perf_counter()
    vocabularies = tk.VocabularyBuilder().fit(files, features=["user_id", "item_id"],
                                              verbose=False)
    features = ["user_id"]
    if towers == "history":
        vocabularies = vocabularies.alias("history", "item_id", kind="multi")
        features.append("history")
    vocabulary_s = time.perf_counter() - start
    tf.keras.utils.set_random_seed(0)
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabularies, features=features, output_dim=64),
        tk.Tower(vocabularies, features=["item_id"], output_dim=64),
        share_embeddings={"history": "item_id"} if towers == "history" else None)
    start, cpu = time.perf_counter(), _cpu_s()
    history = model.fit(files, epochs=1, batch_size=4096, learning_rate=0.5, seed=0,
                        shuffle_buffer=None if in_memory else 65536, verbose=0)
    epoch_s = time.perf_counter() - start
    return {"towers": towers, "input": "in memory" if in_memory else "streamed",
            "vocabulary_s": vocabulary_s, "epoch_s": epoch_s, "epoch_cpu_s": _cpu_s() - cpu,
            "loss": float(history.history["loss"][-1]),
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _cpu_s() -> float:
    """This process's CPU seconds (user and system, all threads): on a shared machine
    the work done, where wall time also counts the other jobs' share of the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {out.returncode}): "
                         f"{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main_from_files(sizes: list[int], folder: Path | None, shard_rows: int,
                    compare_memory: bool = False, rows_per_item: int = 50,
                    system_allocator: bool = False,
                    tower_sets: tuple[str, ...] = ("ids", "history")) -> None:
    root = folder or Path(tempfile.mkdtemp(prefix="tfrs_kit_scale_"))
    results: dict[int, dict] = {}
    for n in sizes:
        shards = root / f"n{n}"
        written = _run("--write", str(n), "--dir", str(shards), "--shard-rows", str(shard_rows),
                       "--rows-per-item", str(rows_per_item))
        print(f"wrote {n:,} rows ({shape(n, rows_per_item)[1]:,} items) as "
              f"{len(list(shards.glob('*.parquet')))} shards, "
              f"{written['gib_on_disk']:.2f} GiB, mean history {written['mean_history']:.1f} "
              f"items, in {written['seconds']:.0f} s", flush=True)
        results[n] = {"written": written}
        for towers in tower_sets:
            for key, extra in [(towers, [])] + ([(f"{towers} in memory", ["--in-memory"])]
                                                if compare_memory else []):
                run = _run("--train-files", str(shards), "--towers", towers, *extra,
                           *(["--system-allocator"] if system_allocator else []))
                run["rows_per_s"] = n / run["epoch_s"]
                results[n][key] = run
                print(f"  {towers:8s} {run['input']:9s} vocabulary {run['vocabulary_s']:7.1f} s"
                      f"  epoch {run['epoch_s']:7.1f} s ({run['epoch_cpu_s']:.0f} CPU s)  "
                      f"{run['rows_per_s']:9,.0f} rows/s  peak {run['peak_gib']:.2f} GiB",
                      flush=True)
        shutil.rmtree(shards)
    print(f"\n{'interactions':>13s}{'towers':>9s}{'input':>11s}{'vocabulary s':>14s}"
          f"{'epoch s':>10s}{'epoch CPU s':>13s}{'rows/s':>11s}{'peak GiB':>10s}")
    for n, result in results.items():
        for r in (v for k, v in result.items() if k != "written"):
            print(f"{n:13,d}{r['towers']:>9s}{r['input']:>11s}{r['vocabulary_s']:14.1f}"
                  f"{r['epoch_s']:10.1f}{r['epoch_cpu_s']:13.1f}{r['rows_per_s']:11,.0f}"
                  f"{r['peak_gib']:10.2f}")
    smallest, largest = results[sizes[0]], results[sizes[-1]]
    # A ratio whose tower set was not run prints "n/a".
    memory = largest["history"]["peak_gib"] / smallest["history"]["peak_gib"] if (
        "history" in tower_sets) else None
    speed = largest["history"]["rows_per_s"] / largest["ids"]["rows_per_s"] if (
        {"ids", "history"} <= set(tower_sets)) else None
    print(f"SCALE_FILES largest={sizes[-1]} "
          f"memory_ratio={'n/a' if memory is None else f'{memory:.2f}'} "
          f"history_speed_ratio={'n/a' if speed is None else f'{speed:.2f}'} "
          f"peak_gib={max(largest[t]['peak_gib'] for t in tower_sets):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--from-files", action="store_true",
                        help="train streamed from Parquet shards (see the docstring)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="--from-files: where to write the shards (default: a temp dir)")
    parser.add_argument("--shard-rows", type=int, default=250_000)
    parser.add_argument("--rows-per-item", type=int, default=50,
                        help="--from-files: n / this many items (default 50: issue 14's "
                        "1e8 shape, 2e6 items)")
    parser.add_argument("--compare-memory", action="store_true",
                        help="--from-files: also train from the shards read into memory")
    parser.add_argument("--towers", nargs="+", choices=["ids", "history"],
                        default=["ids", "history"],
                        help="--from-files: the tower sets to train (default both)")
    parser.add_argument("--system-allocator", action="store_true",
                        help="--from-files: train with TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 "
                        "(TensorFlow's oneDNN CPU allocator keeps every freed tensor's memory)")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--train-files", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--in-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size:
        print(json.dumps(run_size(args.size)))
        return
    if args.write:
        print(json.dumps(write_shards(args.write, args.dir, args.shard_rows,
                                      args.rows_per_item)))
        return
    if args.train_files:
        if args.system_allocator:  # read when TensorFlow loads, so before it is imported
            os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
        print(json.dumps(train_from_files(args.train_files, args.towers[0], args.in_memory)))
        return
    if args.from_files:
        main_from_files(args.sizes or [1_000_000, 10_000_000], args.dir, args.shard_rows,
                        args.compare_memory, args.rows_per_item, args.system_allocator,
                        tuple(args.towers))
        return
    args.sizes = args.sizes or [100_000, 1_000_000, 10_000_000]

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
