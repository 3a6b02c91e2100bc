"""The ``tfrs-kit`` command: the end-to-end job from a log to recommendations.

``tfrs-kit demo`` runs on a registered data set; ``train``, ``evaluate`` and
``recommend`` work on files; ``datasets`` and ``towers`` list what is registered
(the built-ins and installed plugins). Run ``tfrs-kit COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfrs_kit._validation import check_int, check_number
from tfrs_kit.serving import _cli as _serve_cli

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
        "says why), 3 an update the guard refused, 1 an unexpected error.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train, evaluate, index and recommend on a registered data set",
        description="Vocabularies -> towers -> two-tower model -> evaluation -> index -> "
        "top-3 recommendations for one user.",
    )
    demo.add_argument("--dataset", type=_dataset, default="synthetic", metavar="NAME",
                      help="a registered data set: `tfrs-kit datasets` lists them (plugins "
                      "included); movielens-VARIANT picks a MovieLens variant, movielens is "
                      "movielens-100k (default: synthetic)")
    demo.add_argument("--data-dir", help="a local MovieLens directory or zip (GroupLens layout); "
                      "without it, tensorflow-datasets is used. Given to a plugin's data "
                      "source as data_dir=")
    demo.add_argument("--epochs", type=_positive("--epochs"), default=None,
                      help="training epochs (default: 10 on MovieLens, 5 otherwise)")
    demo.add_argument("--size", type=_positive("--size"), default=20_000,
                      help="synthetic interactions (default: 20000)")
    demo.add_argument("--export", metavar="DIR", help="also save the index to DIR")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    for kind in ("datasets", "towers"):
        commands.add_parser(
            kind, help=f"list the registered {kind} (built in and from installed plugins)",
            description=f"Prints each registered {kind[:-1]}'s name and summary: the "
            f"built-ins, those of installed plugins (the entry point group "
            f"'tfrs_kit.{kind}') and none other.")
    _add_file_commands(commands)
    _add_recommend_command(commands)
    _add_version_commands(commands)
    _add_update_command(commands)
    _serve_cli.add_parser(commands)
    return parser


def _add_file_commands(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a recommender on an event log (files) and export it",
        description="Chooses settings on a validation slice of EVENTS (tk.Recipe), trains "
        "on all of it and saves it to DIR as a new version (Recipe.save): DIR/versions/N/ "
        "holds the model, each user's query features and seen items, and index/, the "
        "serving SavedModel; DIR/latest names the version `evaluate`, `recommend` and "
        "`serve` read.")
    train.add_argument("events", metavar="EVENTS", help="the interaction log")
    for option, what in (("user", "user id"), ("item", "item id"), ("time", "timestamp")):
        train.add_argument(f"--{option}", required=True, metavar="COL", help=f"the {what} column")
    for side, where in (("item", "EVENTS or CATALOGUE"), ("user", "EVENTS")):
        train.add_argument(f"--{side}-features", nargs="+", default=[], metavar="COL",
                           help=f"{side} attribute columns (in {where})")
    train.add_argument("--items", metavar="CATALOGUE",
                       help="the item catalogue: one row per item (id and item features)")
    train.add_argument("--time-budget", type=_seconds, default=None, metavar="S",
                       help="an opt-in wall-clock bound in seconds on the search and training "
                       "(default: none: 3 trials, epochs chosen on validation, reproducible)")
    for side in ("query", "candidate"):
        train.add_argument(f"--{side}-tower", type=_tower(f"--{side}-tower"), default="default",
                           metavar="NAME", help=f"the {side} tower: a registered tower name "
                           "(`tfrs-kit towers` lists them, plugins included; default: default)")
    train.add_argument("--export", required=True, metavar="DIR",
                       help="a new folder, or one an earlier `train` wrote (a new version "
                       "is added; `tfrs-kit rollback DIR` goes back)")
    train.add_argument("--work-dir", metavar="DIR",
                       help="where a log bigger than memory is prepared (default: DIR.work "
                       "beside --export; reused when the same log is trained again)")
    train.add_argument("--rerank", choices=("auto", "on", "off"), default="off",
                       help="a ranking stage re-orders the retrieved top: on, off, or auto "
                       "(kept when it lifts the validation metric; default: off)")
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
    evaluate.add_argument("--version", type=_positive("--version"), metavar="N",
                          help="the version to evaluate (default: the latest)")
    evaluate.add_argument("--k", type=_positive("--k"), default=10, help="list length "
                          "(default: 10)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress output")


def _add_recommend_command(commands: Any) -> None:
    recommend = commands.add_parser(
        "recommend", help="print the top-k items of one user from an exported model",
        description="Loads the exported model (tk.load) and prints the top k of a user of "
        "the training log, or of a new user given by the items they had (--history).")
    recommend.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="a user id of the training log")
    who.add_argument("--history", nargs="+", metavar="ITEM", help="the item ids of a user "
                     "the model never saw, most recent last")
    recommend.add_argument("--version", type=_positive("--version"), metavar="N",
                           help="the version to read (default: the latest)")
    recommend.add_argument("--k", type=_positive("--k"), default=10, help="how many items "
                           "(default: 10)")
    recommend.add_argument("--exclude-seen", action="store_true",
                           help="leave out the items the user interacted with in training "
                           "(or the --history items)")


def _add_version_commands(commands: Any) -> None:
    versions = commands.add_parser(
        "versions", help="list the versions of an exported model",
        description="Prints each version `tfrs-kit train` saved in DIR: its number, when it "
        "was saved and its validation metric; * marks the latest (what `evaluate`, "
        "`recommend` and `serve` read).")
    versions.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")
    rollback = commands.add_parser(
        "rollback", help="point an exported model's latest version back",
        description="Moves DIR/latest (atomically) to version N, by default the one before "
        "the latest; a server watching DIR switches to it.")
    rollback.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")
    rollback.add_argument("--to", type=_positive("--to"), metavar="N",
                          help="the version (default: the one before the latest)")


def _add_update_command(commands: Any) -> None:
    update = commands.add_parser(
        "update", help="update an exported model with new events (no retraining)",
        description="Loads DIR's latest version, grows its vocabularies with the new users "
        "and items of NEW_EVENTS, fine-tunes it on them plus a sample of older events, and "
        "saves it as a new version. The guard scores it and the serving version on each "
        "user's latest new event: worse by more than the tolerance, it is not published "
        "(exit status 3, latest unchanged) unless --force.")
    update.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")
    update.add_argument("events", metavar="NEW_EVENTS", help="the new events, in the "
                        "columns the model was trained on")
    update.add_argument("--tolerance", type=float, default=0.1, metavar="T",
                        help="the largest relative drop of the validation metric allowed "
                        "(default: 0.1)")
    update.add_argument("--force", action="store_true",
                        help="publish even when the guard refuses")


def _update_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from tfrs_kit.data._files import read_table
    from tfrs_kit.data._table import to_table
    from tfrs_kit.recipe import UpdateRejected, update

    events = pd.DataFrame(to_table(read_table(args.events, argument="NEW_EVENTS",
                                              verbose=False), argument="NEW_EVENTS"))
    try:
        report = update(args.model, events, tolerance=args.tolerance, force=args.force)
    except UpdateRejected as error:
        print(f"tfrs-kit: {error.report}\ntfrs-kit: {error}", file=sys.stderr)
        return 3
    print(f"{args.model}: {report}")
    return 0


def _seconds(text: str) -> float:
    """An argparse type for ``--time-budget``: a number > 0, checked as the package checks."""
    value: Any = text
    with contextlib.suppress(ValueError):
        value = float(text)
    try:
        return float(check_number("--time-budget", value, minimum=0, low_open=True))
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _dataset(text: str) -> str:
    """An argparse type for ``--dataset``: a registered data set (or movielens-VARIANT)."""
    from tfrs_kit.datasets._registry import _DATASETS

    name = text
    if text.startswith("movielens-") and text not in _DATASETS.names():
        name = "movielens"  # the variant is movielens()'s to check
    try:
        _DATASETS.get(name, argument="--dataset")
    except (TypeError, ValueError, ImportError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _tower(option: str) -> Callable[[str], str]:
    """An argparse type for ``option``: a registered tower name."""

    def parse(text: str) -> str:
        from tfrs_kit.towers._registry import _TOWERS

        try:
            if text != "default":  # the built-in, whatever is installed
                _TOWERS.get(text, argument=option)
        except (TypeError, ValueError, ImportError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    return parse


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
    """The data set the arguments name, and the epochs to train on it.

    ``synthetic`` gets ``--size``; ``movielens-VARIANT`` (unless a plugin took that
    name) is ``load_dataset("movielens", variant=VARIANT, data_dir=...)``; any other
    registered name is loaded with ``data_dir=`` when ``--data-dir`` is given, else
    with no arguments.
    """
    from tfrs_kit import datasets

    name = args.dataset
    if name == "synthetic":
        return datasets.load_dataset(name, num_interactions=args.size, seed=0), args.epochs or 5
    if name == "movielens" or (name.startswith("movielens-")
                               and name not in datasets.available_datasets()):
        variant = name.partition("-")[2] or "100k"
        data = datasets.load_dataset("movielens", variant=variant, data_dir=args.data_dir)
        return data, args.epochs or 10
    options = {} if args.data_dir is None else {"data_dir": args.data_dir}
    data = datasets.load_dataset(name, **options)
    if data.timestamp is None:
        from tfrs_kit._errors import invalid_argument

        raise invalid_argument("--dataset", "name a data set with a timestamp column", name,
                               hint="The demo holds out each user's latest interactions.")
    return data, args.epochs or 5


def _list_command(args: argparse.Namespace) -> int:
    """``tfrs-kit datasets`` / ``towers``: each registered name and its summary."""
    from tfrs_kit.datasets._registry import _DATASETS
    from tfrs_kit.towers._registry import _TOWERS

    registry: Any = _DATASETS if args.command == "datasets" else _TOWERS
    names = registry.names()
    width = max(map(len, names), default=0)
    for name in names:
        summary = (getattr(registry.get(name), "__doc__", None) or "").strip()
        line = summary.splitlines()[0].replace("``", "") if summary else ""
        print(f"{name:<{width}}  {line}".rstrip())
    return 0


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
    index = tk.IndexBuilder(k_max=100).build(model, data.items, item_id=item_id)
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


# --- train, evaluate, recommend, versions, rollback: files in, a versioned folder out ------


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
    from tfrs_kit.recipe._scale import DEFAULT_IN_MEMORY_ROWS, out_of_core

    target = _check_export_dir(args.export)  # before minutes of training, not after
    quiet = args.quiet
    work_dir = args.work_dir or f"{str(target).rstrip(os.sep)}.work"
    recipe = tk.Recipe(user_id=args.user, item_id=args.item, timestamp=args.time,
                       item_features=args.item_features, user_features=args.user_features,
                       time_budget=args.time_budget, query_tower=args.query_tower,
                       candidate_tower=args.candidate_tower, verbose=not quiet,
                       work_dir=work_dir, in_memory_rows=DEFAULT_IN_MEMORY_ROWS,
                       rerank=args.rerank)
    if out_of_core(args.events, DEFAULT_IN_MEMORY_ROWS, argument="EVENTS"):
        log: Any = args.events  # bigger than memory: the Recipe prepares it on disk
        if not quiet:
            print(f"{args.events}: over {DEFAULT_IN_MEMORY_ROWS:,} events, trained out of "
                  f"core (work dir {work_dir})", file=sys.stderr)
    else:
        with _stage(quiet, f"Reading {args.events}"):
            log = _read_log(args)
            if not quiet:
                print(f"  {len(log):,} events, {log[args.user].nunique():,} users, "
                      f"{log[args.item].nunique():,} items", file=sys.stderr)
    budget = f" (time budget {args.time_budget:g} s)" if args.time_budget else ""
    with _stage(quiet, f"Choosing settings and training{budget}"):
        recipe.fit(log, items=args.items)
    if not quiet:
        print(recipe.report, file=sys.stderr)
    with _stage(quiet, f"Saving to {target} (with its index)"):
        version = recipe.save(target, k_max=100)
    print(f"Exported to {target}, version {version} ({len(recipe.candidates()):,} items, "
          f"{len(recipe.queries()):,} users)")
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
    from tfrs_kit.recipe._store import foreign_files

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise invalid_argument("--export", "name a folder", path, hint="It is a file.",
                               error=FileExistsError)
    if target.is_dir() and foreign_files(target):
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


def _read_export(args: argparse.Namespace) -> Any:
    """The Recipe ``train --export DIR`` saved (``--version``, else the latest)."""
    from tfrs_kit.recipe._load import load_recipe

    return load_recipe(args.model, version=getattr(args, "version", None), argument="DIR")


def _evaluate_command(args: argparse.Namespace) -> int:
    import tfrs_kit as tk
    from tfrs_kit import baselines
    from tfrs_kit.data._files import read_table

    with _stage(args.quiet, "Reading the model and the events"):
        recipe = _read_export(args)
        user, item = recipe.columns.user_id, recipe.columns.item_id
        settings = {user: "user_id", item: "item_id"}
        train = (recipe._seen() if args.train is None else read_table(
            args.train, argument="--train", columns=[user, item], settings=settings))
        test = read_table(args.test, argument="TEST_EVENTS", columns=[user, item],
                          settings=settings)
        model = recipe.as_recommender()
        model.display_name = "model"
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
    recipe = _read_export(args)
    c = recipe.columns
    if args.history is not None:
        items = recipe.candidates()[c.item_id]
        history = [_typed(text, items) for text in args.history]
        top = recipe.recommend(history=history, k=args.k, exclude_seen=args.exclude_seen)
    else:
        user = _known_user(args.user, recipe.queries()[c.user_id])
        top = recipe.recommend(user, k=args.k, exclude_seen=args.exclude_seen)
    print("rank\titem\tscore")
    for rank, (item, score) in enumerate(zip(top.ids[0], top.scores[0], strict=True), 1):
        if score > float("-inf"):  # fewer than k items left after the exclusions
            print(f"{rank}\t{item}\t{score:.4f}")
    return 0


def _typed(text: str, known: pd.Series) -> Any:
    """``text`` as an id of the type of ``known`` (an integer for integer ids)."""
    if known.dtype.kind in "iu":
        with contextlib.suppress(ValueError):
            return int(text)
    return text


def _known_user(text: str, known: pd.Series) -> Any:
    """``--user`` as an id of the training log, of the log's id type."""
    from tfrs_kit._errors import invalid_argument

    user = _typed(text, known)
    if not (known == user).any():
        examples = ", ".join(repr(u) for u in known.head(5).tolist())
        raise invalid_argument("--user", "be a user id of the training log", text,
                               hint=f"Known users include {examples}; for a new user, "
                               "give --history ITEM [ITEM ...].")
    return user


def _versions_command(args: argparse.Namespace) -> int:
    from tfrs_kit.recipe._store import read_latest, versions

    listed = versions(args.model)
    latest = read_latest(Path(args.model)) or listed[-1].number
    print("latest\tversion\tcreated\tmetrics")
    for version in listed:
        metrics = " ".join(f"{name}={value:.4f}" for name, value in version.metrics.items())
        mark = "*" if version.number == latest else ""
        print(f"{mark}\t{version.number}\t{version.created}\t{metrics}".rstrip())
    return 0


def _rollback_command(args: argparse.Namespace) -> int:
    from tfrs_kit.recipe._store import rollback

    version = rollback(args.model, to=args.to)
    print(f"{args.model}: latest is now version {version}")
    return 0


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
                   "recommend": _recommend_command, "versions": _versions_command,
                   "rollback": _rollback_command, "update": _update_command,
                   "datasets": _list_command,
                   "towers": _list_command, "serve": _serve_cli.run}[args.command]
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
