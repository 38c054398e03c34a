#!/usr/bin/env python3
"""Writes tests/data/postprocess_dynamic: a detector's post-processing, whose outputs have
shapes that depend on the input values (NonMaxSuppression and NonZero, then Gather, Squeeze,
Unsqueeze, Mul/Add/Sub, Relu, Cast, Concat, Reshape, Transpose and Shape on their run-time
counts), with ONNX Runtime's outputs on data sets that select different numbers of boxes
(one selects none). `sinter verify` compiles it once and checks every set.

Also tests/data/bounded: models with a symbolic batch dim N, checked with `--dim 'N<=8'`
(one build) at N = 1, 3 and 8.

    python3 scripts/make_dynamic_cases.py [OUT_DIR]     (needs onnx, onnxruntime, numpy)
"""
import os, sys

import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
N = h.make_node
BOXES, CLASSES = 20, 3


def const(name, value, dtype):
    return nh.from_array(np.asarray(value, dtype=dtype), name)


def save_sets(d, graph, xs, outputs):
    """Saves a model with one input x and, per array in `xs`, a data set with its ORT outputs."""
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    os.makedirs(d, exist_ok=True)
    onnx.save(m, d + "/model.onnx")
    s = ort.InferenceSession(d + "/model.onnx", providers=["CPUExecutionProvider"])
    results = []
    for k, x in enumerate(xs):
        outs = s.run(None, {"x": x})
        sd = f"{d}/test_data_set_{k}"
        os.makedirs(sd, exist_ok=True)
        onnx.save_tensor(nh.from_array(x, "x"), f"{sd}/input_0.pb")
        for i, name in enumerate(outputs):
            onnx.save_tensor(nh.from_array(outs[i], name), f"{sd}/output_{i}.pb")
        results.append(outs)
    return results


def save_bounded(d, graph, sizes, seed, width, outputs):
    """Saves a model with input x [N, *width] and its ORT outputs at each N in `sizes`."""
    dims = width if isinstance(width, tuple) else (width,)
    xs = [np.random.default_rng(seed + k).standard_normal((n,) + dims).astype(np.float32)
          for k, n in enumerate(sizes)]
    save_sets(d, graph, xs, outputs)

nodes = [
    N("NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou", "min_score"], ["sel"]),
    N("Gather", ["sel", "two"], ["box_i"], axis=1),
    N("Gather", ["sel", "one"], ["cls"], axis=1),
    N("Squeeze", ["boxes", "axis0"], ["boxes2"]),
    N("Gather", ["boxes2", "box_i"], ["picked"], axis=0),
    N("Reshape", ["scores", "flat"], ["flat_scores"]),
    N("Mul", ["cls", "n_boxes"], ["cls_n"]),
    N("Add", ["cls_n", "box_i"], ["flat_i"]),
    N("Gather", ["flat_scores", "flat_i"], ["picked_scores"], axis=0),
    N("Cast", ["cls"], ["cls_f"], to=T.FLOAT),
    N("Unsqueeze", ["picked_scores", "axis1"], ["ps"]),
    N("Unsqueeze", ["cls_f", "axis1"], ["cf"]),
    N("Concat", ["picked", "ps", "cf"], ["dets"], axis=1),
    N("Shape", ["dets"], ["dets_shape"]),
    N("Reshape", ["dets", "flat"], ["dets_flat"]),
    N("Transpose", ["dets"], ["dets_t"], perm=[1, 0]),
    N("Sub", ["picked", "half"], ["shifted"]),
    N("Relu", ["shifted"], ["picked_shift"]),
    N("Greater", ["scores", "high"], ["mask"]),
    N("NonZero", ["mask"], ["nz"]),
    N("Transpose", ["nz"], ["nz_t"], perm=[1, 0]),
]
inits = [
    const("max_per_class", [10], np.int64), const("iou", [0.5], np.float32),
    const("min_score", [0.6], np.float32), const("two", 2, np.int64), const("one", 1, np.int64),
    const("axis0", [0], np.int64), const("axis1", [1], np.int64), const("flat", [-1], np.int64),
    const("n_boxes", BOXES, np.int64), const("half", 0.5, np.float32), const("high", 0.9, np.float32),
]
outputs = ["dets", "dets_shape", "dets_flat", "dets_t", "picked_shift", "nz_t"]
g = h.make_graph(
    nodes, "postprocess_dynamic",
    [h.make_tensor_value_info("boxes", T.FLOAT, [1, BOXES, 4]),
     h.make_tensor_value_info("scores", T.FLOAT, [1, CLASSES, BOXES])],
    [h.make_tensor_value_info(n, t, None) for n, t in zip(outputs, [T.FLOAT, T.INT64, T.FLOAT, T.FLOAT, T.FLOAT, T.INT64])],
    inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
m.ir_version = 8
d = os.path.join(OUT, "postprocess_dynamic")
os.makedirs(d, exist_ok=True)
onnx.save(m, d + "/model.onnx")
s = ort.InferenceSession(d + "/model.onnx", providers=["CPUExecutionProvider"])
for k, (seed, top) in enumerate([(1, 1.0), (2, 0.8), (3, 0.25)]):
    rng = np.random.default_rng(seed)
    y1x1 = rng.uniform(0, 1, (1, BOXES, 2))
    hw = rng.uniform(0.05, 0.4, (1, BOXES, 2))
    boxes = np.concatenate([y1x1, y1x1 + hw], axis=2).astype(np.float32)
    scores = (rng.uniform(0, top, (1, CLASSES, BOXES))).astype(np.float32)
    feeds = {"boxes": boxes, "scores": scores}
    outs = s.run(None, feeds)
    sd = f"{d}/test_data_set_{k}"
    os.makedirs(sd, exist_ok=True)
    for i, n in enumerate(["boxes", "scores"]):
        onnx.save_tensor(nh.from_array(feeds[n], n), f"{sd}/input_{i}.pb")
    for i, n in enumerate(outputs):
        onnx.save_tensor(nh.from_array(outs[i], n), f"{sd}/output_{i}.pb")
    print(f"set {k}: dets {outs[0].shape}, nonzero {outs[5].shape}")

# A model with a bounded batch dim N: compiled once with `--dim 'N<=8'`, run at N = 1, 3, 8.
nodes = [
    N("Mul", ["x", "scale"], ["a"]),
    N("Add", ["a", "shift"], ["b"]),
    N("Relu", ["b"], ["c"]),
    N("Sigmoid", ["c"], ["y"]),
    N("Transpose", ["y"], ["yt"], perm=[1, 0]),
    N("Shape", ["x"], ["n"]),
]
inits = [nh.from_array(np.linspace(-1, 1, 8).astype(np.float32), "scale"),
         nh.from_array(np.linspace(0.5, -0.5, 8).astype(np.float32), "shift")]
g = h.make_graph(
    nodes, "bounded_batch", [h.make_tensor_value_info("x", T.FLOAT, ["N", 8])],
    [h.make_tensor_value_info("y", T.FLOAT, ["N", 8]), h.make_tensor_value_info("yt", T.FLOAT, [8, "N"]),
     h.make_tensor_value_info("n", T.INT64, [2])], inits)
save_bounded(os.path.join(OUT, "bounded", "batch_elementwise"), g, [1, 3, 8], 0, 8, ["y", "yt", "n"])

# An MLP on a bounded batch: MatMul + Add + Relu, Gemm, Softmax, and a batched 3-D MatMul.
rng = np.random.default_rng(7)
nodes = [
    N("MatMul", ["x", "w1"], ["h"]),
    N("Add", ["h", "b1"], ["hb"]),
    N("Relu", ["hb"], ["r"]),
    N("Gemm", ["r", "w2", "b2"], ["logits"]),
    N("Softmax", ["logits"], ["probs"], axis=-1),
    N("Reshape", ["x", "rows"], ["x3"]),
    N("MatMul", ["x3", "w3"], ["z"]),
    N("LogSoftmax", ["z"], ["zl"], axis=-1),
]
inits = [nh.from_array((rng.standard_normal((16, 32)) * 0.3).astype(np.float32), "w1"),
         nh.from_array(rng.standard_normal(32).astype(np.float32) * 0.1, "b1"),
         nh.from_array((rng.standard_normal((32, 10)) * 0.3).astype(np.float32), "w2"),
         nh.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "b2"),
         nh.from_array(np.array([0, 4, 4], dtype=np.int64), "rows"),
         nh.from_array((rng.standard_normal((4, 6)) * 0.5).astype(np.float32), "w3")]
g = h.make_graph(
    nodes, "bounded_mlp", [h.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
    [h.make_tensor_value_info("probs", T.FLOAT, ["N", 10]),
     h.make_tensor_value_info("zl", T.FLOAT, ["N", 4, 6])], inits)
save_bounded(os.path.join(OUT, "bounded", "mlp"), g, [1, 3, 8], 10, 16, ["probs", "zl"])

# A CNN on a bounded batch: each convolution, pooling and normalization runs per sample.
rng = np.random.default_rng(11)
nodes = [
    N("Conv", ["x", "w1", "c1"], ["a"], pads=[1, 1, 1, 1]),
    N("BatchNormalization", ["a", "g", "beta", "mean", "var"], ["bn"]),
    N("Relu", ["bn"], ["r"]),
    N("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
    N("Conv", ["p", "w2", "c2"], ["b"], strides=[2, 2], pads=[1, 1, 1, 1]),
    N("Relu", ["b"], ["r2"]),
    N("GlobalAveragePool", ["r2"], ["gap"]),
    N("Flatten", ["gap"], ["f"]),
    N("Gemm", ["f", "w3", "c3"], ["logits"], transB=1),
    N("Softmax", ["logits"], ["probs"], axis=-1),
]
inits = [nh.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
         nh.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "c1"),
         nh.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "g"),
         nh.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "beta"),
         nh.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "mean"),
         nh.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "var"),
         nh.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), "w2"),
         nh.from_array(rng.standard_normal(16).astype(np.float32) * 0.1, "c2"),
         nh.from_array((rng.standard_normal((5, 16)) * 0.3).astype(np.float32), "w3"),
         nh.from_array(rng.standard_normal(5).astype(np.float32) * 0.1, "c3")]
g = h.make_graph(
    nodes, "bounded_cnn", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
    [h.make_tensor_value_info("probs", T.FLOAT, ["N", 5]), h.make_tensor_value_info("p", T.FLOAT, ["N", 8, 8, 8])],
    inits)
save_bounded(os.path.join(OUT, "bounded", "cnn"), g, [1, 3, 8], 20, (3, 16, 16), ["probs", "p"])

# An attention block over a bounded sequence N: projections, heads split by a Reshape that
# copies the run-time length (0), Q x K^T and P x V with both operands of run-time shape,
# Softmax over a run-time axis, the residual and a LayerNormalization over the rows.
rng = np.random.default_rng(13)
H, D = 4, 8
nodes = [
    N("Unsqueeze", ["x", "axis0"], ["x3"]),
    N("MatMul", ["x3", "wq"], ["q"]), N("MatMul", ["x3", "wk"], ["k"]), N("MatMul", ["x3", "wv"], ["v"]),
    N("Reshape", ["q", "heads"], ["qh"]), N("Reshape", ["k", "heads"], ["kh"]), N("Reshape", ["v", "heads"], ["vh"]),
    N("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3]),
    N("Transpose", ["kh"], ["kt"], perm=[0, 2, 3, 1]),
    N("Transpose", ["vh"], ["vt"], perm=[0, 2, 1, 3]),
    N("MatMul", ["qt", "kt"], ["scores"]),
    N("Mul", ["scores", "scale"], ["scaled"]),
    N("Softmax", ["scaled"], ["p"], axis=-1),
    N("MatMul", ["p", "vt"], ["ctx"]),
    N("Transpose", ["ctx"], ["ct"], perm=[0, 2, 1, 3]),
    N("Reshape", ["ct", "merge"], ["merged"]),
    N("Add", ["merged", "x3"], ["res"]),
    N("LayerNormalization", ["res", "gamma", "beta"], ["y"], axis=-1),
    N("Squeeze", ["y", "axis0"], ["out"]),
]
inits = [const("axis0", [0], np.int64),
         nh.from_array((rng.standard_normal((H * D, H * D)) * 0.2).astype(np.float32), "wq"),
         nh.from_array((rng.standard_normal((H * D, H * D)) * 0.2).astype(np.float32), "wk"),
         nh.from_array((rng.standard_normal((H * D, H * D)) * 0.2).astype(np.float32), "wv"),
         const("heads", [0, 0, H, D], np.int64), const("merge", [0, 0, H * D], np.int64),
         const("scale", 1 / np.sqrt(D), np.float32),
         nh.from_array(rng.uniform(0.5, 1.5, H * D).astype(np.float32), "gamma"),
         nh.from_array(rng.standard_normal(H * D).astype(np.float32) * 0.1, "beta")]
g = h.make_graph(
    nodes, "bounded_attention", [h.make_tensor_value_info("x", T.FLOAT, ["N", H * D])],
    [h.make_tensor_value_info("out", T.FLOAT, ["N", H * D])], inits)
save_bounded(os.path.join(OUT, "bounded", "attention"), g, [1, 3, 8], 30, H * D, ["out"])

# Loops whose iteration counts are only known at run time, compiled once with `--dim 'N<=8'`:
# loop A runs once per row of x (its trip count is N, from Shape and Gather); loop B runs
# while a value computed from the data (from x's first row on) stays below a threshold, at most 10 times (its first
# condition is computed too: one data set runs it zero times). Their scan outputs have as
# many rows as iterations ran.
f32 = lambda name, shape: h.make_tensor_value_info(name, T.FLOAT, shape)
body_a = h.make_graph(
    [N("Gather", ["x", "i"], ["row"], axis=0),
     N("Mul", ["acc", "half"], ["acc_half"]),
     N("Add", ["acc_half", "row"], ["acc_out"]),
     N("Cast", ["i"], ["i_f"], to=T.FLOAT),
     N("Add", ["acc_out", "i_f"], ["scan_a"]),
     N("Identity", ["c"], ["c_out"])],
    "rows",
    [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []), f32("acc", [4])],
    [h.make_tensor_value_info("c_out", T.BOOL, []), f32("acc_out", [4]), f32("scan_a", [4])],
    [const("half", 0.5, np.float32)])
body_b = h.make_graph(
    [N("Mul", ["y", "grow"], ["y_grown"]),
     N("Add", ["y_grown", "lift"], ["y_out"]),
     N("ReduceMax", ["y_out"], ["y_max"], keepdims=0),
     N("Less", ["y_max", "limit"], ["go_on"]),
     N("Neg", ["y_out"], ["scan_b"])],
    "until",
    [h.make_tensor_value_info("j", T.INT64, []), h.make_tensor_value_info("d", T.BOOL, []), f32("y", [4])],
    [h.make_tensor_value_info("go_on", T.BOOL, []), f32("y_out", [4]), f32("scan_b", [4])],
    [const("grow", 1.5, np.float32), const("lift", 0.5, np.float32)])
nodes = [
    N("Shape", ["x"], ["x_shape"]),
    N("Gather", ["x_shape", "zero"], ["n"], axis=0),
    N("Loop", ["n", "", "acc0"], ["acc_a", "rows_a"], body=body_a),
    N("Gather", ["x", "zero"], ["first_row"], axis=0),
    N("ReduceMax", ["first_row"], ["start_max"], keepdims=0),
    N("Less", ["start_max", "limit"], ["start"]),
    N("Loop", ["ten", "start", "first_row"], ["y_b", "steps_b"], body=body_b),
]
inits = [const("zero", 0, np.int64), const("acc0", np.zeros(4), np.float32),
         const("limit", 6.0, np.float32), const("ten", 10, np.int64)]
g = h.make_graph(
    nodes, "bounded_loops", [f32("x", ["N", 4])],
    [f32("acc_a", [4]), f32("rows_a", ["N", 4]), f32("y_b", [4]), f32("steps_b", ["K", 4])], inits)
xs = []
for k, (n, scale) in enumerate([(1, 1.0), (3, 0.5), (8, 2.0)]):
    x = (np.random.default_rng(40 + k).standard_normal((n, 4)) * scale).astype(np.float32)
    if k == 2:
        x[0, 0] = 7.0  # above the limit: loop B's first condition is false, it runs zero times
    xs.append(x)
for k, outs in enumerate(save_sets(os.path.join(OUT, "bounded", "loops"), g, xs,
                                   ["acc_a", "rows_a", "y_b", "steps_b"])):
    print(f"loops set {k}: N = {xs[k].shape[0]}, loop B ran {outs[3].shape[0]} times, shapes {[o.shape for o in outs]}")

# A while loop with neither a trip count nor anything else that bounds its iterations: a
# compile error naming the node (tests/data/unsupported/loop_unbounded.onnx: a model without
# data sets, outside the folders `verify` runs).
g = h.make_graph(
    [N("Loop", ["", "start", "x"], ["y", "ys"], name="while_loop", body=body_b)],
    "loop_unbounded", [f32("x", [4]), h.make_tensor_value_info("start", T.BOOL, [])],
    [f32("y", [4]), f32("ys", ["K", 4])], [const("limit", 6.0, np.float32)])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
m.ir_version = 8
d = os.path.join(OUT, "unsupported")
os.makedirs(d, exist_ok=True)
onnx.save(m, d + "/loop_unbounded.onnx")

# Reductions over and beside a bounded axis: the vector kernel (one run of reduced axes, the
# count known only at run time), the generic one (LogSumExp, Prod, axes 0 and 2 of 3), and
# ArgMax/ArgMin, with outputs of fixed and of run-time shape.
nodes = [
    N("ReduceMean", ["x"], ["mean0"], axes=[0], keepdims=0),
    N("ReduceSum", ["x", "axis1"], ["sum1"], keepdims=1),
    N("ReduceMax", ["x"], ["max_all"], keepdims=1),
    N("ReduceLogSumExp", ["x"], ["lse0"], axes=[0], keepdims=0),
    N("ReduceProd", ["x"], ["prod1"], axes=[1], keepdims=0),
    N("ArgMax", ["x"], ["argmax0"], axis=0, keepdims=0),
    N("ArgMin", ["x"], ["argmin1"], axis=1, keepdims=1),
    N("Reshape", ["x", "split"], ["x3"]),
    N("ReduceMean", ["x3"], ["mean02"], axes=[0, 2], keepdims=1),
]
outputs = ["mean0", "sum1", "max_all", "lse0", "prod1", "argmax0", "argmin1", "mean02"]
g = h.make_graph(
    nodes, "bounded_reductions", [f32("x", ["N", 6])],
    [f32("mean0", [6]), f32("sum1", ["N", 1]), f32("max_all", [1, 1]), f32("lse0", [6]),
     f32("prod1", ["N"]), h.make_tensor_value_info("argmax0", T.INT64, [6]),
     h.make_tensor_value_info("argmin1", T.INT64, ["N", 1]), f32("mean02", [1, 2, 1])],
    [const("axis1", [1], np.int64), const("split", [0, 2, 3], np.int64)])
save_bounded(os.path.join(OUT, "bounded", "reductions"), g, [1, 3, 8], 50, 6, outputs)

# Shape-driven and variadic ops on a bounded batch: ConstantOfShape of a shape computed from
# N (as torch exports torch.ones_like / new_full), Min/Max/Mean broadcasting at run time.
nodes = [
    N("Shape", ["x"], ["x_shape"]),
    N("ConstantOfShape", ["x_shape"], ["twos"], value=nh.from_array(np.array([2.0], np.float32))),
    N("Mul", ["x", "twos"], ["doubled"]),
    N("Gather", ["x_shape", "zero"], ["n"], axis=0),
    N("Unsqueeze", ["n", "axis0"], ["n1"]),
    N("Concat", ["n1", "three"], ["n_by_3"], axis=0),
    N("ConstantOfShape", ["n_by_3"], ["ones"], value=nh.from_array(np.array([1], np.int64))),
    N("Neg", ["x"], ["neg"]),
    N("Min", ["x", "half"], ["low"]),
    N("Max", ["x", "neg"], ["high"]),
    N("Mean", ["doubled", "neg"], ["mid"]),
    N("Sum", ["x"], ["same"]),
]
outputs = ["doubled", "ones", "low", "high", "mid", "same"]
g = h.make_graph(
    nodes, "bounded_shape_ops", [f32("x", ["N", 4])],
    [f32("doubled", ["N", 4]), h.make_tensor_value_info("ones", T.INT64, ["N", 3]),
     f32("low", ["N", 4]), f32("high", ["N", 4]), f32("mid", ["N", 4]), f32("same", ["N", 4])],
    [const("zero", 0, np.int64), const("axis0", [0], np.int64), const("three", [3], np.int64),
     const("half", [0.5], np.float32)])
save_bounded(os.path.join(OUT, "bounded", "shape_ops"), g, [1, 3, 8], 60, 4, outputs)

# Two bounded dims, B and S (tests/data/bounded_two, `--dim 'B<=2' --dim 'S<=16'`): a head
# split whose `-1` is only known to be 2 because the input's varying extents are the target's
# (B and S, tracked through the elementwise Mul), then a product over that axis and a mean
# over S.
rng = np.random.default_rng(17)
nodes = [
    N("Mul", ["x", "scale"], ["m"]),
    N("Shape", ["m"], ["m_shape"]),
    N("Gather", ["m_shape", "zero"], ["b"], axis=0),
    N("Gather", ["m_shape", "one"], ["s"], axis=0),
    N("Unsqueeze", ["b", "axis0"], ["b1"]),
    N("Unsqueeze", ["s", "axis0"], ["s1"]),
    N("Concat", ["b1", "s1", "tail"], ["target"], axis=0),
    N("Reshape", ["m", "target"], ["heads"]),
    N("MatMul", ["heads", "w"], ["proj"]),
    N("ReduceMean", ["proj"], ["pooled"], axes=[1], keepdims=0),
]
g = h.make_graph(
    nodes, "bounded_two_dims", [f32("x", ["B", "S", 8])],
    [f32("proj", ["B", "S", 4, 3]), f32("pooled", ["B", 4, 3])],
    [nh.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "scale"),
     const("zero", 0, np.int64), const("one", 1, np.int64), const("axis0", [0], np.int64),
     const("tail", [4, -1], np.int64),
     nh.from_array((rng.standard_normal((2, 3)) * 0.5).astype(np.float32), "w")])
xs = [np.random.default_rng(70 + k).standard_normal((b, sl, 8)).astype(np.float32)
      for k, (b, sl) in enumerate([(1, 1), (2, 5), (2, 16)])]
save_sets(os.path.join(OUT, "bounded_two", "heads"), g, xs, ["proj", "pooled"])
