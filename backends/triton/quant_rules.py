"""The Triton lowering rules of the int8 QDQ ops (ir/ops/quantize_linear.py, dequantize_linear.py), merged into
`lower.LOWERINGS`: a QDQ graph runs its exact quantize/dequantize arithmetic (`kernels.triton.quant`), the codes
integers held in float32 as the reference holds them, and its convolutions and matmuls in float32 on the
dequantized weights, which `build` folds into float32 parameters once (``fold_constants(dequantize=True)``), so no
dequantize of a weight runs per call and the convs keep their packed weights. No int8 ``tl.dot`` runs yet
(`WARNING`): that kernel is worth writing where a GPU can time it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...ir.graph import Node
from ...ir.ops.quantize_linear import QDTYPES

if TYPE_CHECKING:
    from .lower import Lowering
    from .plan import Step

WARNING = ("triton backend: int8 runs the QDQ graph's exact quantize/dequantize arithmetic with float32 convolutions "
           "on the dequantized weights: no int8 tl.dot kernel runs yet")


def _qdq(lw: Lowering, node: Node) -> Step:
    import torch

    from ...kernels.triton import quant as k_quant
    from ...kernels.triton import runtime

    a, name = node.attrs, node.inputs[0]
    x = lw.value(name, dense=True)
    rank = lw.graph.types[name].rank
    axis = a.axis % rank if a.per_channel else None
    scale = torch.tensor(a.scale, dtype=torch.float32, device=runtime.DEVICE)
    zero = torch.tensor(a.zero_point, dtype=torch.float32, device=runtime.DEVICE)
    dequantize = node.op == "dequantize_linear"
    codes = QDTYPES[a.dtype]

    def run(env, out):
        return k_quant.qdq(x(env), scale, zero, dequantize=dequantize, code_range=codes, axis=axis, out=out)

    how = f"per channel (axis {axis})" if axis is not None else f"scale {a.scale[0]:.4g} zero {a.zero_point[0]}"
    return lw.step(node.name, node.op, run, f"{node.name}: {node.op} {a.dtype} {how}", (node.name,))


QUANT_RULES: dict[str, Callable[[Lowering, Node], Step]] = {"quantize_linear": _qdq, "dequantize_linear": _qdq}
