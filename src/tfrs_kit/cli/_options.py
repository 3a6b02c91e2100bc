"""Argument types and options that several ``tfrs-kit`` commands share."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from tfrs_kit._validation import check_int, check_number


def seconds(text: str) -> float:
    """An argparse type for ``--time-budget``: a number > 0, checked as the package checks."""
    value: Any = text
    with contextlib.suppress(ValueError):
        value = float(text)
    try:
        return float(check_number("--time-budget", value, minimum=0, low_open=True))
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def dataset(text: str) -> str:
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


def tower(option: str) -> Callable[[str], str]:
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


def positive(option: str) -> Callable[[str], int]:
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


def add_model(parser: argparse.ArgumentParser) -> None:
    """The saved folder a command reads: ``DIR``."""
    parser.add_argument("model", metavar="DIR", help="a folder `tfrs-kit train` exported")


def add_version(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--version N``: the saved version to read."""
    parser.add_argument("--version", type=positive("--version"), metavar="N",
                        help=f"the version to {what} (default: the latest)")


def add_k(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--k``: a list length."""
    parser.add_argument("--k", type=positive("--k"), default=10,
                        help=f"{what} (default: 10)")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress output."""
    parser.add_argument("--quiet", action="store_true", help="no progress output")


@contextlib.contextmanager
def stage(quiet: bool, text: str) -> Iterator[None]:
    """Announces a long stage on standard error, then its duration."""
    if quiet:
        yield
        return
    print(f"{text} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
