"""Trains from Parquet shards, streamed, in a fresh process (tests/retrieval/test_pipeline.py).

    python stream.py --files 'dir/*.parquet' --out run.npz
    TF_CONFIG=... python stream.py --files 'dir/*.parquet' --out w0.npz --multi-worker

Writes the loss per epoch and the final query and candidate embeddings of the
log's rows to ``--out`` (``.npz``).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2, before TensorFlow loads

import numpy as np
import pandas as pd
import tensorflow as tf

import tfrs_kit as tk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--multi-worker", action="store_true")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    tf.config.experimental.enable_op_determinism()
    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if args.multi_worker
                else tf.distribute.get_strategy())
    log = pd.concat([pd.read_parquet(p) for p in sorted(tf.io.gfile.glob(args.files))])
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"])
    tf.keras.utils.set_random_seed(7)  # the same initial weights in every process
    with strategy.scope():
        model = tk.TwoTowerRetrieval(
            tk.Tower(vocabs, features=["user_id"], output_dim=8),
            tk.Tower(vocabs, features=["item_id"], output_dim=8, hidden_dims=[16]),
            temperature=0.5, logq_correction=True)
        model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.05))
    history = model.fit(args.files, epochs=2, batch_size=args.batch_size, shuffle=False,
                        shuffle_buffer=1, verbose=0)
    np.savez(args.out, loss=np.asarray(history.history["loss"], np.float64),
             query=model.query_embeddings(log), candidate=model.candidate_embeddings(log),
             replicas=strategy.num_replicas_in_sync)


if __name__ == "__main__":
    main()
