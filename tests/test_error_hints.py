"""Common newcomer mistakes get messages that name the fix (issue 17)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk


@pytest.fixture(scope="module")
def log():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, 20, 300)],
                         "movie_id": rng.integers(0, 30, 300),
                         "timestamp": np.arange(300)})


@pytest.fixture(scope="module")
def history_model(log):
    history = tk.HistoryBuilder(item_id="movie_id")
    train = history.transform(log)
    vocabs = tk.VocabularyBuilder().fit(train, features={"user_id": "categorical",
                                                         "movie_id": "categorical",
                                                         "history": "multi"})
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "history"], output_dim=4),
        tk.Tower(vocabs, features=["movie_id"], output_dim=4))
    model.fit(train, epochs=1, batch_size=64, verbose=0)
    return model, history


def test_a_wrong_id_column_suggests_the_argument(log):
    with pytest.raises(ValueError, match=r"Did you mean item_id='movie_id'\?"):
        tk.Recipe(item_id="movieid", verbose=False).fit(log)
    with pytest.raises(ValueError, match=r"`item_id` names this column: pass item_id="):
        tk.Recipe(verbose=False).fit(log)  # the default 'item_id' is not a column here
    with pytest.raises(ValueError, match=r"Did you mean item_id='movie_id'\?"):
        tk.evaluate(tk.baselines.Popularity(), log, train=log, item_id="movieid")
    with pytest.raises(ValueError, match=r"`test` must have a column 'item_id'.*pass item_id="):
        tk.evaluate(tk.baselines.Popularity(), log, train=log.rename(
            columns={"movie_id": "item_id"}))


_HISTORY_FIX = r"HistoryBuilder.*history\.transform\(train\).*history\.for_users\(train\)"


def test_a_missing_history_points_to_history_builder(log, history_model):
    model, history = history_model
    with pytest.raises(ValueError, match=r"column 'history'.*" + _HISTORY_FIX):
        model.fit(log, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"column 'history'.*" + _HISTORY_FIX):
        model.as_recommender(log)  # no users=: the log has no history column
    with pytest.raises(ValueError, match=r"column 'history'.*" + _HISTORY_FIX):
        tk.evaluate(model, log, train=log, item_id="movie_id")
    # The fix the message names works.
    recommender = model.as_recommender(log, users=history.for_users(log))
    report = tk.evaluate({"two_tower": recommender}, log, train=log, item_id="movie_id", k=5)
    assert "recall@5" in report.to_dict()["two_tower"]


def test_an_unknown_name_among_none_says_so():
    with pytest.raises(KeyError) as caught:
        tk.Vocabularies()["genre"]
    message = str(caught.value)
    assert "None is known yet." in message and "Known: ." not in message
    assert type(caught.value) is KeyError  # a public type, no private subclass


def test_history_builder_and_baselines_name_the_argument(log):
    with pytest.raises(ValueError, match=r"Did you mean item_id='movie_id'\?"):
        tk.HistoryBuilder(item_id="movieid").transform(log)
    with pytest.raises(ValueError, match=r"`item_id` names this column: pass item_id="):
        tk.HistoryBuilder().transform(log)  # the default item_id='item_id' is not a column
    with pytest.raises(ValueError, match=r"Did you mean item_id='movie_id'\?"):
        tk.baselines.Popularity().fit(log, item_id="movie")
