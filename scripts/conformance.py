#!/usr/bin/env python3
"""Runs `sinter verify` over the ONNX backend node cases and writes CONFORMANCE.md.

    python3 scripts/conformance.py ../shared/onnx-node-tests [--copy tests/data/node] [--max-kb 64]

Per op: cases passed / total (a case counts for the op it tests: its only op, or for an
`_expanded` case the op of the case it expands), with the reasons of the cases not passed.
With --copy, every passing case up to --max-kb is copied into the repo so that `cargo test`
re-runs it (compiler/tests/verify_cli.rs). Standard library only; no onnx or numpy needed.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time


# What sinter does not compute of each ONNX Runtime contrib (`com.microsoft`) op it takes, as
# its parser refuses them (compiler/src/ops/contrib.rs, nbits.rs, int8.rs, qlinear.rs,
# recurrent.rs). The bundled cases that use each op are found by reading the models.
CONTRIB_LIMITS = {
    "Attention": "a past state, an attention bias or past length, the present output, do_rotary",
    "QAttention": "a past state, the present output, do_rotary",
    "MultiHeadAttention": "packed Q/K/V, an attention bias, a past state, the present or QK outputs",
    "GroupQueryAttention": "float16; position_ids, head_sink, smooth_softmax, quantized caches, "
                           "q/k norm weights, query_seqlens, a window-sized cache, output_qk; a "
                           "total_sequence_length known only at run time",
    "RotaryEmbedding": "is_packed_batching (the scale attribute is ignored, as ORT's kernels do)",
    "SkipLayerNormalization": "",
    "SkipSimplifiedLayerNormalization": "the mean and inverse deviation outputs",
    "SimplifiedLayerNormalization": "the inverse deviation output, stash_type other than float32",
    "EmbedLayerNormalization": "",
    "BiasGelu": "", "FastGelu": "", "Gelu": "", "QuickGelu": "", "BiasAdd": "",
    "MatMulNBits": "bits other than 2, 4, 8; a g_idx or B computed at run time",
    "QGemm": "transA; a C other than a constant int32 of 1 or N values",
    "DynamicQuantizeMatMul": "weights that are not a constant 2-D tensor",
    "MatMulIntegerToFloat": "weights that are not a constant 2-D tensor",
    "DynamicQuantizeLSTM": "weights or their quantization parameters computed at run time",
    "QLinearAdd": "per-channel scales", "QLinearMul": "per-channel scales",
    "QLinearSigmoid": "per-channel scales", "QLinearLeakyRelu": "per-channel scales",
    "QLinearGlobalAveragePool": "images of 2^24 elements or more",
    "QLinearAveragePool": "per-channel scales", "QLinearConcat": "per-channel scales",
    "QLinearSoftmax": "per-channel scales", "QLinearWhere": "per-channel scales",
}


def _fields(buf):
    """(field number, wire type, value) of a protobuf message: the bytes of length-delimited
    fields, the integer of varints; fixed-width fields skipped."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            value, i = None, i + (8 if wire == 1 else 4)
        else:
            return
        yield field, wire, value


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def contrib_ops(model_path):
    """The contrib op types of a model's main graph (ModelProto.graph = 7,
    GraphProto.node = 1, NodeProto.op_type = 4, NodeProto.domain = 7)."""
    with open(model_path, "rb") as f:
        data = f.read()
    ops = set()
    for field, wire, graph in _fields(data):
        if field != 7 or wire != 2:
            continue
        for gf, gw, node in _fields(graph):
            if gf != 1 or gw != 2:
                continue
            attrs = {nf: v for nf, nw, v in _fields(node) if nw == 2 and nf in (4, 7)}
            op = attrs.get(4, b"").decode()
            # ORT registers SimplifiedLayerNormalization in the default domain.
            if attrs.get(7) == b"com.microsoft" or op == "SimplifiedLayerNormalization":
                ops.add(op)
    return ops


def write_contrib(f, root):
    """The contrib-op section: per op, what is not supported and the bundled cases using it."""
    data = os.path.join(root, "tests", "data")
    uses = collections.defaultdict(list)
    for d, _, names in sorted(os.walk(data)):
        if "model.onnx" in names:
            for op in contrib_ops(os.path.join(d, "model.onnx")):
                uses[op].append(os.path.relpath(d, data))
    f.write("\n## ONNX Runtime contrib ops (`com.microsoft`)\n\n")
    f.write("What ONNX Runtime's quantizers, transformer optimizer and GenAI model builder write. Each\n")
    f.write("bundled case is checked against ORT 1.32's outputs by `cargo test`\n")
    f.write("(`compiler/tests/verify_cli.rs`); the forms in the middle column are refused with that reason.\n\n")
    f.write("| op | not supported | bundled cases (tests/data) |\n|---|---|---|\n")
    for op in sorted(CONTRIB_LIMITS):
        cases = sorted(uses.get(op, []))
        shown = ", ".join(f"`{c}`" for c in cases[:6]) + (f" and {len(cases) - 6} more" if len(cases) > 6 else "")
        f.write(f"| {op} | {CONTRIB_LIMITS[op] or '-'} | {shown or '(none bundled)'} |\n")
    unknown = sorted(set(uses) - set(CONTRIB_LIMITS))
    if unknown:
        sys.exit(f"bundled cases use contrib ops missing from CONTRIB_LIMITS: {unknown}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("suite", help="folder of node cases with INDEX.tsv")
    ap.add_argument("--copy", help="copy passing cases into this folder (replacing it)")
    ap.add_argument("--max-kb", type=int, default=64, help="largest case to copy")
    ap.add_argument("--out", default="CONFORMANCE.md")
    ap.add_argument("--rtol", default="1e-3")
    ap.add_argument("--atol", default="1e-7")
    args = ap.parse_args()

    index = {}
    with open(os.path.join(args.suite, "INDEX.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            index[row["case"]] = row
    cases = sorted(index)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["cargo", "run", "--release", "-q", "-p", "sinter", "--", "verify", "--rtol", args.rtol, "--atol", args.atol]
    started = time.time()
    out = subprocess.run(cmd + [os.path.join(args.suite, c) for c in cases], cwd=root, capture_output=True, text=True)
    results = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^(PASS|FAIL|UNSUPPORTED) (\S+)(?:: (.*))?$", line)
        if m:
            results[m.group(2)] = (m.group(1), m.group(3) or "")
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "(no output)"
    missing = [c for c in cases if c not in results]
    if missing:
        sys.exit(f"verify printed no result for {len(missing)} cases, e.g. {missing[:3]}; stderr:\n{out.stderr[-3000:]}")

    def primary(case):
        base = re.sub(r"_expanded(_ver\d+)?$", "", case)
        if base != case and base in index:
            case = base
        ops = index[case]["op_types"].split()
        real = [o for o in ops if o != "Constant"]
        return (real or ops or ["?"])[0]

    per_op = collections.defaultdict(lambda: collections.Counter())
    reasons = collections.defaultdict(list)
    for c in cases:
        status, why = results[c]
        op = primary(c)
        per_op[op][status] += 1
        if status != "PASS":
            reasons[op].append(f"{c}: {why}")
    # Passes compiled with some inputs turned into constants from the case's data (shapes that
    # depend on input values): verify says so on their PASS line.
    specialized = [c for c in cases if results[c][0] == "PASS" and results[c][1].startswith("specialized")]
    for c in specialized:
        per_op[primary(c)]["SPECIALIZED"] += 1
    core = [c for c in cases if index[c]["core_dtypes"] == "yes"]
    core_pass = sum(results[c][0] == "PASS" for c in core)
    total_pass = sum(results[c][0] == "PASS" for c in cases)
    fails = [c for c in cases if results[c][0] == "FAIL"]

    with open(os.path.join(root, args.out), "w") as f:
        f.write("# Conformance: ONNX backend node cases\n\n")
        f.write(f"Generated by `scripts/conformance.py` on {time.strftime('%Y-%m-%d')} ({time.time() - started:.0f} s), from\n")
        f.write(f"`sinter verify --rtol {args.rtol} --atol {args.atol}` over the {len(cases)} ONNX backend node cases (onnx 1.23.2) in `{os.path.basename(os.path.abspath(args.suite))}`.\n\n")
        f.write(f"- all cases: **{total_pass} / {len(cases)} pass** ({100.0 * total_pass / len(cases):.1f}%)\n")
        f.write(f"- core_dtypes=yes cases (float32/int64/bool): **{core_pass} / {len(core)} pass** ({100.0 * core_pass / max(1, len(core)):.1f}%)\n")
        f.write(f"- verify's last line: `{summary}`\n\n")
        f.write(f"- passes compiled specialized to their data: **{len(specialized)}** (listed below)\n\n")
        f.write("A case that is not PASS is UNSUPPORTED with its reason, or FAIL (a bug). Where the graph bounds an\n")
        f.write("output whose shape depends on input values (NonZero, Compress, Unique, NonMaxSuppression, TopK with\n")
        f.write("a run-time k, Reshape and Slice with run-time operands), the case compiles once with a static\n")
        f.write("capacity and the actual shape comes back at run time. Any other case whose shapes depend on input\n")
        f.write("values is compiled specialized to its data (those inputs become constants, as `--const` would):\n")
        f.write("`verify` says so on its PASS line, and the column `specialized` counts them.\n\n")
        if fails:
            f.write("## Failing cases\n\n")
            for c in fails:
                f.write(f"- `{c}`: {results[c][1]}\n")
            f.write("\n")
        f.write("## Per op\n\n| op | passed | specialized | total | |\n|---|---|---|---|---|\n")
        for op in sorted(per_op):
            n = sum(v for k, v in per_op[op].items() if k != "SPECIALIZED")
            p = per_op[op]["PASS"]
            sp = per_op[op]["SPECIALIZED"]
            mark = "all" if p == n else ("none" if p == 0 else "")
            f.write(f"| {op} | {p} | {sp or ''} | {n} | {mark} |\n")
        if specialized:
            f.write("\n## Passing specialized to their data\n\n")
            f.write("Their shapes depend on input values that no bound fixes yet, so they are compiled with those\n")
            f.write("inputs as constants taken from the case's data.\n\n")
            for c in specialized:
                f.write(f"- `{c}`: {results[c][1]}\n")
        write_contrib(f, root)
        f.write("\n## Not passing, with reasons\n\n")
        for op in sorted(reasons):
            f.write(f"<details><summary>{op} ({len(reasons[op])})</summary>\n\n")
            for r in reasons[op]:
                f.write(f"- {r[:300]}\n")
            f.write("\n</details>\n\n")
    print(f"wrote {args.out}: {total_pass}/{len(cases)} pass, core {core_pass}/{len(core)}, {len(fails)} fail")

    if args.copy:
        dest = os.path.join(root, args.copy)
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        copied, size = 0, 0
        for c in cases:
            if results[c][0] != "PASS":
                continue
            src = os.path.join(args.suite, c)
            kb = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(src) for n in ns) / 1024
            if kb > args.max_kb:
                continue
            shutil.copytree(src, os.path.join(dest, c))
            copied, size = copied + 1, size + kb
        print(f"copied {copied} passing cases ({size / 1024:.1f} MB) into {args.copy}")


if __name__ == "__main__":
    main()
