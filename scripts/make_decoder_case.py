#!/usr/bin/env python3
"""A small upsampling decoder for `--quantize dynamic` of transposed convolutions, with ONNX
Runtime's float32 outputs: a 2-D branch (64 -> 32 channels, kernel 4, stride 2, pads 1, bias,
Relu; then 32 -> 16, kernel 2, stride 2) and a 1-D branch (48 -> 24, kernel 4, stride 2,
pads 1), plus one whose output_padding adds a position no tap reaches (it stays float: the
int8 form's Col2Im cannot make that position).
Random weights and input (seeded).

    /tmp/venv/bin/python scripts/make_decoder_case.py tests/data/conv_transpose_decoder
"""
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper as nh


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(5)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    inits = {
        "w1": f32(64, 32, 4, 4) * 0.1, "b1": f32(32) * 0.1,
        "w2": f32(32, 16, 2, 2) * 0.2, "b2": f32(16) * 0.1,
        "w3": f32(48, 24, 4) * 0.1,
        "w4": f32(48, 16, 3) * 0.1,
    }
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w1", "b1"], ["t1"], "up1", kernel_shape=[4, 4],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["t1"], ["r1"]),
        helper.make_node("ConvTranspose", ["r1", "w2", "b2"], ["image"], "up2", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("ConvTranspose", ["seq", "w3"], ["signal"], "up1d", kernel_shape=[4],
                         strides=[2], pads=[1, 1]),
        helper.make_node("ConvTranspose", ["seq", "w4"], ["padded"], "up1d_padded", kernel_shape=[3],
                         strides=[2], output_padding=[1]),
    ]
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64, 12, 12]),
         helper.make_tensor_value_info("seq", onnx.TensorProto.FLOAT, [1, 48, 20])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
         for n in ("image", "signal", "padded")],
        [nh.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "test_data_set_0"))
    onnx.save(model, os.path.join(out, "model.onnx"))
    feed = {"x": f32(1, 64, 12, 12), "seq": f32(1, 48, 20)}
    sess = ort.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"])
    for k, (name, a) in enumerate(feed.items()):
        onnx.save_tensor(nh.from_array(a, name), os.path.join(out, "test_data_set_0", f"input_{k}.pb"))
    for k, (o, y) in enumerate(zip(sess.get_outputs(), sess.run(None, feed))):
        onnx.save_tensor(nh.from_array(y, o.name), os.path.join(out, "test_data_set_0", f"output_{k}.pb"))


if __name__ == "__main__":
    main()
