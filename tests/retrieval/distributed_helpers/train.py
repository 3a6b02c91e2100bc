"""Trains a small two-tower model in a fresh process, for tests/retrieval/test_distributed.py.

Devices and strategies must be set up before TensorFlow initialises, so every
distributed test runs this script in its own subprocess. It writes the final
query and candidate embeddings and the loss history to ``--out`` (``.npz``).

    python train.py --out run.npz [--devices 2 --strategy mirrored]
    TF_CONFIG=... python train.py --out w0.npz --strategy multi_worker
    python train.py --out run.npz --backup-dir ckpt --marker-dir marks --hang-after-epoch 2
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2, before TensorFlow loads

import numpy as np
import tensorflow as tf

import tfrs_kit as tk


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=1, help="logical CPU devices")
    parser.add_argument("--strategy", choices=["none", "mirrored", "multi_worker"],
                        default="none")
    parser.add_argument("--rows", type=int, default=2001)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shuffle-seed", type=int, default=None)
    parser.add_argument("--no-cross-replica", action="store_true")
    parser.add_argument("--backup-dir", default=None)
    parser.add_argument("--marker-dir", default=None)
    parser.add_argument("--hang-after-epoch", type=int, default=0,
                        help="sleep after this epoch's checkpoint (waiting to be killed)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices)
    tf.config.experimental.enable_op_determinism()
    if args.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(args.devices)])
    elif args.strategy == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()

    log = tk.datasets.synthetic(args.rows, seed=3).interactions
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id", "item_genres"])
    tf.keras.utils.set_random_seed(7)  # the same initial weights in every process
    with strategy.scope():
        model = tk.TwoTowerRetrieval(
            tk.Tower(vocabs, features=["user_id"], output_dim=8),
            tk.Tower(vocabs, features=["item_id", "item_genres"], output_dim=8,
                     hidden_dims=[16]),
            temperature=0.5, remove_accidental_hits=True, logq_correction=True,
            cross_replica_negatives=not args.no_cross_replica,
        )
        model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.05))

    callbacks: list[tf.keras.callbacks.Callback] = []
    if args.backup_dir:
        callbacks.append(tf.keras.callbacks.BackupAndRestore(args.backup_dir))
    if args.marker_dir:
        callbacks.append(_Marker(pathlib.Path(args.marker_dir), args.hang_after_epoch))
    history = model.fit(
        log, epochs=args.epochs, batch_size=args.batch_size,
        shuffle=args.shuffle_seed is not None, seed=args.shuffle_seed,
        callbacks=callbacks, verbose=0,
    )
    np.savez(
        args.out,
        loss=np.asarray(history.history["loss"], np.float64),
        query=model.query_embeddings(log),
        candidate=model.candidate_embeddings(log),
        replicas=strategy.num_replicas_in_sync,
    )


class _Marker(tf.keras.callbacks.Callback):
    """Writes ``epoch_<n>`` after epoch n's checkpoint; optionally hangs there."""

    def __init__(self, directory: pathlib.Path, hang_after_epoch: int) -> None:
        super().__init__()
        self.directory = directory
        self.hang_after_epoch = hang_after_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"epoch_{epoch + 1}").write_text(str(logs))
        if epoch + 1 == self.hang_after_epoch:
            sys.stdout.flush()
            time.sleep(600)  # the test kills us here, with SIGKILL


if __name__ == "__main__":
    main()
