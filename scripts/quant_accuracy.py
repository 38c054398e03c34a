#!/usr/bin/env python3
"""Accuracy of sinter's `--quantize dynamic` beside ONNX Runtime's `quantize_dynamic`, both
against the float model's reference outputs, on the same inputs.

For each `FLOAT_CASE=ORT_DYNAMIC_CASE` pair (backend-test layout; the ORT case is what
`scripts/make_quant_cases.py` writes: the quantized model with ORT's outputs), prints per output
the cosine similarity with the float reference and top-1 agreement for ORT's quantized model and
for sinter's (`sinter verify --quantize dynamic --cosine 0`, which reports them).

    /tmp/venv/bin/python scripts/quant_accuracy.py \\
        tests/data/models/ppocr_cls=/tmp/quant_cases/ppocr_cls_dynamic ...
"""
import glob
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def load(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 1.0 if na == 0 and nb == 0 else float(a @ b / (na * nb))


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print("| model | data set | output | ORT quantize_dynamic cosine | ORT top-1 | sinter --quantize dynamic cosine | sinter top-1 |")
    print("|---|---|---|---|---|---|---|")
    for pair in sys.argv[1:]:
        float_case, ort_case = pair.split("=")
        out = subprocess.run(["cargo", "run", "--release", "-q", "-p", "sinter", "--", "verify", "--quantize",
                              "dynamic", "--cosine", "0", os.path.abspath(float_case)],
                             cwd=repo, capture_output=True, text=True).stdout
        ours = {}
        for line in out.splitlines():
            m = re.match(r"\s+(test_data_set_\d+): output (\d+).*: cosine ([0-9.]+), top-1 (\w+)", line)
            if m:
                ours[(m.group(1), int(m.group(2)))] = (float(m.group(3)), m.group(4) == "agrees")
        for set_dir in sorted(glob.glob(os.path.join(float_case, "test_data_set_*"))):
            name = os.path.basename(set_dir)
            k = 0
            while os.path.exists(os.path.join(set_dir, f"output_{k}.pb")):
                ref = load(os.path.join(set_dir, f"output_{k}.pb"))
                ort_path = os.path.join(ort_case, name, f"output_{k}.pb")
                if ref.dtype.kind == "f" and os.path.exists(ort_path):
                    q = load(ort_path)
                    ort_cos = cosine(ref, q)
                    ort_top = int(np.argmax(ref)) == int(np.argmax(q))
                    s_cos, s_top = ours.get((name, k), (float("nan"), False))
                    print(f"| {os.path.basename(os.path.normpath(float_case))} | {name} | {k} | {ort_cos:.6f} | "
                          f"{'agrees' if ort_top else 'differs'} | {s_cos:.6f} | {'agrees' if s_top else 'differs'} |")
                k += 1


if __name__ == "__main__":
    main()
