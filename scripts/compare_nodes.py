#!/usr/bin/env python3
"""Node counts and memory plan: sinter's optimized graph beside ONNX Runtime's, in one run.

For each case folder: `sinter inspect --json` (dims bound from test_data_set_0's input shapes)
gives nodes before/after sinter's passes, the arena size and its lower bound; ONNX Runtime
saves its own optimized graph (ORT_ENABLE_EXTENDED, SessionOptions.optimized_model_filepath)
and its nodes are counted the same way (top-level graph; a fused ORT node counts as one).
Prints a Markdown table.

    /tmp/venv/bin/python scripts/compare_nodes.py tests/data/models/* ../shared/models/light_*
"""
import json
import os
import subprocess
import sys
import tempfile

import onnx
import onnxruntime as ort
from onnx import numpy_helper


def count_nodes(graph):
    """Nodes of a graph and, recursively, of its subgraphs (If branches, Loop bodies)."""
    n = 0
    for node in graph.node:
        n += 1
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                n += count_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                n += sum(count_nodes(g) for g in a.graphs)
    return n


def input_dims(case, model):
    dims = []
    inits = {i.name for i in model.graph.initializer}
    names = [i for i in model.graph.input if i.name not in inits]
    for k, vi in enumerate(names):
        path = os.path.join(case, "test_data_set_0", f"input_{k}.pb")
        if not os.path.exists(path):
            continue
        t = onnx.TensorProto()
        t.ParseFromString(open(path, "rb").read())
        shape = numpy_helper.to_array(t).shape
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            name = d.dim_param if d.dim_param and d.dim_param != "?" else (None if d.HasField("dim_value") and d.dim_value >= 0 else f"{vi.name}.{axis}")
            if name:
                dims += ["--dim", f"{name}={shape[axis]}"]
    return dims


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print("| model | nodes in file (with subgraphs) | sinter nodes | sinter nodes with code | ORT nodes (extended, with subgraphs) | sinter/ORT (all nodes) | sinter/ORT (nodes with code) | arena bytes | lower bound | arena/bound | weights bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in sys.argv[1:]:
        path = os.path.join(case, "model.onnx")
        model = onnx.load(path)
        cmd = ["cargo", "run", "--release", "-q", "-p", "sinter", "--", "inspect", "--json", os.path.abspath(path)] + input_dims(case, model)
        info = json.loads(subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout)
        with tempfile.TemporaryDirectory() as tmp:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
            try:
                ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                ort_nodes = count_nodes(onnx.load(so.optimized_model_filepath).graph)
            except Exception as e:  # ORT refuses some models (silero_vad_static): say so
                ort_nodes = None
                print(f"<!-- ORT failed on {case}: {str(e).splitlines()[0][:200]} -->")
        name = os.path.basename(os.path.normpath(case))
        s_nodes = info.get("nodes_after")
        # Nodes that run: views (zero-copy reshapes) and fills done once by Model::new() emit
        # no code, as ORT's folded initializers are no nodes.
        with_code = info.get('nodes_with_code')
        ratio_all = f"{s_nodes / ort_nodes:.2f}" if s_nodes is not None and ort_nodes else "-"
        ratio = f"{with_code / ort_nodes:.2f}" if with_code is not None and ort_nodes else "-"
        arena, bound = info.get("arena_bytes"), info.get("arena_lower_bound_bytes")
        arena_ratio = f"{arena / bound:.3f}" if arena and bound else "-"
        print(f"| {name} | {count_nodes(model.graph)} | {s_nodes} | {info.get('nodes_with_code')} | {ort_nodes if ort_nodes is not None else 'refused'} | {ratio_all} | {ratio} | {arena} | {bound} | {arena_ratio} | {info.get('weights_bytes')} |", flush=True)


if __name__ == "__main__":
    main()
