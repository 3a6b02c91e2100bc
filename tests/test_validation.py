"""Every argument check of ``tfrs_kit._validation`` against known answers.

Wrong type: TypeError; right type, wrong value: ValueError; accepted values come
back as plain Python values.
"""

from __future__ import annotations

import fractions
import math

import numpy as np
import pandas as pd
import pytest

from tfrs_kit._validation import (
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_same_kind,
    check_verbose,
    check_vocabulary_kind,
    id_kind,
)

# -- check_int -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5), (np.int64(3), 3), (np.int32(1), 1), (np.uint8(7), 7), (10**12, 10**12),
])
def test_check_int_returns_a_plain_int(value, expected):
    result = check_int("k", value, minimum=1)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [True, False, np.True_, 2.0, np.float64(2.0), "3", None, [1],
                                   fractions.Fraction(2)])
def test_check_int_refuses_other_types(value):
    with pytest.raises(TypeError, match=r"^`k` must be an integer >= 0\. Received: k="):
        check_int("k", value, minimum=0)


def test_check_int_message():
    with pytest.raises(ValueError) as caught:
        check_int("k", 0, minimum=1)
    assert str(caught.value) == "`k` must be an integer >= 1. Received: k=0."


def test_check_int_bounds_are_closed():
    assert check_int("k", 1, minimum=1, maximum=3) == 1
    assert check_int("k", 3, minimum=1, maximum=3) == 3
    for value in (0, 4, np.int64(-2)):
        with pytest.raises(ValueError, match=r"^`k` must be an integer between 1 and 3\. "):
            check_int("k", value, minimum=1, maximum=3)
    with pytest.raises(ValueError, match=r"^`k` must be an integer <= 3\. Received: k=4\.$"):
        check_int("k", 4, maximum=3)
    assert check_int("k", -(10**9)) == -(10**9)  # no bound, no rule


def test_check_int_none():
    assert check_int("k", None, minimum=1, allow_none=True) is None
    with pytest.raises(TypeError, match=r"^`k` must be an integer >= 1 or None\. "):
        check_int("k", 1.5, minimum=1, allow_none=True)
    with pytest.raises(TypeError, match=r"^`k` must be an integer >= 1\. Received: k=None\.$"):
        check_int("k", None, minimum=1)


# -- check_number ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (0.5, 0.5), (3, 3.0), (np.float32(0.25), 0.25), (np.int64(2), 2.0),
    (fractions.Fraction(1, 4), 0.25),
])
def test_check_number_returns_a_plain_float(value, expected):
    result = check_number("x", value)
    assert result == expected and type(result) is float


@pytest.mark.parametrize("value", [True, np.False_, "0.1", None, 1j, [0.1]])
def test_check_number_refuses_other_types(value):
    with pytest.raises(TypeError, match=r"^`x` must be a finite number\. Received: x="):
        check_number("x", value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"),
                                   np.float64("inf")])
def test_check_number_refuses_non_finite_values(value):
    with pytest.raises(ValueError, match=r"^`x` must be a finite number\. Received: x="):
        check_number("x", value)


def test_check_number_non_finite_is_refused_within_bounds_too():
    with pytest.raises(ValueError, match=r"^`x` must be a finite number >= 0\. Received: x=inf"):
        check_number("x", math.inf, minimum=0)


def test_check_number_open_and_closed_bounds():
    assert check_number("x", 0, minimum=0) == 0.0
    assert check_number("x", 1e-12, minimum=0, low_open=True) == 1e-12
    with pytest.raises(ValueError) as caught:
        check_number("x", 0, minimum=0, low_open=True)
    assert str(caught.value) == "`x` must be a finite number > 0. Received: x=0.0."
    assert check_number("x", 1, maximum=1) == 1.0
    with pytest.raises(ValueError, match=r"^`x` must be a finite number < 1\. Received: x=1\.0"):
        check_number("x", 1, maximum=1, high_open=True)
    with pytest.raises(ValueError, match=r"^`x` must be a finite number between 0 and 1\. "):
        check_number("x", -0.5, minimum=0, maximum=1)
    with pytest.raises(ValueError, match=r"^`x` must be a finite number > 0 and <= 1\. "):
        check_number("x", 1.5, minimum=0, maximum=1, low_open=True)
    with pytest.raises(ValueError, match=r"^`x` must be a finite number >= 0 and < 1\. "):
        check_number("x", 1, minimum=0, maximum=1, high_open=True)


def test_check_number_none():
    assert check_number("x", None, allow_none=True) is None
    with pytest.raises(TypeError, match=r"^`x` must be a finite number > 0 or None\. "):
        check_number("x", "1", minimum=0, low_open=True, allow_none=True)


# -- check_fraction --------------------------------------------------------------------------


def test_check_fraction_is_open_by_default():
    assert check_fraction("f", 0.2) == 0.2
    assert check_fraction("f", np.float32(0.5)) == 0.5
    for value in (0, 1, 0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"^`f` must be a finite number > 0\.0 and < 1\.0\. "):
            check_fraction("f", value)
    with pytest.raises(ValueError) as caught:
        check_fraction("f", 0)
    assert str(caught.value) == "`f` must be a finite number > 0.0 and < 1.0. Received: f=0.0."
    with pytest.raises(ValueError, match=r"must be a finite number > 0\.0 and < 1\.0"):
        check_fraction("f", math.nan)
    with pytest.raises(TypeError, match=r"^`f` must be a finite number > 0\.0 and < 1\.0\. "):
        check_fraction("f", True)


def test_check_fraction_closed_ends_on_request():
    assert check_fraction("f", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"^`f` must be a finite number >= 0\.0 and < 1\.0\. "):
        check_fraction("f", 1, allow_zero=True)
    assert check_fraction("f", 1, allow_one=True) == 1.0
    with pytest.raises(ValueError, match=r"^`f` must be a finite number > 0\.0 and <= 1\.0\. "):
        check_fraction("f", 0, allow_one=True)
    assert check_fraction("f", 0, allow_zero=True, allow_one=True) == 0.0
    with pytest.raises(ValueError, match=r"^`f` must be a finite number between 0\.0 and 1\.0"):
        check_fraction("f", 1.01, allow_zero=True, allow_one=True)
    assert check_fraction("f", None, allow_none=True) is None
    with pytest.raises(TypeError, match=r"and < 1\.0 or None\. Received: f='x'"):
        check_fraction("f", "x", allow_none=True)


# -- check_choice ----------------------------------------------------------------------------

BACKENDS = ("brute_force", "scann")


def test_check_choice_accepts_a_choice():
    assert check_choice("backend", "scann", BACKENDS) == "scann"
    assert check_choice("backend", "scann", iter(BACKENDS)) == "scann"  # any iterable


def test_check_choice_suggests_the_closest():
    with pytest.raises(ValueError) as caught:
        check_choice("backend", "scan", BACKENDS)
    assert str(caught.value) == ("`backend` must be one of 'brute_force', 'scann'. "
                                 "Received: backend='scan'. Did you mean 'scann'?")


def test_check_choice_without_a_close_choice():
    with pytest.raises(ValueError) as caught:
        check_choice("backend", "zzz", BACKENDS)
    assert str(caught.value) == ("`backend` must be one of 'brute_force', 'scann'. "
                                 "Received: backend='zzz'.")


def test_check_choice_is_case_sensitive():
    with pytest.raises(ValueError, match=r"Received: backend='ScaNN'\.$"):
        check_choice("backend", "ScaNN", BACKENDS)


@pytest.mark.parametrize("value", [None, 3, b"scann", ["scann"], True])
def test_check_choice_refuses_non_strings(value):
    with pytest.raises(TypeError, match=r"^`backend` must be one of 'brute_force', 'scann'\. "):
        check_choice("backend", value, BACKENDS)


def test_check_choice_names_what_it_is_or_falls_back_to_known_names():
    with pytest.raises(ValueError) as caught:
        check_choice("backend", "scan", BACKENDS, what="backend")
    assert str(caught.value) == ("`backend` must be a known backend. Received: backend='scan'. "
                                 "Did you mean 'scann'? Known: 'brute_force', 'scann'.")
    many = [f"name{i:02d}" for i in range(11)]  # more than 10: listed as known names
    with pytest.raises(ValueError, match=r"^`x` must be a known name\. Received: x='name1'\. "
                                         r"Did you mean 'name10'\? Known: 'name00', "):
        check_choice("x", "name1", many)


# -- id_kind ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 2, 3], "number"),
    (np.array([1.5, 2.0]), "number"),
    (np.array([True, False]), "number"),
    (np.array([1, None, 3], dtype=object), "number"),  # missing values are skipped
    (np.array([np.int64(1), 2.5], dtype=object), "number"),
    (pd.Series([1, 2], dtype="Int64"), "number"),
    (["a", "b"], "string"),
    (np.array(["a", "b"], dtype="S1"), "string"),
    (np.array([b"a", b"b"], dtype=object), "string"),
    (pd.Series(["a", np.nan, "b"]), "string"),
    (np.array([["a"], ["b"]], dtype=object), "string"),  # every value, any shape
    (np.array([1, "a"], dtype=object), "mixed"),
    (np.array(["a", 1], dtype=object), "mixed"),
    (np.array([], dtype=object), "empty"),
    (np.array([None, np.nan], dtype=object), "empty"),
])
def test_id_kind(values, expected):
    assert id_kind(values) == expected


def test_id_kind_finds_the_odd_value_wherever_it_is():
    numbers = [*range(100_000)]
    assert id_kind(np.array([*numbers, "x"], dtype=object)) == "mixed"
    assert id_kind(np.array(["x", *numbers], dtype=object)) == "mixed"
    assert id_kind(pd.Series([*numbers[:5_000], "x", *numbers[5_000:]])) == "mixed"
    words = [f"w{i}" for i in range(100_000)]
    assert id_kind(np.array([*words, 7], dtype=object)) == "mixed"


# -- check_same_kind -------------------------------------------------------------------------


def test_check_same_kind_accepts_matching_kinds():
    assert check_same_kind("test", [3, 4], np.array([1, 2], dtype=np.int64)) is None
    assert check_same_kind("test", np.array([1.0]), [1, 2]) is None  # floats and ints match
    assert check_same_kind("test", ["b"], np.array(["a"], dtype=object)) is None
    assert check_same_kind("test", np.array([None, "b"], dtype=object), ["a"]) is None
    assert check_same_kind("test", np.array([], dtype=object), ["a"]) is None  # nothing to match


def test_check_same_kind_refuses_numbers_against_strings():
    with pytest.raises(TypeError) as caught:
        check_same_kind("test", np.array([np.int64(7), 8]), ["a"])
    assert str(caught.value) == (
        "`test` must hold ids of the same kind as the training data (string ids). "
        "Received: test=number ids such as 7. Convert the ids of both tables to str, or both "
        "to int.")
    with pytest.raises(TypeError, match=r"^`candidates` must hold item ids of the same kind as "
                                        r"the index \(number ids\)\. Received: candidates=string "
                                        r"ids such as 'a'\."):
        check_same_kind("candidates", np.array([None, "a"], dtype=object), [1],
                        what="item ids", reference_name="the index")


def test_check_same_kind_finds_a_mixed_column_even_when_the_odd_value_is_last():
    values = np.array([*range(50_000), "x"], dtype=object)
    with pytest.raises(TypeError) as caught:
        check_same_kind("test", values, [1, 2])
    assert str(caught.value) == (
        "`test` must hold ids of one kind (all numbers or all strings). "
        "Received: test=a mix such as 0 and 'x'. Convert the column with .astype(str) (or to "
        "int) first.")


def test_check_same_kind_names_a_mixed_reference():
    reference = np.array([*(f"i{n}" for n in range(1000)), 5], dtype=object)
    with pytest.raises(TypeError, match=r"^`the index` must hold ids of one kind \(all numbers "
                                        r"or all strings\)\. Received: the index=a mix such as "
                                        r"'i0' and 5\."):
        check_same_kind("candidates", ["a"], reference, reference_name="the index")


# -- check_verbose ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("auto", "auto"), (True, True), (False, False), (np.True_, True), (np.False_, False),
])
@pytest.mark.parametrize("keras", [False, True])
def test_check_verbose_accepts_auto_and_bools(value, expected, keras):
    result = check_verbose("verbose", value, keras=keras)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value", [0, 1, 2, np.int64(1), 1.0, None, [True]])
def test_check_verbose_refuses_integers_and_other_types(value):
    with pytest.raises(TypeError, match=r"^`verbose` must be 'auto', True or False\. Received: "):
        check_verbose("verbose", value)


@pytest.mark.parametrize("value", ["", "Auto", "loud", "True"])
def test_check_verbose_refuses_other_strings(value):
    with pytest.raises(ValueError, match=r"^`verbose` must be 'auto', True or False\. Received: "):
        check_verbose("verbose", value)


def test_check_verbose_message():
    with pytest.raises(TypeError) as caught:
        check_verbose("verbose", 0)
    assert str(caught.value) == "`verbose` must be 'auto', True or False. Received: verbose=0."


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1, 1), (2, 2), (np.int64(2), 2)])
def test_check_verbose_takes_keras_integers_on_request(value, expected):
    result = check_verbose("verbose", value, keras=True)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(("value", "error"), [
    (3, ValueError), (-1, ValueError), (np.int64(5), ValueError), ("loud", ValueError),
    (1.0, TypeError), (None, TypeError),
])
def test_check_verbose_keras_refuses_the_rest(value, error):
    with pytest.raises(error, match=r"^`verbose` must be 'auto', True, False or a Keras verbosity "
                                    r"0, 1 or 2\. Received: verbose="):
        check_verbose("verbose", value, keras=True)


# -- check_vocabulary_kind -------------------------------------------------------------------


def _lists(*rows):
    column = np.empty(len(rows), dtype=object)
    column[:] = [np.asarray(row, dtype=object) for row in rows]
    return column


def test_a_list_per_row_is_checked_by_its_values_even_when_the_first_is_empty():
    # A history read through the item ids' vocabulary: a user's first event has none.
    check_vocabulary_kind("x", _lists([], ["a"], ["b", "a"]), "string")
    check_vocabulary_kind("x", _lists([], [1], [2, 3]), "int64")
    check_vocabulary_kind("x", _lists([], []), "string")  # nothing to check
    with pytest.raises(TypeError, match=r"`x` must hold string ids.*number ids such as 1"):
        check_vocabulary_kind("x", _lists([], [1], [2]), "string")
    with pytest.raises(TypeError, match=r"`x` must hold number ids.*string ids such as 'a'"):
        check_vocabulary_kind("x", _lists(["a"]), "int64")
