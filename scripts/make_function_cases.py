#!/usr/bin/env python3
"""Writes tests/data/functions: small models in the ONNX backend test layout that call
model-local functions (FunctionProto in ModelProto.functions, as the newer PyTorch exporter
writes them), with ONNX Runtime's outputs. compiler/tests/verify_cli.rs checks each at -O0
and -O3. The functions use attribute references with and without defaults, call one another,
take an optional input the caller leaves out, and hold an If whose branches read values of
the function body.

    python3 scripts/make_function_cases.py [OUT_DIR]     (needs onnx, onnxruntime, numpy)
"""
import os, sys

import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
OUT=sys.argv[1] if len(sys.argv)>1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),"..","tests","data","functions")
rng=np.random.default_rng(0)
N=h.make_node
ops=[h.make_opsetid("",17)]
def R(node, name, ref):
    """`node` with attribute `name` referring to the function's attribute `ref`."""
    a=h.make_attribute_ref(name,onnx.AttributeProto.FLOAT); a.ref_attr_name=ref
    node.attribute.append(a); return node
loc=ops+[h.make_opsetid("local",1)]

# ScaledLeaky(x, s) = LeakyRelu(x, alpha=@alpha) * s, alpha defaults to 0.01.
scaled=h.make_function("local","ScaledLeaky",["x","s"],["y"],
    [R(N("LeakyRelu",["x"],["l"],name="leaky"),"alpha","alpha"),
     N("Mul",["l","s"],["y"],name="scale")],
    ops,attribute_protos=[h.make_attribute("alpha",0.01)])
# Outer(x, s, b) = ScaledLeaky(x, s, alpha=@slope) + b, and the mean of it; slope has no default.
outer=h.make_function("local","Outer",["x","s","b"],["y","m"],
    [R(N("ScaledLeaky",["x","s"],["t"],domain="local"),"alpha","slope"),
     N("Add",["t","b"],["y"]),
     N("ReduceMean",["y"],["m"],keepdims=0)],
    loc,attributes=["slope"])
# ClipOpt(x, lo, hi) = Clip(x, lo, hi): called without hi.
clip=h.make_function("local","ClipOpt",["x","lo","hi"],["y"],[N("Clip",["x","lo","hi"],["y"])],ops)
# Branchy(x, c) = If(c) then Neg(x * 2) else Exp(x): branches read the body's value "d".
then_g=h.make_graph([N("Neg",["d"],["o"])],"then",[],[h.make_tensor_value_info("o",T.FLOAT,None)])
else_g=h.make_graph([N("Exp",["x"],["o"])],"else",[],[h.make_tensor_value_info("o",T.FLOAT,None)])
branchy=h.make_function("local","Branchy",["x","c"],["y"],
    [N("Add",["x","x"],["d"]),N("If",["c"],["y"],then_branch=then_g,else_branch=else_g)],ops)

def case(name, nodes, inits, inputs, outputs, feeds, functions):
    g=h.make_graph(nodes,name,[h.make_tensor_value_info(n,t,s) for n,t,s in inputs],[h.make_tensor_value_info(n,T.FLOAT,None) for n in outputs],[nh.from_array(v,k) for k,v in inits.items()])
    m=h.make_model(g,opset_imports=loc,functions=functions); m.ir_version=9
    d=os.path.join(OUT,name); os.makedirs(d+"/test_data_set_0",exist_ok=True)
    onnx.save(m,d+"/model.onnx")
    s=ort.InferenceSession(d+"/model.onnx",providers=["CPUExecutionProvider"])
    outs=s.run(None,feeds)
    for i,(n,_,_) in enumerate(inputs): onnx.save_tensor(nh.from_array(feeds[n],n),f"{d}/test_data_set_0/input_{i}.pb")
    for i,n in enumerate(outputs): onnx.save_tensor(nh.from_array(outs[i],n),f"{d}/test_data_set_0/output_{i}.pb")

x=rng.standard_normal((3,8)).astype(np.float32)*2
case("local_functions",
    [N("ScaledLeaky",["x","s"],["y1"],domain="local",name="call1",alpha=0.2),
     N("ScaledLeaky",["x","s"],["y2"],domain="local",name="call2"),
     N("Outer",["x","s","b"],["y3","y4"],domain="local",name="call3",slope=0.5),
     N("ClipOpt",["x","lo"],["y5"],domain="local",name="call4"),
     N("Branchy",["x","c"],["y6"],domain="local",name="call5"),
     N("Branchy",["x","nc"],["y7"],domain="local",name="call6")],
    {"s":rng.standard_normal(8).astype(np.float32),"b":rng.standard_normal(8).astype(np.float32),
     "lo":np.float32(-0.5),"c":np.array(True),"nc":np.array(False)},
    [("x",T.FLOAT,[3,8])],["y1","y2","y3","y4","y5","y6","y7"],{"x":x},[scaled,outer,clip,branchy])
