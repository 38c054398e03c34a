#!/usr/bin/env python3
"""Writes two tiny float LSTM models in the ONNX backend test layout (model.onnx,
test_data_set_0/input_K.pb, output_K.pb, ONNX Runtime's CPU outputs, one thread), the float
sources of the `tiny_lstm*` int8 cases that scripts/make_quant_cases.py makes with ONNX
Runtime's quantize_dynamic (com.microsoft DynamicQuantizeLSTM):

- `tests/data/tiny_lstm`: one bidirectional LSTM (seq 5, batch 3, input 8, hidden 12) with a
  bias, `sequence_lens` [5, 3, 4] and initial states as graph inputs; outputs Y, Y_h, Y_c.
- `tests/data/tiny_lstm_stack`: a forward LSTM (input 10, hidden 16, bias, `sequence_lens`
  [6, 4]) whose Y (also an output) feeds a reverse LSTM (hidden 8, bias, peepholes, the same
  `sequence_lens`) that writes only Y_h and Y_c (so ONNX Runtime reads its hidden state back
  from Y_h, where finished rows keep their last value).

    /tmp/venv/bin/python scripts/make_tiny_lstm.py [DATA_DIR]     (default tests/data)

needs onnx, onnxruntime and numpy. Deterministic: numpy default_rng seed 20240613.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "data")
rng = np.random.default_rng(20240613)


def weights(*shape, scale=0.4):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def write(name, nodes, inits, feeds, outputs):
    """Writes case `name`: `inits` (name -> array) become initializers, `feeds` (name -> array)
    graph inputs in order, `outputs` the graph output names."""
    types = {np.dtype(np.float32): T.FLOAT, np.dtype(np.int32): T.INT32}
    graph = h.make_graph(
        nodes,
        name,
        [h.make_tensor_value_info(k, types[v.dtype], list(v.shape)) for k, v in feeds.items()],
        [h.make_empty_tensor_value_info(k) for k in outputs],
        [nh.from_array(v, k) for k, v in inits.items()],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 14)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(
        next(v for v in model.graph.value_info if v.name == k) for k in outputs
    )
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    d = os.path.join(OUT, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        os.path.join(d, "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    results = sess.run(outputs, feeds)
    for i, (k, v) in enumerate(feeds.items()):
        onnx.save_tensor(nh.from_array(v, k), os.path.join(d, "test_data_set_0", f"input_{i}.pb"))
    for i, (k, v) in enumerate(zip(outputs, results)):
        onnx.save_tensor(nh.from_array(v, k), os.path.join(d, "test_data_set_0", f"output_{i}.pb"))


def tiny_lstm():
    seq, batch, inp, hid, dirs = 5, 3, 8, 12, 2
    inits = {
        "W": weights(dirs, 4 * hid, inp),
        "R": weights(dirs, 4 * hid, hid),
        "B": weights(dirs, 8 * hid, scale=0.2),
    }
    feeds = {
        "X": weights(seq, batch, inp, scale=1.0),
        "sequence_lens": np.array([5, 3, 4], np.int32),
        "initial_h": weights(dirs, batch, hid, scale=0.5),
        "initial_c": weights(dirs, batch, hid, scale=0.5),
    }
    node = h.make_node(
        "LSTM",
        ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c"],
        ["Y", "Y_h", "Y_c"],
        name="lstm",
        direction="bidirectional",
        hidden_size=hid,
    )
    write("tiny_lstm", [node], inits, feeds, ["Y", "Y_h", "Y_c"])


def tiny_lstm_stack():
    seq, batch, inp, hid1, hid2 = 6, 2, 10, 16, 8
    inits = {
        "W1": weights(1, 4 * hid1, inp),
        "R1": weights(1, 4 * hid1, hid1),
        "B1": weights(1, 8 * hid1, scale=0.2),
        "W2": weights(1, 4 * hid2, hid1),
        "R2": weights(1, 4 * hid2, hid2),
        "B2": weights(1, 8 * hid2, scale=0.2),
        "P2": weights(1, 3 * hid2, scale=0.3),
        "axes": np.array([1], np.int64),
    }
    feeds = {
        "X": weights(seq, batch, inp, scale=1.0),
        "sequence_lens": np.array([6, 4], np.int32),
    }
    nodes = [
        h.make_node(
            "LSTM",
            ["X", "W1", "R1", "B1", "sequence_lens"],
            ["Y1"],
            name="lstm1",
            hidden_size=hid1,
        ),
        h.make_node("Squeeze", ["Y1", "axes"], ["X2"], name="squeeze"),
        h.make_node(
            "LSTM",
            ["X2", "W2", "R2", "B2", "sequence_lens", "", "", "P2"],
            ["", "Y_h2", "Y_c2"],
            name="lstm2",
            direction="reverse",
            hidden_size=hid2,
        ),
    ]
    write("tiny_lstm_stack", nodes, inits, feeds, ["Y1", "Y_h2", "Y_c2"])


if __name__ == "__main__":
    tiny_lstm()
    tiny_lstm_stack()
