#!/usr/bin/env python3
"""Writes tests/data/bounded_hw: models whose image height and width are symbolic, with ONNX
Runtime's outputs at several sizes, each case checked by one build with bounded dims.

pools: a convolution, then MaxPool (3x3, stride 2, ceil_mode), AveragePool (padded, the pads not
counted), MaxPool with SAME_UPPER padding and a global max pool, on H x W up to 64 x 64 (`--dim
'H<=64' --dim 'W<=64'`), at 64 x 64, 37 x 50 and 21 x 29.

ppocr_det: the data sets of PP-OCRv4's text detector as PaddleOCR
ships it (batch, height and width symbolic), with ONNX Runtime's outputs at three image sizes, for
one build with bounded dims (`--dim p2o.DynamicDimension.0=1 --dim 'p2o.DynamicDimension.1<=320'
--dim 'p2o.DynamicDimension.2<=320'`). The case's model.onnx and test_data_set_0 (the full
320 x 320 image) are links to tests/data/models/ppocr_det_v4's, the same model and image; this
script writes test_data_set_1 and test_data_set_2, crops of that image.

The sizes are multiples of 32, as the detector needs (its feature pyramid halves the image five
times and adds the upsampled levels back): 320 x 320 (the bound), 96 x 160 and 64 x 224. The
inputs are the real text image of the models' own data set (already normalized as PaddleOCR
normalizes) and two crops of it, so that every probability map has text in it.

    python3 scripts/make_bounded_hw.py [SHARED_MODELS_DIR] [OUT_DIR]
        (needs onnx, onnxruntime, numpy; SHARED_MODELS_DIR defaults to ../shared/models)

With `--zoo DIR` it writes benchmark folders instead (outside the repo): DIR/ppocr_det_n160,
_n320 and _n640, the detector with the bundled image tiled to S x S, for
`scripts/bench_bounded.py`.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as oh
from onnx import numpy_helper as nh

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "models")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "tests", "data", "bounded_hw")
SIZES = [(320, 320), (96, 160), (64, 224)]


CROPS = [(0, 0), (96, 64), (160, 32)]


def pools():
    """The pools case: every pool kind of the channels-first and channels-last kernels."""
    rng = np.random.default_rng(7)
    w = nh.from_array((rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32), "w")
    b = nh.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "b")
    nodes = [
        oh.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        oh.make_node("Relu", ["c"], ["r"]),
        oh.make_node("MaxPool", ["r"], ["m1"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        oh.make_node("AveragePool", ["m1"], ["a1"], kernel_shape=[3, 3], strides=[2, 2],
                     pads=[1, 1, 1, 1], count_include_pad=0),
        oh.make_node("MaxPool", ["a1"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                     auto_pad="SAME_UPPER"),
        oh.make_node("GlobalMaxPool", ["m1"], ["g"]),
    ]
    graph = oh.make_graph(
        nodes, "pools", [oh.make_tensor_value_info("x", T.FLOAT, [1, 3, "H", "W"])],
        [oh.make_tensor_value_info("y", T.FLOAT, [1, 16, None, None]),
         oh.make_tensor_value_info("g", T.FLOAT, [1, 16, 1, 1])], [w, b])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    model.ir_version = 8
    case = os.path.join(OUT, "pools")
    os.makedirs(case, exist_ok=True)
    onnx.save(model, os.path.join(case, "model.onnx"))
    sess = ort.InferenceSession(os.path.join(case, "model.onnx"), providers=["CPUExecutionProvider"])
    for k, (h, w_) in enumerate([(64, 64), (37, 50), (21, 29)]):
        x = rng.standard_normal((1, 3, h, w_)).astype(np.float32)
        outs = sess.run(None, {"x": x})
        d = os.path.join(case, f"test_data_set_{k}")
        os.makedirs(d, exist_ok=True)
        onnx.save_tensor(nh.from_array(x, "x"), os.path.join(d, "input_0.pb"))
        for i, (name, y) in enumerate(zip(["y", "g"], outs)):
            onnx.save_tensor(nh.from_array(y, name), os.path.join(d, f"output_{i}.pb"))
        print(f"{d}: {h}x{w_}, outputs {[o.shape for o in outs]}")


def zoo(out):
    """Benchmark folders for scripts/bench_bounded.py: the detector at 160, 320 and 640."""
    here = os.path.join(HERE, "..", "tests", "data", "models", "ppocr_det_v4")
    full = nh.to_array(onnx.load_tensor(os.path.join(here, "test_data_set_0", "input_0.pb")))
    for size in (160, 320, 640):
        d = os.path.join(out, f"ppocr_det_n{size}")
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        link = os.path.join(d, "model.onnx")
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(here, "model.onnx")), link)
        reps = -(-size // full.shape[2])
        x = np.ascontiguousarray(np.tile(full, (1, 1, reps, reps))[:, :, :size, :size])
        onnx.save_tensor(nh.from_array(x, "x"), os.path.join(d, "test_data_set_0", "input_0.pb"))
        print(d)


def main():
    if "--zoo" in sys.argv:
        zoo(sys.argv[sys.argv.index("--zoo") + 1])
        return
    pools()
    src = os.path.join(MODELS, "ppocr_det_v4_dynamic", "model.onnx")
    case = os.path.join(OUT, "ppocr_det")
    os.makedirs(case, exist_ok=True)
    model = onnx.load(src)
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    full = nh.to_array(onnx.load_tensor(
        os.path.join(MODELS, "ppocr_det_v4_dynamic", "test_data_set_0", "input_0.pb")))
    for k, ((h, w), (y0, x0)) in enumerate(zip(SIZES, CROPS)):
        if k == 0:
            continue  # the bundled model's own data set (a link)
        x = np.ascontiguousarray(full[:, :, y0:y0 + h, x0:x0 + w])
        (y,) = sess.run(None, {name_in: x})
        d = os.path.join(case, f"test_data_set_{k}")
        os.makedirs(d, exist_ok=True)
        onnx.save_tensor(nh.from_array(x, name_in), os.path.join(d, "input_0.pb"))
        onnx.save_tensor(nh.from_array(y, name_out), os.path.join(d, "output_0.pb"))
        print(f"{d}: {h}x{w}, output {y.shape}, mean {y.mean():.4f}, above 0.3: {(y > 0.3).mean():.3f}")


if __name__ == "__main__":
    main()
