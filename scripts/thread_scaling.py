#!/usr/bin/env python3
"""Where a second thread does not help: `sinter profile --json` of one model at one and at two
threads (same build), then per node and per op the time at each, the speedup, and the time
lost against a perfect split (`t2 - t1 / 2`), largest loss first.

    python3 scripts/thread_scaling.py CASE... [--sinter target/release/sinter] [--iters 100] [--top 25]

With `--paired PAIRS`, only the whole model's speed-up is measured, for machines whose speed
drifts: two `sinter bench --serve` processes (one and two threads) stay loaded and alternate
in blocks of about `--block-ms` (order swapped every pair); the speed-up is the median over
pairs of the ratio of the blocks' medians, with its interquartile range.

    python3 scripts/thread_scaling.py --paired 15 /tmp/zoo/resnet50 /tmp/zoo/bert_base

Standard library only; the sinter binary builds the profiling crate (set SINTER_RT_PATH to a
snapshot of runtime-lite when the sources may change meanwhile).
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import alternate_servers, serve_model  # noqa: E402


def profile(sinter, case, threads, iters):
    out = subprocess.run([sinter, "profile", case, "--json", "--threads", str(threads),
                          "--iters", str(iters), "--warmup", str(max(1, iters // 10))],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["profile"]


def paired(sinter, case, pairs, block_ms):
    """The speed-up from one to two threads, from alternating blocks of two loaded models:
    the pairs' ratios (one-thread block median over two-thread block median) and each side's
    block medians."""
    def serve(threads):
        return lambda: serve_model(sinter, case, threads, f"target/sinter-bench-{threads}t")

    t1, t2 = alternate_servers(serve(1), serve(2), pairs, block_ms)
    return [a / b for a, b in zip(t1, t2)], t1, t2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+", metavar="CASE")
    ap.add_argument("--sinter", default="target/release/sinter")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--paired", type=int, default=0, metavar="PAIRS",
                    help="measure only the whole model's speed-up, in PAIRS alternating blocks (see above)")
    ap.add_argument("--block-ms", type=float, default=100.0, help="with --paired: the length of a two-thread block")
    args = ap.parse_args()
    if args.paired:
        print(f"| model | 1T us | 2T us | speed-up, median of {args.paired} pairs (interquartile range) |")
        print("|---|---|---|---|")
        for case in args.cases:
            ratios, t1, t2 = paired(args.sinter, case, args.paired, args.block_ms)
            q = statistics.quantiles(ratios, n=4, method="inclusive")
            name = case.rstrip("/").split("/")[-1]
            print(f"| {name} | {statistics.median(t1):.1f} | {statistics.median(t2):.1f} "
                  f"| {statistics.median(ratios):.2f} ({q[0]:.2f}-{q[2]:.2f}) |", flush=True)
        return
    for case in args.cases:
        scaling(args, case)


def scaling(args, case):
    """The per-node table of one case."""
    one, two = (profile(args.sinter, case, t, args.iters) for t in (1, 2))
    t2 = {n["name"]: n for n in two["nodes"]}
    rows, per_op = [], collections.defaultdict(lambda: [0.0, 0.0, 0])
    for n in one["nodes"]:
        m = t2.get(n["name"])
        if m is None:
            continue
        a, b = n["us_per_run"], m["us_per_run"]
        rows.append((b - a / 2, n["name"], n["op"], n["kernel"], a, b))
        op = per_op[n["op"]]
        op[0], op[1], op[2] = op[0] + a, op[1] + b, op[2] + 1
    print(f"{case}: run {one['run_us']:.1f} us at 1 thread, {two['run_us']:.1f} us at 2 "
          f"(speedup {one['run_us'] / max(two['run_us'], 1e-9):.2f})\n")
    print(f"{'node':60} {'op':18} {'1T us':>9} {'2T us':>9} {'speedup':>8} {'lost us':>8}  kernel")
    for lost, name, op, kernel, a, b in sorted(rows, reverse=True)[:args.top]:
        print(f"{name[:60]:60} {op[:18]:18} {a:9.1f} {b:9.1f} {a / max(b, 1e-9):8.2f} {lost:8.1f}  {kernel}")
    print(f"\n{'op':24} {'nodes':>5} {'1T us':>9} {'2T us':>9} {'speedup':>8} {'lost us':>8}")
    for op, (a, b, k) in sorted(per_op.items(), key=lambda kv: kv[1][0] / 2 - kv[1][1]):
        print(f"{op[:24]:24} {k:5} {a:9.1f} {b:9.1f} {a / max(b, 1e-9):8.2f} {b - a / 2:8.1f}")


if __name__ == "__main__":
    main()
