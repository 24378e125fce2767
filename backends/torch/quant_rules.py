"""The torch lowering rules of the int8 QDQ ops (ir/ops/quantize_linear.py, dequantize_linear.py), merged into
`lowering.LOWERINGS`: torch's ``quantized_decomposed`` ops, the representation PT2E's ``convert_pt2e`` produces.
Eagerly they are exact float32 quantize/dequantize arithmetic (the dequantized weights feed an ordinary float32
conv); under ``torch.compile`` with freezing, inductor's quantization passes (torch/_inductor/fx_passes/
quantization.py) match ``dequantize → conv/linear → quantize`` into oneDNN's u8×s8 kernels (onednn.qconv_pointwise,
qlinear_pointwise: ``brg_conv_fwd:avx512_core_vnni`` in ONEDNN_VERBOSE on this Zen 4). EfficientNet-Lite0's QDQ
graph: all 49 convolutions and the classifier matched (``TorchDetails.int8_convs``/``int8_linears``), ~1 min of
inductor compile on 2 loaded cores. PT2E's own flow
(``prepare_pt2e``/``convert_pt2e`` with ``X86InductorQuantizer``) would calibrate again with torch's observers;
lowering the IR's QDQ graph to the same ops keeps one calibration, the IR's, for every backend.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.ops.quantize_linear import QDTYPES

try:  # loads without torch: the rules only run when a graph lowers
    import torch
    import torch.ao.quantization.fx._decomposed
except ImportError:  # pragma: no cover - exercised by the registry test with torch hidden
    torch = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch.fx

    from .lowering import Lowering


def as_uint8(graph: Graph, value: str) -> bool:
    """Whether the per-tensor int8 activation ``value`` (a quantize_linear's output that the graph does not return)
    is held as uint8 with the zero point + 128: the same real values (q_u8 = q_i8 + 128 exactly), in the u8
    activation format oneDNN's x86 int8 convolutions take (an s8 one fails at run time: "Input tensor should have
    uint8"); the dequantize_linear that reads it shifts back alike."""
    node = graph.node_by_name.get(value)
    return (node is not None and node.op == "quantize_linear" and node.attrs.dtype == "int8"
            and not node.attrs.per_channel and value not in graph.outputs)


def _qdq_args(lw: Lowering, node: Node, value: str) -> tuple:
    """(scale, zero point[, axis]), quant_min, quant_max, dtype for the quantized ``value`` (the node's output or
    input): the arguments of torch's ``quantized_decomposed`` ops, PT2E's reference representation of QDQ, which
    inductor's int8 passes (fx_passes/quantization.py) match into oneDNN int8 kernels. Per-channel scales and zero
    points are buffers (those ops take tensors)."""
    from .lowering import _ident  # lowering imports this module: resolved when a graph lowers

    a = node.attrs
    lo, hi = QDTYPES[a.dtype]
    if as_uint8(lw.graph, value):
        return (a.scale[0], a.zero_point[0] + 128, 0, 255, torch.uint8)
    if not a.per_channel:
        return (a.scale[0], a.zero_point[0], lo, hi, getattr(torch, a.dtype))
    scale = lw.attach("_qparams." + _ident(node.name) + "_scale", torch.tensor(a.scale, dtype=torch.float32))
    zp = lw.attach("_qparams." + _ident(node.name) + "_zero_point", torch.tensor(a.zero_point, dtype=torch.int64))
    axis = a.axis % lw.graph.types[node.inputs[0]].rank
    return (lw.fx.get_attr(scale), lw.fx.get_attr(zp), axis, lo, hi, getattr(torch, a.dtype))


def _quantize_linear(lw: Lowering, node: Node) -> torch.fx.Node:
    """x → int8/uint8 tensor. torch multiplies by 1/scale where the reference divides: the two differ only
    where x/scale is within a float32 ulp of a rounding tie (one quantization step, rarely)."""
    args = _qdq_args(lw, node, node.name)
    fn = torch.ops.quantized_decomposed.quantize_per_channel if len(args) == 6 else \
        torch.ops.quantized_decomposed.quantize_per_tensor
    return lw.call(node, fn.default, lw.value(node.inputs[0]), *args)


def _dequantize_linear(lw: Lowering, node: Node) -> torch.fx.Node:
    """int8/uint8 → float32 (a QDQ graph runs at dtype float32: `TorchBackend.build` checks). A quantized weight
    (an int8 parameter, which may arrive as integers held in floats: cast_params) becomes a real int8 buffer, so
    ``dequantize → conv`` is the pattern inductor packs for oneDNN; an int32 bias becomes its float32 value (what
    torch's conv adds)."""
    from .lowering import _ident

    name, a = node.inputs[0], node.attrs
    if name in lw.params and a.dtype == "int32":  # a bias: its readers add a float one, dequantized in float64
        s, z = a.broadcast(lw.graph.types[name].rank, np.float64)
        bias = (np.asarray(lw.params[name], np.float64) - z) * s
        return lw.fx.get_attr(lw.attach("_params." + _ident(node.name), lw.tensor(bias.astype(np.float32))))
    if name in lw.params and name not in lw.env:
        ints = np.asarray(lw.params[name]).astype(getattr(np, a.dtype))
        lw.env[name] = lw.fx.get_attr(lw.attach("_params." + _ident(name), torch.from_numpy(ints).to(lw.device)))
    args = _qdq_args(lw, node, name)
    fn = torch.ops.quantized_decomposed.dequantize_per_channel if len(args) == 6 else \
        torch.ops.quantized_decomposed.dequantize_per_tensor
    return lw.call(node, fn.default, lw.value(name), *args)


QUANT_RULES: dict[str, Callable[[Lowering, Node], torch.fx.Node]] = {
    "quantize_linear": _quantize_linear, "dequantize_linear": _dequantize_linear,
}
