"""Towers and data sources by name: decorators, entry points, errors, and reloading."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from importlib.metadata import EntryPoint

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from registry_isolation import isolated_registries
from tfrs_kit._plugins import Registry, same_definition

TOWERS, DATASETS = "tfrs_kit.towers", "tfrs_kit.datasets"

PLUGIN_SOURCE = '''
import pandas as pd
import tensorflow as tf
import tfrs_kit as tk

class PluginTower(tk.Tower):
    requires_vocabularies = False

    def encode(self, features):
        return tf.cast(tf.strings.length(features["raw"]), tf.float32)[:, None]

    def input_signature(self):
        return {"raw": tf.TensorSpec([None], tf.string, name="raw")}

class OtherTower(tk.Tower):
    pass

def clicks(n=2):
    events = pd.DataFrame({"user": ["a"] * n, "item": ["x"] * n})
    return tk.datasets.InteractionDataset(
        interactions=events, items=pd.DataFrame({"item": ["x"]}),
        users=pd.DataFrame({"user": ["a"]}), user_id="user", item_id="item")

def not_a_dataset():
    return pd.DataFrame()

NOT_A_TOWER = 42
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A fresh plugin module on sys.path; returns a function making its entry points."""
    module = f"fake_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda name, attr, group=TOWERS: EntryPoint(name, f"{module}:{attr}", group)
    sys.modules.pop(module, None)


def test_built_ins_are_registered_by_name():
    assert {"cross", "default"} <= set(tk.towers.available_towers())
    assert tk.towers.get_tower("default") is tk.Tower
    assert tk.towers.get_tower("cross") is tk.towers.CrossTower
    assert {"movielens", "synthetic"} <= set(tk.datasets.available_datasets())
    assert tk.datasets.load_dataset("synthetic", num_interactions=300).num_interactions == 300
    assert tf.keras.utils.get_registered_name(tk.towers.CrossTower) == "tfrs_kit>CrossTower"
    assert tf.keras.utils.get_registered_name(tk.Tower) == "tfrs_kit>Tower"


def test_unknown_names_list_the_known_ones_and_the_closest():
    with pytest.raises(ValueError,
                       match=r"name='crss'\. Did you mean 'cross'\? Known: .*'default'"):
        tk.towers.get_tower("crss")
    with pytest.raises(ValueError, match=r"Did you mean 'movielens'\?"):
        tk.datasets.load_dataset("movielense")
    with pytest.raises(TypeError, match="`name` must be a tower name"):
        tk.towers.get_tower(tk.Tower)


def test_decorator_registers_for_lookup_and_keras():
    with isolated_registries():

        @tk.towers.register_tower("mine", package="my_package")
        class MineTower(tk.Tower):
            pass

        assert tk.towers.get_tower("mine") is MineTower
        assert tf.keras.utils.get_registered_name(MineTower) == "my_package>MineTower"
        tk.towers.register_tower("mine")(MineTower)  # the same class again: a no-op
    assert "mine" not in tk.towers.available_towers()


def test_duplicate_names_are_refused():
    with isolated_registries():
        with pytest.raises(ValueError, match=r"'cross' is already registered to "
                           r"tfrs_kit\.towers\._cross\.CrossTower by @register_tower\('cross'\) in "
                           r"module 'tfrs_kit\.towers\._cross', so @register_tower\('cross'\) "
                           r"in module '\w+' cannot register .*AnotherCross"):

            @tk.towers.register_tower("cross")
            class AnotherCross(tk.Tower):
                pass

        with pytest.raises(ValueError, match="'synthetic' is already registered"):
            tk.datasets.register_dataset("synthetic")(lambda: None)


NOTEBOOK_CELL = """
import tfrs_kit as tk

@tk.towers.register_tower("rerun", package="notebook")
class RerunTower(tk.Tower):
    pass

@tk.datasets.register_dataset("rerun_clicks")
def clicks():
    return None
"""


def _run_cell(source: str, module: str = "notebook_cell") -> dict:
    namespace = {"__name__": module}
    exec(compile(source, f"<{module}>", "exec"), namespace)
    return namespace


def test_running_a_cell_again_replaces_its_registrations():
    with isolated_registries():
        first = _run_cell(NOTEBOOK_CELL)
        second = _run_cell(NOTEBOOK_CELL)  # new class and function objects, same names
        cls = second["RerunTower"]
        assert cls is not first["RerunTower"]
        assert tk.towers.get_tower("rerun") is cls
        assert tf.keras.utils.get_registered_name(cls) == "notebook>RerunTower"
        tower = cls(tk.VocabularyBuilder().fit({"u": ["a"]}), features=["u"], output_dim=2)
        config = json.loads(json.dumps(tf.keras.utils.serialize_keras_object(tower)))
        assert type(tf.keras.utils.deserialize_keras_object(config)) is cls
        assert tk.datasets.available_datasets().count("rerun_clicks") == 1
        with pytest.raises(ValueError, match=r"'rerun' is already registered to "
                           r"notebook_cell\.RerunTower by @register_tower\('rerun'\) in module "
                           r"'notebook_cell', so .* cannot register notebook_cell\.OtherTower"):
            _run_cell(NOTEBOOK_CELL.replace("class RerunTower", "class OtherTower"))
        with pytest.raises(ValueError, match=r"'notebook>RerunTower' already names "
                           r"notebook_cell\.RerunTower"):
            _run_cell(NOTEBOOK_CELL, module="other_cell")  # another module: another class
        assert tk.towers.get_tower("rerun") is cls


def test_only_named_definitions_can_be_the_same():
    a, b = (_run_cell("def f():\n    pass\ng = lambda: 1\n") for _ in range(2))
    assert same_definition(a["f"], b["f"])
    assert not same_definition(a["g"], b["g"])  # a lambda's name says nothing of it
    assert not same_definition(a["f"], _run_cell("def f():\n    pass\n", "other")["f"])
    assert not same_definition(1, 1)


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (" x", ValueError), (3, TypeError)])
def test_bad_names_are_refused(name, error):
    with isolated_registries(), pytest.raises(error, match="`name` must be a non-empty string"):
        tk.towers.register_tower(name)(type("T", (tk.Tower,), {}))


def test_a_keras_package_is_a_non_empty_string():
    with pytest.raises(TypeError, match="`package` must be a non-empty string or None"):
        tk.towers.register_tower("p", package=3)
    with pytest.raises(ValueError, match="`package` must be a non-empty string or None"):
        tk.towers.register_tower("p", package="")


def test_only_tower_classes_and_callables_are_registered():
    with pytest.raises(TypeError, match=r"must be a subclass of tfrs_kit\.Tower"):
        tk.towers.register_tower("not_a_tower")(dict)
    with pytest.raises(TypeError, match="must be a callable that returns an InteractionDataset"):
        tk.datasets.register_dataset("not_callable")(42)


def test_entry_points_are_loaded_lazily_on_first_lookup(plugin):
    entry_points = {TOWERS: [plugin("plugged", "PluginTower")],
                    DATASETS: [plugin("plugged_clicks", "clicks", DATASETS)]}
    module = entry_points[TOWERS][0].module
    with isolated_registries(entry_points):
        assert module not in sys.modules  # nothing imported before a lookup
        assert "plugged" in tk.towers.available_towers()
        cls = tk.towers.get_tower("plugged")
        assert cls.__module__ == module
        assert tf.keras.utils.get_registered_name(cls) == f"{module}>PluginTower"
        assert tk.datasets.load_dataset("plugged_clicks", n=3).num_interactions == 3
    assert "plugged" not in tk.towers.available_towers()


def test_an_entry_point_of_the_wrong_type_is_refused_by_name(plugin):
    entry_points = {TOWERS: [plugin("bad", "NOT_A_TOWER")],
                    DATASETS: [plugin("bad_data", "NOT_A_TOWER", DATASETS)]}
    message = (r"entry point 'bad = fake_plugin_\w+:NOT_A_TOWER' \(group 'tfrs_kit.towers'\)` "
               r"must be a subclass of tfrs_kit\.Tower\. Received: .*=42")
    with isolated_registries(entry_points):
        with pytest.warns(RuntimeWarning, match=message):
            assert tk.towers.get_tower("default") is tk.Tower  # the built-ins still work
        with pytest.raises(TypeError, match=message):
            tk.towers.get_tower("bad")
        with pytest.warns(RuntimeWarning, match=r"entry point 'bad_data = .*must be a callable"):
            assert "bad_data" not in tk.datasets.available_datasets()
        with pytest.raises(TypeError, match=r"entry point 'bad_data = .*must be a callable"):
            tk.datasets.load_dataset("bad_data")


def test_a_data_source_returning_something_else_is_refused(plugin):
    with isolated_registries({DATASETS: [plugin("frame", "not_a_dataset", DATASETS)]}), \
            pytest.raises(TypeError, match=r"dataset 'frame'` must be an InteractionDataset\. "
                          r"Received: .*='DataFrame'"):
        tk.datasets.load_dataset("frame")


def test_a_plugin_that_fails_to_import_breaks_only_its_own_name(plugin):
    broken = EntryPoint("broken", "no_such_module_for_tfrs_kit:Tower", TOWERS)
    message = (r"plugin entry point 'broken = no_such_module_for_tfrs_kit:Tower' .* failed to "
               r"load: ModuleNotFoundError")
    with isolated_registries({TOWERS: [plugin("fine", "PluginTower"), broken]}):
        with pytest.warns(RuntimeWarning, match=message):
            names = tk.towers.available_towers()
        assert "fine" in names and "default" in names and "broken" not in names
        assert tk.towers.get_tower("default") is tk.Tower
        for _ in range(2):  # never skipped silently: its name raises every time
            with pytest.raises(ImportError, match=message):
                tk.towers.get_tower("broken")


def test_entry_points_may_not_take_a_built_in_or_each_others_names(plugin):
    taken = (r"`name` must be a tower name that is not taken\. Received: name='cross'\. "
             r".*so entry point 'cross = .*PluginTower")
    with isolated_registries({TOWERS: [plugin("cross", "PluginTower")]}), \
            pytest.warns(RuntimeWarning, match=taken):
        assert tk.towers.get_tower("cross").__module__.startswith("tfrs_kit")  # built-in
    twice = [plugin("same", "PluginTower"), plugin("same", "OtherTower")]
    clash = r"'same' is already registered to .*PluginTower by entry point 'same = "
    with isolated_registries({TOWERS: twice}):
        with pytest.warns(RuntimeWarning, match=clash):
            tk.towers.available_towers()
        with pytest.raises(ValueError, match=clash):  # two plugins: ambiguous, never a guess
            tk.towers.get_tower("same")


def test_an_entry_point_naming_a_decorated_class_again_is_fine(plugin):
    with isolated_registries({TOWERS: [plugin("plugged", "PluginTower")]}):
        module = __import__(plugin("x", "y").module)
        tk.towers.register_tower("plugged")(module.PluginTower)
        assert tk.towers.get_tower("plugged") is module.PluginTower


# --- isolation for tests ---------------------------------------------------------------

NUMBERS = "tfrs_kit.tests.numbers"  # an entry point group nothing installs


def _numbers() -> Registry:
    return Registry(what="number", group=NUMBERS, rule="be an integer",
                    is_valid=lambda obj: isinstance(obj, int))


def test_an_isolated_registry_forgets_what_was_registered_inside():
    registry = _numbers()
    registry.register("one", 1, origin="the test")
    with registry.isolated():
        registry.register("two", 2, origin="the test")
        assert registry.names() == ["one", "two"]
    assert registry.names() == ["one"]
    with pytest.raises(ValueError, match="must be a known number name"):
        registry.get("two")
    with pytest.raises(RuntimeError, match="inside"), registry.isolated():
        registry.register("three", 3, origin="the test")
        raise RuntimeError("raised inside")
    assert registry.names() == ["one"]
    registry.register("three", 33, origin="another test")  # the name is free again
    assert registry.get("three") == 33


def test_an_isolated_registry_reads_the_entry_points_given_then_the_installed_ones(plugin):
    registry = _numbers()
    assert registry.names() == []  # the installed entry points (none) are read
    with registry.isolated([plugin("answer", "NOT_A_TOWER", NUMBERS)]):
        assert registry.get("answer") == 42
        with registry.isolated([]):  # nested: keeps what is registered, forgets what is added
            registry.register("inner", 7, origin="the test")
            assert registry.names() == ["answer", "inner"]
        assert registry.names() == ["answer"]
    assert registry.names() == []
    broken = EntryPoint("broken", "no_such_module_for_tfrs_kit:x", NUMBERS)
    with registry.isolated([broken]):
        with pytest.warns(RuntimeWarning, match="failed to load"):
            assert registry.names() == []
        with pytest.raises(ImportError, match="failed to load"):
            registry.get("broken")
    assert registry.names() == []  # still loaded from the installed ones, no error
    with pytest.raises(ValueError, match="must be a known number name"):
        registry.get("broken")  # the broken plugin is forgotten with the isolation


# --- reloading models and indexes that use a registered tower ---------------------------


@pytest.fixture(scope="module")
def trained_cross_model():
    data = tk.datasets.synthetic(2_000, seed=3)
    table = data.interactions
    vocabs = tk.VocabularyBuilder().fit(table, features=["user_id", "user_age", "item_id"])
    cross = tk.towers.get_tower("cross")
    model = tk.TwoTowerRetrieval(
        cross(vocabs, features=["user_id", "user_age"], output_dim=8, hidden_dims=[16]),
        tk.Tower(vocabs, features=["item_id"], output_dim=8),
    )
    model.fit(table, epochs=1, batch_size=256, seed=0, verbose=0)
    return model, data


def test_a_model_holding_a_registered_tower_reloads_from_json(trained_cross_model):
    model, _ = trained_cross_model
    tower = model.query_tower
    inputs = {name: tf.keras.Input(shape=(), dtype=spec.dtype, name=name)
              for name, spec in tower.input_signature().items()}
    wrapper = tf.keras.Model(inputs, tower(inputs))
    restored = tf.keras.models.model_from_json(wrapper.to_json())
    assert any(type(layer) is tk.towers.CrossTower for layer in restored.layers)
    restored.set_weights(wrapper.get_weights())
    batch = {"user_id": tf.constant(["u1", "u2"]), "user_age": tf.constant([30, 40], tf.int64)}
    np.testing.assert_allclose(restored(batch).numpy(), tower(batch).numpy(), rtol=1e-5)
    config = json.loads(json.dumps(tf.keras.utils.serialize_keras_object(tower)))
    assert config["registered_name"] == "tfrs_kit>CrossTower"
    assert type(tf.keras.utils.deserialize_keras_object(config)) is tk.towers.CrossTower


def test_an_index_over_a_registered_tower_saves_and_reloads(trained_cross_model, tmp_path):
    model, data = trained_cross_model
    index = tk.IndexBuilder(k_max=5).build(model, data.items)
    queries = pd.DataFrame({"user_id": ["u1", "u7", "nobody"], "user_age": [30, 41, 99]})
    expected = index.recommend(queries, k=5)
    index.save(tmp_path / "index")
    reloaded = tk.load_index(tmp_path / "index").recommend(queries, k=5)
    np.testing.assert_array_equal(reloaded.ids, expected.ids)
    np.testing.assert_allclose(reloaded.scores, expected.scores, rtol=1e-5)


def test_docs_name_the_entry_point_groups():
    text = textwrap.dedent(tk.towers.__doc__ + tk.datasets.__doc__)
    assert '"tfrs_kit.towers"' in text and '"tfrs_kit.datasets"' in text
