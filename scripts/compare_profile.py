#!/usr/bin/env python3
"""Per-node times of one model in sinter and in ONNX Runtime, side by side.

Runs `sinter profile --json` and ONNX Runtime with `enable_profiling` (ORT_ENABLE_ALL, the
same thread count), averages each node's kernel time over the timed runs, and prints one row
per sinter node with ORT's time for the node of the same name. ORT renames or adds nodes when it
fuses or reorders (NCHWc `ReorderInput`/`ReorderOutput`, `FusedConv`...): those it keeps under
the original name match; the others are listed after the table with their times, so the two
totals always add up.

    python scripts/compare_profile.py /tmp/zoo/mnasnet1_0 --threads 1 [--iters 50] [--top 30] \
        [--rounds 5]

Where sinter runs several ONNX nodes as one (a depthwise layer with the pointwise layer after
it, a convolution with the max pool after it: ops named `sinter:...`), the ORT nodes it folded
in are found in the graph (the nearest fused sinter node up to four nodes downstream, else
upstream, of an ORT node no sinter node is named after) and added to that sinter node's row,
marked `+N`; only the rest are listed as
unmatched. ORT's profiler adds some microseconds to each node (9-15% of MnasNet's run): the
run's excess over an unprofiled run just before is spread evenly over ORT's nodes and taken
off them. With `--rounds R`, sinter and ORT take turns R times (for a machine whose speed
drifts: both see the same mix of fast and slow moments) and each time is the median of the
rounds' means.
"""
import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def case_inputs(case_dir, session):
    """The case's first data set when it has one, else random inputs of the session's shapes."""
    feeds = {}
    files = sorted(glob.glob(os.path.join(case_dir, "test_data_set_0", "input_*.pb")))
    if files:
        for meta, path in zip(session.get_inputs(), files):
            tensor = onnx.TensorProto()
            with open(path, "rb") as f:
                tensor.ParseFromString(f.read())
            feeds[meta.name] = numpy_helper.to_array(tensor)
        return feeds
    rng = np.random.default_rng(0)
    for meta in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in meta.shape]
        feeds[meta.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def ort_profile(model, case_dir, threads, iters, warmup):
    """Mean microseconds per run for every ORT node name, ORT's median profiled run time, and
    its median run time without profiling (the same session options, timed just before)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        # Warm up in a session without profiling, then profile only the timed runs.
        session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        feeds = case_inputs(case_dir, session)
        for _ in range(warmup):
            session.run(None, feeds)
        plain = []
        for _ in range(iters):
            start = time.perf_counter()
            session.run(None, feeds)
            plain.append((time.perf_counter() - start) * 1e6)
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        for _ in range(warmup):
            session.run(None, feeds)
        session.end_profiling()
        session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        for _ in range(iters):
            session.run(None, feeds)
        path = session.end_profiling()
        with open(path) as f:
            events = json.load(f)
    nodes = collections.defaultdict(float)
    ops = {}
    runs = []
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"][: -len("_kernel_time")]
            nodes[name] += event["dur"]
            ops[name] = event.get("args", {}).get("op_name", "?")
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            runs.append(event["dur"])
    profiled = float(np.median(runs)) if runs else 0.0
    return {k: v / iters for k, v in nodes.items()}, ops, profiled, float(np.median(plain))


def by_onnx_node(model, times, ops):
    """Renames ORT's NCHWc nodes (named after their output tensor, `T_nchwc`) to the ONNX node
    that starts the fused chain writing T: the producer of T, walked back through the
    elementwise ops ORT fuses into a convolution (activation, Add, BatchNormalization)."""
    graph = onnx.load(model, load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    fused = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "LeakyRelu", "Tanh", "Add", "Sum",
             "BatchNormalization", "HardSwish", "Mul"}
    names = {node.name for node in graph.node}
    renamed, renamed_ops = collections.defaultdict(float), {}
    for name, t in times.items():
        key = name
        # A node ORT made from one of the file's (`NAME/MatMulAddFusion`...).
        while key not in names and "/" in key and not key.endswith("_nchwc"):
            key = key.rsplit("/", 1)[0]
        if key not in names:
            key = name
        if name.endswith("_nchwc") and name[: -len("_nchwc")] in producer:
            node = producer[name[: -len("_nchwc")]]
            for _ in range(4):
                if node.op_type not in fused or not node.input or node.input[0] not in producer:
                    break
                node = producer[node.input[0]]
            key = node.name
        renamed[key] += t
        renamed_ops[key] = ops[name]
    return renamed, renamed_ops


def median_profile(profiles):
    """One `sinter profile` result from several rounds': per node and for the run, the median."""
    if len(profiles) == 1:
        return profiles[0]
    nodes = []
    for i, node in enumerate(profiles[0]["nodes"]):
        node = dict(node)
        node["us_per_run"] = float(np.median([p["nodes"][i]["us_per_run"] for p in profiles]))
        nodes.append(node)
    return {"nodes": nodes, "run_us": float(np.median([p["run_us"] for p in profiles]))}


def fold_unmatched(model, sinter_names, theirs, matched):
    """For each ORT node that no sinter node is named after: the fused sinter node (of
    `sinter_names`) that ran it, found up to four nodes downstream in the graph (sinter names
    most fused nodes after their last ONNX node), else upstream (after their first)."""
    graph = onnx.load(model, load_external_data=False).graph
    by_name = {node.name: node for node in graph.node}
    producer = {out: node for node in graph.node for out in node.output}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def walk(start, step):
        frontier = [start]
        for _ in range(4):
            frontier = [n for node in frontier for n in step(node)]
            for node in frontier:
                if node.name in sinter_names:
                    return node.name
        return None

    down = lambda node: [c for out in node.output for c in consumers[out]]  # noqa: E731
    up = lambda node: [producer[i] for i in node.input if i in producer]  # noqa: E731
    folded = {}
    for name in theirs:
        if name in matched or name not in by_name:
            continue
        target = walk(by_name[name], down) or walk(by_name[name], up)
        if target is not None:
            folded[name] = target
    return folded


def sinter_profile(sinter, case, threads, iters, warmup):
    out = subprocess.run(
        [sinter, "profile", case, "--threads", str(threads), "--iters", str(iters),
         "--warmup", str(warmup), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["profile"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", help="a case folder (model.onnx, test_data_set_0/) or an .onnx file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--top", type=int, default=40, help="rows to print (0: all)")
    ap.add_argument("--sinter", default="target/release/sinter")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate sinter and ORT this many times, medians over rounds")
    args = ap.parse_args()
    model = args.case if args.case.endswith(".onnx") else os.path.join(args.case, "model.onnx")
    case_dir = os.path.dirname(model)

    mine_rounds, theirs_rounds, ort_runs, ort_plain = [], [], [], []
    their_ops = {}
    for _ in range(args.rounds):
        mine_rounds.append(sinter_profile(args.sinter, args.case, args.threads, args.iters,
                                          args.warmup))
        times, ops, run, plain = ort_profile(model, case_dir, args.threads, args.iters,
                                             args.warmup)
        # ORT's profiler costs each node some microseconds: spread the run's excess over the
        # nodes it times, and take it off each (so small nodes are not flattered to sinter).
        per_node = max(run - plain, 0.0) / max(len(times), 1)
        times = {k: max(v - per_node, 0.0) for k, v in times.items()}
        times, ops = by_onnx_node(model, times, ops)
        theirs_rounds.append(times)
        their_ops.update(ops)
        ort_runs.append(run)
        ort_plain.append(plain)
    mine = median_profile(mine_rounds)
    theirs = {k: float(np.median([t.get(k, 0.0) for t in theirs_rounds]))
              for k in set().union(*theirs_rounds)}
    ort_run = float(np.median(ort_runs))

    rows = sorted(mine["nodes"], key=lambda n: -n["us_per_run"])
    matched = {n["name"] for n in rows if n["name"] in theirs}
    fused = {n["name"] for n in rows if n["op"].startswith("sinter:")}
    folded = fold_unmatched(model, fused, theirs, matched)
    # Each sinter node's ORT time: its namesake's plus the nodes folded into it.
    ort_time = {name: theirs[name] for name in matched}
    folded_count = collections.Counter()
    for ort_name, sinter_name in folded.items():
        ort_time[sinter_name] = ort_time.get(sinter_name, 0.0) + theirs[ort_name]
        folded_count[sinter_name] += 1
    rounds = f", median of {args.rounds} alternating rounds" if args.rounds > 1 else ""
    print(f"{args.case}: {args.threads} thread(s), {args.iters} timed runs{rounds}")
    print(f"{'node':52} {'op':10} {'sinter us':>10} {'ORT us':>10} {'ratio':>6}  ORT op")
    shown = rows if args.top == 0 else rows[: args.top]
    for n in shown:
        t = ort_time.get(n["name"])
        ratio = f"{n['us_per_run'] / t:6.2f}" if t else "     -"
        tt = f"{t:10.1f}" if t is not None else "         -"
        extra = f" +{folded_count[n['name']]}" if folded_count[n["name"]] else ""
        print(f"{n['name'][-52:]:52} {n['op'][:10]:10} {n['us_per_run']:10.1f} {tt} {ratio}  "
              f"{their_ops.get(n['name'], '')}{extra}")
    matched |= set(folded.values())
    rest = {k: v for k, v in theirs.items() if k not in matched and k not in folded}
    mine_matched = sum(n["us_per_run"] for n in rows if n["name"] in matched)
    mine_rest = sum(n["us_per_run"] for n in rows if n["name"] not in matched)
    print()
    print(f"matched nodes: sinter {mine_matched:.1f} us, ORT {sum(ort_time.values()):.1f} us "
          f"({len(folded)} ORT nodes folded into sinter's)")
    print(f"unmatched: sinter {mine_rest:.1f} us in {len(rows) - len(matched)} nodes, "
          f"ORT {sum(rest.values()):.1f} us in {len(rest)} nodes")
    for k, v in sorted(rest.items(), key=lambda kv: -kv[1])[:15]:
        print(f"    ORT {their_ops.get(k, '?'):16} {v:9.1f} us  {k}")
    by_op = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for n in rows:
        entry = by_op[n["op"]]
        entry[0] += n["us_per_run"]
        entry[1] += ort_time.get(n["name"], 0.0)
        entry[2] += 1
    print()
    print(f"{'op (sinter node, matched ORT time)':36} {'nodes':>6} {'sinter us':>10} {'ORT us':>10}")
    for op, (a, b, count) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        print(f"{op:36} {count:6} {a:10.1f} {b:10.1f}")
    print(f"run: sinter {mine['run_us']:.1f} us (profiled), ORT {ort_run:.1f} us (profiled median; "
          f"{float(np.median(ort_plain)):.1f} without profiling, the excess taken off its nodes "
          f"evenly)")


if __name__ == "__main__":
    sys.exit(main())
