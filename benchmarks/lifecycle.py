"""Updating daily vs retraining from scratch: ``Recipe.update`` against ``Recipe.fit``.

A temporal log is cut into days. Both start from one Recipe fitted on the first part;
then for ``--days`` consecutive days, one is updated with that day's events
(``Recipe.update``, the guard on) and one is refitted from scratch on everything so far
(``tk.Recipe(...).fit``, the same settings: ``time_budget=None, max_trials=1,
max_epochs=--epochs, rerank=False``: an update refreshes the first stage, which is what is
compared here); a day the guard refuses is retried with the next day's events.
Both are scored on the *next* day's events (recall@10, the training items masked,
``tk.evaluate``) and timed.

Logs: ``synthetic`` (written here: every day new items arrive and each user's taste
drifts; new items are what the drifted tastes favour) and MovieLens 100K
(``--data-dir``), its last events cut into days of equal event counts.

    nice python benchmarks/lifecycle.py [--data-dir ../shared/data/ml-100k]
        [--variants 0.5:4 0.5:4:15:0 0.5:4:3:1]

Per day: ``DAY log=... day=... update_recall@10=... retrain_recall@10=... update_s=...
retrain_s=... new_items=... reachable=...``; the last line:
``LIFECYCLE days=5 recall_ratio=<mean update / retrain> time_ratio=<mean update time /
retrain time> new_items_reachable=<share of the days' new items the updated index
returns>`` (means over days and logs). Each further ``--variants`` entry
(``REPLAY:EPOCHS[:SWEEPS[:RECHOOSE[:WINDOW]]]``: the iALS's sweeps from the serving
model's factors, 0 for a fit from random factors, whether the blend's weights are chosen
again, and the latest share of the older events the replay draws from; default the
library's) updates its own copy of the first fit
and prints a ``VARIANT`` line per day.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

import tfrs_kit as tk
from tfrs_kit.recipe import _update as _defaults


def drifting_log(*, users: int = 1_500, items: int = 300, days: int = 14,
                 new_items_per_day: int = 25, events_per_user: float = 3.0,
                 dim: int = 16, drift: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """A log of ``days`` days: every day ``new_items_per_day`` items arrive, every
    user's taste vector moves by ``drift`` (relative), and each active user takes items
    by a softmax of taste x item, new items (younger than 3 days) favoured."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(users, dim))
    vectors = rng.normal(size=(items, dim))
    born = np.zeros(items, np.int64)
    rows = []
    for day in range(days):
        if day:
            fresh = rng.normal(size=(new_items_per_day, dim))
            vectors, born = np.vstack([vectors, fresh]), np.r_[born, np.full(len(fresh), day)]
            taste = taste + drift * rng.normal(size=taste.shape)
        bonus = np.where(day - born < 3, 1.0, 0.0)
        active = rng.choice(users, int(users * 0.5), replace=False)
        logits = taste[active] @ vectors.T / np.sqrt(dim) * 2.0 + bonus
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        counts = rng.poisson(events_per_user, len(active)) + 1
        for user, p, count in zip(active, probs, counts, strict=True):
            chosen = rng.choice(len(p), min(count, len(p)), replace=False, p=p)
            seconds = day * 86_400 + np.sort(rng.integers(0, 86_400, len(chosen)))
            rows += [(f"u{user}", f"i{item}", int(t)) for item, t in zip(chosen, seconds,
                                                                          strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def movielens_days(data_dir: str, days: int) -> list[pd.DataFrame]:
    """MovieLens 100K: the first 70% of events (time order), then ``days + 1`` "days"
    of equal event counts cut from the rest."""
    data = tk.datasets.movielens("100k", data_dir=data_dir)
    frame = data.interactions
    log = pd.DataFrame({"user_id": frame["user_id"].to_numpy(),  # no schema attached
                        "item_id": frame["movie_id"].to_numpy(),
                        "timestamp": frame["timestamp"].to_numpy()})
    log = log.sort_values("timestamp", kind="stable").reset_index(drop=True)
    first = int(len(log) * 0.7)
    rest = np.array_split(np.arange(first, len(log)), 8)[:days + 1]
    return [log.iloc[:first]] + [log.iloc[part] for part in rest]


def synthetic_days(days: int, seed: int, users: int = 1_500) -> list[pd.DataFrame]:
    log = drifting_log(users=users, days=8 + days + 1, seed=seed)
    day = log["timestamp"] // 86_400
    return [log[day < 8]] + [log[day == d] for d in range(8, 8 + days + 1)]


def recall(recipe: tk.Recipe, test: pd.DataFrame, train: pd.DataFrame) -> float:
    result = tk.evaluate(recipe, test, train=train, metrics=["recall"], k=10)
    return float(result["Recipe"]["recall@10"])


def reachable(recipe: tk.Recipe, items: set) -> float:
    """The share of ``items`` the updated index returns (k = every candidate)."""
    if not items:
        return 1.0
    candidates = recipe.candidates()
    index = recipe.build_index(k_max=len(candidates))
    ids = index.recommend(recipe.queries().head(3), k=len(candidates)).ids
    return len(items & {str(i) for i in np.ravel(ids)}) / len(items)


def run(name: str, parts: list[pd.DataFrame], args: argparse.Namespace) -> list[dict]:
    """The days of one log; one result row per day (the first ``--variants`` entry's
    update; the others are printed to compare replay and epochs)."""
    settings = {"time_budget": None, "max_trials": 1, "max_epochs": args.epochs,
                "rerank": False, "verbose": False, "seed": args.seed}
    so_far = parts[0]
    started = time.monotonic()
    first = tk.Recipe(**settings).fit(so_far)
    print(f"FIT log={name} events={len(so_far)} seconds={time.monotonic() - started:.1f}",
          flush=True)
    folder = tempfile.mkdtemp(prefix="lifecycle-")
    first.save(folder)
    variants = [_variant(v) for v in args.variants]
    updated = [first] + [tk.load(folder) for _ in variants[1:]]
    pending = [parts[0].head(0)] * len(variants)  # events of refused updates, retried
    results = []
    for day in range(1, args.days + 1):
        events, test = parts[day], parts[day + 1]
        new_items = set(events["item_id"].astype(str)) - set(so_far["item_id"].astype(str))
        seconds, notes = [], []
        for i, (recipe, variant) in enumerate(zip(updated, variants, strict=True)):
            started = time.monotonic()
            batch = pd.concat([pending[i], events], ignore_index=True)
            notes.append(_update(recipe, batch, variant))
            seconds.append(time.monotonic() - started)
            pending[i] = batch if notes[-1] != "published" else batch.head(0)
        so_far = pd.concat([so_far, events], ignore_index=True)
        started = time.monotonic()
        retrained = tk.Recipe(**settings).fit(so_far)
        retrain_s = time.monotonic() - started
        scores = [recall(recipe, test, so_far) for recipe in updated]
        row = {"update": scores[0], "retrain": recall(retrained, test, so_far),
               "update_s": seconds[0], "retrain_s": retrain_s,
               "reachable": reachable(updated[0], new_items), "new_items": len(new_items)}
        results.append(row)
        print(f"DAY log={name} day={day} update_recall@10={row['update']:.4f} "
              f"retrain_recall@10={row['retrain']:.4f} update_s={seconds[0]:.1f} "
              f"retrain_s={retrain_s:.1f} new_items={len(new_items)} "
              f"reachable={row['reachable']:.3f} guard={notes[0]}", flush=True)
        for variant, score, spent, note in list(zip(
                variants, scores, seconds, notes, strict=True))[1:]:
            print(f"VARIANT log={name} day={day} {_described(variant)} "
                  f"recall@10={score:.4f} ratio={score / max(row['retrain'], 1e-9):.3f} "
                  f"seconds={spent:.1f} guard={note}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return results


def _variant(text: str) -> dict:
    """``REPLAY:EPOCHS[:SWEEPS[:RECHOOSE[:WINDOW]]]`` as the update's settings (the
    factorisation's warm sweeps, whether the blend's weights are chosen again and the
    replay's window default to the library's)."""
    parts = text.split(":")
    variant = {"replay": float(parts[0]), "epochs": int(parts[1]),
               "sweeps": _defaults.DEFAULT_WARM_SWEEPS, "rechoose": _defaults.DEFAULT_RECHOOSE,
               "window": _defaults.DEFAULT_REPLAY_WINDOW}
    if len(parts) > 2:
        variant["sweeps"] = int(parts[2])
    if len(parts) > 3:
        variant["rechoose"] = bool(int(parts[3]))
    if len(parts) > 4:
        variant["window"] = float(parts[4])
    return variant


def _described(variant: dict) -> str:
    return (f"replay={variant['replay']:g} epochs={variant['epochs']} "
            f"sweeps={variant['sweeps']} rechoose={int(variant['rechoose'])} "
            f"window={variant['window']:g}")


def _update(recipe: tk.Recipe, events: pd.DataFrame, variant: dict) -> str:
    try:
        recipe.update(events, replay=variant["replay"], epochs=variant["epochs"],
                      rechoose=variant["rechoose"], warm_sweeps=variant["sweeps"],
                      replay_window=variant["window"])
    except tk.recipe.UpdateRejected as error:
        report = error.report
        return f"refused({report.serving_score:.4f}>{report.updated_score:.4f})"
    return "published"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="a MovieLens 100K folder (skipped without)")
    parser.add_argument("--logs", nargs="+", default=["synthetic", "movielens"])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="the Recipe's max_epochs")
    parser.add_argument("--variants", nargs="+", default=["0.5:4"],
                        metavar="REPLAY:EPOCHS[:SWEEPS[:RECHOOSE]]",
                        help="update settings (SWEEPS: the factorisation's warm sweeps, 0 from "
                        "random factors; "
                        "RECHOOSE 0 or 1: choose the blend's weights again); the first is "
                        "the one reported (default 0.5:4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=1_500,
                        help="the synthetic log's users (a smaller log runs faster)")
    args = parser.parse_args()
    rows = []
    if "synthetic" in args.logs:
        rows += run("synthetic", synthetic_days(args.days, args.seed, args.users), args)
    if "movielens" in args.logs and args.data_dir and os.path.isdir(args.data_dir):
        rows += run("movielens-100k", movielens_days(args.data_dir, args.days), args)
    ratio = np.mean([r["update"] / max(r["retrain"], 1e-9) for r in rows])
    times = np.mean([r["update_s"] / r["retrain_s"] for r in rows])
    new = sum(r["new_items"] for r in rows)
    reach = sum(r["reachable"] * r["new_items"] for r in rows) / new if new else 1.0
    print(f"LIFECYCLE days={args.days} recall_ratio={ratio:.3f} time_ratio={times:.3f} "
          f"new_items_reachable={reach:.3f}")


if __name__ == "__main__":
    main()
