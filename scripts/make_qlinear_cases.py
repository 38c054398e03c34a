#!/usr/bin/env python3
"""Writes tests/data/qlinear_ops: models in the ONNX backend test layout (model.onnx,
test_data_set_0/input_K.pb, output_K.pb) using the com.microsoft quantized ops that ONNX
Runtime's quantizer emits in the QOperator format (QLinearAdd, QLinearMul, QLinearSigmoid,
QLinearLeakyRelu, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat,
QLinearSoftmax, QLinearWhere), with ONNX Runtime's CPU outputs as the reference.
compiler/tests/verify_cli.rs checks every case with `sinter verify`; integer outputs must
match exactly.

The cases cover uint8 and int8, numpy broadcasting in each of the three ways ONNX Runtime's
broadcaster classifies it (A repeats along the innermost span, B does, neither), odd lengths
(1, 15, 17, 1000), scales and zero points as constants (initializers: the compiler builds
the lookup tables) and as graph inputs (the generated code builds them at run time), omitted
optional zero points, both pool layouts (channels_last), and two small multi-node models.

    python3 scripts/make_qlinear_cases.py [OUT_DIR]     (needs onnx, onnxruntime, numpy)
"""
import os, shutil, sys

import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "qlinear_ops")
rng = np.random.default_rng(20240611)
OPSETS = [h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]
TYPES = {np.uint8: T.UINT8, np.int8: T.INT8, np.float32: T.FLOAT, np.bool_: T.BOOL}


def ms(op, inputs, outputs, **attrs):
    return h.make_node(op, inputs, outputs, domain="com.microsoft", name=outputs[0], **attrs)


def data(dt, shape):
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dt)


def scale(lo=-5.0, hi=-1.0):
    return np.float32(np.exp(rng.uniform(lo, hi)))


def zero(dt):
    info = np.iinfo(dt)
    return dt(rng.integers(info.min // 2, info.max // 2 + 1) if dt == np.int8 else rng.integers(64, 192))


def case(name, nodes, inits, feeds, outputs):
    """Writes case `name`: `inits` become initializers, `feeds` graph inputs (in order),
    `outputs` is a list of (name, numpy type) graph outputs."""
    g = h.make_graph(
        nodes, name,
        [h.make_tensor_value_info(k, TYPES[v.dtype.type], list(v.shape)) for k, v in feeds.items()],
        [h.make_tensor_value_info(k, TYPES[t], None) for k, t in outputs],
        [nh.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=OPSETS)
    m.ir_version = 9
    d = os.path.join(OUT, name)
    os.makedirs(d + "/test_data_set_0", exist_ok=True)
    onnx.save(m, d + "/model.onnx")
    s = ort.InferenceSession(d + "/model.onnx", providers=["CPUExecutionProvider"])
    outs = s.run(None, feeds)
    for i, (k, v) in enumerate(feeds.items()):
        onnx.save_tensor(nh.from_array(v, k), f"{d}/test_data_set_0/input_{i}.pb")
    for i, (k, _) in enumerate(outputs):
        onnx.save_tensor(nh.from_array(outs[i], k), f"{d}/test_data_set_0/output_{i}.pb")


def qparams(dt, prefix, consts, as_inputs, names, omit_zero=()):
    """Scale and zero point per name in `names`: into `consts` (initializers), or into
    `as_inputs` (graph inputs) for the names listed there; returns the input names."""
    out = []
    for n in names:
        s, z = np.array(scale(), np.float32), np.array(zero(dt), dt)
        target = as_inputs if n in as_inputs.get("__names__", ()) else consts
        target[f"{prefix}{n}_scale"] = s
        out.append(f"{prefix}{n}_scale")
        if n in omit_zero:
            out.append("")
        else:
            target[f"{prefix}{n}_zero"] = z
            out.append(f"{prefix}{n}_zero")
    return out


def binary(name, op, dt, a_shape, b_shape, runtime=(), omit_zero=()):
    """QLinearAdd / QLinearMul of a and b; `runtime` lists the parameters (a, b, c) given as
    graph inputs, `omit_zero` the zero points left out."""
    consts, feeds = {}, {"a": data(dt, a_shape), "b": data(dt, b_shape), "__names__": runtime}
    pa = qparams(dt, "", consts, feeds, ["a"], omit_zero)
    pb = qparams(dt, "", consts, feeds, ["b"], omit_zero)
    pc = qparams(dt, "", consts, feeds, ["c"], omit_zero)
    del feeds["__names__"]
    node = ms(op, ["a", *pa, "b", *pb, *pc], ["y"])
    while node.input and node.input[-1] == "":
        node.input.pop()
    case(name, [node], consts, feeds, [("y", dt)])


def unary(name, op, dt, shape, runtime=False, omit_zero=(), x=None, **attrs):
    consts, feeds = {}, {"x": data(dt, shape) if x is None else x,
                         "__names__": ("x", "y") if runtime else ()}
    px = qparams(dt, "", consts, feeds, ["x"], omit_zero)
    py = qparams(dt, "", consts, feeds, ["y"], omit_zero)
    del feeds["__names__"]
    if op == "QLinearSigmoid":
        # The output of a sigmoid lies in [0, 1].
        (consts if "y_scale" in consts else feeds)["y_scale"] = np.array(1 / 256 if dt == np.uint8 else 1 / 255, np.float32)
        if "y_zero" in consts or "y_zero" in feeds:
            (consts if "y_zero" in consts else feeds)["y_zero"] = np.array(0 if dt == np.uint8 else -128, dt)
    # ONNX Runtime reads the fifth input slot even when it is empty: keep "" there.
    node = ms(op, ["x", *px, *py], ["y"], **attrs)
    case(name, [node], consts, feeds, [("y", dt)])


def pool(name, op, dt, shape, runtime=False, **attrs):
    consts, feeds = {}, {"x": data(dt, shape), "__names__": ("x", "y") if runtime else ()}
    px = qparams(dt, "", consts, feeds, ["x"])
    py = qparams(dt, "", consts, feeds, ["y"])
    del feeds["__names__"]
    # Keep the output scale near the input's so the averages do not all saturate.
    target = consts if "y_scale" in consts else feeds
    xs = consts["x_scale"] if "x_scale" in consts else feeds["x_scale"]
    target["y_scale"] = np.array(xs * np.float32(rng.uniform(0.6, 1.5)), np.float32)
    case(name, [ms(op, ["x", *px, *py], ["y"], **attrs)], consts, feeds, [("y", dt)])


def softmax(name, dt, shape, opset, axis=None, runtime=False):
    consts, feeds = {}, {"x": data(dt, shape)}
    target = feeds if runtime else consts
    target["x_scale"] = np.array(scale(-4, -1), np.float32)
    consts["x_zero"] = np.array(zero(dt), dt)
    consts["y_scale"] = np.array(1 / 256, np.float32)
    consts["y_zero"] = np.array(0 if dt == np.uint8 else -128, dt)
    attrs = {"opset": opset} if axis is None else {"opset": opset, "axis": axis}
    node = ms("QLinearSoftmax", ["x", "x_scale", "x_zero", "y_scale", "y_zero"], ["y"], **attrs)
    case(name, [node], consts, feeds, [("y", dt)])


def concat(name, dt, shapes, axis, runtime=(), same_as_y=()):
    consts, feeds = {}, {}
    consts["y_scale"], consts["y_zero"] = np.array(scale(), np.float32), np.array(zero(dt), dt)
    ins = ["y_scale", "y_zero"]
    for k, s in enumerate(shapes):
        feeds[f"x{k}"] = data(dt, s)
        target = feeds if k in runtime else consts
        if k in same_as_y:
            target[f"x{k}_scale"], target[f"x{k}_zero"] = consts["y_scale"].copy(), consts["y_zero"].copy()
        else:
            target[f"x{k}_scale"] = np.array(scale(), np.float32)
            target[f"x{k}_zero"] = np.array(zero(dt), dt)
        ins += [f"x{k}", f"x{k}_scale", f"x{k}_zero"]
    case(name, [ms("QLinearConcat", ins, ["y"], axis=axis)], consts, feeds, [("y", dt)])


def where(name, dt, c_shape, x_shape, y_shape, runtime=False, x_like_z=False):
    consts = {}
    feeds = {"c": rng.random(c_shape) < 0.5, "x": data(dt, x_shape), "y": data(dt, y_shape)}
    target = feeds if runtime else consts
    for n in ("x", "y", "z"):
        target[f"{n}_scale"] = np.array(scale(), np.float32)
        target[f"{n}_zero"] = np.array(zero(dt), dt)
    if x_like_z:
        target["x_scale"], target["x_zero"] = target["z_scale"].copy(), target["z_zero"].copy()
    ins = ["c", "x", "x_scale", "x_zero", "y", "y_scale", "y_zero", "z_scale", "z_zero"]
    case(name, [ms("QLinearWhere", ins, ["z"])], consts, feeds, [("z", dt)])


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    u8, s8 = np.uint8, np.int8
    # QLinearAdd: equal shapes (neither operand repeats), odd lengths.
    for n in (1, 15, 17, 1000):
        binary(f"add_u8_len{n}", "QLinearAdd", u8, [n], [n])
    binary("add_s8_len17", "QLinearAdd", s8, [17], [17])
    # B repeats (a row broadcast, a scalar), A repeats (a column, a 1-element A, A against a
    # scalar B when its last axis is 1), both broadcast.
    binary("add_s8_row", "QLinearAdd", s8, [3, 17], [17])
    binary("add_u8_scalar_b", "QLinearAdd", u8, [15], [])
    binary("add_s8_scalar_a", "QLinearAdd", s8, [], [15])
    binary("add_u8_column_a", "QLinearAdd", u8, [5, 1], [5, 17])
    binary("add_s8_one_a", "QLinearAdd", s8, [1], [1000])
    binary("add_u8_last1_vs_scalar", "QLinearAdd", u8, [4, 1], [])
    binary("add_u8_grid", "QLinearAdd", u8, [64, 1], [1, 64])
    binary("add_s8_grid", "QLinearAdd", s8, [1, 64], [64, 1])
    binary("add_s8_mixed", "QLinearAdd", s8, [2, 3, 1], [2, 1, 5])
    # Parameters at run time; zero points omitted.
    binary("add_u8_runtime_params", "QLinearAdd", u8, [2, 3, 5], [2, 1, 5], runtime=("a", "b", "c"))
    binary("add_u8_no_c_zero_point", "QLinearAdd", u8, [15], [15], omit_zero=("c",))
    # QLinearMul.
    for n in (1, 17, 1000):
        binary(f"mul_s8_len{n}", "QLinearMul", s8, [n], [n])
    binary("mul_u8_len15", "QLinearMul", u8, [15], [15])
    binary("mul_u8_grid", "QLinearMul", u8, [64, 1], [1, 64])
    binary("mul_s8_scalar_b", "QLinearMul", s8, [3, 5], [])
    binary("mul_u8_runtime_params", "QLinearMul", u8, [4, 17], [17], runtime=("a", "b", "c"))
    # QLinearSigmoid and QLinearLeakyRelu over every byte, and odd lengths.
    every = np.arange(256).astype(np.uint8)
    for dt in (u8, s8):
        t = "u8" if dt == u8 else "s8"
        unary(f"sigmoid_{t}_every_byte", "QLinearSigmoid", dt, [256], x=every.view(dt))
        unary(f"leaky_relu_{t}_every_byte", "QLinearLeakyRelu", dt, [256], x=every.view(dt), alpha=0.1)
    unary("sigmoid_u8_len1000", "QLinearSigmoid", u8, [4, 250])
    unary("sigmoid_s8_runtime_params", "QLinearSigmoid", s8, [17], runtime=True)
    unary("leaky_relu_u8_runtime_params", "QLinearLeakyRelu", u8, [3, 5], runtime=True, alpha=0.2)
    unary("leaky_relu_s8_default_alpha_no_zero", "QLinearLeakyRelu", s8, [15], omit_zero=("x", "y"))
    # QLinearGlobalAveragePool, both layouts.
    pool("gap_u8_nchw", "QLinearGlobalAveragePool", u8, [2, 17, 5, 7])
    pool("gap_s8_nhwc", "QLinearGlobalAveragePool", s8, [2, 4, 5, 67], channels_last=1)
    pool("gap_u8_rank3_len1000", "QLinearGlobalAveragePool", u8, [1, 1, 1000])
    pool("gap_s8_nhwc_one_channel", "QLinearGlobalAveragePool", s8, [1, 3, 5, 1], channels_last=1)
    pool("gap_u8_runtime_params", "QLinearGlobalAveragePool", u8, [1, 3, 4, 4], runtime=True)
    # QLinearAveragePool.
    pool("avgpool_u8_2d_pads", "QLinearAveragePool", u8, [1, 3, 7, 8],
         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    pool("avgpool_s8_2d_include_pad_nhwc", "QLinearAveragePool", s8, [2, 6, 5, 3],
         kernel_shape=[2, 3], strides=[1, 2], pads=[1, 0, 0, 1], count_include_pad=1, channels_last=1)
    pool("avgpool_u8_1d", "QLinearAveragePool", u8, [2, 3, 17], kernel_shape=[4], strides=[3])
    pool("avgpool_s8_3d", "QLinearAveragePool", s8, [1, 2, 4, 5, 6], kernel_shape=[2, 2, 3], strides=[2, 1, 2])
    pool("avgpool_u8_ceil", "QLinearAveragePool", u8, [1, 2, 7, 7], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    pool("avgpool_s8_same_upper", "QLinearAveragePool", s8, [1, 2, 6, 5], kernel_shape=[3, 2], auto_pad="SAME_UPPER")
    pool("avgpool_u8_whole_image", "QLinearAveragePool", u8, [2, 3, 5, 5], kernel_shape=[5, 5])
    pool("avgpool_s8_runtime_params", "QLinearAveragePool", s8, [1, 2, 6, 6], runtime=True,
         kernel_shape=[2, 2], strides=[2, 2])
    # QLinearConcat: one input with Y's own parameters (a copy), one at run time.
    concat("concat_u8_axis1", u8, [[2, 3, 4], [2, 1, 4], [2, 5, 4]], 1, same_as_y=(1,))
    concat("concat_s8_last_axis_runtime", s8, [[3, 7], [3, 1], [3, 17]], -1, runtime=(2,))
    # QLinearSoftmax: opset 13 over the last and a middle axis, opset 12 flattening, a
    # length-1 axis (an infinite quotient), and a run-time input scale.
    softmax("softmax_u8_last_axis", u8, [3, 17], 13)
    softmax("softmax_s8_middle_axis", s8, [2, 15, 3], 13, axis=1)
    softmax("softmax_u8_opset12_flatten", u8, [2, 3, 5], 12, axis=1)
    softmax("softmax_s8_opset12_default_axis", s8, [4, 1000 // 4], 12)
    softmax("softmax_u8_axis_of_one", u8, [5, 1], 13)
    softmax("softmax_s8_runtime_scale", s8, [2, 17], 13, runtime=True)
    # QLinearWhere.
    where("where_u8_broadcast", u8, [3, 1], [3, 4], [4])
    where("where_s8_runtime_params", s8, [17], [17], [1], runtime=True)
    where("where_u8_copy_x", u8, [2, 15], [2, 15], [2, 15], x_like_z=True)
    multi_node()


def multi_node():
    """Two small quantized blocks as ONNX Runtime's quantizer lays them out."""
    u8 = np.uint8
    # float -> Quantize -> Add (constant B) -> Sigmoid -> Mul (by the Add) -> GlobalAveragePool
    # -> Dequantize.
    c = {
        "xs": np.array(0.05, np.float32), "xz": np.array(120, u8),
        "b": data(u8, [1, 4, 1, 1]), "bs": np.array(0.03, np.float32), "bz": np.array(100, u8),
        "as": np.array(0.06, np.float32), "az": np.array(128, u8),
        "ss": np.array(1 / 256, np.float32), "sz": np.array(0, u8),
        "ms": np.array(0.04, np.float32), "mz": np.array(90, u8),
        "gs": np.array(0.035, np.float32), "gz": np.array(95, u8),
    }
    nodes = [
        h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant"),
        ms("QLinearAdd", ["xq", "xs", "xz", "b", "bs", "bz", "as", "az"], ["sum"]),
        ms("QLinearSigmoid", ["sum", "as", "az", "ss", "sz"], ["gate"]),
        ms("QLinearMul", ["sum", "as", "az", "gate", "ss", "sz", "ms", "mz"], ["prod"]),
        ms("QLinearGlobalAveragePool", ["prod", "ms", "mz", "gs", "gz"], ["pooled"]),
        h.make_node("DequantizeLinear", ["pooled", "gs", "gz"], ["y"], name="dequant"),
    ]
    x = (rng.standard_normal([2, 4, 6, 5]) * 3).astype(np.float32)
    case("block_add_sigmoid_mul_pool", nodes, c, {"x": x}, [("prod", u8), ("y", np.float32)])
    # Quantize -> AveragePool and LeakyRelu branches -> Concat -> Softmax (channels).
    s8 = np.int8
    c = {
        "xs": np.array(0.02, np.float32), "xz": np.array(3, s8),
        "ps": np.array(0.015, np.float32), "pz": np.array(-5, s8),
        "ls": np.array(0.025, np.float32), "lz": np.array(10, s8),
        "cs": np.array(0.03, np.float32), "cz": np.array(0, s8),
        "ys": np.array(1 / 256, np.float32), "yz": np.array(-128, s8),
    }
    nodes = [
        h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant"),
        ms("QLinearAveragePool", ["xq", "xs", "xz", "ps", "pz"], ["avg"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        ms("QLinearLeakyRelu", ["xq", "xs", "xz", "ls", "lz"], ["leaky"], alpha=0.1),
        ms("QLinearConcat", ["cs", "cz", "avg", "ps", "pz", "leaky", "ls", "lz"], ["cat"], axis=1),
        ms("QLinearSoftmax", ["cat", "cs", "cz", "ys", "yz"], ["y"], opset=13, axis=1),
    ]
    x = (rng.standard_normal([1, 3, 5, 6]) * 1.5).astype(np.float32)
    case("block_pool_leaky_concat_softmax", nodes, c, {"x": x}, [("y", s8)])


if __name__ == "__main__":
    main()
