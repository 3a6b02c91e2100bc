"""``tfrs-kit serve DIR``: the HTTP server, run by uvicorn.

:func:`add_parser` adds the subcommand to the ``tfrs-kit`` parser and :func:`run`
runs it; ``tfrs_kit/cli/_main.py`` only registers and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

from tfrs_kit._validation import check_int, check_number
from tfrs_kit.serving._app import INSTALL_HINT, app

__all__ = ["add_parser", "app_from_environment", "run"]

#: Where ``run`` leaves the app's settings for uvicorn's worker processes.
OPTIONS_VARIABLE = "TFRS_KIT_SERVE_OPTIONS"


def _checked(convert: Callable[[str], Any], check: Callable[..., Any], flag: str,
             **rule: Any) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(flag, convert(text), **rule)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from error
    return parse


_OPTIONS: list[tuple[str, type, dict[str, int], Any, str, str]] = [
    ("--port", int, {"minimum": 0, "maximum": 65535}, 8000, "PORT", "the port"),
    ("--max-batch-size", int, {"minimum": 1}, 64, "N", "the most queries per TensorFlow call"),
    ("--max-wait-ms", float, {"minimum": 0}, 2.0, "MS",
     "how long a query waits for others to join its batch"),
    ("--workers", int, {"minimum": 1}, 1, "N",
     "server processes, each with its own copy of the model"),
    ("--poll-interval-s", float, {"minimum": 0}, 10.0, "SECONDS",
     "how often DIR/latest is read for a new version; 0: never"),
    ("--max-body-bytes", int, {"minimum": 1}, 1 << 20, "BYTES",
     "larger request bodies are refused with 413"),
    ("--max-queue", int, {"minimum": 0}, 1024, "N",
     "the most queries waiting for a batch; beyond it 503 with Retry-After; 0: no bound"),
    ("--request-timeout-s", float, {"minimum": 0}, 10.0, "SECONDS",
     "a query not answered in time gets 503 with Retry-After; 0: no limit"),
]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Adds ``serve`` to the ``tfrs-kit`` subcommands (``parser.add_subparsers()``)."""
    serve = commands.add_parser(
        "serve", help="serve an exported index over HTTP (micro-batching, hot swap, metrics)",
        description="Serves DIR over HTTP: POST /v1/recommend, POST /v1/models/NAME:predict "
        "(TF Serving's REST shape), GET /healthz, /readyz and /metrics. DIR is an index "
        "saved by Index.save, or a versioned folder (DIR/latest holds n, the index is in "
        "DIR/versions/n/index), watched for new versions. Needs the serve extra: "
        'pip install "tfrs-kit[serve]".')
    serve.add_argument("directory", metavar="DIR", help="the index or versioned folder")
    serve.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                       help="the address to bind (default: 127.0.0.1, this machine only)")
    for flag, convert, rule, default, metavar, what in _OPTIONS:
        check = check_int if convert is int else check_number
        serve.add_argument(flag, type=_checked(convert, check, flag, **rule), default=default,
                           metavar=metavar, help=f"{what} (default: {_plain(default)})")
    serve.add_argument("--model-name", default=None, metavar="NAME",
                       help="the NAME in /v1/models/NAME:predict (default: DIR's name)")
    serve.add_argument("--access-log", action="store_true",
                       help="log every request (off by default: a log line per request costs "
                       "CPU that a loaded server needs)")
    serve.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                       help="answer the query routes through FastAPI's stack (its middleware "
                       "sees them) instead of the plain-ASGI hot path; slower")
    return serve  # type: ignore[no-any-return]


def _plain(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"directory": os.fspath(args.directory), "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms, "poll_interval_s": args.poll_interval_s,
            "max_body_bytes": args.max_body_bytes, "model_name": args.model_name,
            "max_queue": args.max_queue, "request_timeout_s": args.request_timeout_s,
            "fast_path": args.fast_path}


def app_from_environment() -> Any:
    """The app, built from the settings ``run`` left in the environment (for workers)."""
    options = json.loads(os.environ[OPTIONS_VARIABLE])
    return app(options.pop("directory"), **options)


def run(args: argparse.Namespace) -> int:
    """Runs the server until it is stopped; returns the exit status.

    Raises:
        ImportError: uvicorn, FastAPI or prometheus-client is missing.
        FileNotFoundError, TypeError, ValueError: A bad ``DIR`` or setting.
    """
    try:
        uvicorn = importlib.import_module("uvicorn")
    except ImportError as error:
        raise ImportError(f"`tfrs-kit serve` needs uvicorn. {INSTALL_HINT}") from error
    options = _options(args)
    api = app(**options)  # checks DIR and every setting before uvicorn starts
    if args.workers == 1:
        uvicorn.run(api, host=args.host, port=args.port, log_level="info",
                    access_log=args.access_log)
        return 0
    os.environ[OPTIONS_VARIABLE] = json.dumps(options)
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, host=args.host,
                port=args.port, workers=args.workers, log_level="info",
                access_log=args.access_log)
    return 0
