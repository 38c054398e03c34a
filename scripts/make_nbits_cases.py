#!/usr/bin/env python3
"""Cases for `com.microsoft:MatMulNBits` as ONNX Runtime's own weight-only quantizer writes it
(`onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`, QOperator):
a three-layer MLP of seeded random float weights (`x [M, K0] -> MatMul+Add -> Gelu-free Relu ->
... -> [M, N]`) quantized with several block sizes, with and without zero points, one case
per setting, in the ONNX test-data layout with ORT 1.32's outputs of the *quantized* model (so
the reference is ORT's MatMulNBits kernel, not the float model):

- `nbits_b32_sym`: block 32, symmetric (no zero points: the default 8);
- `nbits_b16_zp`: block 16, asymmetric (packed uint8 zero points), K = 40 (the last block of
  each column is padded);
- `nbits_b128_zp_m3`: block 128, asymmetric, three rows of activations;
- `nbits8_b32_zp`: 8-bit weights (`bits=8`), block 32, asymmetric (one uint8 zero point a
  block), K = 40;
- `nbits8_b128_sym_m3`: 8-bit weights, block 128, symmetric (the default 128), three rows;
- `nbits_b32_float_zp`: one `MatMulNBits` node written by hand (the quantizer writes uint8
  zero points only): 4-bit codes, block 32, K = 72, float zero points (one a block, not
  codes) and a bias input, two rows. (ORT's CPU kernel takes float zero points with 4-bit
  weights only.)
- `nbits2_b16_zp`: one node written by hand with 2-bit codes (four a byte, the first in the low
  bits), block 16, K = 72 (the fifth block padded), uint8 zero points four a byte, a bias,
  three rows.
- `nbits_b32_f16`: one node written by hand on float16 activations (float16 scales and bias,
  uint8 zero points), 4-bit codes, block 32, K = 72, two rows.
- `nbits_b16_gidx`: one node written by hand with 4-bit codes, block 16, K = 72, float zero
  points, a bias, three rows and `g_idx` (act-order: each block's rows scattered over K).
  Float zero points because ORT 1.32's CPU kernel drops uint8 ones when `g_idx` is given (its
  reordering dequantizer reads the zero point and keeps the default 8), which the definition
  check below would reject; sinter applies them as the operator's definition says.
  (ORT 1.32 refuses `g_idx` with 8-bit codes, and its 2-bit output with `g_idx` is not the
  definition's either, so 4-bit codes with float zero points are the case ORT computes right.)

    /tmp/venv/bin/python scripts/make_nbits_cases.py tests/data/nbits
    /tmp/venv/bin/python scripts/make_nbits_cases.py /tmp/nbits_bench --bench

`--bench` writes LLM-sized cases instead (kept out of git): four 2048x2048 layers quantized
with blocks of 32 and zero points, at 1 row (one decoded token) and 16 rows, for
`scripts/bench_vs_ort.py`.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper as nh
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

CASES = {
    # name: (block, symmetric, rows, [K0, K1, K2, N], bits)
    "nbits_b32_sym": (32, True, 1, [64, 96, 64, 32], 4),
    "nbits_b16_zp": (16, False, 2, [40, 48, 40, 24], 4),
    "nbits_b128_zp_m3": (128, False, 3, [256, 192, 128, 64], 4),
    "nbits8_b32_zp": (32, False, 2, [40, 64, 48, 24], 8),
    "nbits8_b128_sym_m3": (128, True, 3, [256, 192, 128, 64], 8),
}


def mlp(dims, rows, seed):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = (rng.standard_normal(n) * 0.1).astype(np.float32)
        inits += [nh.from_array(w, f"w{i}"), nh.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"fc{i}"))
        last = i == len(dims) - 2
        out = "y" if last else f"a{i}"
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out if last else f"z{i}"], name=f"bias{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [out], name=f"relu{i}"))
        x = out
    g = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, dims[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, dims[-1]])],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


BENCH = {
    "nbits_2048x4_b32_m1": (32, False, 1, [2048] * 5, 4),
    "nbits_2048x4_b32_m16": (32, False, 16, [2048] * 5, 4),
    "nbits8_2048x4_b32_m1": (32, False, 1, [2048] * 5, 8),
}


def one_node_case(out, name, node, x_type, shapes, inits):
    """Saves a model of the one `MatMulNBits` node `node` (input `x`, output `y` of `x_type`,
    `shapes` their dims) with `inits`, and returns its folder and an ORT session on it."""
    g = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("x", x_type, shapes[0])],
        [helper.make_tensor_value_info("y", x_type, shapes[1])], inits)
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    return d, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def save_data(d, x, y):
    """Writes input `x` and reference output `y` into `d`'s test_data_set_0."""
    for fname, arr, tname in (("input_0.pb", x, "x"), ("output_0.pb", y, "y")):
        with open(os.path.join(d, "test_data_set_0", fname), "wb") as f:
            f.write(nh.from_array(arr, tname).SerializeToString())


def hand_written(out, name, bits, block, rows, float_zp, seed, g_idx=False):
    """One `MatMulNBits` node built here (not by the quantizer): `bits`-bit codes, K = 72,
    N = 40, zero points (float, or codes packed as ORT packs them) and a bias; with `g_idx`,
    act-order blocks (row k of B in block g_idx[k], each block's rows scattered over K, as GPTQ
    writes them). ORT's output is checked against the definition before it is saved as the
    reference."""
    rng = np.random.default_rng(seed)
    k, n = 72, 40
    blocks = -(-k // block)
    per_byte = 8 // bits
    codes = rng.integers(0, 1 << bits, (n, blocks, block)).astype(np.uint8)

    def pack(c):
        c = c.reshape(c.shape[0], -1)
        c = np.pad(c, ((0, 0), (0, -c.shape[1] % per_byte)))
        out = np.zeros((c.shape[0], c.shape[1] // per_byte), np.uint8)
        for i in range(per_byte):
            out |= (c[:, i::per_byte] << (bits * i)).astype(np.uint8)
        return out

    scales = (rng.standard_normal(n * blocks) * 0.05).astype(np.float32)
    if float_zp:
        zp_values = (rng.random(n * blocks) * ((1 << bits) - 1)).astype(np.float32)
        zero_points = zp_values
    else:
        zp_codes = rng.integers(0, 1 << bits, (n, blocks)).astype(np.uint8)
        zp_values = zp_codes.astype(np.float32).reshape(-1)
        zero_points = pack(zp_codes).reshape(-1)
    bias = (rng.standard_normal(n) * 0.1).astype(np.float32)
    groups = np.arange(k) // block
    inits = []
    if g_idx:
        groups = np.empty(k, np.int32)
        groups[rng.permutation(k)] = np.arange(k) // block
        inits.append(nh.from_array(groups, "g_idx"))
    node = helper.make_node(
        "MatMulNBits", ["x", "b", "scales", "zero_points", "g_idx" if g_idx else "", "bias"], ["y"],
        domain="com.microsoft", K=k, N=n, bits=bits, block_size=block)
    d, sess = one_node_case(
        out, name, node, TensorProto.FLOAT, ([rows, k], [rows, n]),
        [nh.from_array(pack(codes).reshape(n, blocks, -1), "b"), nh.from_array(scales, "scales"),
         nh.from_array(zero_points, "zero_points"), nh.from_array(bias, "bias")] + inits)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    # ORT's output against the definition, so that the reference is known to be right.
    # Row j of a column in block groups[j]: its zero point and scale.
    zp_of = zp_values.reshape(n, blocks)[:, groups]
    scale_of = scales.reshape(n, blocks)[:, groups]
    w = (codes.reshape(n, -1)[:, :k].astype(np.float32) - zp_of) * scale_of
    want = x @ w.T + bias
    assert np.abs(y - want).max() < 1e-4, np.abs(y - want).max()
    save_data(d, x, y)
    print(name, y.shape)


def hand_written_f16(out, name, seed):
    """One `MatMulNBits` node on float16 activations: 4-bit codes, block 32, K = 72, N = 40,
    packed uint8 zero points, float16 scales and bias, two rows; ORT's float16 output is
    checked against the definition (in float32, then rounded) before it is saved."""
    rng = np.random.default_rng(seed)
    k, n, block = 72, 40, 32
    blocks = -(-k // block)
    codes = rng.integers(0, 16, (n, blocks * block)).astype(np.uint8)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8).reshape(n, blocks, -1)
    scales = (rng.random((n, blocks)) * 0.05 + 0.01).astype(np.float16)
    zp = rng.integers(0, 16, (n, blocks)).astype(np.uint8)
    zp_padded = np.pad(zp, ((0, 0), (0, blocks % 2)))
    zp_packed = (zp_padded[:, 0::2] | (zp_padded[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
    bias = (rng.standard_normal(n) * 0.1).astype(np.float16)
    node = helper.make_node(
        "MatMulNBits", ["x", "b", "scales", "zero_points", "", "bias"], ["y"],
        domain="com.microsoft", K=k, N=n, bits=4, block_size=block)
    d, sess = one_node_case(
        out, name, node, TensorProto.FLOAT16, ([2, k], [2, n]),
        [nh.from_array(packed, "b"), nh.from_array(scales.reshape(-1), "scales"),
         nh.from_array(zp_packed, "zero_points"), nh.from_array(bias, "bias")])
    x = rng.standard_normal((2, k)).astype(np.float16)
    (y,) = sess.run(None, {"x": x})
    rows = np.arange(k) // block
    w = (codes[:, :k].astype(np.float32) - zp[:, rows]) * scales.astype(np.float32)[:, rows]
    want = x.astype(np.float32) @ w.T + bias.astype(np.float32)
    err = np.abs(y.astype(np.float32) - want).max()
    assert err < 2e-3 * np.abs(want).max(), err
    save_data(d, x, y)
    print(name, y.shape, y.dtype)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/nbits"
    cases = BENCH if "--bench" in sys.argv else CASES
    if "--bench" not in sys.argv:
        hand_written(out, "nbits_b32_float_zp", 4, 32, 2, True, 77)
        hand_written(out, "nbits2_b16_zp", 2, 16, 3, False, 78)
        hand_written(out, "nbits_b16_gidx", 4, 16, 3, True, 79, g_idx=True)
        hand_written_f16(out, "nbits_b32_f16", 81)
    for seed, (name, (block, sym, rows, dims, bits)) in enumerate(cases.items()):
        q = MatMulNBitsQuantizer(mlp(dims, rows, seed), bits=bits, block_size=block, is_symmetric=sym)
        q.process()
        model = q.model.model
        ops = sorted({n.op_type for n in model.graph.node})
        assert "MatMulNBits" in ops, ops
        d = os.path.join(out, name)
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        onnx.save(model, os.path.join(d, "model.onnx"))
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(100 + seed).standard_normal((rows, dims[0])).astype(np.float32)
        (y,) = sess.run(None, {"x": x})
        save_data(d, x, y)
        attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node if n.op_type == "MatMulNBits"]
        print(name, ops, attrs[0], [len(n.input) for n in model.graph.node if n.op_type == "MatMulNBits"])


if __name__ == "__main__":
    main()
