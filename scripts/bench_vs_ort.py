#!/usr/bin/env python3
"""Benchmarks sinter against ONNX Runtime on the same machine, interleaved, in one run.

For each case folder (model.onnx + test_data_set_0), each round runs `sinter bench --json`
and then times ONNX Runtime (ORT_ENABLE_ALL, same thread count) on the same inputs; the table
reports the median over rounds of each side's median latency and the ratio sinter / ORT, plus
load time (sinter: Model::new + first run; ORT: InferenceSession creation + first run) and
peak RSS (each measured in a fresh process).

ORT is driven from Python, whose per-call overhead (measured here on a one-Identity model and
printed) is part of ORT's numbers; the table shows the overhead beside the raw medians.

Needs: a venv with onnxruntime, onnx and numpy (see the README), and `cargo` for sinter.

    /tmp/venv/bin/python scripts/bench_vs_ort.py --rounds 5 tests/data/tiny_mlp tests/data/tiny_cnn
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ORT_CHILD = r"""
import sys, time, json, resource, glob, os
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
case, threads, iters, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(os.path.join(case, "model.onnx"), so, providers=["CPUExecutionProvider"])
feeds = {}
names = [i.name for i in sess.get_inputs()]
for k, name in enumerate(names):
    path = os.path.join(case, "test_data_set_0", f"input_{k}.pb")
    t = onnx.TensorProto(); t.ParseFromString(open(path, "rb").read())
    feeds[name] = numpy_helper.to_array(t)
sess.run(None, feeds)
load_us = (time.perf_counter() - t0) * 1e6
for _ in range(warmup):
    sess.run(None, feeds)
times = []
for _ in range(iters):
    s = time.perf_counter(); sess.run(None, feeds); times.append((time.perf_counter() - s) * 1e6)
times.sort()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"median_us": times[len(times)//2], "load_us": load_us, "peak_rss_kb": rss}))
"""

OVERHEAD_CHILD = r"""
import time, numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto
g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
x = {"x": np.zeros(1, np.float32)}
for _ in range(200): sess.run(None, x)
t = []
for _ in range(2000):
    s = time.perf_counter(); sess.run(None, x); t.append((time.perf_counter() - s) * 1e6)
t.sort(); print(t[len(t)//2])
"""


def run_sinter(case, threads, iters, warmup, extra, sinter_bin=None):
    prefix = [sinter_bin] if sinter_bin else ["cargo", "run", "--release", "-q", "-p", "sinter", "--"]
    cmd = prefix + ["bench", case, "--json",
                    "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup)] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_ort(case, threads, iters, warmup):
    out = subprocess.run([sys.executable, "-c", ORT_CHILD, case, str(threads), str(iters), str(warmup)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--min-ms", type=float, default=0.0,
                    help="raise a model's runs per round (and its warm-up runs, to a fifth of them) so that a round "
                         "times at least this many milliseconds, from a short untimed sinter run: small models get "
                         "as much measuring as large ones. Both sides take the same counts")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--sinter-arg", action="append", default=[], help="extra args for sinter bench, e.g. --const=sr=16000")
    ap.add_argument("--sinter-bin", default=None,
                    help="a built sinter binary to bench with (a copy, so that the sources can change meanwhile); "
                         "default: cargo run --release")
    ap.add_argument("--ort-case", default="{case}",
                    help="the folder ORT runs, with {case} and {name} (the case folder and its name) "
                         "filled in: e.g. ORT's own quantization of the model, /tmp/static_cases/{name}_ort_qdq, "
                         "beside sinter's --quantize static of the float one")
    args = ap.parse_args()

    overhead = float(subprocess.run([sys.executable, "-c", OVERHEAD_CHILD], check=True, capture_output=True, text=True).stdout)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"# sinter vs ONNX Runtime, {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores")
    import onnxruntime
    print(f"# onnxruntime {onnxruntime.__version__} (Python; per-call overhead of sess.run on a 1-element Identity: {overhead:.1f} us)")
    per_round = f"{args.iters} runs"
    if args.min_ms > 0:
        per_round = f"max({args.iters} runs, enough runs for {args.min_ms:g} ms)"
    print(f"# {args.rounds} interleaved rounds x {per_round}; medians over rounds (spread: min-max of round medians)")
    print()
    print("| model | threads | sinter us | ORT us | sinter/ORT | sinter load us | ORT load us | load ratio | sinter RSS kB | ORT RSS kB | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        for threads in args.threads:
            iters, warmup = args.iters, args.warmup
            if args.min_ms > 0:
                probe = run_sinter(case, threads, 3, 1, args.sinter_arg, args.sinter_bin)["median_us"]
                iters = max(iters, int(args.min_ms * 1000 / max(probe, 1.0)) + 1)
                warmup = max(warmup, iters // 5)
            s_runs, o_runs = [], []
            for _ in range(args.rounds):
                s_runs.append(run_sinter(case, threads, iters, warmup, args.sinter_arg, args.sinter_bin))
                ort_case = args.ort_case.format(case=case, name=os.path.basename(os.path.normpath(case)))
                o_runs.append(run_ort(ort_case, threads, iters, warmup))
            med = lambda runs, key: statistics.median(r[key] for r in runs)
            spread = lambda runs, key: (min(r[key] for r in runs), max(r[key] for r in runs))
            s_us, o_us = med(s_runs, "median_us"), med(o_runs, "median_us")
            s_load = statistics.median(r["load_us"] + r["first_run_us"] for r in s_runs)
            o_load = med(o_runs, "load_us")
            s_rss, o_rss = med(s_runs, "peak_rss_kb"), med(o_runs, "peak_rss_kb")
            (s_lo, s_hi), (o_lo, o_hi) = spread(s_runs, "median_us"), spread(o_runs, "median_us")
            name = os.path.basename(os.path.normpath(case))
            print(f"| {name} | {threads} | {s_us:.1f} ({s_lo:.1f}-{s_hi:.1f}) | {o_us:.1f} ({o_lo:.1f}-{o_hi:.1f}) | {s_us / o_us:.2f} "
                  f"| {s_load:.0f} | {o_load:.0f} | {s_load / o_load:.3f} | {s_rss:.0f} | {o_rss:.0f} | {s_rss / o_rss:.2f} |", flush=True)


if __name__ == "__main__":
    main()
