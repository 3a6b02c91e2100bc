"""Synthetic interaction logs in the shapes of real ones, for the quality benchmark suite.

MovieLens 100K is one shape: a small, dense catalogue (1,682 movies, 106 ratings each on
average) over seven months. A recipe tuned on it alone can lose on other real logs. Each
generator here mimics one other shape seen in real data, with latent structure (user and
item clusters, item popularity, sequential habits) so that a good model has real signal to
learn and a bad one visibly misses it. All are deterministic for a seed, numpy/pandas only,
and hold 50k-300k interactions (one model fits in well under a minute on 2 CPU cores).

* ``long_tail``: a 25,000-item catalogue whose item popularity follows a Zipf law
  (exponent 1.05) inside 60 taste clusters, as in e-commerce or music catalogues: a few
  hundred head items take most events, most items have fewer than five. Tests whether a
  model ranks rare items well (where popularity and id embeddings trained on few events fail).
* ``drift``: eight years of events. Each user's taste moves from one mix of 40 clusters to
  another over their active period, and items are released over time with popularity that
  decays after release, as in a long rating log (MovieLens 20M, Netflix). The most recent
  events, not the whole profile, say what comes next.
* ``repeat``: a consumable-goods (grocery) log. Each user has 3-15 staple items re-bought
  at a personal interval, plus exploratory buys from their preferred aisles. Real basket
  logs are dominated by re-purchases; note that ``tk.evaluate`` masks training items, so it
  scores only the discovery of *new* items on this log.
* ``content``: a purchase log where category and brand decide who buys an item
  (users have category tastes and favourite brands; a price sensitivity). Each event carries
  a ``price`` that varies around the item's list price (discounts), as in retail logs. Items
  are released over time, so late items are cold in a temporal split, and 10% of the
  catalogue never appears in the log. Item features carry real signal here.
* ``short``: 30,000 users with 2-5 events each (a few sessions of an anonymous shop), with
  user features (country, age bucket) tied to taste and a strong next-item habit (an
  event follows the previous item's cluster and often its successor in a series). User ids
  say little; the last item and the user's features say most.

Each generator returns a :class:`SuiteLog` (``interactions``: user_id, item_id, timestamp
and any per-event columns; ``items``: item_id and item features, one row per catalogue
item; ``users``: user_id and user features, or ``None``). ``LOGS`` maps names to generators.

    python benchmarks/suite_logs.py     # prints each log's size and shape
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

YEAR = 365 * 86_400
START = 1_262_304_000  # 2010-01-01 UTC: timestamps are plausible epoch seconds


@dataclass(frozen=True)
class SuiteLog:
    """One synthetic log: the events, the catalogue and (optionally) the users."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Popularity weights ``1 / rank**exponent`` over ``n`` items in random order."""
    return rng.permutation(1.0 / np.arange(1, n + 1) ** exponent)


def _choose(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One index per row of a ``[rows, k]`` probability matrix."""
    cdf = np.cumsum(probabilities, axis=1)
    draws = rng.random(len(cdf))[:, None] * cdf[:, -1:]
    return np.minimum((cdf < draws).sum(axis=1), probabilities.shape[1] - 1)


def _draw_in_clusters(rng: np.random.Generator, clusters: np.ndarray, item_cluster: np.ndarray,
                      weights: np.ndarray) -> np.ndarray:
    """For each event's cluster, an item of that cluster drawn by ``weights``."""
    out = np.empty(len(clusters), dtype=np.int64)
    for c in np.unique(clusters):
        members = np.flatnonzero(item_cluster == c)
        cdf = np.cumsum(weights[members])
        rows = np.flatnonzero(clusters == c)
        picks = np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1], side="right")
        out[rows] = members[np.minimum(picks, len(members) - 1)]
    return out


def _lengths(rng: np.random.Generator, n_users: int, mean: float, minimum: int) -> np.ndarray:
    """Events per user: a heavy-tailed (lognormal) activity, at least ``minimum``."""
    raw = rng.lognormal(mean=np.log(mean) - 0.5, sigma=1.0, size=n_users)
    return np.maximum(np.round(raw).astype(np.int64), minimum)


def _times(rng: np.random.Generator, lengths: np.ndarray, span: int,
           active: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted event times per user inside a random active window of the span.

    Returns (user of each event, its time, its position in the user's window in [0, 1]).
    """
    users = np.repeat(np.arange(len(lengths)), lengths)
    window = rng.uniform(*active, size=len(lengths)) * span
    begin = rng.uniform(0, span - window)
    phase = rng.random(len(users))
    order = np.lexsort((phase, users))
    phase = phase[order]
    times = START + (begin[users] + phase * window[users]).astype(np.int64)
    return users, times, phase


def _frame(users: np.ndarray, items: np.ndarray, times: np.ndarray,
           **columns: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"user_id": users.astype(np.int64), "item_id": items.astype(np.int64),
                          "timestamp": times.astype(np.int64), **columns})
    return frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """Keeps each (user, item) pair's first event, as a rating log does."""
    return frame.drop_duplicates(["user_id", "item_id"], keep="first").reset_index(drop=True)


def long_tail(*, seed: int = 0, n_users: int = 8_000, n_items: int = 25_000,
              n_clusters: int = 60) -> SuiteLog:
    """A large Zipf-like catalogue: most of its 25,000 items have a handful of events."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, n_items)
    weights = _zipf(rng, n_items, 1.05)
    taste = rng.dirichlet(np.full(n_clusters, 0.08), size=n_users)
    lengths = _lengths(rng, n_users, 22.0, 3)
    users, times, _ = _times(rng, lengths, 2 * YEAR, (0.05, 1.0))
    items = _draw_in_clusters(rng, _choose(rng, taste[users]), item_cluster, weights)
    log = _dedupe(_frame(users, items, times))
    catalogue = pd.DataFrame({"item_id": np.arange(n_items), "category": item_cluster % 20})
    return SuiteLog("long_tail", log, catalogue)


def drift(*, seed: int = 0, n_users: int = 4_000, n_items: int = 6_000,
          n_clusters: int = 40, years: int = 8) -> SuiteLog:
    """Tastes that move between clusters over eight years; items age after release."""
    rng = np.random.default_rng(seed)
    span = years * YEAR
    item_cluster = rng.integers(0, n_clusters, n_items)
    release = rng.uniform(-0.1, 0.95, n_items) * span
    appeal = _zipf(rng, n_items, 0.9)
    before = rng.dirichlet(np.full(n_clusters, 0.1), size=n_users)
    after = rng.dirichlet(np.full(n_clusters, 0.1), size=n_users)
    lengths = _lengths(rng, n_users, 40.0, 5)
    users, times, phase = _times(rng, lengths, span, (0.3, 1.0))
    mix = (1 - phase)[:, None] * before[users] + phase[:, None] * after[users]
    clusters = _choose(rng, mix)
    # An item's pull halves every ~9 months after release and is zero before it.
    items = np.empty(len(users), dtype=np.int64)
    epochs = np.minimum(((times - START) / (span / 16)).astype(int), 15)
    for e in np.unique(epochs):
        rows = np.flatnonzero(epochs == e)
        now = (e + 0.5) * span / 16
        age = now - release
        live = np.where(age > 0, appeal * 0.5 ** (age / (0.75 * YEAR)), 0.0) + 1e-12
        items[rows] = _draw_in_clusters(rng, clusters[rows], item_cluster, live)
    log = _dedupe(_frame(users, items, times))
    catalogue = pd.DataFrame({"item_id": np.arange(n_items), "genre": item_cluster,
                              "release_year": 2010 + (release / YEAR).astype(int)})
    return SuiteLog("drift", log, catalogue)


def repeat(*, seed: int = 0, n_users: int = 3_000, n_items: int = 3_000,
           n_aisles: int = 30, years: int = 2) -> SuiteLog:
    """Consumables: each user re-buys staples at a personal rhythm and explores their aisles."""
    rng = np.random.default_rng(seed)
    span = years * YEAR
    aisle = rng.integers(0, n_aisles, n_items)
    weights = _zipf(rng, n_items, 0.8)
    taste = rng.dirichlet(np.full(n_aisles, 0.15), size=n_users)
    frames = []
    n_staples = rng.integers(3, 16, n_users)
    staple_user = np.repeat(np.arange(n_users), n_staples)
    staples = _draw_in_clusters(rng, _choose(rng, taste[staple_user]), aisle, weights)
    interval = rng.uniform(7, 60, len(staple_user)) * 86_400
    first = rng.uniform(0, 0.5 * span, len(staple_user))
    count = np.maximum((span - first) // interval // 3, 1).astype(np.int64)
    rows = np.repeat(np.arange(len(staple_user)), count)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    jitter = rng.normal(0, 0.15, len(rows)) * interval[rows]
    times = first[rows] + k * interval[rows] * 3 + jitter
    frames.append((staple_user[rows], staples[rows], times))
    explore = rng.poisson(12, n_users)
    users = np.repeat(np.arange(n_users), explore)
    items = _draw_in_clusters(rng, _choose(rng, taste[users]), aisle, weights)
    frames.append((users, items, rng.uniform(0, span, len(users))))
    users, items, times = (np.concatenate(parts) for parts in zip(*frames, strict=True))
    keep = times < span
    log = _frame(users[keep], items[keep], START + np.clip(times[keep], 0, None),
                 quantity=rng.integers(1, 4, int(keep.sum())))
    catalogue = pd.DataFrame({"item_id": np.arange(n_items), "aisle": aisle})
    return SuiteLog("repeat", log, catalogue)


def content(*, seed: int = 0, n_users: int = 5_000, n_items: int = 8_000,
            n_categories: int = 50, n_brands: int = 400, years: int = 2) -> SuiteLog:
    """Category and brand decide who buys; a per-event price; cold (late or unseen) items."""
    rng = np.random.default_rng(seed)
    span = years * YEAR
    category = rng.integers(0, n_categories, n_items)
    brand_category = rng.integers(0, n_categories, n_brands)
    # Each item's brand is one of its category's brands (brands are category specialists).
    brand = np.array([rng.choice(np.flatnonzero(brand_category == c))
                      if np.any(brand_category == c) else rng.integers(n_brands)
                      for c in category])
    category_price = rng.lognormal(3.0, 0.8, n_categories)
    list_price = np.round(category_price[category] * rng.lognormal(0, 0.4, n_items), 2)
    tier = np.argsort(np.argsort(list_price / category_price[category])) * 3 // n_items
    release = np.where(rng.random(n_items) < 0.7, 0.0, rng.uniform(0.0, 1.0, n_items)) * span
    category_taste = rng.dirichlet(np.full(n_categories, 0.1), size=n_users)
    brand_love = rng.gamma(0.3, 1.0, size=(n_users, n_brands))
    budget = rng.integers(0, 3, n_users)
    lengths = _lengths(rng, n_users, 28.0, 4)
    users, times, _ = _times(rng, lengths, span, (0.3, 1.0))
    clusters = _choose(rng, category_taste[users])
    # Within the chosen category, items score by the user's brand love, price tier fit and a
    # small item-specific appeal; only released items can be bought.
    appeal = rng.lognormal(0, 0.5, n_items)
    items = np.empty(len(users), dtype=np.int64)
    for c in np.unique(clusters):
        rows = np.flatnonzero(clusters == c)
        members = np.flatnonzero(category == c)
        score = (brand_love[users[rows]][:, brand[members]] + 0.05) * appeal[members]
        score *= np.where(tier[members][None, :] == budget[users[rows]][:, None], 1.0, 0.3)
        score *= (release[members][None, :] <= (times[rows] - START)[:, None])
        score += 1e-12
        items[rows] = members[_choose(rng, score)]
    unseen = rng.random(n_items) < 0.1
    keep = ~unseen[items]
    price = list_price[items] * rng.choice([1.0, 0.9, 0.8, 0.7], len(items), p=[.6, .2, .15, .05])
    price *= rng.normal(1.0, 0.03, len(items))
    log = _dedupe(_frame(users[keep], items[keep], times[keep],
                         price=np.round(price[keep], 2).astype(np.float32)))
    catalogue = pd.DataFrame({"item_id": np.arange(n_items), "category": category,
                              "brand": brand, "list_price": list_price.astype(np.float32),
                              "release_timestamp": START + release.astype(np.int64)})
    return SuiteLog("content", log, catalogue)


def short(*, seed: int = 0, n_users: int = 30_000, n_items: int = 3_000,
          n_clusters: int = 30, years: int = 1) -> SuiteLog:
    """Most users have 2-5 events; their features and last item carry the signal."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, n_items)
    weights = _zipf(rng, n_items, 0.9)
    # Items form series inside a cluster: an item's successor is the next one of its cluster.
    successor = np.empty(n_items, dtype=np.int64)
    for c in range(n_clusters):
        members = rng.permutation(np.flatnonzero(item_cluster == c))
        successor[members] = np.roll(members, -1)
    country = rng.integers(0, 12, n_users)
    age = rng.integers(0, 6, n_users)
    group_taste = rng.dirichlet(np.full(n_clusters, 0.2), size=(12, 6))
    taste = 0.5 * group_taste[country, age] + 0.5 * rng.dirichlet(
        np.full(n_clusters, 0.2), size=n_users)
    lengths = np.minimum(rng.geometric(0.3, n_users) + 1, 40)
    users, times, _ = _times(rng, lengths, years * YEAR, (0.001, 0.2))
    position = np.arange(len(users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = _draw_in_clusters(rng, _choose(rng, taste[users]), item_cluster, weights)
    roll = rng.random(len(users))
    # Position by position, so each event can follow the item drawn just before it.
    for step in range(1, int(lengths.max())):
        rows = np.flatnonzero(position == step)
        previous = items[rows - 1]
        follow = roll[rows] < 0.35
        stay = (roll[rows] >= 0.35) & (roll[rows] < 0.7)
        items[rows[follow]] = successor[previous[follow]]
        same = _draw_in_clusters(rng, item_cluster[previous[stay]], item_cluster, weights)
        items[rows[stay]] = same
    log = _dedupe(_frame(users, items, times))
    catalogue = pd.DataFrame({"item_id": np.arange(n_items), "cluster": item_cluster})
    user_table = pd.DataFrame({"user_id": np.arange(n_users), "country": country, "age": age})
    return SuiteLog("short", log, catalogue, user_table)


LOGS: dict[str, Callable[..., SuiteLog]] = {
    "long_tail": long_tail,
    "drift": drift,
    "repeat": repeat,
    "content": content,
    "short": short,
}


def describe(log: SuiteLog) -> dict[str, float]:
    """Size and shape statistics of a log."""
    events = log.interactions
    per_user = events.groupby("user_id").size()
    per_item = events.groupby("item_id").size()
    top = per_item.sort_values(ascending=False)
    span_years = (events["timestamp"].max() - events["timestamp"].min()) / YEAR
    repeats = 1.0 - len(events.drop_duplicates(["user_id", "item_id"])) / len(events)
    return {
        "events": len(events), "users": events["user_id"].nunique(),
        "items_seen": len(per_item), "catalogue": len(log.items),
        "events/user median": float(per_user.median()),
        "users with <=5 events": float((per_user <= 5).mean()),
        "items with <=5 events": float((per_item <= 5).mean()),
        "top 1% items' share": float(top.iloc[: max(len(top) // 100, 1)].sum() / len(events)),
        "repeat share": repeats, "span years": float(span_years),
        "density": len(events) / (events["user_id"].nunique() * len(per_item)),
    }


if __name__ == "__main__":
    import time

    for name, generate in LOGS.items():
        start = time.perf_counter()
        log = generate()
        seconds = time.perf_counter() - start
        assert generate().interactions.equals(log.interactions), "not deterministic"
        stats = describe(log)
        print(f"{name} ({seconds:.1f}s): columns {list(log.interactions.columns)}, "
              f"item features {list(log.items.columns[1:])}"
              + (f", user features {list(log.users.columns[1:])}" if log.users is not None else ""))
        print("   " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in stats.items()))
