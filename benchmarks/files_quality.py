"""Files against memory: the default recipe on MovieLens 100K P1, trained from Parquet shards.

The training rows of P1 (each event with its history, as ``tk.HistoryBuilder`` writes
them) go to Parquet shards; then, per seed, the default recipe of
``benchmarks/quality.py`` (user id and history against the movie id, 64-d, 5 epochs)
trains three ways: from the DataFrame in memory, from the shards read into memory
(``fit(paths)``) and streamed from them (``fit(paths, shuffle_buffer=...)``, which shuffles
within windows, so its batches differ). All are scored by ``tk.evaluate`` on the same
test split. Reading must change nothing; streaming must stay within the seeds' noise.

    python benchmarks/files_quality.py --data-dir ../shared/data/ml-100k [--seeds 0 1 2]

Last line: ``FILES_QUALITY memory_ndcg@10=... files_ndcg@10=... streamed_ndcg@10=...
streamed_diff=... seed_sd=...`` (means over the seeds; ``streamed_diff`` is streamed minus
memory, ``seed_sd`` the standard deviation of the in-memory runs over the seeds).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

import tfrs_kit as tk

ITEM = "movie_id"
QUERY, CANDIDATE = ["user_id", "history"], [ITEM]
KINDS = {"user_id": "categorical", ITEM: "categorical", "history": "multi"}


def write_shards(rows: dict, directory: Path, shards: int) -> list[str]:
    """``rows`` as ``shards`` Parquet files of consecutive rows (the log's time order)."""
    table = pa.table({name: [list(v) for v in rows[name]] if name == "history" else rows[name]
                      for name in [*QUERY, ITEM]})
    paths = []
    for number, part in enumerate(np.array_split(np.arange(table.num_rows), shards)):
        path = directory / f"part-{number:03d}.parquet"
        pq.write_table(table.take(pa.array(part)), path)
        paths.append(str(path))
    return paths


def train(source, vocabularies, *, seed: int, epochs: int, shuffle_buffer: int | None):
    tf.keras.utils.set_random_seed(seed)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=QUERY, output_dim=64),
                                 tk.Tower(vocabularies, features=CANDIDATE, output_dim=64))
    model.fit(source, epochs=epochs, batch_size=1024, learning_rate=0.05, seed=seed,
              verbose=0, shuffle_buffer=shuffle_buffer)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-100k", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shuffle-buffer", type=int, default=16_384)
    args = parser.parse_args()

    data = tk.datasets.movielens("100k", data_dir=args.data_dir)
    # P1 breaks timestamp ties by item id as a number (movie ids are strings here).
    log = data.interactions.assign(movie_number=data.interactions[ITEM].astype(int))
    train_log, test = (part.drop(columns="movie_number") for part in
                       tk.evaluation.per_user_temporal_split(log, item_id="movie_number",
                                                             test_fraction=0.2))
    history = tk.HistoryBuilder(item_id=ITEM, max_length=50)
    rows = history.transform(train_log)
    users = pd.DataFrame(history.for_users(train_log))
    vocabularies = tk.VocabularyBuilder().fit(rows, features=KINDS)
    scores: dict[str, list[float]] = {"memory": [], "files": [], "streamed": []}
    seconds: dict[str, float] = dict.fromkeys(scores, 0.0)
    with tempfile.TemporaryDirectory() as directory:
        paths = write_shards(rows, Path(directory), args.shards)
        assert tk.VocabularyBuilder().fit(paths, features=KINDS) == vocabularies
        for seed in args.seeds:
            for way, source, buffer in (("memory", rows, None), ("files", paths, None),
                                        ("streamed", paths, args.shuffle_buffer)):
                start = time.perf_counter()
                model = train(source, vocabularies, seed=seed, epochs=args.epochs,
                              shuffle_buffer=buffer)
                seconds[way] += time.perf_counter() - start
                report = tk.evaluate(model.as_recommender(train_log, users=users,
                                                          items=data.items),
                                     test, train=train_log, k=10, item_id=ITEM,
                                     metrics=["ndcg"], verbose=False)
                scores[way].append(report[report.models[0]]["ndcg@10"])
                print(f"seed={seed} {way:9s} ndcg@10={scores[way][-1]:.4f}", flush=True)
    mean = {way: float(np.mean(values)) for way, values in scores.items()}
    for way in scores:
        print(f"{way:9s} ndcg@10 {mean[way]:.4f} +- {np.std(scores[way]):.4f} "
              f"(fit {seconds[way] / len(args.seeds):.1f} s per seed)")
    print(f"FILES_QUALITY memory_ndcg@10={mean['memory']:.4f} files_ndcg@10={mean['files']:.4f} "
          f"streamed_ndcg@10={mean['streamed']:.4f} "
          f"streamed_diff={mean['streamed'] - mean['memory']:+.4f} "
          f"seed_sd={np.std(scores['memory']):.4f}")


if __name__ == "__main__":
    main()
