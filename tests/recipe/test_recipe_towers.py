"""tk.Recipe(query_tower=..., candidate_tower=...): registered, subclassed or built towers."""

from __future__ import annotations

import warnings
from importlib.metadata import EntryPoint

import optuna
import pytest
import tensorflow as tf
from two_group_logs import two_group_log as _log

import tfrs_kit as tk
from tfrs_kit.recipe._settings import Allowed, Settings, candidate_settings, suggest
from tfrs_kit.recipe._towers import DEFAULT_TOWERS
from tfrs_kit.towers._registry import _TOWERS

FAST = {"time_budget": None, "max_trials": 1, "max_epochs": 1, "blend": False,
        "verbose": False, "rerank": False}


@pytest.fixture
def counting_tower():
    """A Tower subclass registered as "recipe_test_counting" for the test only."""
    keras_objects = tf.keras.utils.get_custom_objects()
    saved = keras_objects.copy()
    with _TOWERS.isolated():

        @tk.towers.register_tower("recipe_test_counting", package="tfrs_kit_tests")
        class CountingTower(tk.Tower):
            built = 0  # towers constructed
            encoded = 0  # calls of encode (traces, in graph mode)

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                type(self).built += 1

            def encode(self, features):
                type(self).encoded += 1
                return super().encode(features)

        yield CountingTower
    keras_objects.clear()
    keras_objects.update(saved)
    assert "recipe_test_counting" not in tk.towers.available_towers()


def test_a_registered_tower_is_trained_by_the_search_and_the_final_fit(counting_tower):
    recipe = tk.Recipe(query_tower="recipe_test_counting", candidate_tower="cross", **FAST)
    recipe.fit(_log())
    assert type(recipe.model.query_tower) is counting_tower
    assert type(recipe.model.candidate_tower) is tk.towers.CrossTower
    assert counting_tower.built == 2 and counting_tower.encoded > 0  # one trial, the final
    assert [t.state for t in recipe.report.trials] == ["complete"]
    assert recipe.report.towers == ("recipe_test_counting", "cross")
    assert "  towers: query 'recipe_test_counting', candidate 'cross'" in str(recipe.report)
    ids = recipe.build_index(k_max=5).recommend(recipe.queries().head(2), k=5).ids
    assert ids.shape == (2, 5)


def test_a_function_gets_only_the_options_it_takes_and_the_search_keeps_to_them():
    calls = []

    def plain_tower(vocabularies, *, features, output_dim):
        calls.append(sorted(features))
        return tk.Tower(vocabularies, features=features, output_dim=output_dim)

    recipe = tk.Recipe(item_features=["price"], query_tower=tk.Tower,
                       candidate_tower=plain_tower, **FAST).fit(_log())
    assert calls == [["item_id", "price"]] * 2
    assert recipe.report.towers == ("default", "test_a_function_gets_only_the_options_it_"
                                    "takes_and_the_search_keeps_to_them.<locals>.plain_tower")
    chosen = recipe.settings
    assert chosen.item_features == ("price",) and chosen.id_dropout == 0.0  # no feature_dropout
    assert recipe._towers.allowed() == Allowed(cosine=False, id_dropout=False,
                                               share_history=False, warm_start=False)


def test_the_search_leaves_out_what_the_towers_cannot_take():
    base = Settings(item_features=("price",), id_dropout=0.0)
    none = Allowed(cosine=False, id_dropout=False, share_history=False, warm_start=False)
    seeds = candidate_settings(base, ["none", "mean"], allowed=none)
    assert not any(s.normalize or s.share_history for s in seeds)
    assert any(not s.user_id for s in seeds)  # the query without user id is still tried
    assert candidate_settings(base, ["none", "mean"]) == candidate_settings(
        base, ["none", "mean"], allowed=Allowed())
    # A FixedTrial raises on any parameter it lacks: normalize, share_history and
    # id_dropout are never drawn.
    params = {"history": "mean", "item:price": True, "embedding_dim": 32, "user_id": False,
              "learning_rate": 0.1, "schedule": "constant", "epochs": 4}
    drawn = suggest(optuna.trial.FixedTrial(params), base, ["price"], [], ["mean"],
                    allowed=none)
    assert (drawn.normalize, drawn.share_history, drawn.id_dropout) == (False, False, 0.0)


def test_the_default_is_the_built_in_tower_with_every_setting():
    default = tk.Recipe()
    assert default._towers == DEFAULT_TOWERS == tk.Recipe(query_tower=tk.Tower,
                                                          candidate_tower="default")._towers
    assert DEFAULT_TOWERS.allowed() == Allowed() and DEFAULT_TOWERS.sequence
    assert (default.query_tower, default.candidate_tower) == ("default", "default")
    broken = EntryPoint("broken", "no_such_module_for_tfrs_kit:Tower", "tfrs_kit.towers")
    with _TOWERS.isolated([broken]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "default" imports no plugin, broken or not
            tk.Recipe(query_tower="default", candidate_tower=tk.Tower)
        with pytest.warns(RuntimeWarning, match="broken"):
            tk.Recipe(query_tower="cross")  # another name reads the entry points


def test_a_query_tower_without_sequence_features_drops_the_sequence_history():
    def no_sequence(vocabularies, *, features, output_dim, normalize=False):
        return tk.Tower(vocabularies, features=features, output_dim=output_dim,
                        normalize=normalize)

    assert not tk.Recipe(query_tower=no_sequence)._towers.sequence
    with pytest.raises(ValueError, match=r"`histories` must name a history encoder the query "
                       r"tower can take\..*takes no sequence_features"):
        tk.Recipe(histories=["sequence"], query_tower=no_sequence)


def test_bad_towers_name_the_argument():
    with pytest.raises(ValueError, match=r"`query_tower` must be a known tower name\. Received: "
                       r"query_tower='crss'\. Did you mean 'cross'\? Known: .*'default'"):
        tk.Recipe(query_tower="crss")
    with pytest.raises(TypeError, match=r"`candidate_tower` must be a registered tower name, a "
                       r"tfrs_kit\.Tower subclass or a function.*Received: "
                       r"candidate_tower=<class 'dict'>\. A class must subclass"):
        tk.Recipe(candidate_tower=dict)
    vocabs = tk.VocabularyBuilder().fit({"user_id": ["a"]})
    with pytest.raises(TypeError, match=r"a built Tower.*pass query_tower=Tower \(the class\)"):
        tk.Recipe(query_tower=tk.Tower(vocabs, features=["user_id"]))
    with pytest.raises(TypeError, match=r"`query_tower` must build a tower from the arguments "
                       r"tfrs_kit\.Tower takes.*lacks output_dim"):
        tk.Recipe(query_tower=lambda vocabularies, *, features: None)
    with pytest.raises(TypeError, match="`candidate_tower` must be a registered tower name"):
        tk.Recipe(candidate_tower=42)
