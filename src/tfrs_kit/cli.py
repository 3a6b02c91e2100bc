"""The ``tfrs-kit`` command: the end-to-end job from a log to recommendations.

``tfrs-kit demo`` runs on a built-in data set; ``train``, ``evaluate`` and
``recommend`` work on files. Run ``tfrs-kit COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfrs_kit._validation import check_int, check_number

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrs-kit",
        description="The end-to-end job from an interaction log to recommendations.",
        epilog="Run `tfrs-kit COMMAND --help` for a command's options. EVENTS, TEST_EVENTS "
        "and CATALOGUE are Parquet, CSV or TFRecord files: a path, a directory of shards or "
        "a quoted glob ('logs/*.parquet'). Exit status: 0 done, 2 bad input (the message "
        "says why), 1 an unexpected error.")
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
    _add_file_commands(commands)
    return parser


def _add_file_commands(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a recommender on an event log (files) and export it",
        description="Chooses settings on a validation slice of EVENTS (tk.Recipe), trains "
        "on all of it and exports what `evaluate` and `recommend` read to DIR: the index "
        "(a TensorFlow SavedModel), each user's query features and seen items, and the "
        "embeddings.")
    train.add_argument("events", metavar="EVENTS", help="the interaction log")
    train.add_argument("--user", required=True, metavar="COL", help="the user id column")
    train.add_argument("--item", required=True, metavar="COL", help="the item id column")
    train.add_argument("--time", required=True, metavar="COL", help="the timestamp column")
    train.add_argument("--item-features", nargs="+", default=[], metavar="COL",
                       help="item attribute columns (in EVENTS or CATALOGUE)")
    train.add_argument("--user-features", nargs="+", default=[], metavar="COL",
                       help="user attribute columns (in EVENTS)")
    train.add_argument("--items", metavar="CATALOGUE",
                       help="the item catalogue: one row per item (id and item features)")
    train.add_argument("--time-budget", type=_seconds, default=45.0, metavar="S",
                       help="seconds for the settings search and training (default: 45)")
    train.add_argument("--export", required=True, metavar="DIR",
                       help="a new folder, or one an earlier `train` wrote (replaced)")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    evaluate = commands.add_parser(
        "evaluate", help="score an exported model against popularity on test events",
        description="Ranks the whole catalogue for every user of TEST_EVENTS (training "
        "items masked) and prints recall, ndcg, hit rate and coverage of the exported model "
        "and of the popularity baseline.")
    evaluate.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")
    evaluate.add_argument("test", metavar="TEST_EVENTS", help="the held-out events")
    evaluate.add_argument("--train", metavar="EVENTS", help="the training events (default: "
                          "the log the model was trained on, as exported)")
    evaluate.add_argument("--k", type=_positive("--k"), default=10, help="list length "
                          "(default: 10)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress output")
    recommend = commands.add_parser(
        "recommend", help="print the top-k items of one user from an exported model",
        description="Loads the exported index (TensorFlow alone) and prints the user's top k.")
    recommend.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")
    recommend.add_argument("--user", required=True, metavar="ID", help="a user id of the "
                           "training log")
    recommend.add_argument("--k", type=_positive("--k"), default=10, help="how many items "
                           "(default: 10)")
    recommend.add_argument("--exclude-seen", action="store_true",
                           help="leave out the items the user interacted with in training")


def _seconds(text: str) -> float:
    """An argparse type for ``--time-budget``: a number > 0, checked as the package checks."""
    value: Any = text
    with contextlib.suppress(ValueError):
        value = float(text)
    try:
        return float(check_number("--time-budget", value, minimum=0, low_open=True))
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


# --- train, evaluate, recommend: files in, an exported folder out ---------------------------

_EXPORT_FILE = "tfrs_kit_cli.json"  # its presence marks a whole export
_EXPORT_FORMAT = 1


@contextlib.contextmanager
def _stage(quiet: bool, text: str) -> Iterator[None]:
    """Announces a long stage on standard error, then its duration."""
    if quiet:
        yield
        return
    print(f"{text} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def _train_command(args: argparse.Namespace) -> int:
    import tfrs_kit as tk

    target = _check_export_dir(args.export)  # before minutes of training, not after
    quiet = args.quiet
    with _stage(quiet, f"Reading {args.events}"):
        log = _read_log(args)
        if not quiet:
            print(f"  {len(log):,} events, {log[args.user].nunique():,} users, "
                  f"{log[args.item].nunique():,} items", file=sys.stderr)
    recipe = tk.Recipe(user_id=args.user, item_id=args.item, timestamp=args.time,
                       item_features=args.item_features, user_features=args.user_features,
                       time_budget=args.time_budget, verbose=not quiet)
    with _stage(quiet, f"Choosing settings and training (time budget {args.time_budget:g} s)"):
        recipe.fit(log, items=args.items)
    if not quiet:
        print(recipe.report, file=sys.stderr)
    with _stage(quiet, "Building the index"):
        index = recipe.build_index(k_max=100)
    with _stage(quiet, f"Exporting to {target}"):
        _export(target, recipe, index, log, args)
    print(f"Exported to {target} ({len(index):,} items, {log[args.user].nunique():,} users)")
    return 0


def _read_log(args: argparse.Namespace) -> pd.DataFrame:
    """The columns of EVENTS that training needs (features may live in the catalogue)."""
    import pandas as pd

    from tfrs_kit.data._files import read_table, schema
    from tfrs_kit.data._table import to_table

    ids = {args.user: "--user", args.item: "--item", args.time: "--time"}
    available = schema(args.events, argument="EVENTS")
    features = [c for c in (*args.item_features, *args.user_features)
                if c in available and c not in ids]
    table = read_table(args.events, argument="EVENTS", columns=[*ids, *features],
                       settings=ids, verbose=not args.quiet)
    return pd.DataFrame(to_table(table, argument="EVENTS"))


def _check_export_dir(path: str) -> Path:
    """``--export`` as a target: a new or empty folder, or one an earlier ``train`` wrote."""
    from tfrs_kit._errors import invalid_argument

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise invalid_argument("--export", "name a folder", path, hint="It is a file.",
                               error=FileExistsError)
    if target.is_dir() and any(target.iterdir()) and not (target / _EXPORT_FILE).is_file():
        raise invalid_argument("--export", "be new, empty, or a folder `tfrs-kit train` wrote",
                               path, hint="Refusing to replace a folder of other files.",
                               error=FileExistsError)
    parent = target.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise invalid_argument("--export", "be in a folder this process can write to", path,
                               hint=f"{parent} is not a writable folder.", error=PermissionError)
    return target


def _export(target: Path, recipe: Any, index: Any, log: pd.DataFrame,
            args: argparse.Namespace) -> None:
    """Writes the export beside ``target``, then moves it in place (a crash leaves the old)."""
    import numpy as np

    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        index.save(staging / "index")
        queries, candidates = recipe.queries(), recipe.candidates()
        np.save(staging / "query_embeddings.npy",
                recipe.model.query_tower.embed(queries, verbose=False))
        np.save(staging / "item_embeddings.npy",
                recipe.model.candidate_tower.embed(candidates, verbose=False))
        queries.to_parquet(staging / "queries.parquet", index=False)
        candidates[[args.item]].to_parquet(staging / "items.parquet", index=False)
        log[[args.user, args.item]].to_parquet(staging / "seen.parquet", index=False)
        metadata = {"format": _EXPORT_FORMAT, "user_id": args.user, "item_id": args.item,
                    "timestamp": args.time, "events": args.events,
                    "settings": recipe.settings.describe()}
        (staging / _EXPORT_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_export(path: str) -> tuple[Path, dict[str, Any]]:
    from tfrs_kit._errors import invalid_argument

    folder = Path(path)
    try:
        metadata = json.loads((folder / _EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise invalid_argument("DIR", "be a folder `tfrs-kit train --export DIR` wrote", path,
                               hint=f"It has no readable {_EXPORT_FILE}.") from None
    if metadata.get("format") != _EXPORT_FORMAT:
        raise invalid_argument("DIR", f"hold an export of format {_EXPORT_FORMAT}", path,
                               hint="Train it again with this version of tfrs-kit.")
    return folder, metadata


def _exported_recommender(folder: Path, user_id: str) -> Any:
    """The exported model as a Recommender, scored from the export's query and item
    embeddings as ``Recipe.as_recommender`` scores (a user the log never saw: the average
    known user)."""
    import numpy as np
    import pandas as pd

    from tfrs_kit.recipe._recommender import RecipeRecommender

    recommender = RecipeRecommender.from_embeddings(
        pd.read_parquet(folder / "queries.parquet", columns=[user_id])[user_id],
        np.load(folder / "query_embeddings.npy"),
        pd.read_parquet(folder / "items.parquet").iloc[:, 0].to_numpy(),
        np.load(folder / "item_embeddings.npy"))
    recommender.display_name = "model"
    return recommender


def _evaluate_command(args: argparse.Namespace) -> int:
    import tfrs_kit as tk
    from tfrs_kit import baselines
    from tfrs_kit.data._files import read_table

    folder, metadata = _read_export(args.model)
    user, item = metadata["user_id"], metadata["item_id"]
    settings = {user: "user_id", item: "item_id"}
    with _stage(args.quiet, "Reading the model and the events"):
        model = _exported_recommender(folder, user)
        train = read_table(args.train or str(folder / "seen.parquet"), argument="--train",
                           columns=[user, item], settings=settings)
        test = read_table(args.test, argument="TEST_EVENTS", columns=[user, item],
                          settings=settings)
    with _stage(args.quiet, f"Ranking {len(model.item_ids):,} items for every test user"):
        report = tk.evaluate(
            {"model": model, "popularity": baselines.Popularity().fit(
                train, user_id=user, item_id=item)},
            test, train=train, k=args.k, user_id=user, item_id=item,
            metrics=["recall", "ndcg", "hit_rate", "coverage"], verbose=not args.quiet)
    print(report.to_text())
    scores = report.to_dict()
    print(" ".join(f"{name} recall@{args.k}={row[f'recall@{args.k}']:.4f} "
                   f"ndcg@{args.k}={row[f'ndcg@{args.k}']:.4f}" for name, row in scores.items()))
    return 0


def _recommend_command(args: argparse.Namespace) -> int:
    import pandas as pd

    import tfrs_kit as tk

    folder, metadata = _read_export(args.model)
    user_col, item_col = metadata["user_id"], metadata["item_id"]
    queries = pd.read_parquet(folder / "queries.parquet")
    user = _known_user(args.user, queries[user_col])
    exclude = None
    if args.exclude_seen:
        seen = pd.read_parquet(folder / "seen.parquet", columns=[user_col, item_col],
                               filters=[(user_col, "==", user)])
        exclude = [seen[item_col].unique().tolist()]
    index = tk.load_index(folder / "index")
    top = index.recommend(queries[queries[user_col] == user], k=args.k, exclude=exclude)
    print("rank\titem\tscore")
    for rank, (item, score) in enumerate(zip(top.ids[0], top.scores[0], strict=True), 1):
        if score > float("-inf"):  # fewer than k items left after the exclusions
            print(f"{rank}\t{item}\t{score:.4f}")
    return 0


def _known_user(text: str, known: pd.Series) -> Any:
    """``--user`` as an id of the training log, of the log's id type."""
    from tfrs_kit._errors import invalid_argument

    user: Any = text
    if known.dtype.kind in "iu":
        with contextlib.suppress(ValueError):
            user = int(text)
    if not (known == user).any():
        examples = ", ".join(repr(u) for u in known.head(5).tolist())
        raise invalid_argument("--user", "be a user id of the training log", text,
                               hint=f"Known users include {examples}.")
    return user


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
        command = {"demo": _demo, "train": _train_command, "evaluate": _evaluate_command,
                   "recommend": _recommend_command}[args.command]
        return command(args)
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError) as error:
        # Bad input, files and environment: a message and an exit status, no traceback.
        print(f"tfrs-kit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfrs-kit: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: the traceback is what a report needs
        traceback.print_exc()
        print("tfrs-kit: unexpected error (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
