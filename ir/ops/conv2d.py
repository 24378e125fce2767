"""conv2d: 2-D cross-correlation over NCHW activations with OIHW weights (torch.nn.functional.conv2d).

Shape: OH = floor((H + 2·P − D·(KH − 1) − 1)/S) + 1, likewise OW; weight is (O, C/groups, KH, KW).
MACs: N·O·OH·OW·(C/groups)·KH·KW (bias excluded, torchvision's convention).
FLOPs: 2·MACs, plus one add per output element when there is a bias.
Reference: im2col through a strided window view, then one batched matmul per group.

VJP — data: the transposed conv (Wᵀ·dY per group, then `col2im` scatter-adds the columns back onto the padded
input and crops the padding); weight: im2colᵀ·dY (dY·colsᵀ per group, summed over the batch); bias: Σ dY over
N, OH, OW. Backward FLOPs: data 2·MACs, weight 2·MACs (the forward's multiply–adds, once each), bias 1 add per
output element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, pair, require_rank, window_out


@dataclass(frozen=True)
class Conv2dAttrs:
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "stride", pair(self.stride, "stride"))
        object.__setattr__(self, "padding", pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", pair(self.dilation, "dilation"))
        object.__setattr__(self, "groups", int(self.groups))
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0 or self.groups < 1:
            raise IRError(f"conv2d: stride, dilation and groups must be ≥ 1 and padding ≥ 0, got {self}")


def infer(attrs: Conv2dAttrs, ins: Types) -> TensorType:
    x, w = ins[0], ins[1]
    require_rank(x, 4)
    require_rank(w, 4, "weight")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c % attrs.groups or o % attrs.groups:
        raise ShapeError(f"groups={attrs.groups} must divide input channels {c} and output channels {o}")
    if cg * attrs.groups != c:
        raise ShapeError(f"weight {w.shape} expects {cg * attrs.groups} input channels "
                         f"(C/groups={cg}, groups={attrs.groups}), input has {c}")
    if len(ins) > 2 and ins[2].shape != (o,):
        raise ShapeError(f"bias must have shape ({o},), got {ins[2].shape}")
    oh = window_out(h, kh, attrs.stride[0], attrs.padding[0], attrs.dilation[0], False)
    ow = window_out(wd, kw, attrs.stride[1], attrs.padding[1], attrs.dilation[1], False)
    return TensorType((n, o, oh, ow), x.dtype)


def macs(attrs: Conv2dAttrs, ins: Types, out: TensorType) -> int:
    _, cg, kh, kw = ins[1].shape
    return out.numel * cg * kh * kw


def flops(attrs: Conv2dAttrs, ins: Types, out: TensorType) -> int:
    return 2 * macs(attrs, ins, out) + (out.numel if len(ins) > 2 else 0)


def im2col(x: np.ndarray, kernel: tuple[int, int], attrs: Conv2dAttrs) -> tuple[np.ndarray, int, int]:
    """Columns (N, C·KH·KW, OH·OW) of a padded NCHW input, in the weight's (C, KH, KW) order."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, attrs.stride, attrs.padding, attrs.dilation
    n, c = x.shape[:2]
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    if kh == kw == 1:  # a 1×1 conv reads the input itself: no copy unless strided
        cols = x[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
        return cols.reshape(n, c, oh * ow), oh, ow
    win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]  # (N, C, OH, OW, KH, KW)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow), oh, ow


def reference(attrs: Conv2dAttrs, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    g = attrs.groups
    cols, oh, ow = im2col(x, (kh, kw), attrs)
    cols = cols.reshape(n, g, cg * kh * kw, oh * ow)
    out = np.matmul(w.reshape(g, o // g, cg * kh * kw), cols)  # (N, G, O/G, OH·OW): already NCHW order
    out = out.reshape(n, o, oh, ow)
    if b is not None:
        out += b.reshape(o, 1, 1)
    return out


def col2im(cols: np.ndarray, x_shape: tuple[int, ...], kernel: tuple[int, int], attrs: Conv2dAttrs) -> np.ndarray:
    """The transpose of `im2col`: columns (N, C·KH·KW, OH·OW) scatter-added onto an NCHW input of ``x_shape``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, attrs.stride, attrs.padding, attrs.dilation
    n, c, h, w = x_shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    dx = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):  # one strided slice per kernel tap: positions within a tap are distinct, so += is exact
        for j in range(kw):
            rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            dx[:, :, rows, j * dw : j * dw + (ow - 1) * sw + 1 : sw] += cols[:, :, i, j]
    return dx[:, :, ph : ph + h, pw : pw + w]


def vjp(attrs: Conv2dAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x, w = ins[0], ins[1]
    n, o, oh, ow = dy.shape
    _, cg, kh, kw = w.shape
    g = attrs.groups
    dyg = dy.reshape(n, g, o // g, oh * ow)
    if wrt == 0:  # data gradient: a transposed conv
        dcols = np.matmul(w.reshape(g, o // g, cg * kh * kw).transpose(0, 2, 1), dyg)  # (N, G, CG·KH·KW, L)
        return col2im(dcols.reshape(n, g * cg * kh * kw, oh * ow), x.shape, (kh, kw), attrs)
    if wrt == 1:  # weight gradient: dY·im2col(x)ᵀ, the batch folded into the contraction
        cols, _, _ = im2col(x, (kh, kw), attrs)
        cols = cols.reshape(n, g, cg * kh * kw, oh * ow).transpose(1, 0, 3, 2).reshape(g, n * oh * ow, -1)
        dw = np.matmul(dyg.transpose(1, 2, 0, 3).reshape(g, o // g, n * oh * ow), cols)
        return dw.reshape(w.shape)
    return dy.sum(axis=(0, 2, 3))


def saves(attrs: Conv2dAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    return {0: (1,), 1: (0,)}.get(wrt, ())  # data reads the weight, weight reads the input, bias neither


def backward_flops(attrs: Conv2dAttrs, ins: Types, out: TensorType, wrt: int) -> int:
    return 2 * macs(attrs, ins, out) if wrt < 2 else out.numel


OP = OpDef(
    name="conv2d", attrs_type=Conv2dAttrs, inputs=("x", "weight", "bias"), min_inputs=2,
    traits={"contraction", "window"},
    infer=infer, macs=macs, flops=flops, reference=reference,
    flop_rule="2·MACs, + 1 per output element for the bias",
    vjp=vjp, saves=saves, backward_flops=backward_flops,
    backward_flop_rule="data 2·MACs (the transposed conv), weight 2·MACs (im2colᵀ·dY), bias 1 add per output element",
)
