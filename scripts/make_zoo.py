#!/usr/bin/env python3
"""Writes a benchmark zoo: well-known vision and language models exported to ONNX with RANDOM
initialisation (no weight download) and static shapes, one folder per model in the ONNX backend
test layout (`model.onnx`, `test_data_set_0/input_K.pb`, `output_K.pb`), for `sinter verify`,
`sinter bench` and `scripts/bench_vs_ort.py`.

    /tmp/venv/bin/python scripts/make_zoo.py [OUT_DIR] [--models NAME,...] [--force]

OUT_DIR defaults to /tmp/zoo. The files are large (the whole zoo is about 2.1 GB; gpt2 alone 650 MB, its tied embedding stored twice): never write
them under the repository. `--models` picks a subset (comma separated names from the tables
below); an existing `OUT_DIR/NAME/model.onnx` is kept unless `--force`.

needs torch, torchvision, transformers, onnx, onnxruntime (1.32) and numpy.

| model                | source                                                | inputs             |
|----------------------|-------------------------------------------------------|--------------------|
| resnet34, resnet50, mobilenet_v3_small, mobilenet_v3_large, regnet_y_400mf,        |
| shufflenet_v2_x1_0, squeezenet1_1, densenet121, convnext_tiny, mnasnet1_0,         |
| googlenet (aux_logits=False, init_weights=True), vit_b_16, efficientnet_b0,        |
| mobilenet_v2, resnext50_32x4d, swin_t                                              |
|                      | torchvision.models.NAME(weights=None)                 | f32 1x3x224x224    |
| inception_v3         | the same, aux_logits=False, init_weights=False        | f32 1x3x299x299    |
| bert_base            | BertModel(BertConfig()), outputs last_hidden_state, pooler_output | input_ids, attention_mask, token_type_ids: i64 1x128 |
| distilbert           | DistilBertModel(DistilBertConfig()), last_hidden_state | input_ids, attention_mask: i64 1x128 |
| gpt2                 | GPT2LMHeadModel(GPT2Config()), use_cache=False, logits | input_ids: i64 1x128 |
| minilm_l6            | BertModel(BertConfig(hidden 384, 6 layers, 12 heads, FFN 1536)), as bert_base | as bert_base |
| t5_encoder           | T5EncoderModel(T5Config()) (T5-small), last_hidden_state | input_ids, attention_mask: i64 1x128 |

Everything is built under torch.manual_seed(0) in eval mode; HF models use
attn_implementation="eager" (plain MatMul/Softmax attention, no SDPA) and run with
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 (nothing is fetched: models come from config classes
with their default vocab sizes). Each model is wrapped in a small nn.Module taking positional
tensors and returning a tuple. Export: torch.onnx.export, opset 17, the TorchScript exporter
(dynamo=False; if that fails, the dynamo exporter at opset 17, then at opset 18 if its
down-conversion is invalid; summary.json says which), no dynamic axes, constant folding on.

Inputs are deterministic: images from numpy.random.default_rng(0) standard normal; token ids
from default_rng(0) integers in [0, vocab), attention_mask all ones, token_type_ids zeros.
`output_K.pb` are ONNX Runtime's outputs on those inputs (InferenceSession with default
options, so ORT_ENABLE_ALL graph optimizations, CPUExecutionProvider, intra_op_num_threads=1),
not PyTorch's. A model whose export or ORT run fails is skipped with the reason printed and
recorded in OUT_DIR/summary.json, and the script moves on.
"""
import argparse
import json
import os
import shutil
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import onnx
from onnx import numpy_helper

SEQ = 128

VISION = [
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "densenet121",
    "convnext_tiny",
    "mnasnet1_0",
    "googlenet",
    "vit_b_16",
    # Added in session 21, never profiled or tuned for before being measured: the issue's
    # squeeze-excitation/SiLU network and inverted-residual network, grouped convolutions,
    # asymmetric 1x7/7x1 kernels, shifted-window attention.
    "efficientnet_b0",
    "mobilenet_v2",
    "resnext50_32x4d",
    "inception_v3",
    "swin_t",
]
# minilm_l6: a 6-layer, 384-wide BERT sentence encoder (the issue's); t5_encoder: T5-small's
# encoder (relative position bias, RMS norm written out). Both added in session 21.
TEXT = ["bert_base", "distilbert", "gpt2", "minilm_l6", "t5_encoder"]
ALL = VISION + TEXT
# Image sides other than 224.
IMAGE_SIDE = {"inception_v3": 299}


def build_vision(name):
    import torch
    import torchvision

    kwargs = {"weights": None}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    if name == "inception_v3":
        # torch's default initialisation: with init_weights=True (truncated normal, std 0.1)
        # the random network's outputs reach 1e12 and cancel, so no tolerance means anything
        kwargs.update(aux_logits=False, init_weights=False)
    model = getattr(torchvision.models, name)(**kwargs).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return (self.m(x),)

    rng = np.random.default_rng(0)
    side = IMAGE_SIDE.get(name, 224)
    x = rng.standard_normal((1, 3, side, side)).astype(np.float32)
    return Wrap(model).eval(), [("input", x)], ["output"]


def build_text(name):
    import torch
    import transformers as tf

    rng = np.random.default_rng(0)
    if name in ("bert_base", "minilm_l6"):
        if name == "bert_base":
            cfg = tf.BertConfig(attn_implementation="eager")
        else:
            cfg = tf.BertConfig(attn_implementation="eager", hidden_size=384,
                                num_hidden_layers=6, num_attention_heads=12,
                                intermediate_size=1536)
        model = tf.BertModel(cfg)

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                o = self.m(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, return_dict=True)
                return (o.last_hidden_state, o.pooler_output)

        ids = rng.integers(0, cfg.vocab_size, (1, SEQ), dtype=np.int64)
        inputs = [("input_ids", ids), ("attention_mask", np.ones((1, SEQ), np.int64)),
                  ("token_type_ids", np.zeros((1, SEQ), np.int64))]
        outputs = ["last_hidden_state", "pooler_output"]
    elif name in ("distilbert", "t5_encoder"):
        if name == "distilbert":
            cfg = tf.DistilBertConfig(attn_implementation="eager")
            model = tf.DistilBertModel(cfg)
        else:
            cfg = tf.T5Config(attn_implementation="eager")
            model = tf.T5EncoderModel(cfg)

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                o = self.m(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
                return (o.last_hidden_state,)

        ids = rng.integers(0, cfg.vocab_size, (1, SEQ), dtype=np.int64)
        inputs = [("input_ids", ids), ("attention_mask", np.ones((1, SEQ), np.int64))]
        outputs = ["last_hidden_state"]
    elif name == "gpt2":
        cfg = tf.GPT2Config(attn_implementation="eager", use_cache=False)
        model = tf.GPT2LMHeadModel(cfg)

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids):
                # an explicit all-ones mask: without one, transformers' packed-sequence check
                # traces torch.diff, which the TorchScript exporter cannot export
                mask = torch.ones_like(input_ids)
                o = self.m(input_ids=input_ids, attention_mask=mask, use_cache=False,
                           return_dict=True)
                return (o.logits,)

        ids = rng.integers(0, cfg.vocab_size, (1, SEQ), dtype=np.int64)
        inputs = [("input_ids", ids)]
        outputs = ["logits"]
    else:
        raise ValueError(name)
    # make sure the eager attention really is used, whatever the config kwarg did
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except Exception:
            pass
    elif hasattr(model.config, "_attn_implementation"):
        model.config._attn_implementation = "eager"
    return Wrap(model.eval()).eval(), inputs, outputs


def export(model, inputs, output_names, path):
    """TorchScript exporter at opset 17; if it fails, the dynamo exporter at opset 17, and if
    its down-conversion from 18 gives an invalid model, the dynamo exporter at opset 18.
    Returns a short description of what worked."""
    import contextlib
    import io

    import torch

    args = tuple(torch.from_numpy(v) for _, v in inputs)
    names = [n for n, _ in inputs]
    errors = []
    # no torch.no_grad() for the TorchScript exporter: under no_grad torchvision's
    # MultiheadAttention takes its fused fast path (aten::_native_multi_head_attention),
    # which has no ONNX symbolic
    for dynamo, opset in ((False, 17), (True, 17), (True, 18)):
        try:
            if os.path.exists(path):
                os.remove(path)
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
                torch.onnx.export(model, args, path, opset_version=opset, input_names=names,
                                  output_names=output_names, dynamo=dynamo,
                                  do_constant_folding=True)
            # the dynamo exporter may write external data; fold it into one file
            m = onnx.load(path)
            d = os.path.dirname(path)
            for f in os.listdir(d):
                if f.endswith(".data"):
                    os.remove(os.path.join(d, f))
            onnx.save(m, path)
            onnx.checker.check_model(path)
            kind = "dynamo" if dynamo else "torchscript"
            if errors:
                print("    fell back to the %s exporter at opset %d after: %s"
                      % (kind, opset, "; ".join(errors)), flush=True)
            return f"{kind} opset {opset}" + (" (after: " + "; ".join(errors) + ")" if errors else "")
        except Exception as e:  # noqa: BLE001
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            errors.append(f"{'dynamo' if dynamo else 'torchscript'} opset {opset}: "
                          f"{type(e).__name__}: {msg[:300]}")
    raise RuntimeError("; ".join(errors))


def run_ort(path, inputs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {i.name: v for i, (_, v) in zip(sess.get_inputs(), inputs)}
    return [o.name for o in sess.get_outputs()], sess.run(None, feed)


def make(name, out_dir, force):
    case = os.path.join(out_dir, name)
    path = os.path.join(case, "model.onnx")
    if os.path.exists(path) and os.path.exists(os.path.join(case, "test_data_set_0")) and not force:
        return {"status": "kept", "size": os.path.getsize(path)}
    import torch

    torch.manual_seed(0)
    if name in VISION:
        model, inputs, outputs = build_vision(name)
    else:
        model, inputs, outputs = build_text(name)
    if os.path.exists(case):
        shutil.rmtree(case)
    os.makedirs(case)
    exporter = export(model, inputs, outputs, path)
    out_names, outs = run_ort(path, inputs)
    ds = os.path.join(case, "test_data_set_0")
    os.makedirs(ds)
    graph_inputs = [i.name for i in onnx.load(path, load_external_data=False).graph.input]
    for k, (n, v) in enumerate(inputs):
        t = numpy_helper.from_array(v, graph_inputs[k] if k < len(graph_inputs) else n)
        with open(os.path.join(ds, f"input_{k}.pb"), "wb") as f:
            f.write(t.SerializeToString())
    for k, (n, v) in enumerate(zip(out_names, outs)):
        t = numpy_helper.from_array(np.asarray(v), n)
        with open(os.path.join(ds, f"output_{k}.pb"), "wb") as f:
            f.write(t.SerializeToString())
    return {"status": "ok", "exporter": exporter, "size": os.path.getsize(path),
            "inputs": {n: list(v.shape) for n, v in inputs},
            "outputs": {n: list(np.asarray(v).shape) for n, v in zip(out_names, outs)}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default="/tmp/zoo")
    ap.add_argument("--models", default=",".join(ALL))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    out_dir = os.path.abspath(a.out_dir)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    if out_dir == repo or out_dir.startswith(repo + os.sep):
        sys.exit(f"refusing to write the zoo under the repository ({out_dir}); pick e.g. /tmp/zoo")
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    for n in names:
        if n not in ALL:
            sys.exit(f"unknown model {n}; known: {', '.join(ALL)}")
    import torch

    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    summary_path = os.path.join(out_dir, "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        try:
            summary = json.load(open(summary_path))
        except Exception:  # noqa: BLE001
            summary = {}
    for i, name in enumerate(names, 1):
        t0 = time.time()
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        try:
            r = make(name, out_dir, a.force)
            r["seconds"] = round(time.time() - t0, 1)
            print(f"    {r['status']}: {r['size'] / 1e6:.1f} MB ({r['seconds']} s)", flush=True)
        except Exception as e:  # noqa: BLE001
            reason = f"{type(e).__name__}: {e}".strip()
            r = {"status": "skipped", "reason": reason[:2000]}
            print(f"    SKIPPED {name}: {reason[:500]}", flush=True)
            traceback.print_exc(limit=3)
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
        summary[name] = r
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=1)
    ok = [n for n in names if summary[n]["status"] in ("ok", "kept")]
    print(f"{len(ok)} of {len(names)} models in {out_dir}; summary in {summary_path}")
    for n in names:
        if summary[n]["status"] == "skipped":
            print(f"  skipped {n}: {summary[n]['reason'][:300]}")


if __name__ == "__main__":
    main()
