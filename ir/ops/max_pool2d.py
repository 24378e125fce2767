"""max_pool2d (torch.nn.functional.max_pool2d): padding counts as −∞; ceil_mode keeps a last partial window.

Shape: as conv2d's rule (with ceil instead of floor under ceil_mode). FLOPs: KH·KW − 1 comparisons per output.
"""

from __future__ import annotations

import numpy as np

from ._base import OpDef, Types
from ._pool import PoolAttrs, infer, output_hw, reduce_windows, unit_window


def flops(attrs: PoolAttrs, ins: Types, out) -> int:
    kh, kw = attrs.kernel_size
    return out.numel * (kh * kw - 1)


def reference(attrs: PoolAttrs, x: np.ndarray) -> np.ndarray:
    return reduce_windows(attrs, x, -np.inf, np.maximum, output_hw(attrs, x))


OP = OpDef(name="max_pool2d", attrs_type=PoolAttrs, inputs=("x",),
           traits={"window"}, noop=unit_window, infer=infer, flops=flops,
           reference=reference, flop_rule="KH·KW − 1 comparisons per output element")
