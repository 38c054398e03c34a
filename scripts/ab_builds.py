#!/usr/bin/env python3
"""Two builds of sinter on the same models: which one is faster, paired.

Compiles each model twice, once by each build: a runtime tree (`SINTER_RT_PATH`) and a
`sinter` binary (`--sinter`, and `--sinter-b` for B when its compiler differs too), keeps both
loaded (`sinter bench --serve`) and alternates them in blocks of
about `--block-ms` (the order swapped every pair, a pause before each block), as
bench_vs_ort.py --paired does against ORT. For a machine whose speed drifts: both sides see
the same mix of fast and slow moments. Prints, per model and thread count, the median of the
pairs' ratios B/A with its interquartile range (below 1: B is faster).

    git archive HEAD | tar -x -C /tmp/rt_a     # the baseline: A (the whole workspace)
    python3 scripts/ab_builds.py /tmp/rt_a/runtime-lite <a copy of this tree>/runtime-lite /tmp/zoo/resnet50 \\
        --pairs 15 --threads 1 2 --sinter <A's sinter> --sinter-b <B's sinter>
"""
import argparse
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import SinterServer, alternate  # noqa: E402


def serve(sinter, runtime, case, threads, cache):
    """`case` compiled against the runtime tree `runtime`, loaded and warmed up."""
    env = dict(os.environ, SINTER_RT_PATH=os.path.abspath(runtime))
    return SinterServer([sinter, "bench", case, "--serve", "--threads", str(threads), "--iters", "1",
                         "--warmup", "5", "--cache-dir", cache], env=env)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", metavar="RUNTIME_A", help="the baseline runtime-lite directory")
    ap.add_argument("b", metavar="RUNTIME_B", help="the runtime-lite directory to compare")
    ap.add_argument("cases", nargs="+", metavar="CASE")
    ap.add_argument("--sinter", default="target/release/sinter", help="the sinter binary (A's, and B's too by default)")
    ap.add_argument("--sinter-b", default=None, help="B's sinter binary, when its compiler differs from A's")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--block-ms", type=float, default=100.0)
    args = ap.parse_args()
    print("| model | threads | A us | B us | B/A, median of pairs (interquartile range) |")
    print("|---|---|---|---|---|")
    for case in args.cases:
        for threads in args.threads:
            a = serve(args.sinter, args.a, case, threads, f"target/sinter-ab-a-{threads}t")
            try:
                b = serve(args.sinter_b or args.sinter, args.b, case, threads, f"target/sinter-ab-b-{threads}t")
                try:
                    runs = max(3, math.ceil(args.block_ms * 1000 / a.block(3)))
                    ta, tb = alternate((lambda: a.block(runs), lambda: b.block(runs)), args.pairs, 30.0)
                finally:
                    b.close()
            finally:
                a.close()
            ratios = [y / x for x, y in zip(ta, tb)]
            q = statistics.quantiles(ratios, n=4, method="inclusive")
            name = case.rstrip("/").split("/")[-1]
            print(f"| {name} | {threads} | {statistics.median(ta):.1f} | {statistics.median(tb):.1f} "
                  f"| {statistics.median(ratios):.3f} ({q[0]:.3f}-{q[2]:.3f}) |", flush=True)


if __name__ == "__main__":
    main()
