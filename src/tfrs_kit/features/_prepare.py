"""Prepare a raw event log on disk for training: vocabularies, histories, validation, sample.

:func:`prepare` turns raw event shards (user, item, time, optional features; no
history) into what training reads, in a work directory, without holding the log
in memory. Each stage is built in ``<stage>.partial`` and renamed when complete
(with a ``_COMPLETE`` marker inside), and the manifest is written last, so a run
killed at any point resumes on the next call with the same directory, reusing what
was finished and never using what was half written. The layout of the directory
is in ``docs/files.md`` ("Preparing a large log").
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tfrs_kit._errors import invalid_argument
from tfrs_kit._progress import Progress
from tfrs_kit._validation import check_fraction, check_int, check_verbose
from tfrs_kit.data._files import _file_schema, _pyarrow, _unify, estimated_rows, resolve
from tfrs_kit.data._source import TableLike, fail
from tfrs_kit.features._counting import VocabularyCounts, sum_counts
from tfrs_kit.features._prepare_log import (
    MAX_HISTORY,
    Layout,
    bucket_path,
    hash_ids,
    merge_parquet,
    spill,
    write_bucket,
    write_json,
)
from tfrs_kit.features._vocabulary import Vocabularies, VocabularyBuilder

__all__ = ["FORMAT_VERSION", "Prepared", "prepare"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CLAIM = "_prepare.json"  # the settings and source a work directory is for, written first
COMPLETE = "_COMPLETE"
_STAGES = ("vocabularies", "spill", "shards")
_BUCKET_ROWS = 1_000_000  # events per bucket aimed at: what the sort holds in memory
# (1e7 raw events, 50,000 users, one run each: peak 1.11 GiB and 48 s at 2e6 a bucket,
# 1.00 GiB and 36 s at 1e6)
_MAX_BUCKETS = 512  # bucket files open at once while spilling
_MERGE_EVERY = 4  # shards counted before their counts are summed (memory: 4 shards' ids)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` wrote: the paths of its files and the log's counts. Immutable.

    Attributes:
        work_dir: The work directory.
        train: The training shards (Parquet): the events with their history column,
            less the validation events; rows in a seeded random order.
        validation: The validation shard (Parquet), or ``None`` when no user is held
            out: each sampled user's latest events with the history preceding them.
        sample: The search sample's shards (Parquet): the training rows of a seeded
            sample of users; empty without ``sample_users``.
        latest: Each user's latest history, of all their events (Parquet: the user
            id and history columns), the query feature to serve or recommend with,
            as :meth:`~tfrs_kit.HistoryBuilder.for_users` gives it.
        vocabularies: The vocabularies' JSON file (:meth:`Vocabularies.load`): the
            ids, the features, and the history (the item ids').
        history: The name of the history column.
        rows: Events in the log.
        users: Distinct users.
        items: Distinct items.
        train_rows: Rows of the training shards.
        validation_rows: Rows of the validation shard.
        validation_users: Users in the validation shard.
        sample_rows: Rows of the sample shards.
        sample_users: Users in the sample shards.
    """

    work_dir: str
    train: tuple[str, ...]
    validation: str | None
    sample: tuple[str, ...]
    latest: tuple[str, ...]
    vocabularies: str
    history: str
    rows: int
    users: int
    items: int
    train_rows: int
    validation_rows: int
    validation_users: int
    sample_rows: int
    sample_users: int

    @classmethod
    def load(cls, work_dir: str | os.PathLike[str]) -> Prepared:
        """The preparation a finished :func:`prepare` left in ``work_dir``.

        Raises:
            ValueError: ``work_dir`` holds no finished preparation (no manifest).
        """
        folder = os.path.abspath(os.fspath(work_dir))
        manifest = _read_json(os.path.join(folder, MANIFEST))
        if manifest is None or manifest.get("format_version") != FORMAT_VERSION:
            raise invalid_argument(
                "work_dir", f"hold a finished preparation (a {MANIFEST} of format version "
                f"{FORMAT_VERSION})", folder,
                hint="Run tfrs_kit.features.prepare(source, work_dir=...) first; a run that "
                     "was stopped resumes when called again.")
        paths, counts = manifest["paths"], manifest["counts"]
        full = lambda name: os.path.join(folder, name)  # noqa: E731
        return cls(work_dir=folder, train=tuple(map(full, paths["train"])),
                   validation=full(paths["validation"]) if paths["validation"] else None,
                   sample=tuple(map(full, paths["sample"])),
                   latest=tuple(map(full, paths["latest"])),
                   vocabularies=full(paths["vocabularies"]),
                   history=manifest["settings"]["history"], **counts)

    def load_vocabularies(self) -> Vocabularies:
        """The vocabularies, history included."""
        return Vocabularies.load(self.vocabularies)


def prepare(
    source: TableLike,
    *,
    work_dir: str | os.PathLike[str],
    user_id: str = "user_id",
    item_id: str = "item_id",
    timestamp: str | None = "timestamp",
    features: Sequence[str] | Mapping[str, str] = (),
    history_length: int = 50,
    history: str = "history",
    validation_users: int | float = 0.1,
    validation_events: int = 1,
    sample_users: int | float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    verbose: Any = "auto",
) -> Prepared:
    """Prepares raw event shards for training, out of core, resumable.

    From events on disk (Parquet, CSV or TFRecord; user, item, time and optional
    features, no history), writes into ``work_dir``: the vocabularies (counted
    shard by shard, then merged), the events with a history column (each event's
    ``history_length`` preceding items of its user, by time, ties in file order,
    exactly as :class:`~tfrs_kit.HistoryBuilder` computes them) as training shards, a
    validation shard (the latest ``validation_events`` events of a seeded sample of
    users, held out of the training shards), each user's latest history (for
    serving), optionally a search sample (the training rows of a seeded sample of
    users), and a manifest.

    Memory holds one chunk of the source, then one bucket (about a million
    events) of the log sorted by user and time, and the vocabularies' counts; never
    the log. Calling it again with the same ``work_dir``, source and settings reuses
    every stage that finished (a killed run resumes); see ``docs/files.md``.

    Args:
        source: The shards: a path, a glob, a directory, a list of them, or
            :class:`~tfrs_kit.data.Shards`.
        work_dir: Where to write; created if missing.
        user_id: The user id column (strings or integers).
        item_id: The item id column (strings or integers).
        timestamp: The time column: integers (seconds, milliseconds ...), floats,
            date-times with or without a time zone, or date-time strings (ISO
            8601); ``None`` orders each user's events as the shards do.
        features: Other columns to keep and count vocabularies of: names, or a
            mapping of name to kind as :meth:`~tfrs_kit.VocabularyBuilder.fit` takes.
        history_length: The most recent items kept per history.
        history: The name of the history column written.
        validation_users: Users held out: a count, or a share (a float in (0, 1]) of
            the users with more than ``validation_events`` events; 0 holds none out.
        validation_events: The latest events held out per validation user.
        sample_users: Users of the search sample: a count, a share of all users,
            or ``None`` for no sample.
        seed: Seeds the samples of users and the order of training rows.
        overwrite: Start over in a ``work_dir`` prepared from another log or with
            other settings (its files are replaced).
        verbose: Progress per stage: ``"auto"`` (for a million rows or more),
            ``True`` or ``False``.

    Returns:
        The :class:`Prepared` files and counts.

    Raises:
        ValueError: ``work_dir`` was prepared from another log or with other
            settings (and not ``overwrite``), holds other files, or a setting or
            the log breaks a rule (missing ids, no user with enough events to hold
            one out, ...).
        OSError: The disk of ``work_dir`` filled up (``errno.ENOSPC``): the message
            says how much is free and what to do; the finished stages are kept.
    """
    settings = _settings(user_id=user_id, item_id=item_id, timestamp=timestamp,
                         features=features, history_length=history_length, history=history,
                         validation_users=validation_users, validation_events=validation_events,
                         sample_users=sample_users, seed=seed)
    verbose = check_verbose("verbose", verbose)
    paths, folder, layout, num_buckets, claim = claimed(source, work_dir, settings, overwrite)
    if os.path.exists(os.path.join(folder, MANIFEST)):
        return Prepared.load(folder)
    with disk_checked(folder, claim):
        counts = _vocabulary_stage(folder, paths, layout, settings, verbose)
        _spill_stage(folder, paths, layout, num_buckets, verbose)
        buckets = _shards_stage(folder, layout, settings, num_buckets, verbose)
        shutil.rmtree(os.path.join(folder, "spill"), ignore_errors=True)
        _write_manifest(folder, claim, layout, counts, buckets)
    return Prepared.load(folder)


def claimed(source: TableLike, work_dir: str | os.PathLike[str], settings: dict[str, Any],
            overwrite: bool, *, files: ShardFiles | None = None,
            ) -> tuple[list[str], str, Layout, int, dict[str, Any]]:
    """The shards, the work directory (claimed for them and ``settings``), the layout,
    the buckets and the claim: what :func:`prepare` and ``tfrs_kit.beam.prepare`` start
    from; ``files`` lists and reads the shards (the local file system's by default)."""
    files = files or ShardFiles()
    paths = files.resolve(source, argument="source")
    folder = os.path.abspath(os.fspath(work_dir))
    inside = [p for p in paths if files.local
              and os.path.abspath(p).startswith(folder + os.sep)]
    if inside:
        raise invalid_argument("work_dir", "be outside the source's shards (its files would "
                               "join the log on the next run)", folder,
                               hint=f"It holds the shard {inside[0]!r}; pass another work_dir.")
    layout = _layout(paths, settings, files.schema)
    num_buckets = _buckets(files.rows(paths))
    claim = {"format_version": FORMAT_VERSION, "settings": settings,
             "source": files.fingerprint(paths), "num_buckets": num_buckets}
    _claim(folder, claim, overwrite)
    return paths, folder, layout, num_buckets, claim


@contextlib.contextmanager
def disk_checked(folder: str, claim: Mapping[str, Any]) -> Iterator[None]:
    """Turns a full disk (``ENOSPC``, ``EDQUOT``) while preparing into an ``OSError`` that
    says where, how much is free and what to do (``claim``: the source's sizes)."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        source = sum(int(shard["size"]) for shard in claim["source"])
        raise _disk_full(folder, source, error) from error


def _disk_full(folder: str, source: int, error: OSError) -> OSError:
    """The error for a disk that filled up: where, how much is free, what to do."""
    free = shutil.disk_usage(folder).free
    message = invalid_argument(
        "work_dir", "be on a disk with room for the prepared log", folder,
        hint=f"The disk filled up writing {error.filename or folder} ({error.strerror}; "
        f"{free / 1e9:.2f} GB free now). The prepared shards hold each event with its "
        f"history: 12 times the source's {source / 1e9:.2f} GB on a measured log of "
        "history_length=50. Free space or pass a work_dir on a larger disk; a rerun with "
        "the same work_dir reuses the stages that finished (nothing half-written is used).",
    )
    return OSError(error.errno, str(message))


def _settings(**settings: Any) -> dict[str, Any]:
    """The settings checked, as plain JSON values (what a work directory is for)."""
    for name in ("user_id", "item_id", "history"):
        if not isinstance(settings[name], str) or not settings[name]:
            raise invalid_argument(name, "be a column name (a non-empty string)",
                                   settings[name], error=TypeError)
    if settings["user_id"] == settings["item_id"]:
        raise invalid_argument("item_id", "differ from user_id", settings["item_id"])
    features = settings["features"]
    if isinstance(features, str):
        raise invalid_argument("features", "be a list of column names or a mapping of name "
                               "to kind", features, hint=f"Did you mean features=[{features!r}]?",
                               error=TypeError)
    if isinstance(features, Mapping):
        settings["features"] = {str(n): str(k) for n, k in features.items()}
    else:
        settings["features"] = [str(n) for n in features]
    names = [settings["user_id"], settings["item_id"], settings["timestamp"],
             *settings["features"]]
    if settings["history"] in names:
        raise invalid_argument("history", "name a column the source does not have (it is "
                               "written)", settings["history"], hint="Pass history='...'.")
    settings["history_length"] = check_int("history_length", settings["history_length"],
                                           minimum=1, maximum=MAX_HISTORY)
    settings["validation_events"] = check_int("validation_events",
                                              settings["validation_events"], minimum=1)
    settings["validation_users"] = _users_amount("validation_users",
                                                 settings["validation_users"])
    if settings["sample_users"] is not None:
        settings["sample_users"] = _users_amount("sample_users", settings["sample_users"])
    settings["seed"] = check_int("seed", settings["seed"], minimum=0)
    return settings


def _users_amount(argument: str, value: Any) -> int | float:
    if isinstance(value, float):
        return float(check_fraction(argument, value, allow_zero=True, allow_one=True))
    return int(check_int(argument, value, minimum=0))


def _layout(paths: Sequence[str], settings: Mapping[str, Any],
            read_schema: Callable[[str, str], dict[str, str]] = _file_schema) -> Layout:
    named = {settings["user_id"]: "user_id", settings["item_id"]: "item_id"}
    if settings["timestamp"] is not None:
        named[settings["timestamp"]] = "timestamp"
    columns = list(dict.fromkeys([*named, *settings["features"]]))
    stored = [read_schema(path, "source") for path in paths]
    kinds = _unify(paths, stored, columns, "source", named)
    if any(settings["history"] in shard for shard in stored):
        raise invalid_argument("history", "name a column the source does not have (it is "
                               "written)", settings["history"],
                               hint="Pass history='...' with another name.")
    return Layout(user_id=settings["user_id"], item_id=settings["item_id"],
                  timestamp=settings["timestamp"], features=tuple(settings["features"]),
                  kinds=kinds, history=settings["history"],
                  history_length=settings["history_length"],
                  validation_events=settings["validation_events"], seed=settings["seed"])


def fingerprint(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Each shard's path, size and modification time (ns): a log that changes, changes it."""
    out = []
    for path in sorted(os.path.abspath(p) for p in paths):
        info = os.stat(path)
        out.append({"path": path, "size": info.st_size, "mtime_ns": info.st_mtime_ns})
    return out


@dataclasses.dataclass(frozen=True)
class ShardFiles:
    """How the driver reads the source's shards: their schemas, rows and fingerprint.

    The local file system's by default; ``tfrs_kit.beam`` passes readers for shards on
    a remote file system (``local=False``: no path is compared with ``work_dir``).
    """

    resolve: Callable[..., list[str]] = resolve
    schema: Callable[[str, str], dict[str, str]] = _file_schema
    rows: Callable[[Sequence[str]], int] = estimated_rows
    fingerprint: Callable[[Sequence[str]], list[dict[str, Any]]] = fingerprint
    local: bool = True


def _num_buckets(paths: Sequence[str]) -> int:
    """Buckets for the sort of the local ``paths`` (Parquet footers say how many rows)."""
    return _buckets(estimated_rows(paths))


def _buckets(rows: int) -> int:
    """Buckets for the sort of ``rows`` events: about ``_BUCKET_ROWS`` each."""
    return int(min(_MAX_BUCKETS, max(1, math.ceil(rows / _BUCKET_ROWS))))


# --- the work directory ----------------------------------------------------------------------


def _claim(folder: str, claim: Mapping[str, Any], overwrite: bool) -> None:
    """Makes ``folder`` this preparation's, or checks it already is."""
    claim = json.loads(json.dumps(claim))
    existing_path = os.path.join(folder, CLAIM)
    existing = _read_json(existing_path)
    if existing == claim:
        return
    if existing is not None and not overwrite:
        raise fail("work_dir", "hold a preparation of the same log with the same settings "
                   "to be reused", f"work_dir={folder!r}, prepared with "
                   f"{_mismatch(existing, claim)}",
                   "Pass a new work_dir, or overwrite=True to replace this one.")
    ours = {MANIFEST, CLAIM, *_STAGES, *(f"{s}.partial" for s in _STAGES),
            f"{MANIFEST}.tmp", f"{CLAIM}.tmp"}
    present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    others = sorted(present - ours)
    if existing is None and others:
        raise invalid_argument(
            "work_dir", "be a new or empty directory, or one prepare wrote", folder,
            hint=f"It holds {others[:5]}; pass another work_dir.")
    for name in sorted(present & ours):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    os.makedirs(folder, exist_ok=True)
    write_json(existing_path, claim)


def _mismatch(existing: Mapping[str, Any], claim: Mapping[str, Any]) -> str:
    """What differs between two claims, in words."""
    if existing.get("format_version") != claim["format_version"]:
        return f"format version {existing.get('format_version')} (now {FORMAT_VERSION})"
    before, now = existing.get("settings", {}), claim["settings"]
    changed = [f"{k}={before.get(k)!r} (now {now[k]!r})" for k in now if before.get(k) != now[k]]
    if changed:
        return "other settings: " + ", ".join(changed)
    old = {s["path"]: s for s in existing.get("source", [])}
    new = {s["path"]: s for s in claim["source"]}
    for label, names in (("shards missing now", sorted(set(old) - set(new))),
                         ("shards it did not have", sorted(set(new) - set(old))),
                         ("shards that changed since", sorted(p for p in set(old) & set(new)
                                                              if old[p] != new[p]))):
        if names:
            return f"another log ({label}: {names[:3]}{' ...' if len(names) > 3 else ''})"
    return "other buckets"


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _stage(folder: str, name: str) -> tuple[str, str, bool]:
    """A stage's final and partial folders, and whether it is complete."""
    final = os.path.join(folder, name)
    return final, f"{final}.partial", os.path.exists(os.path.join(final, COMPLETE))


def _finish(partial: str, final: str) -> None:
    with open(os.path.join(partial, COMPLETE), "w", encoding="utf-8") as f:
        f.write("complete\n")
    shutil.rmtree(final, ignore_errors=True)  # a final folder without its marker: never used
    os.replace(partial, final)


def _fresh(partial: str) -> str:
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    return partial


# --- the stages -------------------------------------------------------------------------------


def _vocabulary_stage(folder: str, paths: Sequence[str], layout: Layout,
                      settings: Mapping[str, Any], verbose: Any) -> dict[str, int]:
    """Vocabularies counted shard by shard, and the seeded samples of users."""
    final, partial, done = _stage(folder, "vocabularies")
    if done:
        return dict(_read_json(os.path.join(final, "counts.json")))
    _fresh(partial)
    features = settings["features"]
    if isinstance(features, Mapping):
        wanted: Any = {layout.user_id: "categorical", layout.item_id: "categorical",
                       **features}
    else:
        wanted = list(dict.fromkeys([layout.user_id, layout.item_id, *features]))
    builder = VocabularyBuilder()
    parts: list[VocabularyCounts] = []
    with Progress(len(paths), description="Counting vocabularies", verbose=verbose,
                  size=_size(paths)) as progress:
        for path in paths:
            try:
                parts.append(builder.count(path, wanted, verbose=False))
            except (TypeError, ValueError) as error:  # the counts' message, and the shard
                raise type(error)(f"{error} In the shard {path!r}.") from None
            if len(parts) >= _MERGE_EVERY:
                parts = [sum_counts(parts)]
            progress.update()
    counts = sum_counts(parts)
    vocabularies = builder.from_counts(counts).alias(layout.history, layout.item_id,
                                                     kind="multi")
    vocabularies.save(os.path.join(partial, "vocabularies.json"))
    users = counts.counts[layout.user_id]
    summary = {"rows": int(users.sum()), "users": len(users),
               "items": len(counts.counts[layout.item_id])}
    _write_users(partial, "validation", _choose(
        users, settings["validation_users"], layout.validation_events, 2 * layout.seed,
        "validation_users"))
    if settings["sample_users"] is not None:
        _write_users(partial, "sample", _choose(users, settings["sample_users"], 0,
                                                2 * layout.seed + 1, "sample_users"))
    write_json(os.path.join(partial, "counts.json"), summary)
    _finish(partial, final)
    return summary


def _choose(users: Any, amount: int | float, held: int, seed: int, argument: str) -> np.ndarray:
    """A seeded sample of the users with more than ``held`` events (the ids)."""
    ids = np.asarray(users.index)
    eligible = ids[np.asarray(users.to_numpy()) > held]
    wanted = int(amount) if isinstance(amount, int) else round(amount * len(eligible))
    if isinstance(amount, float) and amount > 0:
        wanted = max(wanted, 1)
    if wanted > len(eligible):
        rule = (f"be at most the users with more than {held} event(s) ({len(eligible):,})"
                if held else f"be at most the number of users ({len(eligible):,})")
        hint = ("Hold out fewer users or events, or pass validation_users=0 to hold none "
                "out." if held else "Pass a smaller count or a share.")
        raise invalid_argument(argument, rule, amount, hint=hint)
    if wanted == 0:
        return ids[:0]
    keys = hash_ids(eligible, seed=seed)
    return eligible[np.sort(np.argsort(keys, kind="stable")[:wanted])]


def _write_users(partial: str, name: str, ids: np.ndarray) -> None:
    pa = _pyarrow()
    values = pa.array(ids.tolist() if ids.dtype == object else ids)
    pa.parquet.write_table(pa.table({"user": values}), os.path.join(partial, f"{name}.parquet"))


def _read_users(folder: str, name: str) -> Any:
    path = os.path.join(folder, "vocabularies", f"{name}.parquet")
    if not os.path.exists(path):
        return None
    return _pyarrow().parquet.read_table(path).column("user").combine_chunks()


def _size(paths: Sequence[str]) -> int:
    return sum(os.path.getsize(p) for p in paths) // 100


def _spill_stage(folder: str, paths: Sequence[str], layout: Layout, num_buckets: int,
                 verbose: Any) -> None:
    """The log hashed by user into bucket files; redone whole if it did not finish."""
    final, partial, done = _stage(folder, "spill")
    if done or _stage(folder, "shards")[2]:
        return
    _fresh(partial)
    with Progress(len(paths), description=f"Splitting into {num_buckets} bucket(s)",
                  verbose=verbose, size=_size(paths)) as progress:
        rows = spill(paths, layout, num_buckets, partial, on_shard=progress.update)
    if rows == 0:
        raise invalid_argument("source", "hold at least one event", f"{len(paths)} shard(s) "
                               "without a row")
    _finish(partial, final)


def _shards_stage(folder: str, layout: Layout, settings: Mapping[str, Any], num_buckets: int,
                  verbose: Any) -> list[dict[str, Any]]:
    """Each bucket sorted, with histories, split; resumes bucket by bucket."""
    final, partial, done = _stage(folder, "shards")
    if done:
        return list(_read_json(os.path.join(final, "buckets.json")))
    os.makedirs(partial, exist_ok=True)
    validation = _read_users(folder, "validation")
    sample = _read_users(folder, "sample")
    spilled = os.path.join(folder, "spill")
    stats = []
    with Progress(num_buckets, description="Sorting and writing histories", verbose=verbose,
                  size=_size([bucket_path(spilled, b) for b in range(num_buckets)
                              if os.path.exists(bucket_path(spilled, b))])) as progress:
        for bucket in range(num_buckets):
            marker = os.path.join(partial, f"bucket-{bucket:05d}.json")
            done_before = _read_json(marker)
            if done_before is None and os.path.exists(bucket_path(spilled, bucket)):
                done_before = write_bucket(bucket_path(spilled, bucket), bucket, layout,
                                           partial, validation, sample)
                write_json(marker, done_before)
            if done_before is not None:
                stats.append(done_before)
            progress.update()
    _merge_validation(partial, stats)
    write_json(os.path.join(partial, "buckets.json"), stats)
    _finish(partial, final)
    return stats


def _merge_validation(partial: str, stats: Sequence[Mapping[str, Any]]) -> None:
    """The buckets' validation rows as one shard (small: a few rows per held-out user)."""
    target = os.path.join(partial, "validation.parquet")
    parts = [os.path.join(partial, s["files"]["validation"]) for s in stats
             if "validation" in s["files"]]
    if parts and not os.path.exists(target):
        merge_parquet(parts, target)
    shutil.rmtree(os.path.join(partial, "validation"), ignore_errors=True)


def _write_manifest(folder: str, claim: Mapping[str, Any], layout: Layout,
                    summary: Mapping[str, int], buckets: Sequence[Mapping[str, Any]]) -> None:
    """The manifest, written last and atomically: its presence means the work is complete."""
    total = {key: sum(int(b.get(key, 0)) for b in buckets)
             for key in ("rows", "users", "train_rows", "validation_rows", "validation_users",
                         "sample_rows", "sample_users")}
    if total["train_rows"] == 0:
        raise invalid_argument("validation_users", "leave events to train on", "every event "
                               "held out", hint="Hold out fewer users or events.")
    def files(part: str) -> list[str]:
        return [os.path.join("shards", b["files"][part]) for b in buckets if part in b["files"]]

    manifest = {
        **claim, "columns": dict(layout.kinds),
        "counts": {**total, "items": summary["items"]},
        "paths": {"train": files("train"), "sample": files("sample"),
                  "latest": files("latest"),
                  "validation": os.path.join("shards", "validation.parquet")
                  if total["validation_rows"] else None,
                  "vocabularies": os.path.join("vocabularies", "vocabularies.json")},
    }
    write_json(os.path.join(folder, MANIFEST), manifest)

