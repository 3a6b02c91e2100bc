"""Does an update's time follow its new events, or the whole log?

``Recipe.update`` should cost time in proportion to the new data (issue 26). Here one
synthetic log (``tk.datasets.synthetic``, time-ordered) is cut at growing sizes; a Recipe
is fitted on each prefix (``time_budget=None, max_trials=1, max_epochs=--epochs``, no
ranking stage: ``rerank=False``) and
updated with the next ``--new`` events (a first day, not timed: TensorFlow traces its
functions, and a fit that chose an iALS weight of 0 keeps no factors to go on from);
then, the second day, each from its own copy of that, with the next ``--new`` events
and with ``--growth`` times as many, by the default update and by one whose iALS is
fitted from random factors (``warm_sweeps=0``).

    nice python benchmarks/update_scale.py [--sizes 250000 1000000] [--new 10000]

Per size and update: ``UPDATE log=... new=... warm_sweeps=... update_s=... fit_s=...``;
the last line: ``UPDATE_SCALE log_growth=<largest / smallest log> update_growth=<update
time on the largest / on the smallest, the same new events> new_growth=<--growth>
new_update_growth=<update time with --growth times the new events / with --new, on the
largest> cold_update_growth=<update_growth of warm_sweeps=0>``: 1.0 where a stage does
not grow.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfrs_kit as tk
from tfrs_kit.recipe import _update as _defaults


def timed_update(recipe: tk.Recipe, events, warm_sweeps: int) -> tuple[float, str]:
    """Seconds of one update of a copy of ``recipe`` (the guard forced to publish), and
    what it grew by."""
    copied = copy.copy(recipe)  # the update replaces the copy's state, not the fit's
    start = time.monotonic()
    copied.update(events, tolerance=1.0, force=True, warm_sweeps=warm_sweeps)
    seconds = time.monotonic() - start
    report = copied.update_report_
    return seconds, f"new_users={report.new_users} new_items={report.new_items}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--growth", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    total = sizes[-1] + args.new * (1 + args.growth)
    log = tk.datasets.synthetic(total, seed=args.seed).interactions[
        ["user_id", "item_id", "timestamp"]].sort_values("timestamp", kind="stable")
    log = log.reset_index(drop=True)
    default = _defaults.DEFAULT_WARM_SWEEPS
    seconds: dict[tuple[int, int, int], float] = {}
    for size in sizes:
        start = time.monotonic()
        recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=args.epochs,
                           rerank=False, seed=args.seed, verbose=False).fit(log.iloc[:size])
        fit_s = time.monotonic() - start
        # The first day's update, not timed: TensorFlow traces its functions, and a fit
        # that chose an iALS weight of 0 keeps no factors (its first update fits them).
        recipe.update(log.iloc[size:size + args.new], tolerance=1.0, force=True)
        day = size + args.new
        news = [args.new] + ([args.new * args.growth] if size == sizes[-1] else [])
        for new in news:
            for sweeps in (default, 0):
                took, grown = timed_update(recipe, log.iloc[day:day + new], sweeps)
                seconds[size, new, sweeps] = took
                print(f"UPDATE log={size} new={new} warm_sweeps={sweeps} update_s={took:.1f} "
                      f"fit_s={fit_s:.1f} {grown}", flush=True)
    small, large = sizes[0], sizes[-1]

    def ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
        return seconds[a] / seconds[b]

    grown = args.new * args.growth
    print(f"UPDATE_SCALE log_growth={large / small:.1f} "
          f"update_growth={ratio((large, args.new, default), (small, args.new, default)):.2f} "
          f"new_growth={args.growth} "
          f"new_update_growth={ratio((large, grown, default), (large, args.new, default)):.2f} "
          f"cold_update_growth={ratio((large, args.new, 0), (small, args.new, 0)):.2f}")

if __name__ == "__main__":
    main()
