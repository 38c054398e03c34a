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
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import alternate_servers, serve_model  # noqa: E402


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
            # Each build against its runtime tree, in a cache of its own.
            def build(sinter, runtime, side):
                env = dict(os.environ, SINTER_RT_PATH=os.path.abspath(runtime))
                return lambda: serve_model(sinter, case, threads, f"target/sinter-ab-{side}-{threads}t", env)

            ta, tb = alternate_servers(build(args.sinter, args.a, "a"),
                                       build(args.sinter_b or args.sinter, args.b, "b"), args.pairs, args.block_ms)
            ratios = [y / x for x, y in zip(ta, tb)]
            q = statistics.quantiles(ratios, n=4, method="inclusive")
            name = case.rstrip("/").split("/")[-1]
            print(f"| {name} | {threads} | {statistics.median(ta):.1f} | {statistics.median(tb):.1f} "
                  f"| {statistics.median(ratios):.3f} ({q[0]:.3f}-{q[2]:.3f}) |", flush=True)


if __name__ == "__main__":
    main()
