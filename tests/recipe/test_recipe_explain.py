"""``Recipe.recommend(..., explain=True)``: the history behind each item and the blend's shares."""

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk
from tfrs_kit.ranking import _sequence
from tfrs_kit.recipe._faithfulness import explanation_faithfulness


@pytest.fixture(scope="module")
def recipe():
    data = tk.datasets.synthetic(3000, num_users=80, num_items=300, seed=0)
    return tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=3, histories=["mean"],
                     verbose=False, seed=0).fit(data.interactions)


def _scores(recipe, user, histories, item):
    """The reference: the item's score from ``recommend`` with each history given."""
    served = recipe.recommend([user] * len(histories), k=len(recipe.candidates()),
                              history=[np.asarray(h, dtype=object) for h in histories],
                              exclude_seen=False)
    return np.array([scores[list(ids).index(item)]
                     for ids, scores in zip(served.ids, served.scores, strict=True)])


def test_the_top_explanation_is_the_item_whose_removal_lowers_the_score_most(recipe):
    users = list(recipe.queries()["user_id"][:3])
    served = recipe.recommend(users, k=2, explain=True)
    histories = recipe.queries().set_index("user_id")["history"]
    for row, user in enumerate(users):
        history = list(histories[user])
        left_out = list(dict.fromkeys(history))
        for slot, item in enumerate(served.ids[row]):
            scores = _scores(recipe, user, [history] + [[v for v in history if v != h]
                                                        for h in left_out], item)
            drops = dict(zip(left_out, scores[0] - scores[1:], strict=True))
            explanation = served.explanations[row][slot]
            assert explanation.history[0] == max(drops, key=drops.get)
            assert explanation.contributions[0] == pytest.approx(max(drops.values()), abs=1e-4)
            assert len(explanation.history) == min(3, len(drops))


def test_the_shares_split_the_blends_score_by_component(recipe):
    assert recipe.report.blend is not None  # the fixture's model is a blend
    users = list(recipe.queries()["user_id"][:4])
    served = recipe.recommend(users, k=3, explain=True)
    model, candidates = recipe.model, recipe.candidates()
    queries = model.query_tower.embed(recipe.queries().set_index("user_id").loc[users]
                                      .reset_index(), verbose=False)
    items = model.candidate_tower.embed(candidates, verbose=False)
    towers = model.query_tower.tower.output_dim  # the JoinedTower's inner tower's width
    spans = {"towers": slice(0, towers), "ials": slice(towers, -1), "popularity": slice(-1, None)}
    position = {item: i for i, item in enumerate(candidates["item_id"])}
    for row in range(len(users)):
        for slot, item in enumerate(served.ids[row]):
            shares = served.explanations[row][slot].shares
            parts = {name: abs(float(queries[row, span] @ items[position[item], span]))
                     for name, span in spans.items()}
            total = sum(parts.values())
            assert set(shares) == set(parts)
            for name in parts:
                assert shares[name] == pytest.approx(parts[name] / total, abs=1e-4)


def test_explain_is_off_by_default_and_checked(recipe):
    user = recipe.queries()["user_id"].iloc[0]
    assert recipe.recommend([user], k=2).explanations is None
    with pytest.raises(TypeError, match="`explain`"):
        recipe.recommend([user], k=2, explain="yes")


def test_a_new_user_is_explained_by_the_history_given(recipe):
    history = list(recipe.candidates()["item_id"][:4])
    served = recipe.recommend(history=history, k=2, explain=True)
    for explanation in served.explanations[0]:
        assert set(explanation.history) <= set(history)
        assert explanation.shares["ials"] == 0.0  # an unknown user has no factors


@pytest.mark.slow
def test_a_loaded_recipe_explains_the_same(recipe, tmp_path):
    recipe.save(tmp_path / "model")
    loaded = tk.load(tmp_path / "model")
    users = list(recipe.queries()["user_id"][:3])
    here = recipe.recommend(users, k=2, explain=True).explanations
    there = loaded.recommend(users, k=2, explain=True).explanations
    for mine, theirs in zip(here, there, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a.history, b.history)
            np.testing.assert_allclose(a.contributions, b.contributions, rtol=1e-4, atol=1e-5)
            assert a.shares == pytest.approx(b.shares, abs=1e-5)


def test_explanations_are_faithful(recipe):
    # Leave-one-out through the query tower: 1.0 measured here; a random pick gets ~0.5.
    assert explanation_faithfulness(recipe, seed=0) >= 0.9


def test_faithfulness_needs_a_history():
    log = pd.DataFrame({"user_id": [f"u{i % 12}" for i in range(120)],
                        "item_id": [f"i{i % 15}" for i in range(120)], "timestamp": range(120)})
    flat = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, histories=["none"],
                     blend=False, verbose=False).fit(log)
    served = flat.recommend([flat.queries()["user_id"].iloc[0]], k=2, explain=True)
    assert len(served.explanations[0][0].history) == 0  # nothing to explain by
    with pytest.raises(ValueError, match="`users`"):
        explanation_faithfulness(flat)


@pytest.fixture(scope="module")
def reranked():
    """A blend with a kept ranking stage (forced) that reads the history."""
    rng = np.random.default_rng(0)
    n = 2400
    item = np.where(rng.random(n) < 0.5, rng.integers(0, 6, n), rng.integers(6, 150, n))
    log = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, 80, n)],
                        "item_id": [f"i{i}" for i in item], "timestamp": np.arange(n)})
    with pytest.MonkeyPatch.context() as patch:  # the next-item model's quality is not
        patch.setattr(_sequence, "_PASSES", 0)  # what is checked here: few steps (3
        patch.setattr(_sequence, "_MIN_STEPS", 20)  # epochs, or 20 steps; not 60 epochs)
        return tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, histories=["mean"],
                         rerank=True, verbose=False, seed=0).fit(log)


def _retrieval_terms(recipe, users, served):
    """The reference: ``retrieval_weight * z`` of each item, split by component (each
    centred on its mean over the user's retrieved list)."""
    model, candidates, cascade = recipe.model, recipe.candidates(), recipe.cascade_
    queries = model.query_tower.embed(recipe.queries().set_index("user_id").loc[users]
                                      .reset_index(), verbose=False)
    items = model.candidate_tower.embed(candidates, verbose=False)
    towers = model.query_tower.tower.output_dim
    spans = [slice(0, towers), slice(towers, -1), slice(-1, None)]
    position = {item: i for i, item in enumerate(candidates["item_id"])}
    seen = recipe._seen()
    weight = float(cascade.ranker.retrieval_weight.numpy())
    out = []
    for row, user in enumerate(users):
        scores = items @ queries[row]
        scores[[position[i] for i in seen.item_id[seen.user_id == user]]] = -np.inf
        listed = np.argsort(-scores, kind="stable")[:cascade.retrieve_k]
        listed = listed[np.isfinite(scores[listed])]
        spread = max(float(np.std(scores[listed])), 1e-6)
        out.append([[weight * (items[position[item], s] @ queries[row, s]
                               - (items[listed][:, s] @ queries[row, s]).mean()) / spread
                     for s in spans] for item in served.ids[row]])
    return np.array(out)


@pytest.mark.slow
def test_a_kept_ranker_gets_its_share_beside_the_blends_components(reranked):
    recipe = reranked
    assert recipe.cascade_ is not None and recipe.report.rerank.kept
    users = list(recipe.queries()["user_id"][:3])
    ranker = recipe.cascade_.ranker
    served = recipe.recommend(users, k=3, explain=True)
    for row in served.explanations:
        for explanation in row:
            assert list(explanation.shares) == ["towers", "ials", "popularity", "ranker"]
            assert sum(explanation.shares.values()) == pytest.approx(1.0)
    saved = float(ranker.ranker_weight.numpy()), float(ranker.retrieval_weight.numpy())
    try:
        ranker.ranker_weight.assign(1.0)
        ranker.retrieval_weight.assign(0.0)  # the served score is the ranker's alone
        alone = recipe.recommend(users, k=3, explain=True)
        ranker.ranker_weight.assign(0.0)  # the served score is retrieval_weight * z alone
        ranker.retrieval_weight.assign(1.0)
        served = recipe.recommend(users, k=3, explain=True)
    finally:
        ranker.ranker_weight.assign(saved[0])
        ranker.retrieval_weight.assign(saved[1])
    for row in alone.explanations:
        for explanation in row:
            assert explanation.shares["ranker"] == pytest.approx(1.0)
    terms = np.abs(_retrieval_terms(recipe, users, served))
    for row, explanations in enumerate(served.explanations):
        for slot, explanation in enumerate(explanations):
            want = terms[row, slot] / terms[row, slot].sum()
            got = [explanation.shares[name] for name in ("towers", "ials", "popularity")]
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
            assert explanation.shares["ranker"] == pytest.approx(0.0, abs=1e-4)


def _served_by_the_index(recipe, users, k):
    """The same users through ``build_index`` (the served artifact), seen items left out."""
    index = recipe.build_index(k_max=k)
    rows = recipe.queries().set_index("user_id").loc[users].reset_index()
    seen = recipe._seen()
    exclude = [list(seen.item_id[seen.user_id == user]) for user in users]
    return index.recommend(rows[list(index.query_features)], k=k, exclude=exclude,
                           explain=True)


@pytest.mark.parametrize("fixture", ["recipe", pytest.param("reranked", marks=pytest.mark.slow)])
def test_the_served_index_explains_as_the_recipe_does(fixture, request):
    recipe = request.getfixturevalue(fixture)
    users = list(recipe.queries()["user_id"][:3])
    mine = recipe.recommend(users, k=3, explain=True)
    served = _served_by_the_index(recipe, users, 3)
    np.testing.assert_array_equal(served.ids, mine.ids)
    for here, there in zip(mine.explanations, served.explanations, strict=True):
        for a, b in zip(here, there, strict=True):
            np.testing.assert_array_equal(a.history, b.history)
            np.testing.assert_allclose(a.contributions, b.contributions, rtol=1e-3, atol=1e-4)
            assert list(a.shares) == list(b.shares)
            np.testing.assert_allclose(list(a.shares.values()), list(b.shares.values()),
                                       rtol=1e-3, atol=1e-4)
