"""What stock TensorFlow Serving needs of an exported index: core ops only, warm-up requests."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfrs_kit.index._export import SAVED_MODEL
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
