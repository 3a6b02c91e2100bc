"""The ``tfrs-kit`` command: the end-to-end job from a log to recommendations.

Run ``tfrs-kit demo --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tfrs_kit._validation import check_int

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrs-kit",
        description="The end-to-end job from an interaction log to recommendations.",
        epilog="Run `tfrs-kit demo --help` for the demo's options.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train, evaluate, index and recommend on a built-in data set",
        description="Vocabularies -> towers -> two-tower model -> evaluation -> index -> "
        "top-3 recommendations for one user.",
    )
    demo.add_argument("--dataset", choices=["synthetic", "movielens-100k"], default="synthetic")
    demo.add_argument("--data-dir", help="a local MovieLens directory or zip (GroupLens layout); "
                      "without it, tensorflow-datasets is used")
    demo.add_argument("--epochs", type=_positive("--epochs"), default=None,
                      help="training epochs (default: 5 on synthetic, 10 on MovieLens)")
    demo.add_argument("--size", type=_positive("--size"), default=20_000,
                      help="synthetic interactions (default: 20000)")
    demo.add_argument("--export", metavar="DIR", help="also save the index to DIR")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _positive(option: str) -> Callable[[str], int]:
    """An argparse type for ``option``: an integer >= 1, checked as the package checks."""

    def parse(text: str) -> int:
        value: Any = text
        with contextlib.suppress(ValueError):  # not a number: check_int says so
            value = int(text)
        try:
            return int(check_int(option, value, minimum=1))
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _demo(args: argparse.Namespace) -> int:
    from tfrs_kit import evaluation

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    start = time.perf_counter()
    if args.export:
        from tfrs_kit.index._export import check_target

        check_target(args.export)  # before minutes of training, not after
    data, epochs = _load(args)
    say(f"Data: {data!r}")
    train, test = evaluation.per_user_temporal_split(data, test_fraction=0.2)
    say(f"Training for {epochs} epochs on {len(train):,} interactions ...")
    model, users = _train(data, train, epochs=epochs, quiet=args.quiet)
    _evaluate(data, model, users, train, test)
    index = _recommend(data, model, users, train)
    if args.export:
        index.save(args.export)
        print(f"Index saved to {args.export}")
    say(f"Done in {time.perf_counter() - start:.1f} s.")
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, int]:
    """The data set the arguments name, and the epochs to train on it."""
    from tfrs_kit import datasets

    if args.dataset == "synthetic":
        return datasets.synthetic(args.size, seed=0), args.epochs or 5
    return datasets.movielens("100k", data_dir=args.data_dir), args.epochs or 10


def _train(data: Any, train: pd.DataFrame, *, epochs: int, quiet: bool) -> tuple[Any, Any]:
    """A two-tower model (user id and history vs item id) fitted on ``train``, and the
    users' features as of the end of ``train`` (id and history)."""
    import tfrs_kit as tk

    user_id, item_id = data.user_id, data.item_id
    history = tk.HistoryBuilder(user_id=user_id, item_id=item_id, timestamp=data.timestamp)
    train_rows = history.transform(train)
    vocabularies = tk.VocabularyBuilder().fit(
        train_rows, features={user_id: "categorical", item_id: "categorical", "history": "multi"}
    )
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabularies, features=[user_id, "history"], output_dim=64),
        tk.Tower(vocabularies, features=[item_id], output_dim=64),
        logq_correction=True,
    )
    model.fit(train_rows, epochs=epochs, batch_size=1024, seed=0, verbose=0 if quiet else 2)
    return model, history.for_users(train)


def _evaluate(data: Any, model: Any, users: Any, train: pd.DataFrame,
              test: pd.DataFrame) -> Any:
    """The two-tower model against popularity on ``test``, printed as a table and a line."""
    import tfrs_kit as tk
    from tfrs_kit import baselines

    user_id, item_id = data.user_id, data.item_id
    report = tk.evaluate(
        {
            "two-tower": model.as_recommender(train, user_id=user_id, users=users),
            "popularity": baselines.Popularity().fit(train, user_id=user_id, item_id=item_id),
        },
        test, train=train, k=[k for k in (10, 100) if k <= train[item_id].nunique()],
        user_id=user_id, item_id=item_id,
        metrics=["recall", "ndcg", "coverage"],
    )
    print("Evaluation (per-user temporal holdout, 20% test, full catalogue):")
    print(report.to_text())
    scores = report.to_dict()["two-tower"]
    print(f"EVAL two-tower recall@10={scores['recall@10']:.4f} ndcg@10={scores['ndcg@10']:.4f}")
    return report


def _recommend(data: Any, model: Any, users: Any, train: pd.DataFrame) -> Any:
    """Builds the index and prints the top 3 unseen items of the first user."""
    import tfrs_kit as tk

    user_id, item_id = data.user_id, data.item_id
    index = tk.IndexBuilder(k_max=100).build(model, data.items, candidate_id=item_id)
    user = users[user_id][0]
    seen = train.loc[train[user_id] == user, item_id].tolist()
    top = index.recommend({key: column[:1] for key, column in users.items()}, k=3,
                          exclude=[seen])
    titles = _titles(data)
    print(f"Top-3 recommendations for user {user!r} ({len(seen)} items seen):")
    for rank, (item, score) in enumerate(zip(top.ids[0], top.scores[0], strict=True), 1):
        title = f"  {titles[item]}" if item in titles else ""
        print(f"  {rank}. {item} (score {score:.3f}){title}")
    return index


def _titles(data: Any) -> dict[Any, str]:
    for column in data.item_features:
        if "title" in column:
            titles = data.items[column].astype(str)
            return dict(zip(data.items[data.item_id], titles, strict=True))
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``tfrs-kit`` command line.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        return _demo(args)
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError) as error:
        # Bad input, files and environment: a message and an exit status, no traceback.
        print(f"tfrs-kit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfrs-kit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
