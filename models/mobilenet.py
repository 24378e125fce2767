"""MobileNetV2 (Sandler et al., 2018), torchvision's layout and key names (width multiplier 1.0).

Inverted residual table, one row per stage: expansion t, output channels c, repeats n, first stride s.

| t | c   | n | s |
|---|-----|---|---|
| 1 | 16  | 1 | 1 |
| 6 | 24  | 2 | 2 |
| 6 | 32  | 3 | 2 |
| 6 | 64  | 4 | 2 |
| 6 | 96  | 3 | 1 |
| 6 | 160 | 3 | 2 |
| 6 | 320 | 1 | 1 |

Stem: 3×3/2 conv 32, BN, ReLU6 (``features.0``). Each block (``features.1`` … ``features.17``): 1×1 expansion
conv-BN-ReLU6 (absent when t = 1), 3×3 depthwise conv-BN-ReLU6 with the stride, 1×1 linear projection conv-BN;
a residual add when the stride is 1 and the channels are kept. Then 1×1 conv 1280-BN-ReLU6 (``features.18``),
global average pool, dropout 0.2, fc. Convs have no bias (BN follows every one); BN eps 1e-5.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def conv_bn_relu6(b: GraphBuilder, x: str, out: int, kernel: int, name: str, stride: int = 1,
                  groups: int = 1) -> str:
    """torchvision's ConvNormActivation: ``name.0`` conv (no bias), ``name.1`` BN, ``name.2`` ReLU6."""
    x = b.conv2d(x, out, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False,
                 name=f"{name}.0")
    return b.relu6(b.batch_norm(x, name=f"{name}.1"), name=f"{name}.2")


def inverted_residual(b: GraphBuilder, x: str, out: int, stride: int, expand: int, name: str) -> str:
    c = b.shape(x)[1]
    hidden = c * expand
    y, i = x, 0  # i: index into the block's `conv` Sequential
    if expand != 1:
        y, i = conv_bn_relu6(b, y, hidden, 1, f"{name}.conv.0"), 1
    y = conv_bn_relu6(b, y, hidden, 3, f"{name}.conv.{i}", stride=stride, groups=hidden)
    y = b.conv2d(y, out, 1, bias=False, name=f"{name}.conv.{i + 1}")
    y = b.batch_norm(y, name=f"{name}.conv.{i + 2}")
    return b.add(x, y, name=f"{name}.add") if stride == 1 and c == out else y


def mobilenet_v2(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    b = GraphBuilder("mobilenet_v2", (batch, 3, image_size, image_size))
    x = conv_bn_relu6(b, b.input, 32, 3, "features.0", stride=2)
    index = 1
    for t, c, n, s in SETTING:
        for k in range(n):
            x = inverted_residual(b, x, c, s if k == 0 else 1, t, f"features.{index}")
            index += 1
    x = conv_bn_relu6(b, x, 1280, 1, f"features.{index}")
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    x = b.dropout(x, 0.2, name="classifier.0")
    return b.build(b.linear(x, num_classes, name="classifier.1"))
