"""What stock TensorFlow Serving needs of an exported index: core ops only, warm-up requests."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfrs_kit.index._export import METADATA, SAVED_MODEL
from tfrs_kit.index._warmup import WARMUP_FILE, WARMUP_QUERIES, _prediction_log

# The ops TensorFlow itself registers: every one has a tf.raw_ops wrapper. ScaNN's ops
# (and any other library's) are registered only when that library is imported, and
# never get one.
CORE_OPS = frozenset(name for name in dir(tf.raw_ops) if not name.startswith("_"))


def graph_ops(saved_model_dir):
    """Every op type in the SavedModel: its graphs and the whole function library."""
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def test_brute_force_saved_model_uses_only_core_ops(saved_indexes):
    ops = graph_ops(saved_indexes[1] / SAVED_MODEL)
    assert {"MatMul", "TopKV2"} <= ops  # the search itself is in the walked graphs
    assert ops <= CORE_OPS, f"not TensorFlow core ops: {sorted(ops - CORE_OPS)}"
    assert not any("scann" in op.lower() for op in ops)
    metadata = json.loads((saved_indexes[1] / METADATA).read_text())
    assert metadata["tf_serving"] == "stock TF Serving loads it (core ops only)"


def read_warmup(saved_model_dir):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    path = saved_model_dir / WARMUP_FILE
    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def test_warmup_requests_run_against_the_saved_signature(saved_indexes):
    saved_model_dir = saved_indexes[1] / SAVED_MODEL
    logs = read_warmup(saved_model_dir)
    assert len(logs) == len(WARMUP_QUERIES)
    signature = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    expected_inputs = set(signature.structured_input_signature[1])
    for log, size in zip(logs, WARMUP_QUERIES, strict=True):
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == expected_inputs
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        assert all(value.shape[0] == size for value in inputs.values())
        outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
        assert outputs["ids"].shape[0] == size
        assert np.isfinite(outputs["scores"].numpy()).all()  # real queries, real answers


def test_hand_encoded_log_matches_tensorflow_serving_protos():
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    inputs = {"user_id": tf.constant(["a" * 200, "b"]), "age": tf.constant([[1.5], [2.0]])}
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(_prediction_log(inputs))  # field numbers and long varints
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(request.inputs["user_id"]).tolist() == [b"a" * 200, b"b"]
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["age"]), [[1.5], [2.0]])


def test_warmup_inputs_fit_every_kind_of_feature():
    import tfrs_kit as tk
    from tfrs_kit.index._warmup import warmup_inputs

    log = {"user": [3, 1, 3], "city": ["a", "b", "a"], "age": [20.0, 30.0, 40.0],
           "when": [1_700_000_000, 1_700_000_100, 1_700_000_200]}
    vocabs = tk.VocabularyBuilder().fit(log, features={
        "user": "categorical", "city": "categorical", "age": "numeric", "when": "timestamp"})
    specs = {"user": tf.TensorSpec([None], tf.int64), "city": tf.TensorSpec([None], tf.string),
             "age": tf.TensorSpec([None], tf.float32), "when": tf.TensorSpec([None], tf.int64),
             "vector": tf.TensorSpec([None, 3], tf.float32),
             "history": tf.TensorSpec([None, None], tf.string)}
    inputs = warmup_inputs(specs, vocabs, 4)
    assert {name: tuple(t.shape) for name, t in inputs.items()} == {
        "user": (4,), "city": (4,), "age": (4,), "when": (4,), "vector": (4, 3),
        "history": (4, 2)}
    assert set(inputs["user"].numpy().tolist()) <= {1, 3}
    assert set(inputs["city"].numpy().tolist()) <= {b"a", b"b"}
    assert inputs["when"].dtype == tf.int64 and inputs["age"].numpy()[0] == pytest.approx(30.0)
    ragged = {"user": tf.RaggedTensorSpec([None, None], tf.int64)}
    assert warmup_inputs(ragged, vocabs, 1) is None


def test_a_scann_saved_model_is_flagged_and_uses_scanns_op(tmp_path):
    pytest.importorskip("scann")
    import tfrs_kit as tk

    items = np.array([f"i{i}" for i in range(1500)], dtype=object)
    vocabs = (tk.VocabularyBuilder().fit({"user_id": ["u1", "u2"]})
              | tk.VocabularyBuilder().fit({"item_id": items}))
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=8),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=8))
    tk.IndexBuilder(backend="scann", k_max=5).build(model, {"item_id": items}).save(
        tmp_path / "index")
    metadata = json.loads((tmp_path / "index" / METADATA).read_text())
    assert "stock TF Serving lacks" in metadata["tf_serving"]
    foreign = graph_ops(tmp_path / "index" / SAVED_MODEL) - CORE_OPS
    assert foreign and all("scann" in op.lower() for op in foreign), sorted(foreign)
