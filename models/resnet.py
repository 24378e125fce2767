"""ResNet (He et al., 2015), V1.5 as torchvision builds it: in a bottleneck the stride sits on the 3×3 conv.

| model     | block      | blocks per stage |
|-----------|------------|------------------|
| resnet18  | basic      | 2, 2, 2, 2       |
| resnet34  | basic      | 3, 4, 6, 3       |
| resnet50  | bottleneck | 3, 4, 6, 3       |
| resnet101 | bottleneck | 3, 4, 23, 3      |
| resnet152 | bottleneck | 3, 8, 36, 3      |

Stem: 7×7/2 conv 64, BN, ReLU, 3×3/2 max pool. Stages of 64, 128, 256, 512 channels (×4 out for
bottlenecks), the first block of stages 2–4 with stride 2 and a 1×1 conv + BN projection (``downsample``).
Head: global average pool, fc.
"""

from __future__ import annotations

from functools import partial

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph


def conv_bn(b: GraphBuilder, x: str, out: int, kernel: int, conv: str, bn: str, stride: int = 1) -> str:
    x = b.conv2d(x, out, kernel, stride=stride, padding=kernel // 2, bias=False, name=conv)
    return b.batch_norm(x, name=bn)


def shortcut(b: GraphBuilder, x: str, out: int, stride: int, name: str) -> str:
    if stride == 1 and b.shape(x)[1] == out:
        return x
    return conv_bn(b, x, out, 1, f"{name}.downsample.0", f"{name}.downsample.1", stride)


def basic_block(b: GraphBuilder, x: str, planes: int, stride: int, name: str) -> str:
    y = b.relu(conv_bn(b, x, planes, 3, f"{name}.conv1", f"{name}.bn1", stride), name=f"{name}.relu1")
    y = conv_bn(b, y, planes, 3, f"{name}.conv2", f"{name}.bn2")
    return b.relu(b.add(y, shortcut(b, x, planes, stride, name), name=f"{name}.add"), name=f"{name}.relu")


def bottleneck(b: GraphBuilder, x: str, planes: int, stride: int, name: str) -> str:
    y = b.relu(conv_bn(b, x, planes, 1, f"{name}.conv1", f"{name}.bn1"), name=f"{name}.relu1")
    y = b.relu(conv_bn(b, y, planes, 3, f"{name}.conv2", f"{name}.bn2", stride), name=f"{name}.relu2")
    y = conv_bn(b, y, planes * 4, 1, f"{name}.conv3", f"{name}.bn3")
    return b.relu(b.add(y, shortcut(b, x, planes * 4, stride, name), name=f"{name}.add"), name=f"{name}.relu")


def resnet(name: str, block: str, layers: tuple[int, int, int, int], batch: int = 1, image_size: int = 224,
           num_classes: int = 1000) -> Graph:
    b = GraphBuilder(name, (batch, 3, image_size, image_size))
    x = b.relu(conv_bn(b, b.input, 64, 7, "conv1", "bn1", stride=2), name="relu")
    x = b.max_pool2d(x, 3, 2, 1, name="maxpool")
    make = basic_block if block == "basic" else bottleneck
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for i in range(blocks):
            stride = 2 if stage > 1 and i == 0 else 1
            x = make(b, x, planes, stride, f"layer{stage}.{i}")
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    return b.build(b.linear(x, num_classes, name="fc"))


resnet18 = partial(resnet, "resnet18", "basic", (2, 2, 2, 2))
resnet34 = partial(resnet, "resnet34", "basic", (3, 4, 6, 3))
resnet50 = partial(resnet, "resnet50", "bottleneck", (3, 4, 6, 3))
resnet101 = partial(resnet, "resnet101", "bottleneck", (3, 4, 23, 3))
resnet152 = partial(resnet, "resnet152", "bottleneck", (3, 8, 36, 3))
