#!/usr/bin/env python3
"""Writes tests/data/keras_cnn: a small Keras CNN exported by tf2onnx, the way TensorFlow users
bring models to ONNX Runtime. The input is NHWC, as Keras has it ([1, 32, 32, 3]), so tf2onnx
wraps the convolutions in Transpose pairs that the compiler's passes should cancel. Layers:
Conv2D with ReLU, DepthwiseConv2D, BatchNormalization, ReLU6, MaxPooling2D, a strided Conv2D,
a residual Add, GlobalAveragePooling2D and Dense with softmax; seeded random weights (batch
norm statistics included, so the folded affine is not the identity). ONNX Runtime's output of
the exported model is the reference.

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf2onnx onnxruntime
    /tmp/tfvenv/bin/python scripts/make_keras_cnn.py [OUT_DIR]      (default: tests/data)
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from onnx import numpy_helper as nh

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def model():
    tf.keras.utils.set_random_seed(2026)
    layers = tf.keras.layers
    x = tf.keras.Input((32, 32, 3), batch_size=1, name="image")
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    skip = y
    y = layers.DepthwiseConv2D(3, padding="same")(y)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU(6.0)(y)
    y = layers.Add()([y, skip])
    y = layers.MaxPooling2D(2)(y)
    y = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(10, activation="softmax", name="probs")(y)
    m = tf.keras.Model(x, y)
    # Batch-norm statistics away from (0, 1), so that folding them is checked.
    rng = np.random.default_rng(7)
    for layer in m.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                rng.normal(0, 0.1, beta.shape).astype(np.float32),
                rng.normal(0, 0.2, mean.shape).astype(np.float32),
                rng.uniform(0.5, 2.0, var.shape).astype(np.float32),
            ])
    return m


def main():
    m = model()
    spec = (tf.TensorSpec((1, 32, 32, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(m, input_signature=spec, opset=17)
    d = os.path.join(OUT, "keras_cnn")
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    onnx.save(proto, os.path.join(d, "model.onnx"))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).random((1, 32, 32, 3)).astype(np.float32)
    name_in = sess.get_inputs()[0].name
    (y,) = sess.run(None, {name_in: x})
    keras_y = m(x).numpy()
    assert np.abs(y - keras_y).max() < 1e-5, np.abs(y - keras_y).max()
    onnx.save_tensor(nh.from_array(x, name_in), os.path.join(d, "test_data_set_0", "input_0.pb"))
    onnx.save_tensor(nh.from_array(y, sess.get_outputs()[0].name),
                     os.path.join(d, "test_data_set_0", "output_0.pb"))
    ops = sorted({n.op_type for n in proto.graph.node})
    print(d, ops, "transposes:", sum(n.op_type == "Transpose" for n in proto.graph.node))


if __name__ == "__main__":
    main()
