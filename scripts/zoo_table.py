#!/usr/bin/env python3
"""Turns the output of scripts/bench_vs_ort.py (one row per model and thread count) into the
model-zoo table of BENCHMARKS.md: one row per model with its one- and two-thread times and
ratios, each time's spread over rounds (with `--paired` output, each ratio is the median of
the pairs' ratios, with its interquartile range), both sides' speed-up from one to two threads, and the
geometric mean of the ratios at each thread count. Ratios under 1.0 (sinter faster) are bold.

    python3 scripts/zoo_table.py BENCH_OUTPUT... [--threads 1 2]
"""
import argparse, math, re

ROW = re.compile(r"^\| (?P<model>[^|]+?) \| (?P<threads>\d+) \| (?P<s>[0-9.]+) \((?P<s_lo>[0-9.]+)-(?P<s_hi>[0-9.]+)\) "
                 r"\| (?P<o>[0-9.]+) \((?P<o_lo>[0-9.]+)-(?P<o_hi>[0-9.]+)\) "
                 r"\| (?P<r>[0-9.]+)(?: \((?P<r_lo>[0-9.]+)-(?P<r_hi>[0-9.]+)\))? \|")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="bench_vs_ort.py outputs")
    ap.add_argument("--threads", type=int, nargs=2, default=[1, 2], metavar=("A", "B"))
    args = ap.parse_args()
    rows, order = {}, []
    for path in args.files:
        for line in open(path):
            m = ROW.match(line.strip())
            if not m:
                continue
            model, threads = m["model"], int(m["threads"])
            if model not in rows:
                rows[model] = {}
                order.append(model)
            row = {k: float(m[k]) for k in ("s", "s_lo", "s_hi", "o", "o_lo", "o_hi")}
            if m["r_lo"]:
                # `--paired`: the median of the pairs' ratios, and its interquartile range.
                row.update(r=float(m["r"]), r_lo=float(m["r_lo"]), r_hi=float(m["r_hi"]))
            rows[model][threads] = row
    a, b = args.threads
    ratio = lambda r: r.get("r", r["s"] / r["o"])
    bold = lambda x: f"**{x:.2f}**" if x < 1.0 else f"{x:.2f}"
    ratio_cell = lambda r: bold(ratio(r)) + (f" ({r['r_lo']:.2f}-{r['r_hi']:.2f})" if "r_lo" in r else "")
    cell = lambda r, side: f"{r[side]:.1f} ({r[side + '_lo']:.1f}-{r[side + '_hi']:.1f})"
    print(f"| model | {a}T sinter us | {a}T ORT us | {a}T sinter/ORT | {b}T sinter us | {b}T ORT us | {b}T sinter/ORT "
          f"| sinter {a}T/{b}T | ORT {a}T/{b}T |")
    print("|---|---|---|---|---|---|---|---|---|")
    logs = {a: [], b: []}
    for model in order:
        r = rows[model]
        if a not in r or b not in r:
            continue
        ra, rb = ratio(r[a]), ratio(r[b])
        logs[a].append(math.log(ra))
        logs[b].append(math.log(rb))
        print(f"| {model} | {cell(r[a], 's')} | {cell(r[a], 'o')} | {ratio_cell(r[a])} | {cell(r[b], 's')} | {cell(r[b], 'o')} "
              f"| {ratio_cell(r[b])} | {r[a]['s'] / r[b]['s']:.2f} | {r[a]['o'] / r[b]['o']:.2f} |")
    gm = lambda xs: math.exp(sum(xs) / len(xs)) if xs else float("nan")
    print(f"| **geometric mean** | | | {bold(gm(logs[a]))} | | | {bold(gm(logs[b]))} | | |")


if __name__ == "__main__":
    main()
