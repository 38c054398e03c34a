#!/usr/bin/env python3
"""Calibration inputs for `--quantize static`, made from a case's own input by augmentation.

    python scripts/make_calibration_sets.py CASE_DIR OUT_DIR [--sets N] [--seed S]

Reads CASE_DIR/test_data_set_0/input_K.pb and writes OUT_DIR/test_data_set_J/input_K.pb for
J < N. Float inputs of rank 4 (images, NCHW) are flipped left-right, shifted by a few pixels,
rescaled in contrast and given Gaussian noise; other float inputs are rescaled and given noise;
integer inputs holding more than 0/1 values (token ids) have their positions shuffled along the
last axis; masks, type ids and booleans are copied. The case's own input is never among the sets, so that a
model calibrated on them and checked on the case is checked on data it was not calibrated on.
"""
import argparse
import pathlib

import numpy as np
import onnx
from onnx import numpy_helper


def augment(x, rng):
    if x.dtype.kind in "iu" and x.size and x.max() > 1:
        return np.take(x, rng.permutation(x.shape[-1]), axis=-1)
    if x.dtype.kind != "f":
        return x.copy()
    y = x.astype(np.float64)
    std = float(y.std()) or 1.0
    if y.ndim == 4 and y.shape[-1] > 4 and y.shape[-2] > 4:
        if rng.random() < 0.5:
            y = y[..., ::-1]
        dy, dx = rng.integers(-3, 4, size=2)
        y = np.roll(y, (int(dy), int(dx)), axis=(-2, -1))
    mean = y.mean()
    y = (y - mean) * rng.uniform(0.8, 1.2) + mean
    y = y + rng.normal(0.0, 0.1 * std, size=y.shape)
    return y.astype(x.dtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case")
    ap.add_argument("out")
    ap.add_argument("--sets", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    src = pathlib.Path(args.case) / "test_data_set_0"
    inputs = sorted(src.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    tensors = []
    for p in inputs:
        t = onnx.TensorProto()
        t.ParseFromString(p.read_bytes())
        tensors.append((t.name, numpy_helper.to_array(t)))
    for j in range(args.sets):
        d = pathlib.Path(args.out) / f"test_data_set_{j}"
        d.mkdir(parents=True, exist_ok=True)
        for k, (name, x) in enumerate(tensors):
            t = numpy_helper.from_array(augment(x, rng), name)
            (d / f"input_{k}.pb").write_bytes(t.SerializeToString())
    print(f"wrote {args.sets} sets of {len(tensors)} input(s) to {args.out}")


if __name__ == "__main__":
    main()
