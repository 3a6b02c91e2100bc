"""Serving: build a top-k index, query it, save it, serve it with TensorFlow alone.

    python examples/serving.py [--export DIR] [--epochs 5]

The index takes raw query features (ids, histories) and returns candidate ids
and scores; the saved directory is one SavedModel that a process without
tfrs_kit serves with ``tf.saved_model.load``.
"""

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import tfrs_kit as tk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--export", help="save the index here (default: a temp dir)")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

# A trained model (see the quickstart).
data = tk.datasets.synthetic(10_000, seed=0)
history = tk.HistoryBuilder()
rows = history.transform(data.interactions)
vocabs = tk.VocabularyBuilder().fit(rows, features=["user_id", "item_id",
                                                  "history"])
model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id", "history"]),
                             tk.Tower(vocabs, features=["item_id"]),
                             logq_correction=True)
model.fit(rows, epochs=args.epochs, seed=0, verbose=0)

# The index embeds every candidate once; k can be anything up to k_max per query.
index = tk.IndexBuilder(k_max=100).build(model, data.items)
print(index)

users = history.for_users(data.interactions)
queries = {name: column[:2] for name, column in users.items()}
seen = [list(h) for h in queries["history"]]  # do not recommend these again
top = index.recommend(queries, k=5, exclude=seen)
for user, ids, scores in zip(queries["user_id"], top.ids, top.scores, strict=True):
    print(user, ids.tolist(), [f"{score:.2f}" for score in scores])

# A new user, never seen in training, is served from a history alone.
new_user = {"user_id": ["new"], "history": [["i1", "i2"]]}
print("new user:", index.recommend(new_user, k=5).ids)
print("similar to i1:", index.similar_items(["i1"], k=5).ids)

with tempfile.TemporaryDirectory() as scratch:
    export = Path(args.export or scratch) / "index"
    # Save (atomically) and reload: the same TensorFlow functions answer.
    index.save(export)
    reloaded = tk.load_index(export)
    same = (reloaded.recommend(queries, k=5, exclude=seen).ids == top.ids).all()
    print(f"saved to {export}; the reloaded index agrees: {same}")

    # A serving process needs TensorFlow only: the SavedModel reads raw features.
    server = textwrap.dedent(f"""
        import tensorflow as tf
        served = tf.saved_model.load({str(export / "saved_model")!r})
        serve = served.signatures["serving_default"]
        out = serve(user_id=tf.constant(["u0"]),
                    history=tf.constant([["i1", "i2"]]))
        ids = out["ids"][0, :5].numpy().astype(str).tolist()
        print("served by TensorFlow alone:", ids)
    """)
    subprocess.run([sys.executable, "-c", server], check=True)
