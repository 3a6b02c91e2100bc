"""``tfrs-kit demo`` (the whole job on a registered data set), ``datasets`` and ``towers``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from tfrs_kit.cli._options import add_quiet, dataset, positive

if TYPE_CHECKING:
    import pandas as pd


def add_commands(commands: Any) -> None:
    """Adds ``demo``, ``datasets`` and ``towers`` to the ``tfrs-kit`` parser."""
    demo = commands.add_parser(
        "demo",
        help="train, evaluate, index and recommend on a registered data set",
        description="Vocabularies -> towers -> two-tower model -> evaluation -> index -> "
        "top-3 recommendations for one user.",
    )
    demo.add_argument("--dataset", type=dataset, default="synthetic", metavar="NAME",
                      help="a registered data set: `tfrs-kit datasets` lists them (plugins "
                      "included); movielens-VARIANT picks a MovieLens variant, movielens is "
                      "movielens-100k (default: synthetic)")
    demo.add_argument("--data-dir", help="a local MovieLens directory or zip (GroupLens layout); "
                      "without it, tensorflow-datasets is used. Given to a plugin's data "
                      "source as data_dir=")
    demo.add_argument("--epochs", type=positive("--epochs"), default=None,
                      help="training epochs (default: 10 on MovieLens, 5 otherwise)")
    demo.add_argument("--size", type=positive("--size"), default=20_000,
                      help="synthetic interactions (default: 20000)")
    demo.add_argument("--export", metavar="DIR", help="also save the index to DIR")
    add_quiet(demo)
    demo.set_defaults(run=run_demo)
    for kind in ("datasets", "towers"):
        listing = commands.add_parser(
            kind, help=f"list the registered {kind} (built in and from installed plugins)",
            description=f"Prints each registered {kind[:-1]}'s name and summary: the "
            f"built-ins, those of installed plugins (the entry point group "
            f"'tfrs_kit.{kind}') and none other.")
        listing.set_defaults(run=list_registered)


def run_demo(args: argparse.Namespace) -> int:
    from tfrs_kit import evaluation

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    start = time.perf_counter()
    if args.export:
        from tfrs_kit.index._export import check_target

        check_target(args.export)  # before minutes of training, not after
    data, epochs = load_data(args)
    say(f"Data: {data!r}")
    train, test = evaluation.per_user_temporal_split(data, test_fraction=0.2)
    say(f"Training for {epochs} epochs on {len(train):,} interactions ...")
    model, users = train_model(data, train, epochs=epochs, quiet=args.quiet)
    evaluate_model(data, model, users, train, test)
    index = recommend_first(data, model, users, train)
    if args.export:
        index.save(args.export)
        print(f"Index saved to {args.export}")
    say(f"Done in {time.perf_counter() - start:.1f} s.")
    return 0


def load_data(args: argparse.Namespace) -> tuple[Any, int]:
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


def list_registered(args: argparse.Namespace) -> int:
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


def train_model(data: Any, train: pd.DataFrame, *, epochs: int, quiet: bool) -> tuple[Any, Any]:
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


def evaluate_model(data: Any, model: Any, users: Any, train: pd.DataFrame,
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


def recommend_first(data: Any, model: Any, users: Any, train: pd.DataFrame) -> Any:
    """Builds the index and prints the top 3 unseen items of the first user."""
    import tfrs_kit as tk

    user_id, item_id = data.user_id, data.item_id
    index = tk.IndexBuilder(k_max=100).build(model, data.items, item_id=item_id)
    user = users[user_id][0]
    seen = train.loc[train[user_id] == user, item_id].tolist()
    top = index.recommend({key: column[:1] for key, column in users.items()}, k=3,
                          exclude=[seen])
    names = titles(data)
    print(f"Top-3 recommendations for user {user!r} ({len(seen)} items seen):")
    for rank, (item, score) in enumerate(zip(top.ids[0], top.scores[0], strict=True), 1):
        title = f"  {names[item]}" if item in names else ""
        print(f"  {rank}. {item} (score {score:.3f}){title}")
    return index


def titles(data: Any) -> dict[Any, str]:
    """Item id -> title, from the first item feature whose name holds "title" (or none)."""
    for column in data.item_features:
        if "title" in column:
            names = data.items[column].astype(str)
            return dict(zip(data.items[data.item_id], names, strict=True))
    return {}
