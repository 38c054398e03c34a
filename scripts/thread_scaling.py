#!/usr/bin/env python3
"""Where a second thread does not help: `sinter profile --json` of one model at one and at two
threads (same build), then per node and per op the time at each, the speedup, and the time
lost against a perfect split (`t2 - t1 / 2`), largest loss first.

    python3 scripts/thread_scaling.py CASE [--sinter target/release/sinter] [--iters 100] [--top 25]

Standard library only; the sinter binary builds the profiling crate (set SINTER_RT_PATH to a
snapshot of runtime-lite when the sources may change meanwhile).
"""
import argparse
import collections
import json
import subprocess


def profile(sinter, case, threads, iters):
    out = subprocess.run([sinter, "profile", case, "--json", "--threads", str(threads),
                          "--iters", str(iters), "--warmup", str(max(1, iters // 10))],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["profile"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case")
    ap.add_argument("--sinter", default="target/release/sinter")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    one, two = (profile(args.sinter, args.case, t, args.iters) for t in (1, 2))
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
    print(f"{args.case}: run {one['run_us']:.1f} us at 1 thread, {two['run_us']:.1f} us at 2 "
          f"(speedup {one['run_us'] / max(two['run_us'], 1e-9):.2f})\n")
    print(f"{'node':60} {'op':18} {'1T us':>9} {'2T us':>9} {'speedup':>8} {'lost us':>8}  kernel")
    for lost, name, op, kernel, a, b in sorted(rows, reverse=True)[:args.top]:
        print(f"{name[:60]:60} {op[:18]:18} {a:9.1f} {b:9.1f} {a / max(b, 1e-9):8.2f} {lost:8.1f}  {kernel}")
    print(f"\n{'op':24} {'nodes':>5} {'1T us':>9} {'2T us':>9} {'speedup':>8} {'lost us':>8}")
    for op, (a, b, k) in sorted(per_op.items(), key=lambda kv: kv[1][0] / 2 - kv[1][1]):
        print(f"{op[:24]:24} {k:5} {a:9.1f} {b:9.1f} {a / max(b, 1e-9):8.2f} {b - a / 2:8.1f}")


if __name__ == "__main__":
    main()
