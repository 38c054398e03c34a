#!/usr/bin/env python3
"""The custom-op case: a small classifier whose graph holds two ops of a made-up domain,
`com.example`, that no runtime knows:

    x [1, 16] -> MatMul + Add -> com.example:ScaledTanh(alpha, beta) -> Softmax -> probs [1, 8]
                                                                 probs -> com.example:ArgMaxRows -> label [1] (int64)

`ScaledTanh` is `alpha * tanh(beta * x)` (LeCun's scaled tanh) and `ArgMaxRows` the index of
each row's largest value. sinter runs them with user code (`examples/custom_op.rs`,
`tests/custom_op.rs`). The reference outputs come from ONNX Runtime running the same graph
with each custom op replaced by its standard-ONNX equivalent (Mul, Tanh, Mul; ArgMax), so the
user's Rust is checked against ORT, not against itself.

    /tmp/venv/bin/python scripts/make_custom_op_case.py tests/data/custom_op
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper as nh

ALPHA, BETA = 1.7159, 0.6667


def graph(custom: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w = nh.from_array(rng.standard_normal((16, 8)).astype(np.float32) * 0.5, "w")
    b = nh.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="fc"),
        helper.make_node("Add", ["xw", "b"], ["logits"], name="fc_bias"),
    ]
    inits = [w, b]
    if custom:
        nodes.append(
            helper.make_node(
                "ScaledTanh", ["logits"], ["act"], name="act", domain="com.example",
                alpha=ALPHA, beta=BETA,
            )
        )
    else:
        inits += [nh.from_array(np.float32(BETA), "beta"), nh.from_array(np.float32(ALPHA), "alpha")]
        nodes += [
            helper.make_node("Mul", ["logits", "beta"], ["scaled"], name="act_in"),
            helper.make_node("Tanh", ["scaled"], ["t"], name="act_tanh"),
            helper.make_node("Mul", ["t", "alpha"], ["act"], name="act_out"),
        ]
    nodes.append(helper.make_node("Softmax", ["act"], ["probs"], name="softmax", axis=1))
    if custom:
        nodes.append(
            helper.make_node("ArgMaxRows", ["probs"], ["label"], name="label", domain="com.example")
        )
    else:
        nodes.append(helper.make_node("ArgMax", ["probs"], ["label"], name="label", axis=1, keepdims=0))
    g = helper.make_graph(
        nodes,
        "custom_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [1]),
        ],
        inits,
    )
    opsets = [helper.make_opsetid("", 17)]
    if custom:
        opsets.append(helper.make_opsetid("com.example", 1))
    model = helper.make_model(g, opset_imports=opsets, producer_name="sinter make_custom_op_case")
    model.ir_version = 8
    return model


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/custom_op"
    os.makedirs(out, exist_ok=True)
    onnx.save(graph(custom=True), os.path.join(out, "model.onnx"))
    reference = ort.InferenceSession(graph(custom=False).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    for k in range(3):
        x = rng.standard_normal((1, 16)).astype(np.float32)
        probs, label = reference.run(None, {"x": x})
        d = os.path.join(out, f"test_data_set_{k}")
        os.makedirs(d, exist_ok=True)
        for name, (value, tensor_name) in {
            "input_0.pb": (x, "x"),
            "output_0.pb": (probs, "probs"),
            "output_1.pb": (label, "label"),
        }.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(nh.from_array(value, tensor_name).SerializeToString())
    print(f"wrote {out}: model.onnx with com.example:ScaledTanh and ArgMaxRows, 3 data sets")


if __name__ == "__main__":
    main()
