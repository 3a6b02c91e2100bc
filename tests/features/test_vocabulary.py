"""Vocabularies: counting, limits, kinds, merging, saving, and the lookups they give."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import tfrs_kit as tk
from tfrs_kit.features._counting import tokenize


def test_tokens_are_ordered_by_count_then_token():
    vocabs = tk.VocabularyBuilder().fit({"u": ["b", "a", "c", "a", "b", "d"]})
    assert vocabs["u"].tokens == ("a", "b", "c", "d")
    assert vocabs["u"].counts == (2, 2, 1, 1)
    assert vocabs["u"].size == 5  # plus one OOV bucket


def test_min_count_and_max_tokens():
    data = {"u": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]}
    assert tk.VocabularyBuilder(min_count=2).fit(data)["u"].tokens == ("a", "b", "c")
    assert tk.VocabularyBuilder(max_tokens=2).fit(data)["u"].tokens == ("a", "b")


def test_integer_ids_keep_their_type():
    vocab = tk.VocabularyBuilder().fit({"item": np.array([7, 3, 7])})["item"]
    assert vocab.dtype == "int64" and vocab.tokens == (7, 3)
    assert vocab.lookup_layer()(np.array([3, 7, 99])).numpy().tolist() == [2, 1, 0]


def test_kinds_are_inferred_or_declared():
    log = pd.DataFrame({"genres": [["x"], ["x", "y"]], "title": ["Toy Story", "Heat"],
                        "age": [20.0, 30.0], "user": ["a", "b"]})
    vocabs = tk.VocabularyBuilder().fit(log, features={"title": "text", "genres": "multi",
                                                       "age": "numeric", "user": "categorical"})
    assert [vocabs[n].kind for n in ("genres", "title", "age", "user")] == [
        "multi", "text", "numeric", "categorical"]
    inferred = tk.VocabularyBuilder().fit(log)
    assert inferred["genres"].kind == "multi" and inferred["age"].kind == "numeric"
    assert inferred["title"].kind == "categorical"  # text must be asked for


def test_text_tokens_match_the_tokenizer_with_ngrams():
    vocab = tk.VocabularyBuilder(ngrams=2).fit(
        {"t": ["Toy Story (1995)", "toy soldiers"]}, features={"t": "text"})["t"]
    assert set(vocab.tokens) == {"toy", "story", "1995", "soldiers", "toy story", "story 1995",
                                 "toy soldiers"}
    assert tokenize("It's ALIVE!") == ["it", "s", "alive"]


def test_numeric_statistics_ignore_nan():
    vocab = tk.VocabularyBuilder(num_buckets=4).fit(
        {"x": np.array([1.0, 2.0, 3.0, np.nan, 4.0])})["x"]
    assert vocab.mean == pytest.approx(2.5)
    assert vocab.boundaries == pytest.approx((1.75, 2.5, 3.25))


def test_index_matches_the_keras_lookup_layer():
    vocab = tk.VocabularyBuilder().fit({"u": ["a", "b", "b", "c"]})["u"]
    values = ["c", "zzz", "a", "b"]
    assert vocab.index(values).tolist() == vocab.lookup_layer()(values).numpy().tolist()


def test_save_and_load_round_trip(tmp_path):
    vocabs = tk.VocabularyBuilder(ngrams=2).fit(
        {"u": ["a", "b"], "i": [1, 2], "g": [["x"], []], "t": ["a b", "c"], "n": [1.0, 2.0]},
        features={"u": "categorical", "i": "categorical", "g": "multi", "t": "text",
                  "n": "numeric"})
    vocabs.save(tmp_path / "v.json")
    loaded = tk.Vocabularies.load(tmp_path / "v.json")
    assert loaded == vocabs
    assert loaded["i"].tokens == (1, 2)


def test_load_refuses_other_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="`path` must name a JSON file written by"):
        tk.Vocabularies.load(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text('{"format_version": 99, "vocabularies": []}')
    with pytest.raises(ValueError, match="format version 1"):
        tk.Vocabularies.load(tmp_path / "old.json")


def test_fitted_objects_are_immutable():
    vocabs = tk.VocabularyBuilder().fit({"u": ["a"]})
    with pytest.raises(AttributeError):
        vocabs["u"].tokens = ("b",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        vocabs["v"] = vocabs["u"]  # type: ignore[index]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from("abcdefgh"), min_size=2, max_size=60), st.integers(1, 59))
def test_counts_of_shards_merge_to_the_counts_of_the_whole(values, cut):
    cut = min(cut, len(values) - 1)
    builder = tk.VocabularyBuilder(min_count=2, max_tokens=5)
    whole = builder.fit({"u": values})
    merged = builder.from_counts(builder.count({"u": values[:cut]}) +
                                 builder.count({"u": values[cut:]}))
    assert merged == whole


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.text(alphabet="abc", min_size=1, max_size=2), min_size=1, max_size=50),
       st.integers(1, 3), st.one_of(st.none(), st.integers(1, 6)))
def test_vocabulary_against_a_plain_counter(values, min_count, max_tokens):
    from collections import Counter

    vocab = tk.VocabularyBuilder(min_count=min_count, max_tokens=max_tokens).fit(
        {"u": values})["u"]
    expected = sorted(((-c, t) for t, c in Counter(values).items() if c >= min_count))
    expected = expected[:max_tokens] if max_tokens else expected
    assert vocab.tokens == tuple(t for _, t in expected)
    assert vocab.counts == tuple(-c for c, _ in expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [({"min_count": 0}, ValueError, "`min_count` must be an integer >= 1. Received: min_count=0"),
     ({"max_tokens": -1}, ValueError, "`max_tokens` must be an integer >= 1 or None"),
     ({"num_oov_buckets": 0}, ValueError, "`num_oov_buckets` must be an integer >= 1"),
     ({"ngrams": 2.0}, TypeError, r"`ngrams` must be an integer >= 1\. Received: ngrams=2\.0"),
     ({"num_buckets": True}, TypeError, "`num_buckets` must be an integer >= 1")],
)
def test_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        tk.VocabularyBuilder(**kwargs)


def test_missing_ids_are_refused_with_their_position():
    with pytest.raises(ValueError, match=r"no missing.*1 missing, the first at position 1"):
        tk.VocabularyBuilder().fit({"u": ["a", None, "b"]})


def test_mixed_id_types_are_refused():
    with pytest.raises(TypeError, match="ids of one type"):
        tk.VocabularyBuilder().fit({"u": np.array(["a", 1], dtype=object)})


def test_mixed_id_types_are_found_anywhere_in_the_column():
    # One integer after 5,000 strings: the old check looked at the first 1,000 values only.
    late = np.array(["x"] * 5000 + [1], dtype=object)
    with pytest.raises(TypeError, match=r"str \(such as 'x'\), int \(such as 1\)"):
        tk.VocabularyBuilder().fit({"u": late})
    late_string = np.array([7] * 5000 + ["7"], dtype=object)
    with pytest.raises(TypeError, match="ids of one type"):
        tk.VocabularyBuilder().fit({"u": late_string})


def test_unknown_feature_and_kind():
    with pytest.raises(ValueError, match="Did you mean to rename 'user_id' to 'user'"):
        tk.VocabularyBuilder().fit({"user_id": ["a"]}, features=["user"])
    with pytest.raises(ValueError, match="Did you mean 'text'"):
        tk.VocabularyBuilder().fit({"t": ["a"]}, features={"t": "txt"})
    with pytest.raises(TypeError, match=r"Did you mean features=\['user_id'\]"):
        tk.VocabularyBuilder().fit({"user_id": ["a"]}, features="user_id")
    with pytest.raises(KeyError, match="Known: 'u'"):
        tk.VocabularyBuilder().fit({"u": ["a"]})["v"]


def test_booleans_and_whole_floats_are_integer_categories():
    vocabs = tk.VocabularyBuilder().fit(
        {"age": np.array([25.0, 35.0, 25.0], dtype=np.float32), "male": [True, False, True]},
        features={"age": "categorical", "male": "categorical"})
    assert vocabs["age"].tokens == (25, 35) and vocabs["male"].tokens == (1, 0)
    with pytest.raises(ValueError, match="whole numbers to be a categorical feature"):
        tk.VocabularyBuilder().fit({"x": [0.5, 1.0]}, features={"x": "categorical"})


@pytest.mark.parametrize(("verbose", "error"), [
    (0, TypeError), (2, TypeError), (None, TypeError), ("quiet", ValueError),
])
def test_bad_verbose(verbose, error):
    builder = tk.VocabularyBuilder()
    for method in (builder.fit, builder.count):
        with pytest.raises(error, match=r"`verbose` must be 'auto', True or False\. Received: "):
            method({"u": ["a", "b"]}, verbose=verbose)


def test_a_float_vector_column_is_pointed_to_a_custom_tower():
    with pytest.raises(ValueError, match=r"`data\['vec'\]` must hold strings or integers for a "
                                         r"vocabulary\. Received: .*vectors of dtype float32.*"
                                         r"custom tower"):
        tk.VocabularyBuilder().fit({"user_id": ["a", "b"],
                                    "vec": list(np.ones((2, 3), np.float32))}, features=["vec"])


def test_an_empty_list_keeps_an_integer_multi_feature_integer():
    vocabulary = tk.VocabularyBuilder().fit(
        {"user_id": ["a", "b", "c"], "tags": [[3, 1], [], [1, 7]]}, features={"tags": "multi"})
    assert vocabulary["tags"].dtype == "int64"
    assert sorted(vocabulary["tags"].tokens) == [1, 3, 7]


@pytest.mark.parametrize(("tokens", "dtype", "unknown"), [(("b", "a"), "string", "z"),
                                                          ((7, 3), "int64", 5)])
def test_a_lookup_layer_tracks_its_table_not_each_token(tokens, dtype, unknown):
    vocab = tk.Vocabulary(name="x", kind="categorical", tokens=tokens, counts=(2, 1),
                          dtype=dtype)
    layer = vocab.lookup_layer()
    # Keras walks a tracked list at every `trainable_weights`: seconds at a million tokens.
    assert sorted(tf.train.TrackableView(layer).children(layer)) == ["lookup_table"]
    assert layer(tf.constant([tokens[1], unknown, tokens[0]])).numpy().tolist() == [2, 0, 1]
