#!/usr/bin/env python3
"""Writes torchvision CNNs exported with a symbolic batch dim `N` (RANDOM initialisation, no
download), one case folder per model and batch size, all sharing one model file:
`OUT_DIR/NAME_nB/model.onnx` and `test_data_set_0` with an input of batch B and ONNX Runtime's
outputs. `sinter bench --dim 'N<=8' OUT_DIR/NAME_nB` builds the bounded model once per case
and runs it at B (BENCHMARKS.md, "Bounded dims"); `--dim N=8` gives the fixed build to compare.

    /tmp/venv/bin/python scripts/make_bounded_zoo.py [OUT_DIR] [--models resnet18,...]

OUT_DIR defaults to /tmp/bounded_zoo; keep it out of the repository. Needs torch, torchvision,
onnx, onnxruntime and numpy. torch.manual_seed(0), eval mode, torch.onnx.export at opset 17
(TorchScript exporter) with dynamic_axes {input: {0: "N"}, output: {0: "N"}}.
"""
import argparse, os, shutil

import numpy as np, onnx, onnxruntime as ort, torch, torchvision
from onnx import numpy_helper as nh

ap = argparse.ArgumentParser()
ap.add_argument("out", nargs="?", default="/tmp/bounded_zoo")
ap.add_argument("--models", default="resnet18,mobilenet_v3_small")
ap.add_argument("--sizes", default="1,4,8")
args = ap.parse_args()
torch.manual_seed(0)
for name in args.models.split(","):
    model = getattr(torchvision.models, name)(weights=None).eval()
    base = os.path.join(args.out, name)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, "model.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), path, opset_version=17,
                      input_names=["input"], output_names=["output"], dynamo=False,
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b in [int(v) for v in args.sizes.split(",")]:
        case = os.path.join(args.out, f"{name}_n{b}")
        os.makedirs(os.path.join(case, "test_data_set_0"), exist_ok=True)
        shutil.copyfile(path, os.path.join(case, "model.onnx"))
        x = np.random.default_rng(b).standard_normal((b, 3, 224, 224)).astype(np.float32)
        y = sess.run(None, {"input": x})[0]
        onnx.save_tensor(nh.from_array(x, "input"), os.path.join(case, "test_data_set_0", "input_0.pb"))
        onnx.save_tensor(nh.from_array(y, "output"), os.path.join(case, "test_data_set_0", "output_0.pb"))
        print(case, x.shape, y.shape)
