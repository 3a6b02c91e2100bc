"""``tfrs-kit train`` and ``evaluate``: event files in, a versioned folder out."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfrs_kit.cli._options import add_k, add_model, add_quiet, add_version, seconds, stage, tower
from tfrs_kit.cli._saved import read_export

if TYPE_CHECKING:
    import pandas as pd


def add_commands(commands: Any) -> None:
    """Adds ``train`` and ``evaluate`` to the ``tfrs-kit`` parser."""
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
    train.add_argument("--time-budget", type=seconds, default=None, metavar="S",
                       help="an opt-in wall-clock bound in seconds on the search and training "
                       "(default: none: 3 trials, epochs chosen on validation, reproducible)")
    for side in ("query", "candidate"):
        train.add_argument(f"--{side}-tower", type=tower(f"--{side}-tower"), default="default",
                           metavar="NAME", help=f"the {side} tower: a registered tower name "
                           "(`tfrs-kit towers` lists them, plugins included; default: default)")
    train.add_argument("--export", required=True, metavar="DIR",
                       help="a new folder, or one an earlier `train` wrote (a new version "
                       "is added; `tfrs-kit rollback DIR` goes back)")
    train.add_argument("--work-dir", metavar="DIR",
                       help="where a log bigger than memory is prepared (default: DIR.work "
                       "beside --export; reused when the same log is trained again)")
    train.add_argument("--beam-runner", metavar="RUNNER",
                       help="prepare a log bigger than memory on Apache Beam with this runner "
                       "(DirectRunner, DataflowRunner, FlinkRunner, ...) into the work dir; "
                       "needs the beam extra")
    train.add_argument("--beam-options", default=None, metavar="FLAGS",
                       help="the runner's pipeline options, one quoted string after an "
                       "equals sign: --beam-options='--project=P --region=R'")
    train.add_argument("--rerank", choices=("auto", "on", "off"), default="auto",
                       help="a ranking stage re-orders the retrieved top: on, off, or auto "
                       "(kept when it lifts the validation metric; default: auto)")
    add_quiet(train)
    train.set_defaults(run=train_command)
    evaluate = commands.add_parser(
        "evaluate", help="score an exported model against popularity on test events",
        description="Ranks the whole catalogue for every user of TEST_EVENTS (training "
        "items masked) and prints recall, ndcg, hit rate and coverage of the exported model "
        "and of the popularity baseline.")
    add_model(evaluate)
    evaluate.add_argument("test", metavar="TEST_EVENTS", help="the held-out events")
    evaluate.add_argument("--train", metavar="EVENTS", help="the training events (default: "
                          "the log the model was trained on, as exported)")
    add_version(evaluate, what="evaluate")
    add_k(evaluate, what="list length")
    add_quiet(evaluate)
    evaluate.set_defaults(run=evaluate_command)


def train_command(args: argparse.Namespace) -> int:
    import tfrs_kit as tk
    from tfrs_kit.data._source import is_url
    from tfrs_kit.recipe._scale import DEFAULT_IN_MEMORY_ROWS
    from tfrs_kit.recipe._source import out_of_core

    target = check_export_dir(args.export)  # before minutes of training, not after
    quiet = args.quiet
    work_dir = args.work_dir or f"{str(target).rstrip(os.sep)}.work"
    recipe = tk.Recipe(user_id=args.user, item_id=args.item, timestamp=args.time,
                       item_features=args.item_features, user_features=args.user_features,
                       time_budget=args.time_budget, query_tower=args.query_tower,
                       candidate_tower=args.candidate_tower, verbose=not quiet,
                       work_dir=work_dir, in_memory_rows=DEFAULT_IN_MEMORY_ROWS,
                       rerank=args.rerank, beam_runner=args.beam_runner,
                       beam_options=None if args.beam_options is None
                       else shlex.split(args.beam_options))
    if out_of_core(args.events, DEFAULT_IN_MEMORY_ROWS, argument="EVENTS"):
        log: Any = args.events  # bigger than memory: the Recipe prepares it on disk
        if not quiet:
            why = ("on a remote file system" if is_url(args.events)
                   else f"over {DEFAULT_IN_MEMORY_ROWS:,} events")
            print(f"{args.events}: {why}, trained out of core (work dir {work_dir})",
                  file=sys.stderr)
    else:
        if args.beam_runner and not quiet:
            print(f"--beam-runner: not used, {args.events} holds at most "
                  f"{DEFAULT_IN_MEMORY_ROWS:,} events (read into memory)", file=sys.stderr)
        with stage(quiet, f"Reading {args.events}"):
            log = read_log(args)
            if not quiet:
                print(f"  {len(log):,} events, {log[args.user].nunique():,} users, "
                      f"{log[args.item].nunique():,} items", file=sys.stderr)
    if not quiet:
        for note in unused_columns(args, events=not isinstance(log, str)):
            print(note, file=sys.stderr)
    budget = f" (time budget {args.time_budget:g} s)" if args.time_budget else ""
    with stage(quiet, f"Choosing settings and training{budget}"):
        recipe.fit(log, items=args.items)
    if not quiet:
        print(recipe.report, file=sys.stderr)
    with stage(quiet, f"Saving to {target} (with its index)"):
        version = recipe.save(target, k_max=100)
    print(f"Exported to {target}, version {version} ({len(recipe.candidates()):,} items, "
          f"{len(recipe.queries()):,} users)")
    return 0


def read_log(args: argparse.Namespace) -> pd.DataFrame:
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


def unused_columns(args: argparse.Namespace, *, events: bool = True) -> list[str]:
    """One note per file of ``train`` (EVENTS, with ``events``, and ``--items``) whose
    columns it will not read: neither an id nor a named feature (a catalogue's attributes
    are used only when ``--item-features`` names them)."""
    from tfrs_kit.data._files import schema

    named = {args.user, args.item, args.time, *args.item_features, *args.user_features}
    notes = []
    for argument, path in (("EVENTS", args.events if events else None), ("--items", args.items)):
        unused = [] if path is None else [c for c in schema(path, argument=argument)
                                          if c not in named]
        if unused:
            notes.append(f"{argument}: columns not trained on: {', '.join(unused)} (name "
                         "attributes with --item-features / --user-features to use them)")
    return notes


def check_export_dir(path: str) -> Path:
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


def evaluate_command(args: argparse.Namespace) -> int:
    import tfrs_kit as tk
    from tfrs_kit import baselines
    from tfrs_kit.data._files import read_table

    with stage(args.quiet, "Reading the model and the events"):
        recipe = read_export(args)
        user, item = recipe.columns.user_id, recipe.columns.item_id
        settings = {user: "user_id", item: "item_id"}
        train = (recipe._seen() if args.train is None else read_table(
            args.train, argument="--train", columns=[user, item], settings=settings))
        test = read_table(args.test, argument="TEST_EVENTS", columns=[user, item],
                          settings=settings)
        model = recipe.as_recommender()
        model.display_name = "model"
    with stage(args.quiet, f"Ranking {len(model.item_ids):,} items for every test user"):
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
