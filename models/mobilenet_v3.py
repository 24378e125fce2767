"""MobileNetV3-Large and -Small (Howard et al., 2019) and EfficientNet-B0 (Tan & Le, 2019), torchvision's layouts
and key names (width and depth multipliers 1.0).

Both are stacks of inverted residual blocks with squeeze-and-excitation (SE): global average pool → 1×1 conv
``fc1`` (bias) → ReLU (MobileNetV3) or SiLU (EfficientNet) → 1×1 conv ``fc2`` (bias) → hardsigmoid / sigmoid,
and the block's activation multiplied by that per-channel gate (the IR's broadcasting ``mul``).

MobileNetV3 bneck table (kernel k, expanded channels e, output c, SE, activation RE = ReLU / HS = hardswish,
stride s) is `LARGE` / `SMALL` below; SE squeezes to ⌈e/4⌉ rounded to a multiple of 8. Stem 3×3/2 conv 16 with
hardswish; head 1×1 conv to 6× the last block's channels with hardswish, pool, linear 1280 (Large) / 1024 (Small),
hardswish, dropout 0.2, linear. BN eps 1e-3 (torchvision's ``partial(BatchNorm2d, eps=0.001)``).

EfficientNet-B0 MBConv table: expansion t, kernel k, stride s, output c, repeats n (`B0`); SE squeezes to a quarter
of the block's *input* channels; SiLU everywhere; stem 3×3/2 conv 32, head 1×1 conv 1280, dropout 0.2, linear.
BN eps 1e-5 (torchvision's default for B0–B7). Counts match torchvision's published table (params / GMACs):
Large 5,483,032 / 0.217, Small 2,542,856 / 0.057, B0 5,288,548 / 0.386.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

# (kernel, expanded, out, se, hardswish, stride)
LARGE: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
SMALL: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
)
# (expansion, kernel, stride, out, repeats)
B0: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, never more than 10 % below."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn_act(b: GraphBuilder, x: str, out: int, kernel: int, name: str, act: str | None, eps: float,
                stride: int = 1, groups: int = 1) -> str:
    """torchvision's Conv2dNormActivation: ``name.0`` conv (no bias, padding (k−1)/2), ``name.1`` BN, then the
    activation (``name.2``) when there is one."""
    x = b.conv2d(x, out, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False,
                 name=f"{name}.0")
    x = b.batch_norm(x, name=f"{name}.1", eps=eps)
    return getattr(b, act)(x, name=f"{name}.2") if act else x


def squeeze_excitation(b: GraphBuilder, x: str, squeeze: int, name: str, act: str, gate: str) -> str:
    """torchvision's SqueezeExcitation: x · gate(fc2(act(fc1(avgpool(x)))))."""
    c = b.shape(x)[1]
    s = b.adaptive_avg_pool2d(x, 1, name=f"{name}.avgpool")
    s = getattr(b, act)(b.conv2d(s, squeeze, 1, name=f"{name}.fc1"), name=f"{name}.activation")
    s = getattr(b, gate)(b.conv2d(s, c, 1, name=f"{name}.fc2"), name=f"{name}.scale_activation")
    return b.mul(x, s, name=f"{name}.mul")


def inverted_residual(b: GraphBuilder, x: str, name: str, *, expanded: int, out: int, kernel: int, stride: int,
                      act: str, se: int | None, se_act: str, gate: str, eps: float) -> str:
    """Expansion 1×1 (when the width changes), depthwise k×k with the stride, SE (when ``se`` gives its squeeze
    width), linear 1×1 projection; a residual add at stride 1 with the channels kept."""
    c = b.shape(x)[1]
    y, j = x, 0  # j: index into the block's Sequential
    if expanded != c:
        y, j = conv_bn_act(b, y, expanded, 1, f"{name}.block.0", act, eps), 1
    y = conv_bn_act(b, y, expanded, kernel, f"{name}.block.{j}", act, eps, stride=stride, groups=expanded)
    if se is not None:
        j += 1
        y = squeeze_excitation(b, y, se, f"{name}.block.{j}", se_act, gate)
    y = conv_bn_act(b, y, out, 1, f"{name}.block.{j + 1}", None, eps)
    return b.add(y, x, name=f"{name}.add") if stride == 1 and c == out else y


def _mobilenet_v3(name: str, table, last_channel: int, batch: int, image_size: int, num_classes: int) -> Graph:
    eps = 1e-3
    b = GraphBuilder(name, (batch, 3, image_size, image_size))
    x = conv_bn_act(b, b.input, 16, 3, "features.0", "hardswish", eps, stride=2)
    for i, (k, e, c, se, hs, s) in enumerate(table, start=1):
        x = inverted_residual(b, x, f"features.{i}", expanded=e, out=c, kernel=k, stride=s,
                              act="hardswish" if hs else "relu", se=make_divisible(e // 4) if se else None,
                              se_act="relu", gate="hardsigmoid", eps=eps)
    x = conv_bn_act(b, x, 6 * b.shape(x)[1], 1, f"features.{len(table) + 1}", "hardswish", eps)
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    x = b.hardswish(b.linear(x, last_channel, name="classifier.0"), name="classifier.1")
    x = b.dropout(x, 0.2, name="classifier.2")
    return b.build(b.linear(x, num_classes, name="classifier.3"))


def mobilenet_v3_large(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    return _mobilenet_v3("mobilenet_v3_large", LARGE, 1280, batch, image_size, num_classes)


def mobilenet_v3_small(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    return _mobilenet_v3("mobilenet_v3_small", SMALL, 1024, batch, image_size, num_classes)


def efficientnet_b0(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    eps = 1e-5
    b = GraphBuilder("efficientnet_b0", (batch, 3, image_size, image_size))
    x = conv_bn_act(b, b.input, 32, 3, "features.0", "silu", eps, stride=2)
    for stage, (t, k, s, c, n) in enumerate(B0, start=1):
        for i in range(n):
            cin = b.shape(x)[1]
            x = inverted_residual(b, x, f"features.{stage}.{i}", expanded=make_divisible(cin * t), out=c,
                                  kernel=k, stride=s if i == 0 else 1, act="silu", se=max(1, cin // 4),
                                  se_act="silu", gate="sigmoid", eps=eps)
    x = conv_bn_act(b, x, 4 * b.shape(x)[1], 1, f"features.{len(B0) + 1}", "silu", eps)
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    x = b.dropout(x, 0.2, name="classifier.0")
    return b.build(b.linear(x, num_classes, name="classifier.1"))
