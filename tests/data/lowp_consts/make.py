"""Writes this case: float8/int4 initializers (int4 packed, odd count) through Cast,
DequantizeLinear and a folded Cast, and run-time casts to float8 E5M2 (no saturation) and
E8M0 (round to nearest); expected outputs from onnx's ReferenceEvaluator.

    /tmp/venv/bin/python tests/data/lowp_consts/make.py   # onnx==1.23.2, ml_dtypes
"""
import numpy as np, onnx, ml_dtypes as md, os
from onnx import helper as h, numpy_helper as nh, TensorProto as T
from onnx.reference import ReferenceEvaluator
w8 = nh.from_array(np.array([0.5, -448, 3.3, 1e-3], np.float32).astype(md.float8_e4m3fn), 'w8')
w4 = nh.from_array(np.array([1, -8, 7, 3, -2], md.int4), 'w4')
scale = nh.from_array(np.array(0.5, np.float32), 'scale')
zp = nh.from_array(np.array(1, md.int4), 'zp')
nodes = [
  h.make_node('Cast', ['w8'], ['w8f'], to=T.FLOAT),
  h.make_node('Add', ['w8f', 'x'], ['y1']),
  h.make_node('DequantizeLinear', ['w4', 'scale', 'zp'], ['y2']),
  h.make_node('Cast', ['x'], ['y3'], to=T.FLOAT8E5M2, saturate=0),
  h.make_node('Cast', ['w8'], ['y4'], to=T.INT4),
  h.make_node('Cast', ['x'], ['y5'], to=T.FLOAT8E8M0, round_mode='nearest'),
  h.make_node('Reshape', ['y3', 'shape'], ['y6']),
]
shape = nh.from_array(np.array([2, 2], np.int64), 'shape')
g = h.make_graph(nodes, 'g', [h.make_tensor_value_info('x', T.FLOAT, [4])],
  [h.make_tensor_value_info('y1', T.FLOAT, [4]), h.make_tensor_value_info('y2', T.FLOAT, [5]),
   h.make_tensor_value_info('y3', T.FLOAT8E5M2, [4]), h.make_tensor_value_info('y4', T.INT4, [4]),
   h.make_tensor_value_info('y5', T.FLOAT8E8M0, [4]), h.make_tensor_value_info('y6', T.FLOAT8E5M2, [2, 2])],
  [w8, w4, scale, zp, shape])
m = h.make_model(g, opset_imports=[h.make_opsetid('', 25)])
m.ir_version = 11
onnx.checker.check_model(m)
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, 'test_data_set_0'), exist_ok=True)
onnx.save(m, os.path.join(here, 'model.onnx'))
x = np.array([1.5, -70000, 0.3, 3.0], np.float32)
outs = ReferenceEvaluator(m).run(None, {'x': x})
open(os.path.join(here, 'test_data_set_0/input_0.pb'),'wb').write(nh.from_array(x,'x').SerializeToString())
for i,(o,name) in enumerate(zip(outs,['y1','y2','y3','y4','y5','y6'])):
  print(name, o.dtype, o.ravel().tolist())
  open(os.path.join(here, f'test_data_set_0/output_{i}.pb'),'wb').write(nh.from_array(o,name).SerializeToString())
