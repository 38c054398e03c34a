#!/usr/bin/env python3
"""Writes int8 test cases: the float models of tests/data and ../shared/models quantized with
ONNX Runtime's quantizer (onnxruntime.quantization), each in the ONNX backend test layout
(`model.onnx`, `test_data_set_N/input_K.pb`, `output_K.pb`), for `sinter verify`.

    /tmp/venv/bin/python scripts/make_quant_cases.py [OUT_DIR] [--models NAME,...]
        [--bundle DIR] [--bert-dir DIR | --no-bert]

needs onnx 1.23, onnxruntime 1.32, numpy, sympy; torch and transformers for the BERT model.

Per float model `M` (a folder holding `model.onnx` and `test_data_set_N/`), in `OUT_DIR`
(default /tmp/quant_cases):

| case                   | how                                                                  |
|------------------------|----------------------------------------------------------------------|
| `M_dynamic`            | quantize_dynamic, weights QInt8 per tensor, If/Loop bodies too (*)   |
| `M_dynamic_channel`    | the same with per_channel=True                                       |
| `M_qdq_s8s8`           | quantize_static, QDQ, activations QInt8, weights QInt8, per tensor   |
| `M_qdq_s8s8_channel`   | the same, weights per channel                                        |
| `M_qdq_u8s8`           | quantize_static, QDQ, activations QUInt8, weights QInt8, per tensor  |
| `M_qdq_u8s8_channel`   | the same, weights per channel                                        |
| `M_qop_u8s8`           | quantize_static, QOperator (QLinearConv, com.microsoft QGemm, ...)   |

(*) EnableSubgraph; where that fails, the model is quantized without it and the summary notes it.
A per-channel case whose model is byte-identical to its per-tensor sibling is not written, nor is
a case the quantizer left without any quantization op, nor one ONNX Runtime cannot run; each is
listed with the reason in `OUT_DIR/summary.json` and `OUT_DIR/README.md` (which also hold every
case's size and op histogram, and one op histogram per format).

Every case keeps the float model's data sets and inputs (`test_data_set_N/input_K.pb`, graph
input names); `output_K.pb` are the outputs of the QUANTIZED model from onnxruntime
InferenceSession (default session options, so ORT's graph optimizations on, CPUExecutionProvider,
intra_op_num_threads=1).

Before quantizing, the float model goes through quant_pre_process (symbolic and ONNX shape
inference, ORT's basic graph optimizations, which also turn Constant nodes and the light CNNs'
ConstantOfShape weight generators into initializers); where symbolic shape inference fails
(PP-OCR's Concat, Silero's If) it runs without it, and if that fails too the raw model is
quantized; the summary says which. Initializers that are also graph inputs (the light CNNs, IR
version 3) are first made plain constants (IR version 4), else ORT would neither fold them nor let
a session run without them.

Static calibration (MinMax) reads the model's own test inputs and then 4 perturbations of them
(numpy default_rng seed 20240601): float inputs scaled by U(0.9, 1.1) plus Gaussian noise of
0.05 times their standard deviation; integer and bool inputs unchanged.

The float models of tests/data include `tiny_lstm` and `tiny_lstm_stack` (scripts/make_tiny_lstm.py),
whose dynamic cases hold ONNX Runtime's com.microsoft DynamicQuantizeLSTM.

`--bundle DIR` copies the small cases (all of tiny_mlp, tiny_cnn and the tiny LSTMs; of PP-OCR cls,
one case per format and the per-channel dynamic one) to DIR (tests/data/quant) with a README. Unless
`--no-bert`, and if torch and transformers import, it also writes a randomly initialized BERT
encoder (BertModel, torch seed 0: 6 layers, hidden 384, 12 heads, intermediate 1536, vocab
30522, batch 1, sequence 128 of which 101 tokens and 27 padding, int64 input_ids /
attention_mask / token_type_ids, eager attention; torch.onnx.export with dynamo=False, opset 17,
static shapes) and its quantize_dynamic version to `BERT_DIR/{float,dynamic}` (default
/tmp/quant_zoo/bert6_384) in the same layout. `--models ''` makes only that.

Deterministic: the same inputs and package versions give the same files.
"""
import argparse
import collections
import hashlib
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper as nh
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "models"))
SEED = 20240601
N_PERTURBATIONS = 4
# What --bundle copies: every tiny_mlp, tiny_cnn and tiny LSTM case, and one PP-OCR cls case per format
# (each ~0.5 MB, most of it the two 1x3x48x192 inputs) and the per-channel dynamic one, to
# stay under ~3 MB.
BUNDLE_PREFIXES = ("tiny_mlp_", "tiny_cnn_", "tiny_lstm_")
BUNDLE_EXTRA = (
    "ppocr_cls_dynamic", "ppocr_cls_dynamic_channel", "ppocr_cls_qdq_s8s8", "ppocr_cls_qdq_u8s8_channel",
    "ppocr_cls_qop_u8s8",
)


# Case-name prefixes for source folders whose own name would make case names ambiguous
# (`ppocr_det_v4_dynamic` is `ppocr_det_v4` quantized dynamically).
RENAMED = {"ppocr_det_v4_dynamic": "ppocr_det_v4_dyndims"}


def source_models():
    """(case-name prefix, folder) of the float models, in order: the bundled ones, then those of
    ../shared/models whose model.onnx is not byte-identical to one already listed."""
    dirs = [
        os.path.join(ROOT, "tests", "data", n)
        for n in ("tiny_mlp", "tiny_cnn", "tiny_lstm", "tiny_lstm_stack")
    ]
    dirs += [
        os.path.join(ROOT, "tests", "data", "models", n)
        for n in ("ppocr_cls", "light_squeezenet", "light_shufflenet", "silero_vad")
    ]
    if os.path.isdir(SHARED):
        dirs += [
            os.path.join(SHARED, n)
            for n in sorted(os.listdir(SHARED))
            if os.path.isfile(os.path.join(SHARED, n, "model.onnx"))
        ]
    seen, models = set(), []
    for d in dirs:
        digest = hashlib.sha256(open(os.path.join(d, "model.onnx"), "rb").read()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            name = os.path.basename(d)
            models.append((RENAMED.get(name, name), d))
    return models


def read_data_sets(case_dir):
    """[(inputs, outputs)] per test_data_set_N in order, each a list of (name, array)."""
    sets = []
    n = 0
    while os.path.isdir(os.path.join(case_dir, f"test_data_set_{n}")):
        d = os.path.join(case_dir, f"test_data_set_{n}")
        pair = []
        for kind in ("input", "output"):
            tensors, k = [], 0
            while os.path.isfile(os.path.join(d, f"{kind}_{k}.pb")):
                t = onnx.load_tensor(os.path.join(d, f"{kind}_{k}.pb"))
                tensors.append((t.name, nh.to_array(t)))
                k += 1
            pair.append(tensors)
        sets.append(tuple(pair))
        n += 1
    return sets


def calibration_feeds(data_sets):
    """The data sets' inputs, then N_PERTURBATIONS perturbed copies (fixed seed)."""
    rng = np.random.default_rng(SEED)
    feeds = [dict(inputs) for inputs, _ in data_sets]
    for p in range(N_PERTURBATIONS):
        base = feeds[p % len(data_sets)]
        feed = {}
        for name, x in base.items():
            if x.dtype.kind == "f":
                scale = rng.uniform(0.9, 1.1)
                noise = rng.standard_normal(x.shape) * 0.05 * float(np.std(x))
                feed[name] = (x * scale + noise).astype(x.dtype)
            else:
                feed[name] = x
        feeds.append(feed)
    return feeds


class Feeds(CalibrationDataReader):
    """A calibration reader over a list of feed dicts."""

    def __init__(self, feeds):
        self.feeds = list(feeds)
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.feeds):
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def rewind(self):
        self.pos = 0


def op_histogram(model):
    """Node counts by op type (`domain.Op` outside ai.onnx), subgraphs included."""
    counts = collections.Counter()

    def walk(graph):
        for node in graph.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            counts[key] += 1
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)

    walk(model.graph)
    return dict(sorted(counts.items()))


QUANT_OPS = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "ConvInteger", "QLinearConv", "QLinearMatMul",
}


def is_quantized(hist):
    return any(k in QUANT_OPS or k.startswith("com.microsoft.") for k in hist)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def write_case(case_dir, model_path, data_sets):
    """Copies the model into case_dir and writes every data set with the quantized model's
    ORT outputs; returns the largest and the mean absolute difference from the float model's
    outputs (over every float output of every data set)."""
    os.makedirs(case_dir, exist_ok=True)
    shutil.copyfile(model_path, os.path.join(case_dir, "model.onnx"))
    sess = session(os.path.join(case_dir, "model.onnx"))
    input_names = [i.name for i in sess.get_inputs()]
    output_names = [o.name for o in sess.get_outputs()]
    worst, total, count = 0.0, 0.0, 0
    for n, (inputs, float_outputs) in enumerate(data_sets):
        d = os.path.join(case_dir, f"test_data_set_{n}")
        os.makedirs(d, exist_ok=True)
        feed = dict(inputs)
        missing = [i for i in input_names if i not in feed]
        if missing:
            raise RuntimeError(f"quantized model wants inputs the data lacks: {missing}")
        for k, (name, x) in enumerate(inputs):
            onnx.save_tensor(nh.from_array(x, name), os.path.join(d, f"input_{k}.pb"))
        outs = sess.run(None, {i: feed[i] for i in input_names})
        for k, (name, y) in enumerate(zip(output_names, outs)):
            onnx.save_tensor(nh.from_array(np.asarray(y), name), os.path.join(d, f"output_{k}.pb"))
        for (_, want), got in zip(float_outputs, outs):
            if want.shape == np.shape(got) and want.dtype.kind == "f":
                diff = np.abs(want.astype(np.float64) - got)
                worst = max(worst, float(np.max(diff, initial=0.0)))
                total, count = total + float(np.sum(diff)), count + diff.size
    return {"max": worst, "mean": total / max(count, 1)}


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


VARIANTS = [
    # (suffix, kind, options); a `_channel` variant is dropped when it equals its sibling.
    ("dynamic", "dynamic", dict(per_channel=False)),
    ("dynamic_channel", "dynamic", dict(per_channel=True)),
    ("qdq_s8s8", "static", dict(fmt=QuantFormat.QDQ, act=QuantType.QInt8, per_channel=False)),
    ("qdq_s8s8_channel", "static", dict(fmt=QuantFormat.QDQ, act=QuantType.QInt8, per_channel=True)),
    ("qdq_u8s8", "static", dict(fmt=QuantFormat.QDQ, act=QuantType.QUInt8, per_channel=False)),
    ("qdq_u8s8_channel", "static", dict(fmt=QuantFormat.QDQ, act=QuantType.QUInt8, per_channel=True)),
    ("qop_u8s8", "static", dict(fmt=QuantFormat.QOperator, act=QuantType.QUInt8, per_channel=False)),
]


def quantize(kind, opts, src, dst, feeds):
    """Quantizes src into dst as `kind` with `opts` (a VARIANTS entry); returns a note on what
    had to be done differently, or None."""
    if kind == "dynamic":
        try:
            quantize_dynamic(
                src, dst, weight_type=QuantType.QInt8, per_channel=opts["per_channel"],
                extra_options={"EnableSubgraph": True},
            )
        except Exception as e:  # noqa: BLE001, retried without subgraphs
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=opts["per_channel"])
            return f"subgraphs left float (EnableSubgraph failed: {first_line(e)})"
        return None
    note = None
    opset = next(o.version for o in onnx.load(src).opset_import if o.domain in ("", "ai.onnx"))
    if opts["fmt"] == QuantFormat.QDQ and opts["per_channel"] and opset < 13:
        # DequantizeLinear takes `axis` from opset 13; the quantizer writes it without raising
        # the opset, and ORT rejects the model.
        raised = dst + ".opset13.onnx"
        onnx.save(onnx.version_converter.convert_version(onnx.load(src), 13), raised)
        src, note = raised, f"opset raised from {opset} to 13 first (per-channel DequantizeLinear)"
    quantize_static(
        src, dst, Feeds(feeds), quant_format=opts["fmt"], per_channel=opts["per_channel"],
        activation_type=opts["act"], weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return note


def first_line(e):
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def as_constants(src, dst):
    """Writes src to dst with the initializers that are also graph inputs (IR < 4 style, as in
    the light CNNs) made plain constants, so ORT folds what they feed (the test data never
    overrides them); ir_version goes up to 4 if that is needed. Returns whether it changed."""
    model = onnx.load(src)
    inits = {i.name for i in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in inits]
    if len(kept) == len(model.graph.input):
        shutil.copyfile(src, dst)
        return False
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, 4)
    onnx.save(model, dst)
    return True


def pre_process(src, dst):
    """Runs quant_pre_process on src into dst, without symbolic shape inference if that fails
    (it asserts on Paddle's Concat and on Silero's If), else copies src; says which."""
    errors = []
    for label, options in [
        ("ok", dict(auto_merge=True)),
        ("ok without symbolic shape inference", dict(skip_symbolic_shape=True)),
    ]:
        try:
            quant_pre_process(src, dst, **options)
            return label + "".join(f" (first attempt: {e})" for e in errors)
        except Exception as e:  # noqa: BLE001, the next attempt is the fallback
            errors.append(first_line(e))
    shutil.copyfile(src, dst)
    return "failed, raw model quantized: " + "; ".join(errors)


def make_model_cases(name, src_dir, out, summary):
    data_sets = read_data_sets(src_dir)
    feeds = calibration_feeds(data_sets)
    record = summary.setdefault("models", {}).setdefault(name, {})
    record["source"] = os.path.relpath(src_dir, ROOT)
    with tempfile.TemporaryDirectory(prefix="quant_") as tmp:
        pre, const = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "const.onnx")
        if as_constants(os.path.join(src_dir, "model.onnx"), const):
            record["initializer_inputs"] = "made constants"
        record["pre_process"] = pre_process(const, pre)
        produced = {}
        for suffix, kind, opts in VARIANTS:
            case = f"{name}_{suffix}"
            dst = os.path.join(tmp, f"{suffix}.onnx")
            print(f"-- {case}", flush=True)
            entry = {"format": suffix.split("_")[0] if suffix != "dynamic_channel" else "dynamic"}
            try:
                note = quantize(kind, opts, pre, dst, feeds)
                if note:
                    entry["note"] = note
            except Exception as e:  # noqa: BLE001, recorded and moved on
                traceback.print_exc()
                entry["skipped"] = f"quantizer failed: {first_line(e)}"
                summary["cases"][case] = entry
                continue
            model_bytes = open(dst, "rb").read()
            sibling = suffix[: -len("_channel")] if suffix.endswith("_channel") else None
            if sibling and produced.get(sibling) == model_bytes:
                entry["skipped"] = f"same model as {name}_{sibling}"
                summary["cases"][case] = entry
                continue
            produced[suffix] = model_bytes
            hist = op_histogram(onnx.load_from_string(model_bytes))
            entry["ops"] = hist
            if not is_quantized(hist):
                entry["skipped"] = "the quantizer left no quantization op in the model"
                summary["cases"][case] = entry
                continue
            case_dir = os.path.join(out, case)
            shutil.rmtree(case_dir, ignore_errors=True)
            try:
                entry["abs_diff_vs_float"] = write_case(case_dir, dst, data_sets)
            except Exception as e:  # noqa: BLE001, recorded and moved on
                shutil.rmtree(case_dir, ignore_errors=True)
                entry["skipped"] = f"onnxruntime cannot run the quantized model: {first_line(e)}"
                summary["cases"][case] = entry
                continue
            entry["bytes"] = dir_bytes(case_dir)
            entry["model_bytes"] = len(model_bytes)
            summary["cases"][case] = entry


def make_bert(bert_dir, summary):
    """A random-init 6-layer BERT, exported with torch.onnx.export, and its dynamic int8 copy."""
    try:
        import torch
        import transformers
    except ImportError as e:
        summary["bert"] = f"not made: {first_line(e)}"
        return
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=1536, max_position_embeddings=512, attn_implementation="eager",
    )

    class Encoder(torch.nn.Module):
        """BertModel with positional inputs and a tuple of outputs, for the tracing exporter."""

        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(config)

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state, out.pooler_output

    model = Encoder().eval()
    rng = np.random.default_rng(SEED)
    seq = 128
    input_ids = rng.integers(1000, 30000, size=(1, seq), dtype=np.int64)
    input_ids[0, 0], input_ids[0, 100] = 101, 102  # [CLS] ... [SEP], then padding
    input_ids[0, 101:] = 0
    attention_mask = np.zeros((1, seq), np.int64)
    attention_mask[0, :101] = 1
    token_type_ids = np.zeros((1, seq), np.int64)
    token_type_ids[0, 50:101] = 1
    names = ["input_ids", "attention_mask", "token_type_ids"]
    arrays = [input_ids, attention_mask, token_type_ids]
    float_dir, dyn_dir = os.path.join(bert_dir, "float"), os.path.join(bert_dir, "dynamic")
    shutil.rmtree(bert_dir, ignore_errors=True)
    tmp = tempfile.TemporaryDirectory(prefix="quant_bert_")
    float_path = os.path.join(tmp.name, "float.onnx")
    kwargs = dict(
        input_names=names, output_names=["last_hidden_state", "pooler_output"],
        opset_version=17, do_constant_folding=True,
    )
    args = tuple(torch.from_numpy(a) for a in arrays)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: one file, opset 17 as asked
    with torch.no_grad():
        torch.onnx.export(model, args, float_path, **kwargs)
    data = [(list(zip(names, arrays)), [])]
    write_case(float_dir, float_path, data)
    pre = os.path.join(tmp.name, "pre.onnx")
    quant_pre_process(float_path, pre)
    dst = os.path.join(tmp.name, "dynamic.onnx")
    quantize_dynamic(pre, dst, weight_type=QuantType.QInt8)
    worst = write_case(dyn_dir, dst, read_data_sets(float_dir))
    tmp.cleanup()
    summary["bert"] = {
        "dir": bert_dir,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "float": {
            "bytes": dir_bytes(float_dir),
            "ops": op_histogram(onnx.load(os.path.join(float_dir, "model.onnx"))),
        },
        "dynamic": {
            "bytes": dir_bytes(dyn_dir),
            "abs_diff_vs_float": worst,
            "ops": op_histogram(onnx.load(os.path.join(dyn_dir, "model.onnx"))),
        },
    }


def fmt_hist(hist):
    return ", ".join(f"{k} {v}" for k, v in sorted(hist.items()))


def readme(summary, cases, bundle):
    """README text for `cases` (names of summary['cases']): of the bundle in tests/data/quant,
    or (not bundle) of everything made, with what was not written and why."""
    lines = [
        "# Quantized test cases (int8)" if bundle else "# All quantized cases",
        "",
        "Written by `scripts/make_quant_cases.py` (see its docstring for how each case is made).",
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}.",
        "Inputs are the float model's test inputs; outputs are ONNX Runtime's outputs of the",
        "quantized model (default session options, CPU, 1 thread).",
        "",
    ]
    if bundle:
        lines += [
            "`bundled_quantized_models_pass` in compiler/tests/verify_cli.rs runs `sinter verify` on",
            "every case here at -O0 and -O3 (rtol 1e-3, atol 1e-2); each must pass, except the few it",
            "lists, which may still be unsupported while their ops are being added.",
            "",
        ]
    lines += [
        "| case | KB | abs diff from the float model's outputs: max / mean | ops |",
        "|---|---|---|---|",
    ]
    per_format = collections.defaultdict(collections.Counter)
    for case in cases:
        e = summary["cases"][case]
        d = e["abs_diff_vs_float"]
        per_format[e["format"]].update(e["ops"])
        lines.append(
            f"| `{case}` | {e['bytes'] // 1024} | {d['max']:.3g} / {d['mean']:.3g} | {fmt_hist(e['ops'])} |"
        )
    lines += ["", "## Ops per format (summed over the cases above)", ""]
    for f in sorted(per_format):
        lines.append(f"- {f}: {fmt_hist(per_format[f])}")
    notes = [f"- `{c}`: {summary['cases'][c]['note']}" for c in cases if "note" in summary["cases"][c]]
    if notes:
        lines += ["", "## Notes", ""] + notes
    skipped = [(c, e) for c, e in summary["cases"].items() if "skipped" in e]
    if not bundle:
        lines += ["", "## Not written", ""]
        lines += [f"- `{c}`: {e['skipped']}" for c, e in skipped] or ["(none)"]
        lines += ["", "## Pre-processing", ""]
        lines += [f"- `{m}`: {r['pre_process']}" for m, r in summary["models"].items()]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="/tmp/quant_cases")
    parser.add_argument(
        "--models", help="comma-separated float model names (default: all; '' for none)"
    )
    parser.add_argument("--bundle", help="copy the small cases here (tests/data/quant)")
    parser.add_argument("--bert-dir", default="/tmp/quant_zoo/bert6_384")
    parser.add_argument("--no-bert", action="store_true")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    os.makedirs(args.out, exist_ok=True)
    summary_path = os.path.join(args.out, "summary.json")
    summary = {"cases": {}, "models": {}}
    if os.path.isfile(summary_path):
        summary = json.load(open(summary_path))
    wanted = None if args.models is None else set(args.models.split(","))
    for name, src in source_models():
        if wanted is not None and name not in wanted:
            continue
        for case in [c for c in summary["cases"] if c.startswith(name + "_")]:
            if c_model(case) == name:
                del summary["cases"][case]
        make_model_cases(name, src, args.out, summary)
        summary["cases"] = dict(sorted(summary["cases"].items()))
        json.dump(summary, open(summary_path, "w"), indent=1, sort_keys=True)
    written = [c for c, e in summary["cases"].items() if "skipped" not in e]
    open(os.path.join(args.out, "README.md"), "w").write(
        readme(summary, written, bundle=False)
    )
    if args.bundle:
        small = [c for c in written if c.startswith(BUNDLE_PREFIXES) or c in BUNDLE_EXTRA]
        shutil.rmtree(args.bundle, ignore_errors=True)
        os.makedirs(args.bundle)
        for c in small:
            shutil.copytree(os.path.join(args.out, c), os.path.join(args.bundle, c))
        open(os.path.join(args.bundle, "README.md"), "w").write(
            readme(summary, small, bundle=True)
        )
    if not args.no_bert:
        make_bert(args.bert_dir, summary)
        json.dump(summary, open(summary_path, "w"), indent=1, sort_keys=True)


def c_model(case):
    """The float model name of a case name (the part before the variant suffix)."""
    for suffix, _, _ in sorted(VARIANTS, key=lambda v: -len(v[0])):
        if case.endswith("_" + suffix):
            return case[: -len(suffix) - 1]
    return case


if __name__ == "__main__":
    sys.exit(main())
