import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import tfrs_kit  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from fresh_python import FreshPython

_PROCESS_FIXTURES = {"fresh_python", "serve_in_fresh_process"}
_SERVERS = {}  # imports -> the FreshPython process that ran them (see `fresh_python`)


def pytest_collection_modifyitems(config, items):
    """Tests that use a separate Python process are marked ``process`` (``-m "not process"``
    leaves them out). Under pytest-xdist (``make test``: ``-n 2 --dist loadfile``) the files
    with such tests go first: they are the longest, and a long file handed out last keeps one
    worker busy while the other waits."""
    for item in items:
        if _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)
    if config.getoption("dist", "no") != "no":
        heavy = {item.path for item in items if item.get_closest_marker("process")}
        items.sort(key=lambda item: item.path not in heavy)  # stable: file order kept


def pytest_collection_finish(session):
    """Lets a test module start slow work in the background once the selection is known
    (its ``start_in_background(items)``), so that it overlaps the tests run before it."""
    if session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return  # under pytest-xdist each worker starts what its own tests need, when they need it
    if any(_PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        _SERVERS.setdefault("", FreshPython(""))  # imports TensorFlow while other tests run
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_in_background", None)
        if callable(start) and id(module) not in started:
            started.add(id(module))
            start(session.items)


@pytest.fixture
def checkerboard():
    """Two user groups that each only ever pick from their own half of the items.

    A model that learns anything must put a user's own group's items first: its
    recall@1 is exactly 1.0.
    """
    rng = np.random.default_rng(0)
    n = 4000
    users = rng.integers(0, 40, n)
    group = users % 2
    items = group * 10 + rng.integers(0, 10, n)
    return {
        "user_id": np.array([f"u{u}" for u in users], dtype=object),
        "item_id": np.array([f"i{i}" for i in items], dtype=object),
    }


@pytest.fixture(scope="session")
def counting_clock():
    """The Recipe's clock, made deterministic: ``with counting_clock(step):`` each reading of
    ``time.monotonic()`` in ``tfrs_kit.recipe`` advances ``step`` seconds, so a time budget
    buys the same trials and epochs however loaded the machine is."""
    import contextlib
    import itertools
    import sys
    import time
    import types

    import tfrs_kit.recipe  # noqa: F401  (loads the modules whose clock is replaced)

    @contextlib.contextmanager
    def use(step):
        readings = itertools.count(1)
        clock = types.SimpleNamespace(monotonic=lambda: next(readings) * step)
        modules = [module for name, module in list(sys.modules.items())
                   if name.startswith("tfrs_kit.recipe") and getattr(module, "time", None) is time]
        assert modules, "no module of tfrs_kit.recipe reads time.monotonic any more"
        with pytest.MonkeyPatch.context() as patch:
            for module in modules:
                patch.setattr(module, "time", clock)
            yield

    return use


@pytest.fixture(scope="session")
def fresh_python():
    """Runs code as ``python -c`` would, in a separate Python process where tfrs_kit cannot
    be imported (TensorFlow alone, ``TF_USE_LEGACY_KERAS`` unset), kept for the session.

    Returns a function ``(code, *, argv=(), cwd=None, imports="") -> Result(returncode,
    stdout, stderr)``; one process per distinct ``imports``, run before any code there (so
    code that must work without ScaNN never shares a process with code that imported it).
    """
    def run(code, *, argv=(), cwd=None, imports=""):
        if imports not in _SERVERS:
            _SERVERS[imports] = FreshPython(imports)
        return _SERVERS[imports].run(code, tuple(argv), None if cwd is None else str(cwd))

    yield run
    while _SERVERS:
        _SERVERS.popitem()[1].close()


@pytest.fixture
def serve_in_fresh_process(fresh_python):
    """Serves an exported index in a Python process where tfrs_kit cannot be imported.

    Returns a function ``(index_dir, feature, value, *, imports="") -> list of ids`` that
    calls the SavedModel's ``serving_default`` signature for one query.
    """
    import json

    def serve(index_dir, feature, value, *, imports=""):
        code = (
            "import sys, json\n"
            "sys.modules['tfrs_kit'] = None  # importing it now fails\n"
            "import tensorflow as tf\n"
            f"served = tf.saved_model.load({str(index_dir / 'saved_model')!r})\n"
            f"out = served.signatures['serving_default']({feature}=tf.constant([{value!r}]))\n"
            "print(json.dumps([b.decode() for b in out['ids'].numpy()[0]]))\n"
        )
        result = fresh_python(code, imports=imports)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    return serve
