"""A seeded, offline interaction log with planted preferences, from 1e3 to 1e7 events.

How the data are made (all vectorised; no Python loop over users or events):

* Items and users belong to latent clusters. Item features (first genre, title words,
  release year) and user features (segment, age) are correlated with the cluster,
  so features carry signal beyond the ids.
* Item popularity is Zipf-like (weight ``1 / rank``).
* A user's event is drawn from global popularity with probability
  ``popularity_share``, otherwise from the popular items of the user's own cluster.
  A model that learns the clusters beats the popularity baseline clearly.
* A user meets an item at most once. Event counts per user are heavy-tailed.
* Each user's events have strictly increasing timestamps and come from the same
  preferences throughout, so temporal splits are meaningful.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_fraction, check_int
from tfrs_kit.datasets._base import InteractionDataset, split_rows

__all__ = ["synthetic"]

_GENRES = (
    "action", "adventure", "animation", "children", "comedy", "crime", "documentary",
    "drama", "fantasy", "horror", "musical", "mystery", "romance", "sci-fi", "thriller",
    "war", "western", "biography",
)  # fmt: skip
_SYLLABLES = (
    "ka", "lo", "mi", "ra", "zen", "tor", "vel", "qui", "dan", "mor",
    "sil", "bri", "nox", "pel", "fa", "gor", "lin", "sha", "tu", "vex",
)  # fmt: skip
_GENERIC_WORDS = 40  # title words shared by all clusters (noise)
_WORDS_PER_CLUSTER = 6
_ZIPF_EXPONENT = 1.0
_START = 1_500_000_000  # 2017-07-14, seconds since the epoch
_REJECTION_ROUNDS = 6
_GUMBEL_CELLS = 4_000_000  # users x items per chunk of the exact fallback sampler


def synthetic(
    num_interactions: int = 10_000,
    *,
    num_users: int | None = None,
    num_items: int | None = None,
    num_clusters: int | None = None,
    popularity_share: float = 0.2,
    seed: int = 0,
) -> InteractionDataset:
    """A deterministic synthetic interaction log with user and item features.

    Columns of ``interactions``, in order: ``user_id`` (str, ``"u17"``), ``item_id``
    (str, ``"i42"``), ``timestamp`` (int64 seconds), ``rating`` (float32, 1 to 5,
    higher inside the user's cluster), ``user_age`` (int64), ``user_segment`` (str),
    ``item_title`` (str, 2 to 4 words), ``item_genres`` (1 to 3 genre names per row,
    an object column of 1-D arrays of str) and ``item_year`` (int64). ``items`` and
    ``users`` hold the item and user columns, one row per id, ordered by id number.

    Args:
        num_interactions: The number of events, exactly.
        num_users: The number of users, each with at least one event. Defaults to
            ``num_interactions // 20`` (at least 5).
        num_items: The number of items. Defaults to ``num_interactions // 50``
            (at least 20).
        num_clusters: The number of latent taste clusters. Defaults to about
            ``sqrt(num_items)``, between 2 and 50.
        popularity_share: The probability that an event ignores the user's taste and
            follows global popularity; 0 plants the strongest signal, 1 none.
        seed: The random seed; the same arguments always give the same data.

    Returns:
        An :class:`InteractionDataset` named ``"synthetic"``.

    Raises:
        TypeError: A size or the seed is not an integer, or ``popularity_share`` not
            a number.
        ValueError: A size, the seed or ``popularity_share`` is out of range, or there
            are more interactions than (user, item) pairs.

    Example:
        >>> data = synthetic(1_000, seed=1)
        >>> data.num_interactions, data.num_users, data.num_items
        (1000, 50, 20)
        >>> data.item_features
        ('item_title', 'item_genres', 'item_year')
        >>> bool(data.interactions.groupby("user_id")["timestamp"].is_monotonic_increasing.all())
        True
    """
    n, users, items, clusters = _sizes(num_interactions, num_users, num_items, num_clusters)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    share = check_fraction("popularity_share", popularity_share, allow_zero=True, allow_one=True)
    world = _World(rng, users, items, clusters, share)
    counts = _events_per_user(rng, n, users, items)
    interactions, item_table, user_table = _tables(rng, world, *world.sample_events(rng, counts))
    return InteractionDataset(
        interactions=interactions,
        items=item_table,
        users=user_table,
        user_id="user_id",
        item_id="item_id",
        timestamp="timestamp",
        user_features=("user_age", "user_segment"),
        item_features=("item_title", "item_genres", "item_year"),
        name="synthetic",
    )


def _sizes(num_interactions: object, num_users: object, num_items: object,
           num_clusters: object) -> tuple[int, int, int, int]:
    """The checked sizes, defaults filled in: (interactions, users, items, clusters)."""
    n = check_int("num_interactions", num_interactions, minimum=1)
    users = max(5, n // 20) if num_users is None else check_int("num_users", num_users, minimum=1)
    items = max(20, n // 50) if num_items is None else check_int("num_items", num_items, minimum=1)
    if num_clusters is None:
        clusters = min(int(np.clip(round(np.sqrt(items)), 2, 50)), items)
    else:
        clusters = check_int("num_clusters", num_clusters, minimum=1)
    if users > n:
        raise invalid_argument(
            "num_users",
            f"be at most num_interactions={n}, since every user has an event",
            users,
            hint="Lower `num_users` or raise `num_interactions`.",
        )
    if clusters > items:
        raise invalid_argument(
            "num_clusters",
            f"be at most num_items={items}",
            clusters,
            hint="Every cluster needs at least one item.",
        )
    if n > users * items:
        raise invalid_argument(
            "num_interactions",
            f"be at most num_users * num_items = {users} * {items} = {users * items}, since "
            "a user meets an item at most once",
            n,
            hint="Raise `num_users` or `num_items`.",
        )
    return n, users, items, clusters


def _tables(rng: np.random.Generator, world: _World, event_user: np.ndarray,
            event_item: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The events as rows (ids, timestamp, rating, then the user's and item's features),
    the item table and the user table.

    Ratings are higher inside the user's cluster, so they carry the planted signal too.
    """
    timestamps = _timestamps(rng, event_user, world.users)
    in_cluster = world.item_cluster[event_item] == world.user_cluster[event_user]
    noise = rng.normal(0.0, 0.8, size=len(event_user))
    rating = np.clip(np.rint(3.0 + in_cluster + noise), 1, 5).astype(np.float32)
    user_table = world.user_table(rng)
    item_table = world.item_table(rng)
    interactions = pd.DataFrame(
        {
            "user_id": user_table["user_id"].array.take(event_user),
            "item_id": item_table["item_id"].array.take(event_item),
            "timestamp": timestamps,
            "rating": rating,
            **{c: user_table[c].array.take(event_user) for c in user_table.columns[1:]},
            **{c: item_table[c].array.take(event_item) for c in item_table.columns[1:]},
        }
    )
    return interactions, item_table, user_table


def _events_per_user(rng: np.random.Generator, n: int, users: int, items: int) -> np.ndarray:
    """Heavy-tailed event counts: at least one per user, at most ``items``, summing to n."""
    base = min(5, n // users, items)
    counts = np.full(users, base, dtype=np.int64)
    activity = rng.lognormal(0.0, 1.0, size=users)
    left = n - counts.sum()
    # Water-filling: hand out what is left in proportion to activity, among users
    # still under the cap; a few passes settle it, the last one deterministically.
    for _ in range(20):
        if left == 0:
            break
        open_ = counts < items
        weights = activity * open_
        counts += rng.multinomial(left, weights / weights.sum())
        counts = np.minimum(counts, items)
        left = n - counts.sum()
    if left:
        room = np.cumsum(items - counts)
        take = np.minimum(items - counts, np.maximum(left - (room - (items - counts)), 0))
        counts += take
    return counts


class _World:
    """The latent clusters, popularity and features of users and items."""

    def __init__(
        self,
        rng: np.random.Generator,
        users: int,
        items: int,
        clusters: int,
        popularity_share: float,
    ) -> None:
        self.users, self.items, self.clusters = users, items, clusters
        self.popularity_share = popularity_share
        self.item_cluster = rng.permutation(np.arange(items) % clusters)
        self.user_cluster = rng.permutation(np.arange(users) % clusters)
        ranks = rng.permutation(items)
        self.popularity = 1.0 / (ranks + 1.0) ** _ZIPF_EXPONENT
        self.popularity_cdf = np.cumsum(self.popularity / self.popularity.sum())
        # Items sorted by cluster; within cluster c the cumulative probabilities run
        # from c to c + 1, so one searchsorted samples every cluster at once.
        self.by_cluster = np.argsort(self.item_cluster, kind="stable")
        sorted_clusters = self.item_cluster[self.by_cluster]
        self.cluster_size = np.bincount(self.item_cluster, minlength=clusters)
        self.cluster_start = np.concatenate([[0], np.cumsum(self.cluster_size)[:-1]])
        self.cluster_mass = np.bincount(
            self.item_cluster, weights=self.popularity, minlength=clusters
        )
        within = self.popularity[self.by_cluster] / self.cluster_mass[sorted_clusters]
        cdf = np.cumsum(within)
        # Remove the floating-point drift of the running sum at every cluster start.
        cdf -= np.repeat(cdf[self.cluster_start] - within[self.cluster_start], self.cluster_size)
        self.cluster_cdf = cdf + sorted_clusters

    def draw(self, rng: np.random.Generator, user: np.ndarray) -> np.ndarray:
        """One item per entry of ``user``, from that user's taste mixture."""
        uniform = rng.random(len(user))
        from_popularity = rng.random(len(user)) < self.popularity_share
        items = np.empty(len(user), dtype=np.int64)
        k = int(from_popularity.sum())
        items[from_popularity] = np.minimum(
            np.searchsorted(self.popularity_cdf, uniform[:k], side="right"), self.items - 1
        )
        cluster = self.user_cluster[user[~from_popularity]]
        position = np.searchsorted(self.cluster_cdf, cluster + uniform[k:], side="right")
        start = self.cluster_start[cluster]
        position = np.clip(position, start, start + self.cluster_size[cluster] - 1)
        items[~from_popularity] = self.by_cluster[position]
        return items

    def probabilities(self, user: np.ndarray) -> np.ndarray:
        """The taste mixture of each user in ``user``: a (len(user), items) matrix."""
        share = self.popularity_share
        cluster = self.user_cluster[user]
        matrix = np.broadcast_to(
            share * self.popularity / self.popularity.sum(), (len(user), self.items)
        ).copy()
        same = self.item_cluster[None, :] == cluster[:, None]
        matrix += same * (
            (1 - share) * self.popularity[None, :] / self.cluster_mass[cluster][:, None]
        )
        return matrix

    def sample_events(
        self, rng: np.random.Generator, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``counts[u]`` distinct items for every user u, grouped by user in draw order.

        Rejection sampling: draw a little more than needed, drop repeated (user, item)
        pairs keeping the first draw, keep each user's first ``counts[u]``. The few users
        still short (heavy users of small clusters) draw again, and after a few rounds
        get the rest from an exact sampler.
        """
        user = np.repeat(np.arange(self.users), counts + counts // 4 + 2)
        user, item = self._first_distinct(user, self.draw(rng, user), counts)
        # Every user's rows live in exactly one piece; one stable sort joins them.
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        short = np.ones(self.users, dtype=bool)  # users whose rows are still pending
        for round_ in range(_REJECTION_ROUNDS + 1):
            have = np.bincount(user, minlength=self.users)
            short &= have < counts
            rows = short[user]
            pieces.append((user[~rows], item[~rows]))
            user, item = user[rows], item[rows]
            need = np.where(short, counts - have, 0)
            if not short.any():
                break
            if round_ == _REJECTION_ROUNDS:
                extra_user, extra_item = self._sample_exactly(rng, need, user, item)
                pieces.append(_merge_by_user(user, item, extra_user, extra_item))
                break
            extra = np.repeat(np.arange(self.users), 2 * need + 4 * short)
            user, item = self._first_distinct(
                *_merge_by_user(user, item, extra, self.draw(rng, extra)), counts
            )
        all_users = np.concatenate([u for u, _ in pieces])
        order = np.argsort(all_users, kind="stable")
        return all_users[order], np.concatenate([i for _, i in pieces])[order]

    def _first_distinct(
        self, user: np.ndarray, item: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Of draws grouped by user, each user's first ``counts[u]`` distinct items."""
        position = _rank_within(user, self.users)  # draw order within the user
        # One sort by (user, item, position) finds the first draw of every pair ...
        pair, position = _sort_pairs(user * self.items + item, position)
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        pair, position = pair[first], position[first]
        user = pair // self.items
        # ... and one by (user, position, item) restores the draw order.
        span = int(position.max(initial=0)) + 1
        key, item = _sort_pairs(user * span + position, pair % self.items)
        user = key // span
        keep = _rank_within(user, self.users) < counts[user]
        return user[keep], item[keep]

    def _sample_exactly(
        self, rng: np.random.Generator, need: np.ndarray, user: np.ndarray, item: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``need[u]`` more distinct items for the users still short: Gumbel top-k
        sampling without replacement, exact but costs a (users x items) matrix."""
        short = np.flatnonzero(need)
        chunk = max(1, _GUMBEL_CELLS // self.items)
        taken = np.zeros(self.users, dtype=bool)
        taken[short] = True
        taken_user, taken_item = user[taken[user]], item[taken[user]]
        out_user, out_item = [], []
        for begin in range(0, len(short), chunk):
            batch = short[begin : begin + chunk]
            probabilities = self.probabilities(batch)
            # Impossible items (popularity_share=0, outside the cluster) come after all
            # possible ones but before the already taken ones, which get -inf.
            log_p = np.log(np.where(probabilities > 0, probabilities, 1.0))
            log_p[probabilities <= 0] = -1e30
            keys = log_p + rng.gumbel(size=(len(batch), self.items))
            in_batch = (taken_user >= batch[0]) & (taken_user <= batch[-1])
            row = np.searchsorted(batch, taken_user[in_batch])
            keys[row, taken_item[in_batch]] = -np.inf
            order = np.argsort(-keys, axis=1, kind="stable")
            keep = np.arange(self.items)[None, :] < need[batch][:, None]
            # Top-k comes out most probable first: shuffle it within the user.
            chosen = order[keep]
            owner = np.repeat(batch, need[batch])
            shuffle = np.lexsort((rng.random(len(owner)), owner))
            out_user.append(owner[shuffle])
            out_item.append(chosen[shuffle])
        return np.concatenate(out_user), np.concatenate(out_item)

    def user_table(self, rng: np.random.Generator) -> pd.DataFrame:
        cluster = self.user_cluster
        centre_age = rng.integers(18, 60, size=self.clusters)
        age = np.clip(np.rint(centre_age[cluster] + rng.normal(0, 6, self.users)), 16, 80)
        on_topic = rng.random(self.users) < 0.9
        segment = np.where(on_topic, cluster, rng.integers(self.clusters, size=self.users))
        return pd.DataFrame(
            {
                "user_id": _names("u", np.arange(self.users)),
                "user_age": age.astype(np.int64),
                "user_segment": _names("segment-", segment),
            }
        )

    def item_table(self, rng: np.random.Generator) -> pd.DataFrame:
        cluster = self.item_cluster
        centre_year = rng.integers(1960, 2021, size=self.clusters)
        year = np.clip(np.rint(centre_year[cluster] + rng.normal(0, 6, self.items)), 1920, 2024)
        return pd.DataFrame(
            {
                "item_id": _names("i", np.arange(self.items)),
                "item_title": pd.array(self._titles(rng), dtype="str"),
                "item_genres": self._genres(rng),
                "item_year": year.astype(np.int64),
            }
        )

    def _titles(self, rng: np.random.Generator) -> np.ndarray:
        words = np.char.capitalize(
            np.add.outer(np.array(_SYLLABLES), np.array(_SYLLABLES)).ravel()
        ).astype(object)
        words = words[rng.permutation(len(words))]
        generic, themed = words[:_GENERIC_WORDS], words[_GENERIC_WORDS:]
        length = rng.integers(2, 5, size=self.items)
        # Cluster c owns themed words [c * 6, c * 6 + 6) (wrapping around if needed).
        own = (
            self.item_cluster[:, None] * _WORDS_PER_CLUSTER
            + rng.integers(_WORDS_PER_CLUSTER, size=(self.items, 4))
        ) % len(themed)
        themed_word = rng.random((self.items, 4)) < 0.7
        chosen = np.where(
            themed_word, themed[own], generic[rng.integers(len(generic), size=(self.items, 4))]
        )
        title = chosen[:, 0].copy()
        for slot in range(1, 4):
            title = title + np.where(length > slot, " " + chosen[:, slot], "")
        return title

    def _genres(self, rng: np.random.Generator) -> np.ndarray:
        genres = np.array(_GENRES, dtype=object)
        primary = rng.permutation(len(genres))[np.arange(self.clusters) % len(genres)]
        keys = rng.random((self.items, len(genres)))
        on_topic = rng.random(self.items) < 0.85
        rows = np.flatnonzero(on_topic)
        keys[rows, primary[self.item_cluster[rows]]] = -1.0  # sorts first
        top = np.argsort(keys, axis=1)[:, :3]
        length = rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2], size=self.items)
        flat = genres[top[np.arange(3)[None, :] < length[:, None]]]
        return split_rows(flat, length)


def _rank_within(user: np.ndarray, users: int) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted ``user`` array."""
    start = np.cumsum(np.bincount(user, minlength=users)) - np.bincount(user, minlength=users)
    return np.arange(len(user)) - start[user]


def _sort_pairs(major: np.ndarray, minor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays sorted by (major, minor): one sort of packed int64 when it fits."""
    scale = int(minor.max(initial=0)) + 1
    if int(major.max(initial=0)) < np.iinfo(np.int64).max // scale - 1:
        packed = np.sort(major * scale + minor)
        return packed // scale, packed % scale
    order = np.lexsort((minor, major))
    return major[order], minor[order]


def _merge_by_user(
    user_a: np.ndarray, item_a: np.ndarray, user_b: np.ndarray, item_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two user-grouped event lists merged into one, each user's ``a`` events first."""
    user = np.concatenate([user_a, user_b])
    order = np.argsort(user, kind="stable")  # two sorted runs: a linear merge
    return user[order], np.concatenate([item_a, item_b])[order]


def _names(prefix: str, numbers_: np.ndarray) -> pd.api.extensions.ExtensionArray:
    return pd.array(np.char.add(prefix, numbers_.astype(str)).astype(object), dtype="str")


def _timestamps(rng: np.random.Generator, event_user: np.ndarray, users: int) -> np.ndarray:
    """Strictly increasing per user: a random start, then gaps of about a day."""
    start = _START + rng.integers(0, 2 * 365 * 86_400, size=users)
    gaps = 1 + rng.exponential(86_400.0, size=len(event_user)).astype(np.int64)
    elapsed = np.cumsum(gaps)
    first = np.searchsorted(event_user, np.arange(users))
    first = np.minimum(first, len(event_user) - 1)
    before = elapsed[first] - gaps[first]
    return start[event_user] + elapsed - before[event_user]
