"""The fast retrieval loss equals TFRS's, option by option."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit.retrieval._task import FastRetrieval


@pytest.mark.parametrize("options", [
    {}, {"temperature": 0.3}, {"remove_accidental_hits": True},
    {"num_hard_negatives": 3}, {"temperature": 0.1, "remove_accidental_hits": True},
])
@pytest.mark.parametrize("extra_candidates", [0, 5])
def test_loss_matches_tfrs(options, extra_candidates):
    rng = np.random.default_rng(0)
    queries = tf.constant(rng.normal(size=(8, 4)), tf.float32)
    candidates = tf.constant(rng.normal(size=(8 + extra_candidates, 4)), tf.float32)
    ids = tf.constant(rng.integers(0, 4, size=8 + extra_candidates))  # many accidental hits
    probability = tf.constant(rng.uniform(0.01, 0.5, size=8 + extra_candidates), tf.float32)
    weight = tf.constant(rng.uniform(0.5, 2.0, size=8), tf.float32)
    kwargs = {"candidate_ids": ids, "candidate_sampling_probability": probability,
              "sample_weight": weight, "compute_metrics": False}
    expected = float(tfrs.tasks.Retrieval(**options)(queries, candidates, **kwargs))
    got = float(FastRetrieval(**options)(queries, candidates, **kwargs))
    assert got == pytest.approx(expected, rel=1e-5)


def test_gradients_match_tfrs():
    rng = np.random.default_rng(1)
    queries = tf.Variable(rng.normal(size=(6, 3)), dtype=tf.float32)
    candidates = tf.Variable(rng.normal(size=(6, 3)), dtype=tf.float32)
    grads = []
    for task in (tfrs.tasks.Retrieval(temperature=0.5), FastRetrieval(temperature=0.5)):
        with tf.GradientTape() as tape:
            loss = task(queries, candidates, compute_metrics=False)
        grads.append([g.numpy() for g in tape.gradient(loss, [queries, candidates])])
    for fast, reference in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [
    {}, {"temperature": 0.2}, {"remove_accidental_hits": True},
    {"temperature": 0.5, "remove_accidental_hits": True},
])
@pytest.mark.parametrize("extra_candidates", [0, 6])
@pytest.mark.parametrize("string_ids", [False, True])
def test_unique_candidates_give_the_same_loss_and_gradients(options, extra_candidates,
                                                              string_ids):
    rng = np.random.default_rng(3)
    table = tf.Variable(rng.normal(size=(5, 4)), dtype=tf.float32)  # 5 items, many repeats
    item = rng.integers(0, 5, size=10 + extra_candidates)
    ids = tf.constant([f"i{i}" for i in item]) if string_ids else tf.constant(item)
    queries = tf.Variable(rng.normal(size=(10, 4)), dtype=tf.float32)
    frequency = np.bincount(item, minlength=5) / len(item)
    probability = tf.constant(frequency[item], tf.float32)
    weight = tf.constant(rng.uniform(0.5, 2.0, size=10), tf.float32)
    results = []
    for task in (tfrs.tasks.Retrieval(**options),
                 FastRetrieval(unique_candidates=True, **options)):
        with tf.GradientTape() as tape:
            candidates = tf.gather(table, item)
            loss = task(queries, candidates, candidate_ids=ids, sample_weight=weight,
                        candidate_sampling_probability=probability, compute_metrics=False)
        grads = tape.gradient(loss, [queries, table])
        results.append((float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]))
    (expected, expected_grads), (got, got_grads) = results
    assert got == pytest.approx(expected, rel=1e-5)
    for fast, reference in zip(got_grads, expected_grads, strict=True):
        np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-5)


def test_config_round_trip_keeps_the_settings():
    task = FastRetrieval(unique_candidates=True, temperature=0.5, remove_accidental_hits=True,
                         num_hard_negatives=3)
    clone = FastRetrieval.from_config(task.get_config())
    assert clone.get_config() == task.get_config()
    assert clone._temperature == 0.5 and clone.unique_candidates
