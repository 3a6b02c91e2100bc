"""Epoch times of the MovieLens 100K two-tower recipe: MirroredStrategy vs one CPU.

Prepared for a session with a GPU (none has measured it yet; see docs/distributed.md).
It trains the same model twice, from the same initial weights, on the same data:

* ``mirrored``: under ``tf.distribute.MirroredStrategy()`` over every visible GPU
  (or the CPU when there is none), with negatives gathered across replicas;
* ``cpu``: on ``/cpu:0`` only, GPUs hidden from the ops.

and prints the epoch times side by side (the first epoch includes tracing).

    python benchmarks/gpu_check.py --data-dir ../shared/data/ml-100k [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import tfrs_kit as tk  # selects Keras 2 before TensorFlow loads

import tensorflow as tf  # isort: skip


class _EpochTimer(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def _train(log: dict, vocabs: tk.Vocabularies, strategy: tf.distribute.Strategy,
           args: argparse.Namespace) -> tuple[list[float], list[float]]:
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = tk.TwoTowerRetrieval(
            tk.Tower(vocabs, features=["user_id"], output_dim=args.dim),
            tk.Tower(vocabs, features=["movie_id", "movie_title", "movie_genres"],
                     output_dim=args.dim),
        )
        model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    timer = _EpochTimer()
    history = model.fit(log, epochs=args.epochs, batch_size=args.batch_size, seed=0,
                        callbacks=[timer], verbose=0)
    return timer.seconds, history.history["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="the ml-100k folder (u.data ...)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096, help="the global batch")
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()

    data = tk.datasets.movielens("100k", data_dir=args.data_dir, source="files")
    log = {name: data.interactions[name].to_numpy()
           for name in ("user_id", "movie_id", "movie_title", "movie_genres")}
    vocabs = tk.VocabularyBuilder().fit(
        log, features={"user_id": "categorical", "movie_id": "categorical",
                       "movie_title": "text", "movie_genres": "multi"})

    gpus = tf.config.list_logical_devices("GPU")
    mirrored = tf.distribute.MirroredStrategy()
    cpu = tf.distribute.OneDeviceStrategy("/cpu:0")
    print(f"TensorFlow {tf.__version__}; GPUs: {[d.name for d in gpus] or 'none'}; "
          f"mirrored replicas: {mirrored.num_replicas_in_sync}; rows: {len(log['user_id'])}; "
          f"global batch: {args.batch_size}")
    mirrored_s, mirrored_loss = _train(log, vocabs, mirrored, args)
    cpu_s, cpu_loss = _train(log, vocabs, cpu, args)
    print(f"{'epoch':>5} {'mirrored s':>11} {'cpu s':>9} {'speed-up':>9} "
          f"{'mirrored loss':>14} {'cpu loss':>10}")
    rows = zip(mirrored_s, cpu_s, mirrored_loss, cpu_loss, strict=True)
    for epoch, (m, c, ml, cl) in enumerate(rows, 1):
        print(f"{epoch:>5} {m:>11.2f} {c:>9.2f} {c / m:>8.2f}x {ml:>14.1f} {cl:>10.1f}")


if __name__ == "__main__":
    main()
