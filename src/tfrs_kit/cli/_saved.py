"""``tfrs-kit recommend``, ``versions``, ``rollback`` and ``update``: a saved folder in."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfrs_kit.cli._options import add_k, add_model, add_version, positive

if TYPE_CHECKING:
    import pandas as pd


def add_commands(commands: Any) -> None:
    """Adds ``recommend``, ``versions``, ``rollback`` and ``update`` to the parser."""
    recommend = commands.add_parser(
        "recommend", help="print the top-k items of one user from an exported model",
        description="Loads the exported model (tk.load) and prints the top k of a user of "
        "the training log, or of a new user given by the items they had (--history).")
    add_model(recommend)
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="a user id of the training log")
    who.add_argument("--history", nargs="+", metavar="ITEM", help="the item ids of a user "
                     "the model never saw, most recent last")
    add_version(recommend, what="read")
    add_k(recommend, what="how many items")
    recommend.add_argument("--exclude-seen", action="store_true",
                           help="leave out the items the user interacted with in training "
                           "(or the --history items)")
    recommend.add_argument("--explain", action="store_true",
                           help="add a column `why`: the history items whose removal lowers "
                           "each item's score most, and each component's share of it")
    recommend.set_defaults(run=recommend_command)
    versions = commands.add_parser(
        "versions", help="list the versions of an exported model",
        description="Prints each version `tfrs-kit train` saved in DIR: its number, when it "
        "was saved and its validation metric; * marks the latest (what `evaluate`, "
        "`recommend` and `serve` read).")
    add_model(versions)
    versions.set_defaults(run=versions_command)
    rollback = commands.add_parser(
        "rollback", help="point an exported model's latest version back",
        description="Moves DIR/latest (atomically) to version N, by default the one before "
        "the latest; a server watching DIR switches to it.")
    add_model(rollback)
    rollback.add_argument("--to", type=positive("--to"), metavar="N",
                          help="the version (default: the one before the latest)")
    rollback.set_defaults(run=rollback_command)
    _add_update_command(commands)


def _add_update_command(commands: Any) -> None:
    update = commands.add_parser(
        "update", help="update an exported model with new events (no retraining)",
        description="Loads DIR's latest version, grows its vocabularies with the new users "
        "and items of NEW_EVENTS, fine-tunes it on them plus a sample of older events, and "
        "saves it as a new version. The guard scores it and the serving version on each "
        "user's latest new event: worse by more than the tolerance, it is not published "
        "(exit status 3, latest unchanged) unless --force.")
    add_model(update)
    update.add_argument("events", metavar="NEW_EVENTS", help="the new events, in the "
                        "columns the model was trained on")
    update.add_argument("--tolerance", type=float, metavar="T",
                        help="the largest relative drop of the validation metric allowed "
                        "(default: Recipe.update's)")
    update.add_argument("--force", action="store_true",
                        help="publish even when the guard refuses")
    update.add_argument("--keep-blend", action="store_true",
                        help="keep the blend's weights instead of choosing them again "
                        "(a faster update)")
    update.add_argument("--replay", type=float, metavar="R",
                        help="older events replayed per new event (default: Recipe.update's)")
    update.add_argument("--replay-window", type=float, metavar="W",
                        help="the latest share of the older events, by time, the replay is "
                        "drawn from (default: Recipe.update's)")
    update.add_argument("--warm-sweeps", type=int, metavar="N",
                        help="the blend's iALS sweeps from the serving model's factors "
                        "over the new events' users and items; 0: a fit from random "
                        "factors over the whole log (default: Recipe.update's)")
    update.set_defaults(run=update_command)


def read_export(args: argparse.Namespace) -> Any:
    """The Recipe ``train --export DIR`` saved (``--version``, else the latest)."""
    from tfrs_kit.recipe._load import load_recipe

    return load_recipe(args.model, version=getattr(args, "version", None), argument="DIR")



def recommend_command(args: argparse.Namespace) -> int:
    recipe = read_export(args)
    c = recipe.columns
    if args.history is not None:
        items = recipe.candidates()[c.item_id]
        history = [typed(text, items) for text in args.history]
        top = recipe.recommend(history=history, k=args.k, exclude_seen=args.exclude_seen,
                               explain=args.explain)
    else:
        user = known_user(args.user, recipe.queries()[c.user_id])
        top = recipe.recommend(user, k=args.k, exclude_seen=args.exclude_seen,
                               explain=args.explain)
    print("rank\titem\tscore" + ("\twhy" if args.explain else ""))
    for rank, (item, score) in enumerate(zip(top.ids[0], top.scores[0], strict=True), 1):
        if score > float("-inf"):  # fewer than k items left after the exclusions
            why = f"\t{_why(top.explanations[0][rank - 1])}" if args.explain else ""
            print(f"{rank}\t{item}\t{score:.4f}{why}")
    return 0


def _why(explanation: Any) -> str:
    """``because of i3, i7; towers 62%, ials 30%, popularity 8%``."""
    shares = ", ".join(f"{name} {share:.0%}" for name, share in explanation.shares.items())
    history = ", ".join(str(item) for item in explanation.history)
    return f"because of {history}; {shares}" if history else shares


def typed(text: str, known: pd.Series) -> Any:
    """``text`` as an id of the type of ``known`` (an integer for integer ids)."""
    if known.dtype.kind in "iu":
        with contextlib.suppress(ValueError):
            return int(text)
    return text


def known_user(text: str, known: pd.Series) -> Any:
    """``--user`` as an id of the training log, of the log's id type."""
    from tfrs_kit._errors import invalid_argument

    user = typed(text, known)
    if not (known == user).any():
        examples = ", ".join(repr(u) for u in known.head(5).tolist())
        raise invalid_argument("--user", "be a user id of the training log", text,
                               hint=f"Known users include {examples}; for a new user, "
                               "give --history ITEM [ITEM ...].")
    return user


def versions_command(args: argparse.Namespace) -> int:
    from tfrs_kit.recipe._store import read_latest, versions

    listed = versions(args.model)
    latest = read_latest(Path(args.model)) or listed[-1].number
    print("latest\tversion\tcreated\tmetrics")
    for version in listed:
        metrics = " ".join(f"{name}={value:.4f}" for name, value in version.metrics.items())
        mark = "*" if version.number == latest else ""
        print(f"{mark}\t{version.number}\t{version.created}\t{metrics}".rstrip())
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    from tfrs_kit.recipe._store import rollback

    version = rollback(args.model, to=args.to)
    print(f"{args.model}: latest is now version {version}")
    return 0


def update_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from tfrs_kit.data._files import read_table
    from tfrs_kit.data._table import to_table
    from tfrs_kit.recipe import UpdateRejected, update

    events = pd.DataFrame(to_table(read_table(args.events, argument="NEW_EVENTS",
                                              verbose=False), argument="NEW_EVENTS"))
    try:
        names = ("tolerance", "replay", "replay_window", "warm_sweeps")
        given = {name: getattr(args, name) for name in names
                 if getattr(args, name) is not None}  # else the library's defaults
        report = update(args.model, events, force=args.force,
                        rechoose=not args.keep_blend, **given)
    except UpdateRejected as error:
        print(f"tfrs-kit: {error.report}\ntfrs-kit: {error}", file=sys.stderr)
        return 3
    print(f"{args.model}: {report}")
    return 0
