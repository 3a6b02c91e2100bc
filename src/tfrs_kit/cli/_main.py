"""The ``tfrs-kit`` parser and its exit statuses."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from tfrs_kit.cli import _demo, _files, _saved
from tfrs_kit.serving import _cli as _serve_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrs-kit",
        description="The end-to-end job from an interaction log to recommendations.",
        epilog="Run `tfrs-kit COMMAND --help` for a command's options. EVENTS, TEST_EVENTS "
        "and CATALOGUE are Parquet, CSV or TFRecord files: a path, a directory of shards or "
        "a quoted glob ('logs/*.parquet'). Exit status: 0 done, 2 bad input (the message "
        "says why), 3 an update the guard refused, 1 an unexpected error.")
    commands = parser.add_subparsers(dest="command", required=True)
    _demo.add_commands(commands)
    _files.add_commands(commands)
    _saved.add_commands(commands)
    _serve_cli.add_parser(commands).set_defaults(run=_serve_cli.run)
    return parser


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
        return int(args.run(args))
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
