"""tfrs_kit.beam on Beam's DirectRunner: the same vocabularies and history rows as in memory.

One pipeline runs on two workers (``direct_running_mode="multi_threading"``; worker
processes, 12 s slower to start, are the slow step's, in ``test_beam_prepare.py``)
over a generated log with timestamp ties, unicode ids, numbers, text, lists and
missing values, with small batches so that counts are merged across batches and
workers; its outputs are compared with ``VocabularyBuilder`` and ``HistoryBuilder``
run in memory on the DataFrame of the same events. Hand-written logs pin the
ordering rules, and bad input is checked on the in-process runner (which re-raises
the transform's own exception).
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import math
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

beam = pytest.importorskip("apache_beam")

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.testing.util import assert_that  # noqa: E402

import tfrs_kit as tk  # noqa: E402
from tfrs_kit import beam as tk_beam  # noqa: E402
from tfrs_kit.beam import _events as beam_events  # noqa: E402
from tfrs_kit.data._table import to_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"user": "categorical", "item": "categorical", "title": "text", "genres": "multi",
         "price": "numeric", "time": "timestamp"}
INFERRED = ["user", "item", "price", "rating", "age", "genres", "time"]  # kinds left to inference
HISTORY = {"user_id": "user", "item_id": "item", "timestamp": "time", "max_length": 3}
USERS = ["ünïcode", "用户", "ユーザー", "u-3", "Ωmega", "plain"]
TITLES = ["Toy Story (1995)", "Héat", "Die Hard: With a Vengeance", "l'été", None]


def _raw_events(n: int = 360, seed: int = 0) -> list[dict]:
    """Raw events as a JSON log would give them: ints with None, keys left out, lists."""
    rng = np.random.default_rng(seed)
    events = []
    for row in rng.permutation(n):  # the tie-break column is not the list order
        event = {"user": str(rng.choice(USERS)), "item": f"ítem-{rng.integers(25)}",
                 "time": int(rng.integers(6)), "row": int(row),
                 "title": TITLES[rng.integers(len(TITLES))],
                 "genres": [str(g) for g in rng.choice(["a", "b", "ç"], rng.integers(3))],
                 "rating": None if rng.random() < 0.1 else int(rng.integers(1, 6))}
        if rng.random() < 0.85:  # otherwise the key is absent: a missing price
            event["price"] = None if rng.random() < 0.1 else round(float(rng.random()), 3)
        if rng.random() < 0.9:  # integers, missing only as an absent key
            event["age"] = int(rng.integers(18, 80))
        events.append(event)
    return events


def _log(events: list[dict]) -> pd.DataFrame:
    """The in-memory log: the events in row order (the order HistoryBuilder keeps ties in)."""
    return pd.DataFrame(events).sort_values("row", ignore_index=True)


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    """Runs the transforms once on two workers; returns the events and outputs."""
    out = tmp_path_factory.mktemp("beam")
    events = _raw_events()
    options = PipelineOptions(flags=[], direct_num_workers=2,
                              direct_running_mode="multi_threading")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(beam_events, "BATCH_ROWS", 40)  # several batches, merged across workers
        pipeline = beam.Pipeline(options=options)
        log = pipeline | beam.Create(events)
        declared = tk.VocabularyBuilder(min_count=2, ngrams=2, num_buckets=4)
        (log | "Declared" >> tk_beam.CountVocabularies(features=KINDS, builder=declared)
         | "Save declared" >> tk_beam.WriteVocabularies(str(out / "declared.json")))
        (log | "Inferred" >> tk_beam.CountVocabularies(features=INFERRED)
         | "Save inferred" >> tk_beam.WriteVocabularies(str(out / "inferred.json")))
        (log | tk_beam.AddHistories(builder=tk.HistoryBuilder(**HISTORY), tie_breaker="row")
         | tk_beam.WriteParquetShards(str(out / "train" / "part"), num_shards=3))
        result = pipeline.run()
        result.wait_until_finish()
    counters = {str(c.key.step): c.committed for c in result.metrics().query()["counters"]
                if c.key.metric.name == "vocabulary_batches"}
    return {"events": events, "out": out, "batches": counters}


def _assert_same_vocabularies(got: tk.Vocabularies, want: tk.Vocabularies) -> None:
    """Equal, but for a numeric mean and std, which the order of summation may change in
    the last bits (Beam sums the values sorted)."""
    assert list(got) == list(want)
    for name, expected in want.items():
        actual = got[name]
        assert math.isclose(actual.mean, expected.mean, rel_tol=1e-12), name
        assert math.isclose(actual.std, expected.std, rel_tol=1e-12), name
        assert dataclasses.replace(actual, mean=expected.mean, std=expected.std) == expected


def test_counts_merge_across_batches(distributed):
    # The equality tests below mean something only if counts were merged.
    assert distributed["batches"] and all(n >= 4 for n in distributed["batches"].values())


def test_declared_kinds_give_the_in_memory_vocabularies(distributed):
    want = tk.VocabularyBuilder(min_count=2, ngrams=2, num_buckets=4).fit(
        _log(distributed["events"]), features=KINDS)
    got = tk.Vocabularies.load(distributed["out"] / "declared.json")
    _assert_same_vocabularies(got, want)
    assert "toy story" in got["title"].tokens and "été" in got["title"].tokens  # n-grams
    assert got["price"].boundaries and got["price"].total < len(distributed["events"])


def test_inferred_kinds_are_those_of_the_whole_log(distributed):
    # Integers with a None are float64 in pandas, so numeric; a key left out is a
    # missing value; plain integers are categorical ids.
    want = tk.VocabularyBuilder().fit(_log(distributed["events"]), features=INFERRED)
    got = tk.Vocabularies.load(distributed["out"] / "inferred.json")
    assert {n: v.kind for n, v in got.items()} == {
        "user": "categorical", "item": "categorical", "price": "numeric", "rating": "numeric",
        "age": "numeric", "genres": "multi", "time": "categorical"}
    _assert_same_vocabularies(got, want)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def test_shards_read_back_as_history_builder_rows(distributed):
    shards = sorted(glob.glob(str(distributed["out"] / "train" / "part-*.parquet")))
    assert [Path(p).name for p in shards] == [f"part-{i:05d}-of-00003.parquet" for i in range(3)]
    got = to_table(str(distributed["out"] / "train" / "part-*.parquet"))
    want = tk.HistoryBuilder(**HISTORY).transform(_log(distributed["events"]))
    assert sorted(got) == sorted(want)
    order = np.argsort(got["row"])
    assert got["row"][order].tolist() == want["row"].tolist()
    for column in want:
        assert [_plain(v) for v in got[column][order]] == [_plain(v) for v in want[column]], \
            column
    assert max(len(h) for h in got["history"]) == 3


def test_the_kit_trains_on_the_shards_as_on_the_rows(distributed):
    path = str(distributed["out"] / "train")  # a directory of shards
    features = {"item": "categorical", "history": "multi", "genres": "multi"}
    rows = tk.HistoryBuilder(**HISTORY).transform(_log(distributed["events"]))
    assert tk.VocabularyBuilder().fit(path, features=features) == \
        tk.VocabularyBuilder().fit(rows, features=features)


# --- known answers, in process ------------------------------------------------------------


_FOUND: list = []


def _collect(elements):  # module-level: Beam pickles it by reference, in this process
    _FOUND.extend(elements)


def _run(build, events):
    """The elements ``build(pcollection)`` yields, on the in-process runner."""
    _FOUND.clear()
    options = PipelineOptions(flags=[], direct_num_workers=1, direct_running_mode="in_memory")
    with beam.Pipeline(options=options) as pipeline:
        _ = assert_that(build(pipeline | beam.Create(events)), _collect)
    return list(_FOUND)


def _histories(rows):
    return sorted((row["user"], row["n"], tuple(row["history"])) for row in rows)


def test_ties_follow_the_tie_breaker_then_the_item():
    events = [{"user": "ü", "item": "b", "t": 1, "n": 2}, {"user": "ü", "item": "a", "t": 1,
              "n": 1}, {"user": "ü", "item": "c", "t": 0, "n": 3},
              {"user": "v", "item": "c", "t": 5, "n": 4}]
    builder = tk.HistoryBuilder(user_id="user", item_id="item", timestamp="t", max_length=2)
    by_n = _run(lambda p: p | tk_beam.AddHistories(builder=builder, tie_breaker="n"), events)
    assert _histories(by_n) == [("v", 4, ()), ("ü", 1, ("c",)), ("ü", 2, ("c", "a")),
                                ("ü", 3, ())]
    reverse = [{**e, "n": -e["n"]} for e in events]  # now "b" (n=-2) precedes "a" (n=-1)
    by_minus_n = _run(lambda p: p | tk_beam.AddHistories(builder=builder, tie_breaker="n"),
                      reverse)
    assert _histories(by_minus_n) == [("v", -4, ()), ("ü", -3, ()), ("ü", -2, ("c",)),
                                      ("ü", -1, ("c", "b"))]
    by_item = _run(lambda p: p | tk_beam.AddHistories(builder=builder), reverse)
    assert _histories(by_item) == [("v", -4, ()), ("ü", -3, ()), ("ü", -2, ("c", "a")),
                                   ("ü", -1, ("c",))]
    assert all(set(row) == {"user", "item", "t", "n", "history"} for row in by_item)


def test_without_timestamps_the_tie_breaker_is_the_order():
    events = [{"user": 7, "item": 30, "seq": 2}, {"user": 7, "item": 10, "seq": 0},
              {"user": 7, "item": 20, "seq": 1}]
    builder = tk.HistoryBuilder(user_id="user", item_id="item", timestamp=None)
    rows = _run(lambda p: p | tk_beam.AddHistories(builder=builder, tie_breaker="seq"), events)
    assert sorted((r["seq"], r["history"]) for r in rows) == [(0, []), (1, [10]), (2, [10, 20])]


def test_shard_schema_is_unified_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(beam_events, "BATCH_ROWS", 2)
    rows = [{"id": i, "score": i if i % 2 else i + 0.5, "note": None if i < 4 else f"n{i}",
             "tags": [] if i < 4 else ["x"]} for i in range(8)]
    _run(lambda p: p | tk_beam.WriteParquetShards(str(tmp_path / "s"), num_shards=4), rows)
    import pyarrow.parquet as pq

    paths = sorted(glob.glob(str(tmp_path / "s-*.parquet")))
    schemas = {str(pq.read_schema(p)) for p in paths}
    assert len(paths) > 1 and len(schemas) == 1, schemas
    table = to_table(str(tmp_path / "s-*.parquet"))
    order = np.argsort(table["id"])
    assert table["score"].dtype == np.float64
    assert table["score"][order].tolist() == [r["score"] for r in rows]
    assert [_plain(v) for v in table["note"][order]] == [r["note"] for r in rows]
    assert [_plain(v) for v in table["tags"][order]] == [r["tags"] for r in rows]


def test_a_batch_of_empty_lists_counts_nothing(monkeypatch):
    # NumPy types the values of empty lists float; such a batch must not break the counts.
    monkeypatch.setattr(beam_events, "BATCH_ROWS", 1)
    events = [{"genres": []}] * 3 + [{"genres": ["x", "y"]}, {"genres": ["x"]}]
    [got] = _run(lambda p: p | tk_beam.CountVocabularies(), events)
    assert got == tk.VocabularyBuilder().fit(pd.DataFrame(events))
    assert got["genres"].tokens == ("x", "y") and got["genres"].counts == (2, 1)


def test_vocabularies_pickle_as_beam_moves_them():
    vocabs = tk.VocabularyBuilder().fit({"user": ["a", "b", "a"], "price": [1.0, 2.0, 4.0]})
    assert pickle.loads(pickle.dumps(vocabs)) == vocabs


# --- bad input ----------------------------------------------------------------------------


def test_a_missing_history_column_is_named():
    events = [{"user_id": "a", "itemid": "x", "timestamp": 1}]
    with pytest.raises(ValueError, match=r"must have a column 'item_id' \(named by `item_id`\)"
                       r".*Did you mean item_id='itemid'"):
        _run(lambda p: p | tk_beam.AddHistories(), events)


def test_a_missing_vocabulary_column_is_named():
    events = [{"user": "a", "item": "x"}, {"user": "b"}]
    with pytest.raises(ValueError, match=r"`events` must have a column 'itme'.*Did you mean"):
        _run(lambda p: p | tk_beam.CountVocabularies(features=["user", "itme"]), events)


def test_missing_and_mixed_values_are_refused():
    events = [{"user_id": "a", "item_id": "x", "timestamp": None}]
    with pytest.raises(ValueError, match=r"`events\['timestamp'\]` must hold no missing"):
        _run(lambda p: p | tk_beam.AddHistories(), events)
    pad = [{"user_id": "a", "item_id": "", "timestamp": 1}]
    with pytest.raises(ValueError, match=r"`events\['item_id'\]` must hold no ''"):
        _run(lambda p: p | tk_beam.AddHistories(), pad)
    mixed = [{"item": "x"}] * 3 + [{"item": 5}] * 3
    with pytest.raises(TypeError, match=r"one type"):
        _run(lambda p: p | tk_beam.CountVocabularies(), mixed)
    with pytest.raises(TypeError, match=r"PCollection of dicts"):
        _run(lambda p: p | tk_beam.CountVocabularies(), [("a", "x")])
    with pytest.raises(ValueError, match=r"at least one event"):
        _run(lambda p: p | tk_beam.CountVocabularies(), [])


def test_bad_settings_are_refused_when_the_pipeline_is_built():
    with pytest.raises(TypeError, match=r"`builder` must be a VocabularyBuilder"):
        tk_beam.CountVocabularies(builder=tk.HistoryBuilder())
    with pytest.raises(ValueError, match=r"features\['user'\]"):
        tk_beam.CountVocabularies(features={"user": "categorial"})
    with pytest.raises(TypeError, match=r"`builder` must be a HistoryBuilder"):
        tk_beam.AddHistories(builder=tk.VocabularyBuilder())
    with pytest.raises(ValueError, match=r"`tie_breaker` must name the column"):
        tk_beam.AddHistories(builder=tk.HistoryBuilder(timestamp=None))
    with pytest.raises(ValueError, match=r"`num_shards` must be"):
        tk_beam.WriteParquetShards("out/part", num_shards=0)


# --- packaging ----------------------------------------------------------------------------


def test_without_beam_the_import_error_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "tfrs_kit.beam" or m.startswith("tfrs_kit.beam.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    with pytest.raises(ImportError, match=re.escape('pip install "tfrs-kit[beam]"')):
        import tfrs_kit.beam  # noqa: F401


def test_only_tfrs_kit_beam_imports_apache_beam():
    importers = []
    for path in (ROOT / "src" / "tfrs_kit").rglob("*.py"):
        if "beam" in path.relative_to(ROOT / "src" / "tfrs_kit").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "apache_beam" for name in names):
                importers.append(str(path))
    assert not importers
    assert "beam" not in tk.__all__  # a star import must work without the extra
    assert tk.beam is tk_beam  # yet tk.beam loads it on first use


def test_every_name_is_in_the_api_reference():
    page = (ROOT / "docs" / "api" / "beam.rst").read_text(encoding="utf-8")
    documented = re.findall(r"^\.\. auto(?:class|function):: (\w+)", page, flags=re.M)
    assert sorted(documented) == sorted(tk_beam.__all__)
    assert all(getattr(tk_beam, name).__doc__ for name in tk_beam.__all__)
