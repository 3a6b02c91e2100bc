import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import tfrs_kit  # noqa: F401  (selects Keras 2 before TensorFlow loads)


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


@pytest.fixture
def serve_in_fresh_process():
    """Serves an exported index in a new Python process where tfrs_kit cannot be imported.

    Returns a function ``(index_dir, feature, value, *, imports="") -> list of ids`` that
    calls the SavedModel's ``serving_default`` signature for one query.
    """
    import json
    import os
    import subprocess
    import sys

    def serve(index_dir, feature, value, *, imports=""):
        code = (
            "import sys, json\n"
            "sys.modules['tfrs_kit'] = None  # importing it now fails\n"
            f"{imports}"
            "import tensorflow as tf\n"
            f"served = tf.saved_model.load({str(index_dir / 'saved_model')!r})\n"
            f"out = served.signatures['serving_default']({feature}=tf.constant([{value!r}]))\n"
            "print(json.dumps([b.decode() for b in out['ids'].numpy()[0]]))\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    return serve
