#!/usr/bin/env python3
"""Writes tests/data/patterns: small models in the ONNX backend test layout whose graphs hold
the patterns the -O2 passes rewrite (written-out GELU in both forms, SiLU, PyTorch's
LayerNormalization, transpose/reshape chains, no-ops, repeated nodes), with ONNX Runtime's
outputs. compiler/tests/verify_cli.rs checks each at -O0 and -O3 and that the rewrite fired.

    python3 scripts/make_pattern_cases.py [OUT_DIR]     (needs onnx, onnxruntime, numpy)
"""
import os, sys

import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
OUT=sys.argv[1] if len(sys.argv)>1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),"..","tests","data","patterns")
rng=np.random.default_rng(0)
def case(name, nodes, inits, inputs, outputs, feeds, root=None, int_inputs=None):
    """int_inputs: int64 graph inputs after the float ones, name -> value."""
    int_inputs=int_inputs or {}
    feeds=dict(feeds,**int_inputs)
    g=h.make_graph(nodes,name,[h.make_tensor_value_info(n,T.FLOAT,s) for n,s in inputs]+[h.make_tensor_value_info(n,T.INT64,v.shape) for n,v in int_inputs.items()],[h.make_tensor_value_info(n,T.FLOAT,None) for n in outputs],[nh.from_array(np.asarray(v,dtype=np.float32 if np.asarray(v).dtype.kind=='f' else np.int64),k) for k,v in inits.items()])
    m=h.make_model(g,opset_imports=[h.make_opsetid("",17)]); m.ir_version=8
    d=os.path.join(root or OUT,name); os.makedirs(d+"/test_data_set_0",exist_ok=True)
    onnx.save(m,d+"/model.onnx")
    s=ort.InferenceSession(d+"/model.onnx",providers=["CPUExecutionProvider"])
    outs=s.run(None,feeds)
    for i,n in enumerate([n for n,_ in inputs]+list(int_inputs)): onnx.save_tensor(nh.from_array(feeds[n],n),f"{d}/test_data_set_0/input_{i}.pb")
    for i,n in enumerate(outputs): onnx.save_tensor(nh.from_array(outs[i],n),f"{d}/test_data_set_0/output_{i}.pb")
x=rng.standard_normal((3,16)).astype(np.float32)*3
N=h.make_node
case("gelu_erf",[N("Div",["x","s2"],["a"]),N("Erf",["a"],["b"]),N("Add",["b","one"],["c"]),N("Mul",["x","c"],["d"]),N("Mul",["d","half"],["y"])],
  {"s2":np.float32(1.4142135),"one":np.float32(1),"half":np.float32(0.5)},[("x",[3,16])],["y"],{"x":x})
case("gelu_tanh",[N("Mul",["x","half"],["h"]),N("Pow",["x","three"],["p"]),N("Mul",["k","p"],["q"]),N("Add",["x","q"],["s"]),N("Mul",["s","c"],["u"]),N("Tanh",["u"],["t"]),N("Add",["one","t"],["v"]),N("Mul",["h","v"],["y"])],
  {"three":np.float32(3),"k":np.float32(0.044715),"c":np.float32(0.7978846),"one":np.float32(1),"half":np.float32(0.5)},[("x",[3,16])],["y"],{"x":x})
case("silu",[N("Sigmoid",["x"],["s"]),N("Mul",["x","s"],["y"])],{},[("x",[3,16])],["y"],{"x":x})
case("layer_norm",[N("ReduceMean",["x"],["m"],axes=[-1]),N("Sub",["x","m"],["d"]),N("Pow",["d","two"],["sq"]),N("ReduceMean",["sq"],["v"],axes=[-1]),N("Add",["v","eps"],["ve"]),N("Sqrt",["ve"],["sd"]),N("Div",["d","sd"],["n"]),N("Mul",["n","g"],["sc"]),N("Add",["sc","b"],["y"])],
  {"two":np.float32(2),"eps":np.float32(1e-5),"g":rng.standard_normal(16).astype(np.float32),"b":rng.standard_normal(16).astype(np.float32)},[("x",[3,16])],["y"],{"x":x})
x4=rng.standard_normal((2,3,1,4)).astype(np.float32)
case("transposes",[N("Transpose",["x"],["a"],perm=[1,0,2,3]),N("Transpose",["a"],["b"],perm=[0,3,2,1]),N("Unsqueeze",["b","ax"],["c"]),N("Squeeze",["c","ax"],["d"]),N("Transpose",["d"],["e"],perm=[0,2,1,3]),N("Reshape",["e","shp"],["f"]),N("Identity",["f"],["g"]),N("Mul",["g","one"],["y"]),N("Transpose",["x"],["y2"],perm=[0,2,1,3]),N("Relu",["y2"],["r1"]),N("Relu",["y2"],["r2"]),N("Add",["r1","r2"],["y3"])],
  {"ax":np.array([0],dtype=np.int64),"shp":np.array([12,2],dtype=np.int64),"one":np.ones(2,np.float32)},[("x",[2,3,1,4])],["y","y3"],{"x":x4})
case("noops",[N("Cast",["x"],["a"],to=T.FLOAT),N("Slice",["a","st","en"],["b"]),N("Pad",["b","pads"],["c"]),N("Expand",["c","shp"],["d"]),N("Dropout",["d"],["e"]),N("Add",["e","zero"],["f"]),N("Div",["f","one"],["g"]),N("Relu",["g"],["y"]),N("Mul",["x","two"],["m1"]),N("Mul",["x","two_again"],["m2"]),N("Sub",["m1","m2"],["y2"])],
  {"st":np.array([0],dtype=np.int64),"en":np.array([1000],dtype=np.int64),"pads":np.zeros(4,dtype=np.int64),"shp":np.array([3,16],dtype=np.int64),"zero":np.zeros(16,np.float32),"one":np.float32(1),"two":np.float32(2),"two_again":np.float32(2)},[("x",[3,16])],["y","y2"],{"x":x})
w=rng.standard_normal((16,8)).astype(np.float32)*0.5
bias=rng.standard_normal(8).astype(np.float32)
case("gemm_gelu",[N("MatMul",["x","w"],["mm"]),N("Add",["mm","bias"],["z"]),N("Div",["z","s2"],["a"]),N("Erf",["a"],["b"]),N("Add",["b","one"],["c"]),N("Mul",["z","c"],["d"]),N("Mul",["d","half"],["y"])],
  {"w":w,"bias":bias,"s2":np.float32(1.4142135),"one":np.float32(1),"half":np.float32(0.5)},[("x",[3,16])],["y"],{"x":x})
# Constant weights the blocked GEMM reads pre-packed: a MatMul (becomes a Gemm, which takes the
# Relu after it) and a Gemm with transB and a bias, 100 columns (two full panels of 48 and a
# part one).
xp=rng.standard_normal((5,70)).astype(np.float32)
case("packed_products",[N("MatMul",["x","w1"],["mm"]),N("Relu",["mm"],["y1"]),N("Gemm",["x","w2","c2"],["y2"],transB=1,alpha=0.5)],
  {"w1":rng.standard_normal((70,100)).astype(np.float32)*0.2,"w2":rng.standard_normal((100,70)).astype(np.float32)*0.2,"c2":rng.standard_normal(100).astype(np.float32)},[("x",[5,70])],["y1","y2"],{"x":xp})
# A small ShuffleNet-v2-style network that runs channels last from -O2 on: a 3x3 stem read
# channels first, max pooling, channel slices, a pointwise-depthwise-pointwise branch, a concat,
# a channel shuffle (Reshape, Transpose, Reshape), a Split, a residual, batch normalization,
# average pooling, a 3x3 layer on 40 channels and a 5x5 stride-2 depthwise layer; only the ends
# keep a transpose. The input is scaled by 0.25 (after its draw, so the cases after keep their
# data), so that the sums stay clear of float32 cancellation against the suite's 1e-6.
xs=(rng.standard_normal((1,3,12,12))*0.25).astype(np.float32)
def wt(*s): return (rng.standard_normal(s)*0.4).astype(np.float32)
case("channels_last",[
  N("Conv",["x","w0","b0"],["c0"],pads=[1,1,1,1]),N("Relu",["c0"],["r0"]),
  N("MaxPool",["r0"],["p0"],kernel_shape=[3,3],strides=[2,2],pads=[1,1,1,1]),
  N("Slice",["p0","s0","s1","ax1"],["left"]),N("Slice",["p0","s1","s2","ax1"],["right"]),
  N("Conv",["right","w1","b1"],["c1"]),N("Relu",["c1"],["r1"]),
  N("Conv",["r1","w2","b2"],["c2"],group=16,pads=[1,1,1,1]),
  N("Conv",["c2","w3","b3"],["c3"]),N("Relu",["c3"],["r3"]),
  N("Concat",["left","r3"],["cat"],axis=1),
  N("Reshape",["cat","g5"],["g"]),N("Transpose",["g"],["gt"],perm=[0,2,1,3,4]),N("Reshape",["gt","g4"],["sh"]),
  N("Split",["sh","sp"],["h0","h1"],axis=1),
  N("Conv",["h1","w4","b4"],["c4"],pads=[1,1,1,1]),N("Add",["c4","h0"],["res"]),
  N("BatchNormalization",["res","bn_s","bn_b","bn_m","bn_v"],["bn"]),N("Relu",["bn"],["bnr"]),
  N("AveragePool",["bnr"],["ap"],kernel_shape=[3,3],pads=[1,1,1,1]),
  N("Conv",["ap","w6","b6"],["c6"]),N("Relu",["c6"],["r6"]),
  N("Conv",["r6","w7","b7"],["c7"],pads=[1,1,1,1]),
  N("Conv",["c7","w5","b5"],["c5"],group=16,kernel_shape=[5,5],strides=[2,2],pads=[2,2,2,2]),
  N("Sigmoid",["c5"],["y"])],
  {"w0":wt(32,3,3,3),"b0":wt(32),"s0":np.array([0],dtype=np.int64),"s1":np.array([16],dtype=np.int64),
   "s2":np.array([32],dtype=np.int64),"ax1":np.array([1],dtype=np.int64),
   "w1":wt(16,16,1,1),"b1":wt(16),"w2":wt(16,1,3,3),"b2":wt(16),"w3":wt(16,16,1,1),"b3":wt(16),
   "g5":np.array([1,2,16,6,6],dtype=np.int64),"g4":np.array([1,32,6,6],dtype=np.int64),
   "sp":np.array([16,16],dtype=np.int64),"w4":wt(16,16,3,3),"b4":wt(16),"w5":wt(16,1,5,5),"b5":wt(16),
   "w6":wt(40,16,1,1),"b6":wt(40),"w7":(wt(16,40,3,3)*0.5).astype(np.float32),"b7":wt(16),
   "bn_s":wt(16),"bn_b":wt(16),"bn_m":wt(16),"bn_v":np.abs(wt(16))+0.5},
  [("x",[1,3,12,12])],["y"],{"x":xs})
# DenseNet-style dense layers: each concatenates the features so far and normalizes them
# (BN-ReLU) before its convolution, so the Concat's only reader is a BatchNormalization over
# the concatenation axis (one pass, `sinter::ConcatAffine`); channels last after the stem, and
# a second branch without convolutions that stays channels first.
xd=rng.standard_normal((1,3,10,10)).astype(np.float32)
xa=rng.standard_normal((1,2,3,5)).astype(np.float32)
xb=rng.standard_normal((1,3,3,5)).astype(np.float32)
BN={1:16,2:24,3:32,4:5}
inits={"w0":wt(16,3,3,3),"w1":wt(8,16,3,3),"w2":wt(8,24,1,1)}
for n in BN: inits.update({f"s{n}":wt(BN[n]),f"o{n}":wt(BN[n]),f"m{n}":wt(BN[n]),f"v{n}":np.abs(wt(BN[n]))+0.5})
def BNode(n,x,y): return N("BatchNormalization",[x,f"s{n}",f"o{n}",f"m{n}",f"v{n}"],[y])
case("concat_norm",[
  N("Conv",["x","w0"],["f0"],pads=[1,1,1,1]),
  BNode(1,"f0","n1"),N("Relu",["n1"],["r1"]),N("Conv",["r1","w1"],["f1"],pads=[1,1,1,1]),
  N("Concat",["f0","f1"],["cat2"],axis=1),BNode(2,"cat2","n2"),N("Relu",["n2"],["r2"]),
  N("Conv",["r2","w2"],["f2"]),
  N("Concat",["f0","f1","f2"],["cat3"],axis=1),BNode(3,"cat3","n3"),N("Relu",["n3"],["r3"]),
  N("AveragePool",["r3"],["y"],kernel_shape=[2,2],strides=[2,2]),
  N("Concat",["a","b"],["cat4"],axis=1),BNode(4,"cat4","n4"),N("Relu",["n4"],["y2"])],
  inits,[("x",[1,3,10,10]),("a",[1,2,3,5]),("b",[1,3,3,5])],["y","y2"],{"x":xd,"a":xa,"b":xb})
# SqueezeNet-style fire module: two convolutions of one squeeze concatenated over the
# channels (channels last: one `sinter::ConcatConv`, each convolution writing its channels in
# place; the 3x3 one by Winograd), then a Concat with a pooled input that stays a copy.
# Weights at a trained network's scale (std sqrt(2 / fan-in)): with the 0.4 of `wt`, three
# layers of 3x3x32 sums would end in outputs dominated by cancellation, beyond float32's
# agreement between any two summation orders.
def he(*s): return (rng.standard_normal(s)*np.sqrt(2.0/np.prod(s[1:]))).astype(np.float32)
xf=rng.standard_normal((1,8,9,9)).astype(np.float32)
case("concat_conv",[
  N("Conv",["x","ws","bs"],["s0"]),N("Relu",["s0"],["s"]),
  N("Conv",["s","we1","be1"],["e1a"]),N("Relu",["e1a"],["e1"]),
  N("Conv",["s","we3","be3"],["e3a"],pads=[1,1,1,1]),N("Relu",["e3a"],["e3"]),
  N("Concat",["e1","e3"],["cat"],axis=1),
  N("Conv",["cat","wo"],["y"]),
  N("MaxPool",["s"],["p"],kernel_shape=[3,3],strides=[1,1],pads=[1,1,1,1]),
  N("Conv",["s","wq"],["q"]),
  N("Concat",["q","p"],["y2"],axis=1)],
  {"ws":he(32,8,1,1),"bs":wt(32),"we1":he(24,32,1,1),"be1":wt(24),"we3":he(40,32,3,3),"be3":wt(40),"wo":he(16,64,1,1),"wq":he(16,32,1,1)},
  [("x",[1,8,9,9])],["y","y2"],{"x":xf})
# Reductions over channels-last images: a mean over the spatial axes without kept dims (a
# global pool written as ReduceMean: no transpose after it), a max over them with kept dims
# gating the image (squeeze-excitation style), a sum over the channels without kept dims, a
# min over them with kept dims, and an L2 over one spatial axis without kept dims, whose kept axes would come out of order
# channels last (it stays channels first, after a transpose).
xr=rng.standard_normal((1,3,9,9)).astype(np.float32)
case("reduce_channels_last",[
  N("Conv",["x","w0","b0"],["c0"],pads=[1,1,1,1]),N("Relu",["c0"],["r0"]),
  N("ReduceMean",["r0"],["y"],axes=[2,3],keepdims=0),
  N("ReduceMax",["r0"],["g"],axes=[-1,-2],keepdims=1),N("Mul",["r0","g"],["m"]),
  N("ReduceSum",["m","ax1"],["y2"],keepdims=0),N("ReduceMin",["m"],["y4"],axes=[1],keepdims=1),
  N("ReduceL2",["r0"],["y3"],axes=[3],keepdims=0)],
  {"w0":he(20,3,3,3),"b0":wt(20),"ax1":np.array([1],dtype=np.int64)},
  [("x",[1,3,9,9])],["y","y2","y3","y4"],{"x":xr})
# Winograd F(4x4, 3x3): 3x3 stride-1 layers of 48 channels on images of 28 x 28 pixels and up
# run on 4x4 output tiles at -O3: one on 30 x 30 (tiles past the image's edge) with a residual,
# one on 28 x 28 (whole tiles) without padding; the stem reads the channels-first input direct.
# Written beside the pattern cases, to tests/data/winograd/tiles4: F(4x4, 3x3)'s error scales
# with the products' magnitudes, so verify_cli.rs holds it to verify's default tolerance (rtol
# 1e-3, atol 1e-5), the real models', not the patterns' (rtol 1e-5).
# The Winograd cases draw from their own generator, input and biases scaled by 0.25 so that
# their sums stay clear of cancellation against verify's absolute tolerance; the draws of their
# 32-channel forms (before session 21) are still taken from `rng`, so that the cases after keep
# their data.
rwg=np.random.default_rng(48)
def whe(*s): return (rwg.standard_normal(s)*np.sqrt(2.0/np.prod(s[1:]))).astype(np.float32)
def wwt(*s): return (rwg.standard_normal(s)*0.1).astype(np.float32)
rng.standard_normal((1,8,30,30)); he(32,8,3,3); wt(32); he(32,32,3,3); wt(32); he(16,32,3,3); wt(16)
xw=(rwg.standard_normal((1,8,30,30))*0.25).astype(np.float32)
case("tiles4",[
  N("Conv",["x","w0","b0"],["c0"],pads=[1,1,1,1]),N("Relu",["c0"],["r0"]),
  N("Conv",["r0","w1","b1"],["c1"],pads=[1,1,1,1]),N("Add",["c1","r0"],["s1"]),N("Relu",["s1"],["r1"]),
  N("Conv",["r1","w2","b2"],["y"])],
  {"w0":whe(48,8,3,3),"b0":wwt(48),"w1":whe(48,48,3,3),"b1":wwt(48),"w2":whe(48,48,3,3),"b2":wwt(48)},
  [("x",[1,8,30,30])],["y"],{"x":xw},root=os.path.join(OUT,"..","winograd"))
# Scaled dot-product attention written out as the exporters write it; -O2 makes one Attention
# node of each (fuse_attention), reading Q, K and V where the projections wrote them.
# BERT-style: per-head Reshape + Transpose of three projections (K transposed to [B, H, D, S]),
# scores / sqrt(D) plus an additive mask built from an integer attention mask (Where between
# 0 and float32's lowest: finite, so the fusion may take it; the second sentence has padding),
# the output's heads merged back by Transpose + Reshape before the output projection.
B,S,E,H=2,8,32,4
D=E//H
xe=rng.standard_normal((B,S,E)).astype(np.float32)
am=np.ones((B,S),dtype=np.int64); am[1,5:]=0
def proj(name): return (rng.standard_normal((E,E))/np.sqrt(E)).astype(np.float32)
case("attention_bert",[
  N("MatMul",["x","wq"],["q0"]),N("Add",["q0","bq"],["q1"]),N("Reshape",["q1","heads"],["q2"]),N("Transpose",["q2"],["q"],perm=[0,2,1,3]),
  N("MatMul",["x","wk"],["k0"]),N("Reshape",["k0","heads"],["k2"]),N("Transpose",["k2"],["kt"],perm=[0,2,3,1]),
  N("MatMul",["x","wv"],["v0"]),N("Reshape",["v0","heads"],["v2"]),N("Transpose",["v2"],["v"],perm=[0,2,1,3]),
  N("Cast",["mask"],["mb"],to=T.BOOL),N("Unsqueeze",["mb","ax12"],["m4"]),N("Where",["m4","zero","lowest"],["bias"]),
  N("MatMul",["q","kt"],["s0"]),N("Div",["s0","sqrtd"],["s1"]),N("Add",["s1","bias"],["s2"]),N("Softmax",["s2"],["p"],axis=-1),
  N("MatMul",["p","v"],["o4"]),N("Transpose",["o4"],["o3"],perm=[0,2,1,3]),N("Reshape",["o3","merged"],["o"]),
  N("MatMul",["o","wo"],["y"])],
  {"wq":proj("q"),"bq":wt(E),"wk":proj("k"),"wv":proj("v"),"wo":proj("o"),"heads":np.array([B,S,H,D],dtype=np.int64),
   "merged":np.array([B,S,E],dtype=np.int64),"ax12":np.array([1,2],dtype=np.int64),"zero":np.float32(0),
   "lowest":np.float32(np.finfo(np.float32).min),"sqrtd":np.float32(np.sqrt(D))},
  [("x",[B,S,E])],["y"],{"x":xe},int_inputs={"mask":am})
# ViT-style (torch's scaled_dot_product_attention export): one in-projection split by Gather
# after a transpose, Q and K^T each scaled by the fourth root of 1 / D, no mask.
case("attention_vit",[
  N("MatMul",["x","wqkv"],["qkv"]),N("Reshape",["qkv","split"],["r5"]),N("Transpose",["r5"],["t5"],perm=[2,0,3,1,4]),
  N("Gather",["t5","i0"],["q"],axis=0),N("Gather",["t5","i1"],["k"],axis=0),N("Gather",["t5","i2"],["v"],axis=0),
  N("Mul",["q","root"],["qs"]),N("Transpose",["k"],["kt"],perm=[0,1,3,2]),N("Mul",["kt","root"],["ks"]),
  N("MatMul",["qs","ks"],["s"]),N("Softmax",["s"],["p"],axis=-1),N("MatMul",["p","v"],["o4"]),
  N("Transpose",["o4"],["o3"],perm=[0,2,1,3]),N("Reshape",["o3","merged"],["y"])],
  {"wqkv":(rng.standard_normal((E,3*E))/np.sqrt(E)).astype(np.float32),"split":np.array([B,S,3,H,D],dtype=np.int64),
   "i0":np.array(0,dtype=np.int64),"i1":np.array(1,dtype=np.int64),"i2":np.array(2,dtype=np.int64),
   "root":np.float32(D**-0.25),"merged":np.array([B,S,E],dtype=np.int64)},
  [("x",[B,S,E])],["y"],{"x":xe})
# An additive mask from a float input: nothing bounds its values (a row of -inf makes Softmax's
# NaN, which the fused kernel would turn into zeros), so the pattern stays written out.
fm=np.zeros((B,1,1,S),dtype=np.float32); fm[1,...,6:]=-1e4
case("attention_float_mask",[
  N("Reshape",["x","heads"],["q2"]),N("Transpose",["q2"],["q"],perm=[0,2,1,3]),N("Transpose",["q2"],["kt"],perm=[0,2,3,1]),
  N("MatMul",["q","kt"],["s0"]),N("Mul",["s0","scale"],["s1"]),N("Add",["s1","m"],["s2"]),N("Softmax",["s2"],["p"],axis=-1),
  N("MatMul",["p","q"],["y"])],
  {"heads":np.array([B,S,H,D],dtype=np.int64),"scale":np.float32(D**-0.5)},
  [("x",[B,S,E]),("m",[B,1,1,S])],["y"],{"x":xe,"m":fm})
# A residual that dies at the Winograd layer it is added to (not that layer's input): at -O3 the
# layer adds its sums into the residual's buffer (conv_winograd_accumulate_f32_exec::<4>).
# Beside tiles4, held to the same tolerance.
rng.standard_normal((1,8,30,30)); he(32,8,3,3); wt(32); he(32,32,3,3); wt(32); he(32,32,3,3); wt(32)
xq=(rwg.standard_normal((1,8,30,30))*0.25).astype(np.float32)
case("residual4",[
  N("Conv",["x","w0","b0"],["c0"],pads=[1,1,1,1]),N("Relu",["c0"],["r0"]),
  N("Conv",["r0","w1","b1"],["c1"],pads=[1,1,1,1]),N("Relu",["c1"],["r1"]),
  N("Conv",["r1","w2","b2"],["c2"],pads=[1,1,1,1]),N("Add",["c2","r0"],["s2"]),N("Relu",["s2"],["y"])],
  {"w0":whe(48,8,3,3),"b0":wwt(48),"w1":whe(48,48,3,3),"b1":wwt(48),"w2":whe(48,48,3,3),"b2":wwt(48)},
  [("x",[1,8,30,30])],["y"],{"x":xq},root=os.path.join(OUT,"..","winograd"))
# Stems whose max pool alone reads the convolution (sinter::ConvMaxPool at -O2): an RGB 3x3
# stride-2 layer read channels first with a ceil-mode pool; a ResNet-style 7x7 stride-2 layer
# with batch normalization and a padded pool; a 1x1 channels-last layer under a 2x2 pool; and a
# convolution that another node also reads, which keeps its pool apart.
xc=rng.standard_normal((1,3,33,31)).astype(np.float32)
case("conv_pool",[
  N("Conv",["x","w0","b0"],["c0"],strides=[2,2],pads=[1,1,1,1]),N("Relu",["c0"],["r0"]),
  N("MaxPool",["r0"],["p0"],kernel_shape=[3,3],strides=[2,2],ceil_mode=1),
  N("Conv",["p0","w1","b1"],["c1"]),N("Relu",["c1"],["r1"]),
  N("MaxPool",["r1"],["y"],kernel_shape=[2,2],strides=[2,2]),
  N("Conv",["x","w2"],["c2"],strides=[2,2],pads=[3,3,3,3]),
  N("BatchNormalization",["c2","g","bb","mu","var"],["n2"]),N("Relu",["n2"],["r2"]),
  N("MaxPool",["r2"],["y2"],kernel_shape=[3,3],strides=[2,2],pads=[1,1,1,1]),
  N("Conv",["x","w3"],["c3"],strides=[2,2]),
  N("MaxPool",["c3"],["p3"],kernel_shape=[2,2],strides=[2,2]),
  N("ReduceMean",["c3"],["m3"],axes=[2,3]),N("Add",["p3","m3"],["y3"])],
  {"w0":he(20,3,3,3),"b0":wt(20),"w1":he(24,20,1,1),"b1":wt(24),"w2":he(16,3,7,7),
   "g":(1+0.1*rng.standard_normal(16)).astype(np.float32),"bb":wt(16),"mu":wt(16),
   "var":(0.5+rng.random(16)).astype(np.float32),"w3":he(8,3,3,3)},
  [("x",[1,3,33,31])],["y","y2","y3"],{"x":xc})
# Depthwise layers whose output a 1x1 layer alone reads (sinter::DepthwisePointwise at -O2): an
# inverted-residual block (expand, depthwise 3x3, project, residual Add), a 5x5 stride-2
# depthwise layer into a 1x1 one, and two pairs left apart: a depthwise output another node
# also reads, and a 1x1 layer whose output a Concat reads (left to sinter::ConcatConv). The
# input is small (std 0.25), so that the 5x5 sums of the residual stream stay clear of
# float32 cancellation against the suite's 1e-6 absolute tolerance.
xw=(rng.standard_normal((1,8,15,14))*0.25).astype(np.float32)
case("dw_pw",[
  N("Conv",["x","we","be"],["e0"]),N("Clip",["e0","lo","hi"],["e"]),
  N("Conv",["e","wd","bd"],["d0"],group=32,pads=[1,1,1,1]),N("Relu",["d0"],["d"]),
  N("Conv",["d","wp","bp"],["p"]),N("Add",["p","x"],["b1"]),
  N("Conv",["b1","wd2","bd2"],["d2"],group=8,kernel_shape=[5,5],strides=[2,2],pads=[2,2,2,2]),
  N("Conv",["d2","wp2"],["y"]),
  N("Conv",["b1","wd3"],["d3"],group=8,pads=[1,1,1,1]),N("Conv",["d3","wp3"],["q3"]),
  N("ReduceMean",["d3"],["m3"],axes=[2,3]),N("Add",["q3","m3"],["y2"]),
  N("Conv",["b1","wd4"],["d4"],group=8,pads=[1,1,1,1]),N("Conv",["d4","wp4"],["q4"]),
  N("Concat",["q4","b1"],["y3"],axis=1)],
  {"we":he(32,8,1,1),"be":wt(32),"lo":np.float32(0),"hi":np.float32(6),"wd":he(32,1,3,3),"bd":wt(32),
   "wp":he(8,32,1,1),"bp":wt(8),"wd2":he(8,1,5,5),"bd2":wt(8),"wp2":he(24,8,1,1),
   "wd3":he(8,1,3,3),"wp3":he(8,8,1,1),"wd4":he(8,1,3,3),"wp4":he(16,8,1,1)},
  [("x",[1,8,15,14])],["y","y2","y3"],{"x":xw})
# Whole inverted-residual blocks (sinter::DepthwisePointwise with its expansion at -O2), their
# expanded images over 1 MiB: the first block's expansion reads the channels-first input and
# stays apart; the second (ReLU6, 3x3 depthwise, projection with the residual) and a 5x5
# stride-2 block without one fuse whole; an expansion that a ReduceMean also reads stays apart
# (its depthwise and 1x1 layers still pair). Sixteen channels outside the blocks, so that
# their 1x1 layers run channels last (a panel of output channels). Input and biases are small,
# so that the sums over 128 channels and 25 taps stay clear of float32 cancellation against
# the suite's 1e-6 absolute tolerance.
xi=(rng.standard_normal((1,16,48,48))*0.1).astype(np.float32)
case("inverted_residual",[
  N("Conv",["x","we","be"],["e0"]),N("Clip",["e0","lo","hi"],["e"]),
  N("Conv",["e","wd","bd"],["d0"],group=128,pads=[1,1,1,1]),N("Clip",["d0","lo","hi"],["d"]),
  N("Conv",["d","wp","bp"],["p"]),N("Add",["p","x"],["b0"]),
  N("Conv",["b0","we1","be1"],["e1"]),N("Clip",["e1","lo","hi"],["f1"]),
  N("Conv",["f1","wd1","bd1"],["d1"],group=128,pads=[1,1,1,1]),N("Clip",["d1","lo","hi"],["g1"]),
  N("Conv",["g1","wp1","bp1"],["p1"]),N("Add",["p1","b0"],["b1"]),
  N("Conv",["b1","we2","be2"],["e2"]),N("Relu",["e2"],["f2"]),
  N("Conv",["f2","wd2","bd2"],["d2"],group=128,kernel_shape=[5,5],strides=[2,2],pads=[2,2,2,2]),
  N("Relu",["d2"],["g2"]),N("Conv",["g2","wp2"],["y"]),
  N("Conv",["b1","we3"],["e3"]),
  N("Conv",["e3","wd3"],["d3"],group=128,pads=[1,1,1,1]),N("Conv",["d3","wp3"],["q3"]),
  N("ReduceMean",["e3"],["m3"],axes=[1]),N("Add",["q3","m3"],["y2"])],
  {"we":he(128,16,1,1),"be":wt(128)*0.25,"lo":np.float32(0),"hi":np.float32(6),"wd":he(128,1,3,3),
   "bd":wt(128)*0.25,"wp":he(16,128,1,1),"bp":wt(16)*0.25,"we2":he(128,16,1,1),"be2":wt(128)*0.25,
   "wd2":he(128,1,5,5),"bd2":wt(128)*0.25,"wp2":he(16,128,1,1),"we3":he(128,16,1,1),
   "wd3":he(128,1,3,3),"wp3":he(16,128,1,1),"we1":he(128,16,1,1),"be1":wt(128)*0.25,
   "wd1":he(128,1,3,3),"bd1":wt(128)*0.25,"wp1":he(16,128,1,1),"bp1":wt(16)*0.25},
  [("x",[1,16,48,48])],["y","y2"],{"x":xi})
# SiLU (x * Sigmoid(x), written out as torch exports it) after each kind of kernel, which
# applies it in its epilogue (fuse_silu, then fuse_activation): a dense channels-last layer, a
# depthwise one, a dense layer of few output channels (channels first) and a Gemm.
xs=(rng.standard_normal((1,16,10,9))*0.5).astype(np.float32)
def silu(x, y): return [N("Sigmoid",[x],[y+"_s"]),N("Mul",[x,y+"_s"],[y])]
case("conv_silu",[
  N("Conv",["x","w0","b0"],["c0"],pads=[1,1,1,1])]+silu("c0","a0")+[
  N("Conv",["a0","w1","b1"],["c1"],group=32,pads=[1,1,1,1])]+silu("c1","a1")+[
  N("Conv",["a1","w2","b2"],["c2"])]+silu("c2","y")+[
  N("GlobalAveragePool",["a1"],["g"]),N("Flatten",["g"],["f"]),
  N("Gemm",["f","wg","bg"],["c3"],transB=1)]+silu("c3","y2"),
  {"w0":he(32,16,3,3),"b0":wt(32),"w1":he(32,1,3,3),"b1":wt(32),"w2":he(8,32,1,1),"b2":wt(8),
   "wg":he(24,32),"bg":wt(24)},
  [("x",[1,16,10,9])],["y","y2"],{"x":xs})
# EfficientNet's MBConv block: a 1x1 expansion with SiLU, a 3x3 depthwise layer with SiLU whose
# output the squeeze-excitation reads twice (its mean and the gated product), the projection
# and the residual. The expanded image is over 1 MiB: the expansion and the depthwise layer run
# as one sinter::ExpandDepthwise at -O2. A first 1x1 layer reads the channels-first input.
xe=(rng.standard_normal((1,16,48,48))*0.1).astype(np.float32)
case("expand_depthwise",[
  N("Conv",["x","w0","b0"],["s0"])]+silu("s0","s")+[
  N("Conv",["s","we","be"],["e0"])]+silu("e0","e")+[
  N("Conv",["e","wd","bd"],["d0"],group=128,pads=[1,1,1,1])]+silu("d0","d")+[
  N("GlobalAveragePool",["d"],["g"]),N("Conv",["g","wr","br"],["r0"])]+silu("r0","r")+[
  N("Conv",["r","wx","bx"],["x0"]),N("Sigmoid",["x0"],["gate"]),N("Mul",["d","gate"],["sd"]),
  N("Conv",["sd","wp","bp"],["p"]),N("Add",["p","s"],["y"])],
  {"w0":he(16,16,1,1),"b0":wt(16)*0.25,"we":he(128,16,1,1),"be":wt(128)*0.25,
   "wd":he(128,1,3,3),"bd":wt(128)*0.25,"wr":he(8,128,1,1),"br":wt(8)*0.25,
   "wx":he(128,8,1,1),"bx":wt(128)*0.25,"wp":he(16,128,1,1),"bp":wt(16)*0.25},
  [("x",[1,16,48,48])],["y"],{"x":xe})
