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

With `--paired PAIRS`, latency is measured differently, for machines whose speed drifts (a
shared host: the same loop there varies by a third from one second to the next). ORT runs in
this process and sinter's compiled model in a process that stays loaded (`sinter bench
--serve`); the two alternate in short blocks (about `--block-ms` each, the order swapped every
pair), so that each pair of blocks sees the same machine. The ratio is the median over pairs
of the ratio of the two blocks' medians, with its interquartile range; the times are the
medians of block medians with their min-max. Load time and peak RSS still come from fresh
processes, `--rounds` of each.

    /tmp/venv/bin/python scripts/bench_vs_ort.py --paired 15 --threads 1 2 /tmp/zoo/resnet50
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ORT_CHILD = r"""
import sys, time, json, os
import numpy as np, onnx, onnxruntime as ort
sys.path.insert(0, sys.argv[5])
from bench_vs_ort import ort_session
case, threads, iters, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
sess, feeds = ort_session(case, threads)
sess.run(None, feeds)
load_us = (time.perf_counter() - t0) * 1e6
for _ in range(warmup):
    sess.run(None, feeds)
times = []
for _ in range(iters):
    s = time.perf_counter(); sess.run(None, feeds); times.append((time.perf_counter() - s) * 1e6)
times.sort()
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the process that forked
# this one (with --paired, the driver, which holds ORT sessions of its own).
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
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
    out = subprocess.run([sys.executable, "-c", ORT_CHILD, case, str(threads), str(iters), str(warmup),
                          os.path.dirname(os.path.abspath(__file__))],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ort_session(case, threads):
    """An ORT session (ORT_ENABLE_ALL, `threads` intra-op threads) and the case's inputs."""
    import onnx, onnxruntime as ort
    from onnx import numpy_helper
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(os.path.join(case, "model.onnx"), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for k, meta in enumerate(sess.get_inputs()):
        t = onnx.TensorProto()
        with open(os.path.join(case, "test_data_set_0", f"input_{k}.pb"), "rb") as f:
            t.ParseFromString(f.read())
        feeds[meta.name] = numpy_helper.to_array(t)
    return sess, feeds


class SinterServer:
    """A compiled model kept loaded by `sinter bench --serve`: `block(runs)` runs it `runs` times
    and returns the median time in microseconds. Also used by thread_scaling.py --paired and
    ab_builds.py. `env`: the process's environment (this one's when None)."""

    def __init__(self, cmd, env=None):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=env)
        ready = self.proc.stdout.readline()
        if not ready.startswith("ready"):
            self.close()
            self.err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed: {ready}{self.err.read().decode(errors='replace')}")

    def block(self, runs):
        self.proc.stdin.write(f"{runs}\n")
        self.proc.stdin.flush()
        return statistics.median(float(t) for t in self.proc.stdout.readline().split())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def serve_model(sinter, case, threads, cache_dir, env=None):
    """`case` compiled by `sinter` for `threads` threads (built in `cache_dir`), loaded and
    warmed up in a `sinter bench --serve` process (`env` as for SinterServer)."""
    return SinterServer([sinter, "bench", case, "--serve", "--threads", str(threads), "--iters", "1",
                         "--warmup", "5", "--cache-dir", cache_dir], env=env)


def alternate_servers(open_a, open_b, pairs, block_ms):
    """Two loaded models, each opened by a function returning a SinterServer, in `pairs`
    alternating blocks of about `block_ms` (the same run count for both, from a probe of B):
    each side's block medians. Both processes are closed on return."""
    a = open_a()
    try:
        b = open_b()
        try:
            runs = max(3, math.ceil(block_ms * 1000 / b.block(3)))
            return alternate((lambda: a.block(runs), lambda: b.block(runs)), pairs, 30.0)
        finally:
            b.close()
    finally:
        a.close()


def alternate(blocks, pairs, gap_ms):
    """`pairs` rounds of the two block functions `blocks` (each returning a median time), the
    order swapped every pair, a pause of `gap_ms` before each block (the other side's pool
    threads may spin a while after its runs). Returns each side's block times."""
    times = ([], [])
    for pair in range(pairs):
        for side in ((0, 1) if pair % 2 == 0 else (1, 0)):
            time.sleep(gap_ms / 1000)
            times[side].append(blocks[side]())
    return times


def paired(case, ort_case, threads, args, probe_us):
    """Alternating blocks of sinter (a `sinter bench --serve` process) and ORT (in this
    process): per pair the ratio of the blocks' medians. Returns the sinter and ORT block
    medians and the pair ratios."""
    runs = max(3, math.ceil(args.block_ms * 1000 / max(probe_us, 1.0)))
    prefix = [args.sinter_bin] if args.sinter_bin else ["cargo", "run", "--release", "-q", "-p", "sinter", "--"]
    server = SinterServer(prefix + ["bench", case, "--serve", "--threads", str(threads), "--iters", "1",
                                    "--warmup", str(2 * runs)] + args.sinter_arg)
    try:
        sess, feeds = ort_session(ort_case, threads)
        for _ in range(2 * runs):
            sess.run(None, feeds)

        def ort_block():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                sess.run(None, feeds)
                times.append((time.perf_counter() - start) * 1e6)
            return statistics.median(times)

        s_blocks, o_blocks = alternate((lambda: server.block(runs), ort_block), args.paired, args.gap_ms)
    finally:
        server.close()
    return s_blocks, o_blocks, [s / o for s, o in zip(s_blocks, o_blocks)]


def quartiles(xs):
    """The 25th and 75th percentiles of `xs` (linear interpolation)."""
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


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
    ap.add_argument("--paired", type=int, default=0, metavar="PAIRS",
                    help="time latency in PAIRS alternating blocks of sinter and ORT (see above) instead of rounds")
    ap.add_argument("--block-ms", type=float, default=100.0, help="with --paired: the length of a block (at least 3 runs)")
    ap.add_argument("--gap-ms", type=float, default=30.0, help="with --paired: the pause before each block")
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
    if args.paired:
        print(f"# latency: {args.paired} pairs of alternating blocks of about {args.block_ms:g} ms (at least 3 runs); "
              f"times: medians of block medians (min-max); sinter/ORT: median of the pairs' ratios (interquartile range)")
        print(f"# load and RSS: {args.rounds} fresh processes each, medians")
    else:
        print(f"# {args.rounds} interleaved rounds x {per_round}; medians over rounds (spread: min-max of round medians)")
    print()
    print("| model | threads | sinter us | ORT us | sinter/ORT | sinter load us | ORT load us | load ratio | sinter RSS kB | ORT RSS kB | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        for threads in args.threads:
            iters, warmup = args.iters, args.warmup
            ort_case = args.ort_case.format(case=case, name=os.path.basename(os.path.normpath(case)))
            name = os.path.basename(os.path.normpath(case))
            if args.paired:
                s_runs = [run_sinter(case, threads, 3, 1, args.sinter_arg, args.sinter_bin) for _ in range(args.rounds)]
                o_runs = [run_ort(ort_case, threads, 1, 0) for _ in range(args.rounds)]
                probe = statistics.median(r["median_us"] for r in s_runs)
                s_blocks, o_blocks, ratios = paired(case, ort_case, threads, args, probe)
                s_us, o_us, ratio = (statistics.median(x) for x in (s_blocks, o_blocks, ratios))
                r_lo, r_hi = quartiles(ratios)
                s_load = statistics.median(r["load_us"] + r["first_run_us"] for r in s_runs)
                o_load = statistics.median(r["load_us"] for r in o_runs)
                s_rss = statistics.median(r["peak_rss_kb"] for r in s_runs)
                o_rss = statistics.median(r["peak_rss_kb"] for r in o_runs)
                print(f"| {name} | {threads} | {s_us:.1f} ({min(s_blocks):.1f}-{max(s_blocks):.1f}) "
                      f"| {o_us:.1f} ({min(o_blocks):.1f}-{max(o_blocks):.1f}) | {ratio:.3f} ({r_lo:.3f}-{r_hi:.3f}) "
                      f"| {s_load:.0f} | {o_load:.0f} | {s_load / o_load:.3f} | {s_rss:.0f} | {o_rss:.0f} | {s_rss / o_rss:.2f} |",
                      flush=True)
                continue
            if args.min_ms > 0:
                probe = run_sinter(case, threads, 3, 1, args.sinter_arg, args.sinter_bin)["median_us"]
                iters = max(iters, int(args.min_ms * 1000 / max(probe, 1.0)) + 1)
                warmup = max(warmup, iters // 5)
            s_runs, o_runs = [], []
            for _ in range(args.rounds):
                s_runs.append(run_sinter(case, threads, iters, warmup, args.sinter_arg, args.sinter_bin))
                o_runs.append(run_ort(ort_case, threads, iters, warmup))
            med = lambda runs, key: statistics.median(r[key] for r in runs)
            spread = lambda runs, key: (min(r[key] for r in runs), max(r[key] for r in runs))
            s_us, o_us = med(s_runs, "median_us"), med(o_runs, "median_us")
            s_load = statistics.median(r["load_us"] + r["first_run_us"] for r in s_runs)
            o_load = med(o_runs, "load_us")
            s_rss, o_rss = med(s_runs, "peak_rss_kb"), med(o_runs, "peak_rss_kb")
            (s_lo, s_hi), (o_lo, o_hi) = spread(s_runs, "median_us"), spread(o_runs, "median_us")
            print(f"| {name} | {threads} | {s_us:.1f} ({s_lo:.1f}-{s_hi:.1f}) | {o_us:.1f} ({o_lo:.1f}-{o_hi:.1f}) | {s_us / o_us:.2f} "
                  f"| {s_load:.0f} | {o_load:.0f} | {s_load / o_load:.3f} | {s_rss:.0f} | {o_rss:.0f} | {s_rss / o_rss:.2f} |", flush=True)


if __name__ == "__main__":
    main()
