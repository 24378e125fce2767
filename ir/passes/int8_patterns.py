"""The int8 convolutions and linears of a QDQ graph (ir/passes/quantize.py) that a backend can run on the codes:
the one pattern finder the backends with int8 kernels share (Triton's ``tl.dot`` kernels, torch's oneDNN qconv).

A conv2d (or fused_conv2d) qualifies when its input is a per-tensor int8 or uint8 dequantize_linear of an
activation that the conv alone reads, and its weight a symmetric int8 dequantize_linear of a parameter (per
tensor, or per output channel: axis 0) — what the quantization pass makes of every conv. The backend absorbs the
input's dequantize_linear (the conv reads the codes) and computes x_scale · w_scale[o] · Σ (q_x − z_x) q_w on
integers, then adds the float bias. A linear (or fused_linear) qualifies on the same two checks (`int8_linears`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..graph import Graph, Node

CONVS = ("conv2d", "fused_conv2d")
LINEARS = ("linear", "fused_linear")


def as_uint8(graph: Graph, value: str) -> bool:
    """Whether a backend may hold the per-tensor int8 activation ``value`` (a quantize_linear's output that the
    graph does not return) as uint8 with the zero point + 128: the same real values (q_u8 = q_i8 + 128 exactly),
    and the dequantize_linear that reads it shifts back alike. x86 int8 convolutions want u8 activations: oneDNN's
    in torch fails on s8 at run time ("Input tensor should have uint8"), and OpenVINO on an AMX CPU runs a conv of
    asymmetric i8 codes in f32 (brgconv_avx512_f32; u8 codes: brgconv_avx512_amx_I8)."""
    node = graph.node_by_name.get(value)
    return (node is not None and node.op == "quantize_linear" and node.attrs.dtype == "int8"
            and not node.attrs.per_channel and value not in graph.outputs)


@dataclass(frozen=True)
class Int8Conv:
    """An int8 conv: its input's dequantize_linear (absorbed), the codes that one reads, their quantization, and
    the weight's dequantize_linear, int8 codes and scales."""

    dequantize: str
    codes: str
    x_scale: float
    x_zero: int
    weight_codes: np.ndarray  # int8, OIHW
    weight_scale: np.ndarray  # (O,) or (1,)
    x_dtype: str = "int8"  # or "uint8" (`ir.passes.quantize`'s activations="uint8")
    weight_dequantize: str = ""


@dataclass(frozen=True)
class Int8Linear(Int8Conv):
    """An int8 linear: the same operands as an int8 conv's (a linear is the 1×1 conv of a 1×1 image, and its
    kernels reuse the conv's), its weight codes (out_features, in_features)."""


def _codes_input(graph: Graph, node: Node, fallback: tuple[str, ...]) -> Node | None:
    """``node``'s input when it is a per-tensor int8/uint8 dequantize_linear of an activation read by ``node``
    alone (so absorbing it leaves no other reader without its value), else None."""
    dx = graph.node_by_name.get(node.inputs[0])
    if (dx is not None and dx.op == "dequantize_linear" and dx.attrs.dtype in ("int8", "uint8")
            and not dx.attrs.per_channel and dx.inputs[0] not in graph.params and dx.name not in fallback
            and graph.sole_reader(dx.name) is node):
        return dx
    return None


def _symmetric_weight(graph: Graph, node: Node) -> Node | None:
    """``node``'s weight when it is a symmetric int8 dequantize_linear of a parameter, per tensor or per output
    channel (axis 0: one scale per row of the integer sum), else None."""
    dw = graph.node_by_name.get(node.inputs[1])
    if (dw is not None and dw.op == "dequantize_linear" and dw.inputs[0] in graph.params
            and dw.attrs.dtype == "int8" and not any(dw.attrs.zero_point)
            and (not dw.attrs.per_channel or dw.attrs.axis % graph.types[dw.name].rank == 0)):
        return dw
    return None


def _operands(cls: type[Int8Conv], params: Mapping[str, np.ndarray], dx: Node, dw: Node) -> Int8Conv:
    """The matched node's operands: the absorbed input dequantize, its codes and quantization, the weight codes."""
    return cls(dx.name, dx.inputs[0], float(dx.attrs.scale[0]), int(dx.attrs.zero_point[0]),
               np.asarray(params[dw.inputs[0]], np.int8), np.asarray(dw.attrs.scale, np.float64), dx.attrs.dtype,
               dw.name)


def int8_convs(graph: Graph, params: Mapping[str, np.ndarray], fallback: tuple[str, ...] = (),
               float_sums: bool = False) -> dict[str, Int8Conv]:
    """conv name -> `Int8Conv` for each conv of the pattern (see the module's docstring), but those in
    ``fallback``. ``float_sums``: the kernel sums a depthwise conv's integer products in float32 (Triton's), so a
    depthwise conv whose sum could pass 2^24, where float32 stops being exact, is left out."""
    found = {}
    for node in graph.nodes:
        if node.op not in CONVS or node.name in fallback:
            continue
        dx, dw = _codes_input(graph, node, fallback), _symmetric_weight(graph, node)
        if dx is None or dw is None:
            continue
        _, cg, kh, kw = graph.types[dw.name].shape
        if float_sums and cg == 1 and node.attrs.groups > 1 and kh * kw * 255 * 127 >= 2**24:
            continue
        found[node.name] = _operands(Int8Conv, params, dx, dw)
    return found


def int8_linears(graph: Graph, params: Mapping[str, np.ndarray], fallback: tuple[str, ...] = ()
                 ) -> dict[str, Int8Linear]:
    """linear name -> `Int8Linear` for each linear or fused_linear whose input and weight pass the conv's checks
    (`_codes_input`, `_symmetric_weight`), but those in ``fallback`` and those whose Σ (q_x − z_x)·q_w could leave
    int32 (|q_x − z_x| ≤ 255, |q_w| ≤ 127: in_features up to 66 311; the classifiers here have at most 25 088)."""
    return {node.name: _operands(Int8Linear, params, dx, dw) for node in graph.nodes
            if node.op in LINEARS and node.name not in fallback
            and (dx := _codes_input(graph, node, fallback)) is not None
            and (dw := _symmetric_weight(graph, node)) is not None
            and graph.types[dw.name].shape[1] * 255 * 127 < 2**31}
