#!/usr/bin/env python3
"""Static quantization beside ONNX Runtime's: calibration data, ORT's QDQ model, sinter's table.

    python scripts/make_static_cases.py OUT CASE... [--sets N]

For each float case folder (model.onnx + test_data_set_0 with ORT's float outputs):
  OUT/NAME_calib/test_data_set_J/   N calibration input sets, augmented from the case's input
                                    (scripts/make_calibration_sets.py; never the input itself)
  OUT/NAME_ort_qdq/                 ORT's quantize_static of the model on the same sets (QDQ,
                                    uint8 activations, int8 weights per channel, MinMax), with
                                    the case's input and the float outputs as test_data_set_0
  OUT/NAME.tsv                      sinter calibrate's table on the same sets (MinMax)
and prints, per output, the cosine similarity of ORT's static model with the float outputs.
Then compare sinter's static quantization with ORT's, same machine, same run:

    python scripts/bench_vs_ort.py CASE --sinter-arg=--quantize=static \
        --sinter-arg=--calibration-table=OUT/NAME.tsv --ort-case-suffix=... (see BENCHMARKS.md)
"""
import argparse
import importlib.util
import os
import pathlib
import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)

HERE = pathlib.Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("mcs", HERE / "make_calibration_sets.py")
mcs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mcs)


def read(path):
    t = onnx.TensorProto()
    t.ParseFromString(pathlib.Path(path).read_bytes())
    return t.name, numpy_helper.to_array(t)


class Reader(CalibrationDataReader):
    def __init__(self, names, sets):
        self.items = iter([{n: x for n, x in zip(names, s)} for s in sets])

    def get_next(self):
        return next(self.items, None)


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--sets", type=int, default=8)
    ap.add_argument("--sinter", default="target/release/sinter")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for case in map(pathlib.Path, args.cases):
        name = case.name
        calib = out / f"{name}_calib"
        subprocess.run([os.sys.executable, str(HERE / "make_calibration_sets.py"),
                        str(case), str(calib), "--sets", str(args.sets)], check=True)
        sess = ort.InferenceSession(str(case / "model.onnx"), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        sets = []
        for d in sorted(calib.glob("test_data_set_*")):
            sets.append([read(d / f"input_{k}.pb")[1] for k in range(len(names))])
        qdq = out / f"{name}_ort_qdq"
        qdq.mkdir(exist_ok=True)
        quantize_static(str(case / "model.onnx"), str(qdq / "model.onnx"), Reader(names, sets),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        shutil.copytree(case / "test_data_set_0", qdq / "test_data_set_0", dirs_exist_ok=True)
        feeds = {n: read(case / "test_data_set_0" / f"input_{k}.pb")[1] for k, n in enumerate(names)}
        got = ort.InferenceSession(str(qdq / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
        for k, g in enumerate(got):
            want = read(case / "test_data_set_0" / f"output_{k}.pb")[1]
            if want.dtype.kind == "f":
                print(f"{name}: ORT static QDQ output {k}: cosine {cosine(g, want):.6f}, "
                      f"top-1 {'agrees' if g.ravel().argmax() == want.ravel().argmax() else 'differs'}")
        subprocess.run([args.sinter, "calibrate", str(case / "model.onnx"), "--data", str(calib),
                        "-o", str(out / f"{name}.tsv")], check=True)


if __name__ == "__main__":
    main()
