"""A minimal progress bar with an ETA for long stages (vocabularies, evaluation, index
builds, the preparation of files, the Recipe's streamed epochs).

``verbose="auto"`` shows it only for large inputs, so small jobs and tests stay quiet;
``verbose=False`` always silences it, ``True`` always shows it; anything else is refused
by the check every public ``verbose`` goes through (``_validation.check_verbose``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tfrs_kit._validation import check_verbose

__all__ = ["LARGE", "LOG_SECONDS", "Progress", "eta"]

LARGE = 1_000_000  # work units (rows, scores / 100) above which "auto" shows progress
LOG_SECONDS = 30.0  # seconds between the lines written where the stream is not a terminal


def eta(elapsed: float, share: float) -> str:
    """`` ETA <seconds>s`` left at the pace so far, ``""`` before any or after all work.

    Example:
        >>> eta(30.0, 0.25)
        ' ETA 90s'
        >>> eta(30.0, 1.0)
        ''
    """
    if not 0.0 < share < 1.0:
        return ""
    return f" ETA {elapsed * (1.0 - share) / share:.0f}s"


class Progress:
    """Counts work done and redraws one line on standard error, at most twice a second.

    On a stream that is not a terminal (a log file, a pipe, a CI job's output), where a
    redrawn line would pile up as thousands of lines, it writes a whole line at most
    every :data:`LOG_SECONDS` instead, and the last one at the end.

    Example:
        >>> with Progress(3, description="demo", verbose=False) as bar:
        ...     bar.update(3)
    """

    def __init__(self, total: int, *, description: str, verbose: Any = "auto",
                 size: int | None = None, stream: TextIO | None = None) -> None:
        verbose = check_verbose("verbose", verbose)
        self.total = max(int(total), 1)
        self.description = description
        self.enabled = bool(verbose) if verbose != "auto" else (size or total) >= LARGE
        self.stream = stream or sys.stderr
        self.done = 0
        self._start = time.perf_counter()
        self._drawn = 0.0
        self._terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._every = 0.5 if self._terminal else LOG_SECONDS
        self._final = False  # the line at 100% is written (once)
        self._shown = 0  # the work done the last line showed

    def update(self, amount: int = 1) -> None:
        self.done += amount
        now = time.perf_counter()
        finished = self.done >= self.total
        if not self.enabled or (self._final and finished):
            return
        if now - self._drawn >= self._every or finished or not self._drawn:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn, self._final, self._shown = now, self.done >= self.total, self.done
        share = min(self.done / self.total, 1.0)
        bar = "=" * int(share * 30)
        elapsed = now - self._start
        line = (f"{self.description}: [{bar:<30s}] {share:4.0%} "
                f"{elapsed:6.1f}s{eta(elapsed, share)}")
        self.stream.write(f"\r{line}   " if self._terminal else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the line the bar was drawn on; in a log, writes where the work stopped
        (an early stop) if the last line does not say it."""
        if self.enabled and self._drawn:
            if self._terminal:
                self.stream.write("\n")
                self.stream.flush()
            elif self._shown != self.done:
                self._draw(time.perf_counter())
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
