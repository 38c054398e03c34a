#!/usr/bin/env python3
"""Cases in the `com.microsoft` ops ONNX Runtime's own tools write: a BERT- and a GPT-2-shaped
model (random initialisation, `transformers`) exported with torch, then rewritten by ORT's
transformer optimizer (`onnxruntime.transformers.optimizer.optimize_model`: Attention,
EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, FastGelu, ...), and the optimized
BERT quantized by `quantize_dynamic` (QAttention, DynamicQuantizeMatMul, ...). Each case is a
directory in the ONNX test-data layout with ORT 1.32's outputs.

    /tmp/venv/bin/python scripts/make_contrib_cases.py OUT [--size tiny|base]

`tiny` (the default) writes the small cases bundled in tests/data/contrib; `base` a 6-layer,
384-wide BERT and a 4-layer, 256-wide GPT-2 for benchmarks (kept out of git). `tiny` also
writes one-node cases (`op_*`) for the formats the optimizer's models do not use: every
`mask_index` form, causal attention, `qkv_hidden_sizes`, a per-column `QAttention`,
`MultiHeadAttention` (cross and causal), `EmbedLayerNormalization` (segments, mask, position
ids), the skip/simplified layer norms with all their outputs, and the GELU variants. Their references are
ORT's, except `BiasAdd`, which ORT runs only on CUDA: its reference is numpy's `x + bias + skip`
(the case says so in its name, `op_bias_add_numpy_ref`). `tiny` also writes the
`GroupQueryAttention` and `RotaryEmbedding` one-node cases (`op_gqa_*`, `op_rotary_*`; see
`make_gqa_cases`). The GenAI builder's decoder cases come from `scripts/make_genai_cases.py`.
"""
import argparse
import collections
import inspect
import os
import shutil
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from onnx import numpy_helper as nh
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model

SIZES = {
    # layers, hidden, heads, intermediate, vocab, positions, seq
    "tiny": dict(layers=2, hidden=32, heads=4, inter=64, vocab=128, positions=32, seq=16),
    "base": dict(layers=6, hidden=384, heads=12, inter=1536, vocab=30522, positions=512, seq=128),
}
GPT_SIZES = {
    "tiny": dict(layers=2, hidden=32, heads=4, vocab=128, positions=32, seq=16),
    "base": dict(layers=4, hidden=256, heads=8, vocab=8192, positions=256, seq=64),
}


def export(model, args, names, outputs, path):
    kwargs = dict(input_names=names, output_names=outputs, opset_version=17,
                  do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: the graphs ORT's optimizer fuses
    with torch.no_grad():
        torch.onnx.export(model, tuple(torch.from_numpy(a) for a in args), path, **kwargs)


def randomize_norms(model):
    """Random-init models have LayerNorm weights of 1 and biases of 0, which would leave the
    normalization's affine part untested (and ORT's optimizer would share them)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
    return model


def histogram(path):
    ops = collections.Counter()
    for n in onnx.load(path).graph.node:
        ops[f"{n.domain + ':' if n.domain else ''}{n.op_type}"] += 1
    return dict(sorted(ops.items()))


def write_case(case_dir, model_path, feeds_list):
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    shutil.copyfile(model_path, os.path.join(case_dir, "model.onnx"))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in sess.get_inputs()]
    for n, feeds in enumerate(feeds_list):
        d = os.path.join(case_dir, f"test_data_set_{n}")
        os.makedirs(d)
        feed = {k: v for k, v in feeds if k in wanted}
        for k, name in enumerate(wanted):
            onnx.save_tensor(nh.from_array(feed[name], name), os.path.join(d, f"input_{k}.pb"))
        for k, (o, y) in enumerate(zip(sess.get_outputs(), sess.run(None, feed))):
            onnx.save_tensor(nh.from_array(np.asarray(y), o.name), os.path.join(d, f"output_{k}.pb"))
    print(case_dir, histogram(model_path))


def bert_feeds(rng, vocab, seq, valid):
    ids = rng.integers(3, vocab, size=(1, seq), dtype=np.int64)
    ids[0, valid:] = 0
    mask = np.zeros((1, seq), np.int64)
    mask[0, :valid] = 1
    types = np.zeros((1, seq), np.int64)
    types[0, valid // 2:valid] = 1
    return [("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types)]


def make_bert(out, size, tmp):
    s = SIZES[size]
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"], intermediate_size=s["inter"],
        max_position_embeddings=s["positions"], attn_implementation="eager",
        initializer_range=0.1)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(config)

        def forward(self, input_ids, attention_mask, token_type_ids):
            o = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids)
            return o.last_hidden_state, o.pooler_output

    rng = np.random.default_rng(7)
    seq = s["seq"]
    sets = [bert_feeds(rng, s["vocab"], seq, seq * 3 // 4), bert_feeds(rng, s["vocab"], seq, seq)]
    raw = os.path.join(tmp, "bert.onnx")
    export(randomize_norms(Encoder().eval()), [a for _, a in sets[0]], [n for n, _ in sets[0]],
           ["last_hidden_state", "pooler_output"], raw)
    opt = optimize_model(raw, model_type="bert", num_heads=s["heads"], hidden_size=s["hidden"],
                         opt_level=0)
    fused = os.path.join(tmp, "bert_fused.onnx")
    opt.save_model_to_file(fused)
    write_case(os.path.join(out, "bert_fused"), fused, sets)
    quant = os.path.join(tmp, "bert_fused_dynamic.onnx")
    quantize_dynamic(fused, quant, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    write_case(os.path.join(out, "bert_fused_dynamic"), quant, sets)


def make_gpt2(out, size, tmp):
    s = GPT_SIZES[size]
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=s["vocab"], n_embd=s["hidden"], n_layer=s["layers"], n_head=s["heads"],
        n_positions=s["positions"], attn_implementation="eager",
        initializer_range=0.1)

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gpt = transformers.GPT2LMHeadModel(config)

        def forward(self, input_ids):
            # An explicit all-ones mask: without one, transformers traces its packed-sequence
            # check (`aten::diff`, which the exporter lacks).
            mask = torch.ones_like(input_ids)
            return self.gpt(input_ids=input_ids, attention_mask=mask, use_cache=False).logits

    rng = np.random.default_rng(8)
    seq = s["seq"]
    sets = [[("input_ids", rng.integers(0, s["vocab"], size=(1, seq), dtype=np.int64))]
            for _ in range(2)]
    raw = os.path.join(tmp, "gpt2.onnx")
    export(randomize_norms(Decoder().eval()), [sets[0][0][1]], ["input_ids"], ["logits"], raw)
    opt = optimize_model(raw, model_type="gpt2", num_heads=s["heads"], hidden_size=s["hidden"],
                         opt_level=0)
    fused = os.path.join(tmp, "gpt2_fused.onnx")
    opt.save_model_to_file(fused)
    write_case(os.path.join(out, "gpt2_fused"), fused, sets)


def op_case(out, name, nodes, inputs, outputs, inits=(), reference=None):
    """A one-node (or few-node) model over random inputs, its outputs from ORT (or from
    `reference(feeds)` when ORT has no CPU kernel)."""
    graph = onnx.helper.make_graph(
        nodes, name,
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in inputs],
        [onnx.helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [nh.from_array(a, n) for n, a in inits])
    model = onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.microsoft", 1)])
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(model, os.path.join(d, "model.onnx"))
    feed = dict(inputs)
    if reference is None:
        sess = ort.InferenceSession(os.path.join(d, "model.onnx"), providers=["CPUExecutionProvider"])
        results = sess.run(None, feed)
    else:
        results = reference(feed)
    for k, (n, a) in enumerate(inputs):
        onnx.save_tensor(nh.from_array(a, n), os.path.join(d, "test_data_set_0", f"input_{k}.pb"))
    for k, ((n, _), y) in enumerate(zip(outputs, results)):
        onnx.save_tensor(nh.from_array(np.asarray(y), n), os.path.join(d, "test_data_set_0", f"output_{k}.pb"))
    print(d)


def make_op_cases(out):
    rng = np.random.default_rng(11)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    F = onnx.TensorProto.FLOAT
    ms = "com.microsoft"
    b, s, din, n = 2, 8, 16, 2
    w, bias = f32(din, 48) * 0.5, f32(48) * 0.1
    masks = {
        "lengths": np.array([5, 8], np.int32),
        "ends_starts": np.array([7, 8, 2, 0], np.int32),
        "raw_2d": (rng.random((b, s)) > 0.3).astype(np.int32),
        "raw_3d": (rng.random((b, s, s)) > 0.3).astype(np.int32),
    }
    masks["raw_2d"][:, 0] = 1
    masks["raw_3d"][:, :, 0] = 1
    for kind, mask in masks.items():
        attrs = dict(num_heads=n)
        if kind == "raw_2d":
            attrs["scale"] = 0.3
        if kind == "raw_3d":
            attrs["unidirectional"] = 1
        op_case(out, f"op_attention_{kind}",
                [onnx.helper.make_node("Attention", ["x", "w", "bias", "mask"], ["y"], domain=ms, **attrs)],
                [("x", f32(b, s, din)), ("mask", mask)], [("y", F)], [("w", w), ("bias", bias)])
    op_case(out, "op_attention_qkv_sizes_causal",
            [onnx.helper.make_node("Attention", ["x", "w"], ["y"], domain=ms, num_heads=2,
                                   qkv_hidden_sizes=[16, 16, 8], unidirectional=1)],
            [("x", f32(b, s, 12))], [("y", F)], [("w", f32(12, 40) * 0.5)])
    wq = rng.integers(-127, 128, (din, 48), dtype=np.int8)
    op_case(out, "op_qattention_per_column",
            [onnx.helper.make_node("QAttention", ["x", "w", "bias", "xs", "ws", "mask", "xz", "wz"], ["y"],
                                   domain=ms, num_heads=n)],
            [("x", rng.integers(0, 256, (b, s, din), dtype=np.uint8)), ("mask", masks["lengths"])],
            [("y", F)],
            [("w", wq), ("bias", bias), ("xs", np.array(0.02, np.float32)),
             ("ws", (rng.random(48) * 0.01 + 0.001).astype(np.float32)),
             ("xz", np.array(120, np.uint8)), ("wz", rng.integers(-3, 4, 48, dtype=np.int8))])
    hd = 16
    gamma, beta, nbias = f32(hd), f32(hd), f32(hd)
    op_case(out, "op_skip_layer_norm_all_outputs",
            [onnx.helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                                   ["y", "mean", "inv_std", "sum"], domain=ms, epsilon=1e-6)],
            [("x", f32(b, s, hd)), ("skip", f32(s, hd))],
            [("y", F), ("mean", F), ("inv_std", F), ("sum", F)],
            [("gamma", gamma), ("beta", beta), ("bias", nbias)])
    op_case(out, "op_skip_simplified_layer_norm",
            [onnx.helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"],
                                   ["y", "", "", "sum"], domain=ms, epsilon=1e-6)],
            [("x", f32(b, s, hd)), ("skip", f32(b, s, hd))], [("y", F), ("sum", F)],
            [("gamma", gamma), ("bias", nbias)])
    op_case(out, "op_simplified_layer_norm",
            [onnx.helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y"], epsilon=1e-6)],
            [("x", f32(b, s, hd))], [("y", F)], [("gamma", gamma)])
    x = f32(b, s, hd) * 2
    op_case(out, "op_gelu_variants",
            [onnx.helper.make_node("BiasGelu", ["x", "bias"], ["bias_gelu"], domain=ms),
             onnx.helper.make_node("FastGelu", ["x", "bias"], ["fast_gelu"], domain=ms),
             onnx.helper.make_node("FastGelu", ["x"], ["fast_gelu_no_bias"], domain=ms),
             onnx.helper.make_node("Gelu", ["x"], ["gelu"], domain=ms),
             onnx.helper.make_node("QuickGelu", ["x"], ["quick_gelu"], domain=ms, alpha=1.5)],
            [("x", x)],
            [("bias_gelu", F), ("fast_gelu", F), ("fast_gelu_no_bias", F), ("gelu", F), ("quick_gelu", F)],
            [("bias", nbias)])
    vocab, types, hidden = 50, 3, 16
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    segments = rng.integers(0, types, (b, s)).astype(np.int32)
    emb_mask = np.ones((b, s), np.int32)
    emb_mask[0, 6:] = 0
    emb_mask[1, 2] = 2  # counted only when exactly 1
    tables = [("words", f32(vocab, hidden)), ("places", f32(s + 4, hidden)),
              ("kinds", f32(types, hidden)), ("gamma", gamma), ("beta", beta)]
    op_case(out, "op_embed_layer_norm",
            [onnx.helper.make_node("EmbedLayerNormalization",
                                   ["ids", "segments", "words", "places", "kinds", "gamma", "beta", "mask"],
                                   ["y", "mask_index", "sum"], domain=ms, epsilon=1e-6)],
            [("ids", ids), ("segments", segments), ("mask", emb_mask)],
            [("y", F), ("mask_index", onnx.TensorProto.INT32), ("sum", F)], tables)
    op_case(out, "op_embed_layer_norm_position_ids",
            [onnx.helper.make_node("EmbedLayerNormalization",
                                   ["ids", "", "words", "places", "", "gamma", "beta", "", "pos"],
                                   ["y", "mask_index"], domain=ms)],
            [("ids", ids), ("pos", rng.integers(0, s + 4, (1, s)).astype(np.int32))],
            [("y", F), ("mask_index", onnx.TensorProto.INT32)],
            [tables[0], tables[1], tables[3], tables[4]])
    kv = 11
    op_case(out, "op_multi_head_attention_cross",
            [onnx.helper.make_node("MultiHeadAttention", ["q", "k", "v", "bias", "mask"], ["y"],
                                   domain=ms, num_heads=n)],
            [("q", f32(b, s, 16)), ("k", f32(b, kv, 16)), ("v", f32(b, kv, 8)),
             ("mask", (np.arange(kv)[None, :] < np.array([[7], [11]])).astype(np.int32))],
            [("y", F)], [("bias", f32(40) * 0.1)])
    op_case(out, "op_multi_head_attention_causal",
            [onnx.helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "lengths"], ["y"],
                                   domain=ms, num_heads=4, unidirectional=1, scale=0.2)],
            [("q", f32(b, s, 16)), ("k", f32(b, s, 16)), ("v", f32(b, s, 16)),
             ("lengths", np.array([6, 8], np.int32))],
            [("y", F)])
    op_case(out, "op_bias_add_numpy_ref",
            [onnx.helper.make_node("BiasAdd", ["x", "bias", "skip"], ["y"], domain=ms)],
            [("x", x), ("skip", f32(b, s, hd))], [("y", F)], [("bias", nbias)],
            reference=lambda feed: [feed["x"] + nbias + feed["skip"]])


def make_gqa_cases(out):
    """One-node `GroupQueryAttention` and `RotaryEmbedding` cases: decoding with a past cache
    (rotary, half-split and interleaved, partial rotation), a ragged batch (entries at different
    lengths), a packed-QKV prompt with a local window, a chunk after a cache with softcap,
    scale and an attention bias, a cache longer than the tokens it holds, non-causal attention,
    and the two position-id forms of `RotaryEmbedding`. References are ORT's; rows ORT leaves
    unspecified (padding) are not in any case."""
    rng = np.random.default_rng(12)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    F = onnx.TensorProto.FLOAT
    ms = "com.microsoft"
    n, nk, d = 4, 2, 32

    def caches(rows, half):
        angle = np.arange(rows)[:, None] * (0.3 / np.arange(1, half + 1))[None, :]
        return [("cos", np.cos(angle).astype(np.float32)), ("sin", np.sin(angle).astype(np.float32))]

    def gqa(name, b, s, past, lens, total, packed=False, bias=None, rotary=None, **attrs):
        inputs = [("q", f32(b, s, (n + 2 * nk) * d if packed else n * d))]
        names = ["q", "", ""] if packed else ["q", "k", "v"]
        if not packed:
            inputs += [("k", f32(b, s, nk * d)), ("v", f32(b, s, nk * d))]
        if past is None:
            names += ["", ""]
        else:
            names += ["past_k", "past_v"]
            inputs += [("past_k", f32(b, nk, past, d)), ("past_v", f32(b, nk, past, d))]
        names += ["seqlens_k", "total"]
        inputs += [("seqlens_k", np.array(lens, np.int32))]
        inits = [("total", np.array(total, np.int32))]
        if rotary is not None:
            names += ["cos", "sin"]
            inits += caches(*rotary)
            attrs["do_rotary"] = 1
        if bias is not None:
            names += ["", "bias"] if rotary is not None else ["", "", "", "bias"]
            inputs.append(("bias", bias))
        op_case(out, name,
                [onnx.helper.make_node("GroupQueryAttention", names, ["y", "present_k", "present_v"],
                                       domain=ms, num_heads=n, kv_num_heads=nk, **attrs)],
                inputs, [("y", F), ("present_k", F), ("present_v", F)], inits)

    gqa("op_gqa_decode_rotary", 1, 1, 7, [7], 8, rotary=(16, d // 2))
    gqa("op_gqa_ragged_batch_interleaved", 2, 1, 6, [4, 6], 7, rotary=(16, d // 4),
        rotary_interleaved=1)
    gqa("op_gqa_prompt_packed_window", 1, 5, None, [4], 5, packed=True, local_window_size=2)
    gqa("op_gqa_chunk_softcap_bias", 1, 3, 4, [6], 7, bias=f32(1, n, 3, 7), softcap=2.0, scale=0.3)
    gqa("op_gqa_cache_longer_than_tokens", 1, 1, 8, [4], 5)
    gqa("op_gqa_not_causal", 1, 3, 3, [5], 6, causal=0)
    x3, x4 = f32(2, 3, 2 * d), f32(2, 2, 3, d)
    op_case(out, "op_rotary_embedding_forms",
            [onnx.helper.make_node("RotaryEmbedding", ["x3", "ids", "cos", "sin"], ["y3"],
                                   domain=ms, num_heads=2),
             onnx.helper.make_node("RotaryEmbedding", ["x4", "first", "cos_part", "sin_part"], ["y4"],
                                   domain=ms, num_heads=2, interleaved=1, rotary_embedding_dim=d // 2)],
            [("x3", x3), ("x4", x4), ("ids", np.array([[1, 2, 3], [7, 8, 9]], np.int64)),
             ("first", np.array([5], np.int64))],
            [("y3", F), ("y4", F)],
            caches(12, d // 2) + [(f"{k}_part", v) for k, v in caches(12, d // 4)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--ops-only", action="store_true", help="only the one-node op_* cases")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.ops_only:
        with tempfile.TemporaryDirectory(prefix="contrib_") as tmp:
            make_bert(args.out, args.size, tmp)
            make_gpt2(args.out, args.size, tmp)
    if args.size == "tiny":
        make_op_cases(args.out)
        make_gqa_cases(args.out)


if __name__ == "__main__":
    main()
