"""``Index.recommend(..., explain=True)``: the history items behind each item, measured."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.index._explain import explanation_faithfulness
from tfrs_kit.recipe._blend import JoinedTower


@pytest.fixture(scope="module")
def setup():
    data = tk.datasets.synthetic(3000, num_users=100, num_items=50, seed=0)
    history = tk.HistoryBuilder(item_id="item_id", max_length=10)
    rows = history.transform(data.interactions)
    vocabs = tk.VocabularyBuilder().fit(rows, features=["history", "item_id"])
    tf.keras.utils.set_random_seed(0)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["history"], output_dim=16),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=16))
    model.fit(rows, epochs=5, batch_size=256, seed=0, verbose=0)
    users = pd.DataFrame(history.for_users(data.interactions))
    index = tk.IndexBuilder(k_max=5).build(model, data.items)
    return data, model, users, index, vocabs


def _score_without(model, history, item_vector, left_out):
    """The reference: the query tower on the history less ``left_out``, dotted with the item."""
    kept = [h for h in history if h != left_out]
    query = model.query_tower.embed(pd.DataFrame({"history": [np.asarray(kept, object)]}),
                                    verbose=False)[0]
    return float(query @ item_vector)


def test_the_top_explanation_is_the_item_whose_removal_lowers_the_score_most(setup):
    data, model, users, index, _ = setup
    served = index.recommend(users.iloc[:4], k=2, explain=True)
    items = model.candidate_embeddings(data.items)
    position = {item: i for i, item in enumerate(data.items["item_id"])}
    for row, history in enumerate(users["history"].iloc[:4]):
        for slot, item in enumerate(served.ids[row]):
            explanation = served.explanations[row][slot]
            vector = items[position[item]]
            full = _score_without(model, history, vector, None)
            drops = {h: full - _score_without(model, history, vector, h) for h in set(history)}
            best = max(drops, key=drops.get)
            assert explanation.history[0] == best
            assert explanation.contributions[0] == pytest.approx(drops[best], abs=1e-4)
            assert list(explanation.contributions) == sorted(explanation.contributions,
                                                             reverse=True)
            assert explanation.shares == {"towers": 1.0}


def test_leave_one_out_ranks_by_the_drop_and_lists_an_item_once():
    from tfrs_kit.index._explain import leave_one_out

    weights = {"a": 1.0, "b": 3.0, "c": -2.0}
    calls = []

    def scores(owners, histories):
        calls.append(len(owners))
        return np.array([[sum(weights[h] for h in history), 10.0] for history in histories])

    (items, drops), = leave_one_out([["a", "b", "a", "c", ""]], scores, padding="", chunk=2)
    assert list(items) == ["a", "b", "c"]
    np.testing.assert_allclose(drops, [[2.0, 3.0, -2.0], [0.0, 0.0, 0.0]])  # "a" twice: 2
    assert calls == [2, 2]  # four variants (the full history first), two per call


def test_no_explanations_unless_asked(setup):
    _, _, users, index, _ = setup
    served = index.recommend(users.iloc[:2], k=2)
    assert served.explanations is None
    ids, scores = served  # still unpacks as before
    assert ids.shape == scores.shape == (2, 2)
    with pytest.raises(ValueError, match="`explain`"):
        index.recommend(users.iloc[:2], k=2, explain="item_id")


def test_explanations_are_faithful_on_most_users(setup):
    _, _, users, index, _ = setup
    share = explanation_faithfulness(index, users, seed=0)
    # Leave-one-out: the top item's removal lowers the score most, by construction (the
    # embedding dot products measured 0.64-0.69 here); a random explanation gets about 0.5.
    assert share >= 0.95


def test_a_loaded_index_explains_the_same(setup, tmp_path):
    _, _, users, index, _ = setup
    index.save(tmp_path / "index")
    loaded = tk.load_index(tmp_path / "index")
    here = index.recommend(users.iloc[:3], k=2, explain=True).explanations
    there = loaded.recommend(users.iloc[:3], k=2, explain=True).explanations
    for mine, theirs in zip(here[0], there[0], strict=True):
        np.testing.assert_array_equal(mine.history, theirs.history)


def test_a_blends_shares_split_the_dot_product_by_component(setup):
    data, model, users, _, vocabs = setup
    # A Recipe blend's shape: the towers beside a factor table of two iALS columns and
    # one popularity column (the query side reads its factors by an id feature).
    size = vocabs["item_id"].size
    item_factors = np.random.default_rng(0).normal(size=(size, 3)).astype(np.float32)
    query = JoinedTower(model.query_tower, vocabs["item_id"], np.ones((size, 3), np.float32))
    candidate = JoinedTower(model.candidate_tower, vocabs["item_id"], item_factors)
    blended = tk.TwoTowerRetrieval(query, candidate, item_id="item_id")
    index = tk.IndexBuilder(k_max=3).build(blended, data.items)
    queries = users.iloc[:4].assign(item_id=data.items["item_id"].iloc[:4].to_numpy())
    served = index.recommend(queries, k=2, explain=True, batch_size=2)
    vectors = index._query_vectors(queries)
    embeddings = blended.candidate_embeddings(data.items)
    position = {item: i for i, item in enumerate(data.items["item_id"])}
    for row in range(4):
        explanation = served.explanations[row][0]
        assert set(explanation.shares) == {"towers", "ials", "popularity"}
        assert sum(explanation.shares.values()) == pytest.approx(1.0)
        item = embeddings[position[served.ids[row, 0]]]
        parts = np.abs([vectors[row, :16] @ item[:16], vectors[row, 16:18] @ item[16:18],
                        vectors[row, 18] * item[18]])
        np.testing.assert_allclose([explanation.shares[k] for k in ("towers", "ials",
                                                                    "popularity")],
                                   parts / parts.sum(), rtol=1e-4, atol=1e-6)
