"""Wiring: each setting reaches the code that applies it, checked against independent references.

Each test names the bug it catches (planted in a copy of the code, these went unnoticed by the
rest of the suite): a loss recomputed in NumPy from the towers' own embeddings, by the textbook
formula, must equal what the model's ``compute_loss`` returns.
"""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.retrieval._negatives import NegativePool

# Item "b" is in the batch three times, "a" twice: duplicates and unequal frequencies.
BATCH = {"user_id": np.array(["u1", "u2", "u3", "u4", "u5", "u6"], dtype=object),
         "item_id": np.array(["a", "b", "b", "c", "a", "b"], dtype=object)}
FREQUENCIES = pd.Series({"a": 0.3, "b": 0.6, "c": 0.1})


def _model(**options):
    tf.keras.utils.set_random_seed(0)
    vocabs = tk.VocabularyBuilder().fit(BATCH)
    return tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                tk.Tower(vocabs, features=["item_id"], output_dim=4),
                                **options)


def _loss(model, table=BATCH):
    """The model's training loss of one batch holding the whole table."""
    model.candidate_frequencies_ = FREQUENCIES
    columns = model._columns
    batch = next(iter(make_dataset(model._prepare(dict(table)), columns,
                                   batch_size=len(table["item_id"]))))
    return float(model.compute_loss(batch, training=True))


def _reference(model, table=BATCH, *, log_q=None, hits=False, extra=None):
    """Softmax cross-entropy of each query against every column, in NumPy.

    Args:
        log_q: Per column, the log sampling probability subtracted from its logit.
        hits: Drop a column from a query's softmax when it holds the query's own
            item again (not the positive column itself).
        extra: More candidate ids appended as columns (random negatives).
    """
    queries = model.query_tower.embed({"user_id": table["user_id"]})
    column_ids = np.concatenate([table["item_id"], extra if extra is not None else []])
    columns = model.candidate_tower.embed({"item_id": column_ids.astype(object)})
    logits = queries.astype(np.float64) @ columns.astype(np.float64).T
    if log_q is not None:
        logits = logits - log_q[None, :]
    n = len(queries)
    if hits:
        same = table["item_id"][:, None] == column_ids[None, :]
        same[np.arange(n), np.arange(n)] = False
        logits = np.where(same, -np.inf, logits)
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(n), np.arange(n)].sum())


@pytest.mark.parametrize("unique_candidates", [True, False])
def test_logq_subtracts_the_log_frequency_of_each_column(unique_candidates):
    # Catches: logQ never applied, or added instead of subtracted.
    model = _model(logq_correction=True, unique_candidates=unique_candidates)
    log_q = np.log(FREQUENCIES[BATCH["item_id"]].to_numpy())
    expected = _reference(model, log_q=log_q)
    assert _loss(model) == pytest.approx(expected, rel=1e-5)
    assert abs(expected - _reference(model)) > 1e-3  # the correction matters here
    assert abs(expected - _reference(model, log_q=-log_q)) > 1e-3


def test_without_logq_the_loss_is_the_plain_softmax():
    model = _model(logq_correction=False)
    assert _loss(model) == pytest.approx(_reference(model), rel=1e-5)


@pytest.mark.parametrize("unique_candidates", [True, False])
def test_remove_accidental_hits_masks_the_positives_other_copies(unique_candidates):
    # Catches: the model not passing remove_accidental_hits on to the loss.
    model = _model(logq_correction=False, remove_accidental_hits=True,
                   unique_candidates=unique_candidates)
    expected = _reference(model, hits=True)
    assert _loss(model) == pytest.approx(expected, rel=1e-5)
    assert abs(expected - _reference(model)) > 1e-3


def test_mixed_negatives_correct_for_batch_and_uniform_draws(monkeypatch):
    # Catches: the batch-size scaling of the sampling probability dropped (or the uniform
    # share): a column's expected count among one step's negatives is B * f + R / N.
    model = _model(logq_correction=True, num_random_negatives=4)
    model.candidate_frequencies_ = FREQUENCIES
    model._negatives = model._negative_pool(BATCH)
    rows = tf.constant([2, 0, 2, 1], tf.int64)  # fixed draws, one of them twice
    pool = model._negatives

    def draw(count):
        return ({name: tf.gather(column, rows) for name, column in pool.features.items()},
                tf.gather(pool.probability, rows))

    monkeypatch.setattr(pool, "draw", draw)
    drawn = pool.features["item_id"].numpy()[rows.numpy()].astype(str).astype(object)
    assert sorted(set(drawn)) == ["a", "b", "c"]
    columns = np.concatenate([BATCH["item_id"], drawn])
    batch_size, draws, catalogue = len(BATCH["item_id"]), 4, 3
    expected_count = batch_size * FREQUENCIES[columns].to_numpy() + draws / catalogue
    expected = _reference(model, log_q=np.log(expected_count), extra=drawn)
    assert _loss(model) == pytest.approx(expected, rel=1e-5)
    unscaled = FREQUENCIES[columns].to_numpy() + draws / catalogue
    assert abs(expected - _reference(model, log_q=np.log(unscaled), extra=drawn)) > 1e-3


def test_the_negative_pool_keeps_each_items_last_row():
    # Catches: the pool keeping the first row of an item instead of the last.
    data = {"item_id": np.array(["x", "y", "x"], dtype=object),
            "genre": np.array(["old", "drama", "new"], dtype=object)}
    pool = NegativePool.build(data, item_id="item_id", features=["item_id", "genre"],
                              frequencies=pd.Series({"x": 2 / 3, "y": 1 / 3}))
    rows = dict(zip(pool.features["item_id"].numpy().astype(str),
                    pool.features["genre"].numpy().astype(str), strict=True))
    assert rows == {"x": "new", "y": "drama"}
    probability = dict(zip(pool.features["item_id"].numpy().astype(str),
                           pool.probability.numpy(), strict=True))
    assert probability == pytest.approx({"x": 2 / 3, "y": 1 / 3})


def test_as_recommender_uses_each_users_and_items_last_row():
    # Catches: as_recommender keeping a user's (or item's) first row instead of the last.
    log = {"user_id": np.array(["u", "v", "u"], dtype=object),
           "segment": np.array(["s1", "s2", "s3"], dtype=object),
           "item_id": np.array(["x", "y", "x"], dtype=object),
           "genre": np.array(["g1", "g2", "g3"], dtype=object)}
    tf.keras.utils.set_random_seed(0)
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id", "segment"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id", "genre"], output_dim=4))
    recommender = model.as_recommender(log)
    queries = model.query_tower.embed({"user_id": ["u"], "segment": ["s3"]})
    items = model.candidate_tower.embed({"item_id": ["x", "y"], "genre": ["g3", "g2"]})
    order = np.argsort(recommender.item_ids)  # compare by id: x, y
    np.testing.assert_allclose(recommender.score(np.array(["u"], dtype=object))[0][order],
                               (queries @ items.T)[0], rtol=1e-5)


@pytest.mark.parametrize("column, values", [("age", [25.0, 35.0, 45.0]),
                                            ("flag", [True, False, True])])
def test_float_and_bool_categories_reach_their_own_embeddings(column, values):
    # Catches: whole floats or booleans all mapped to the out-of-vocabulary id.
    vocabs = tk.VocabularyBuilder().fit({column: values}, features={column: "categorical"})
    tower = tk.Tower(vocabs, features=[column], output_dim=4, combine="concat")
    embedded = tower.embed({column: np.array(values)})
    encoder = tower.encoders[column]
    table = encoder.embedding.embeddings.numpy()
    positions = vocabs[column].index([int(v) for v in values])  # NumPy lookup, not TF's
    assert (positions > 0).all()  # none is out of vocabulary
    direct = tower.embed({column: np.array([int(v) for v in values])})
    np.testing.assert_allclose(embedded, direct, rtol=1e-6)
    first, second = encoder(tf.constant(values[:2])).numpy()
    np.testing.assert_allclose([first, second], table[positions[:2]], rtol=1e-6)


# --- the exported signatures, served without tfrs_kit -------------------------------------

SERVE = """
import json, sys
sys.modules['tfrs_kit'] = None  # importing it now fails
{imports}
import tensorflow as tf
served = tf.saved_model.load({path!r})
out = served.signatures['recommend'](user_id=tf.constant(['u1', 'u2']), k=tf.constant(3),
                                     exclude=tf.constant([['a', 'b'], ['', '']]))
similar = served.signatures['similar_items'](item_ids=tf.constant(['a']), k=tf.constant(2))
print(json.dumps({{"recommend": [[b.decode() for b in r] for r in out['ids'].numpy()],
                  "scores": out['scores'].numpy().tolist(),
                  "similar": [[b.decode() for b in r] for r in similar['ids'].numpy()]}}))
"""


@pytest.mark.parametrize("backend", ["brute_force", "scann"])
def test_exported_recommend_and_similar_items_serve_without_tfrs_kit(tmp_path, backend,
                                                                     fresh_python):
    if backend == "scann":
        pytest.importorskip("scann")
    model = _model()
    index = tk.IndexBuilder(k_max=3, backend=backend).build(model, {"item_id": ["a", "b", "c"]})
    index.save(tmp_path / "index")
    imports = "import scann" if backend == "scann" else ""
    code = SERVE.format(imports=imports, path=str(tmp_path / "index" / "saved_model"))
    result = fresh_python(code, imports=imports)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    # The reference: NumPy scores of every candidate, exclusions removed by hand.
    queries = model.query_tower.embed({"user_id": ["u1", "u2"]})
    items = model.candidate_tower.embed({"item_id": ["a", "b", "c"]})
    scores = queries @ items.T
    assert served["recommend"][0] == ["c", "", ""]  # a and b excluded: padding after c
    assert served["scores"][0][0] == pytest.approx(scores[0, 2], rel=1e-4)
    assert served["recommend"][1] == list(np.array(["a", "b", "c"])[np.argsort(-scores[1])])
    others = np.array(["b", "c"])[np.argsort(-(items[1:] @ items[0]))]
    assert served["similar"] == [others.tolist()]
