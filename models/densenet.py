"""DenseNet-121 (Huang et al., 2017), DenseNet-BC as torchvision builds it, with its key names.

Growth rate k = 32, bottleneck width 4k, dense blocks of 6, 12, 24, 16 layers, compression 0.5.

- Stem (``features``): 7×7/2 conv 64 (``conv0``), BN (``norm0``), ReLU, 3×3/2 max pool pad 1 (``pool0``).
- Dense layer (``denseblockB.denselayerL``): concat of the block input and every earlier layer's output →
  BN-ReLU-1×1 conv 4k (``norm1``, ``conv1``) → BN-ReLU-3×3 conv k pad 1 (``norm2``, ``conv2``).
- Transition (``transitionB``) after blocks 1–3: BN-ReLU-1×1 conv to half the channels, 2×2/2 average pool.
- Head: BN (``norm5``), ReLU, global average pool, fc (``classifier``). Convs have no bias.

Each layer concatenates its inputs afresh, as torchvision does: the copies are part of DenseNet's real cost.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

GROWTH, BN_SIZE, INIT_FEATURES = 32, 4, 64
BLOCKS = (6, 12, 24, 16)


def bn_relu_conv(b: GraphBuilder, x: str, out: int, kernel: int, prefix: str, norm: str, conv: str) -> str:
    x = b.relu(b.batch_norm(x, name=f"{prefix}.{norm}"), name=f"{prefix}.relu{norm[-1]}")
    return b.conv2d(x, out, kernel, padding=kernel // 2, bias=False, name=f"{prefix}.{conv}")


def dense_block(b: GraphBuilder, x: str, layers: int, name: str) -> str:
    features = [x]
    for i in range(1, layers + 1):
        prefix = f"{name}.denselayer{i}"
        y = features[0] if len(features) == 1 else b.concat(features, name=f"{prefix}.cat")
        y = bn_relu_conv(b, y, BN_SIZE * GROWTH, 1, prefix, "norm1", "conv1")
        features.append(bn_relu_conv(b, y, GROWTH, 3, prefix, "norm2", "conv2"))
    return b.concat(features, name=f"{name}.cat")


def transition(b: GraphBuilder, x: str, name: str) -> str:
    x = b.relu(b.batch_norm(x, name=f"{name}.norm"), name=f"{name}.relu")
    x = b.conv2d(x, b.shape(x)[1] // 2, 1, bias=False, name=f"{name}.conv")
    return b.avg_pool2d(x, 2, 2, name=f"{name}.pool")


def densenet121(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    b = GraphBuilder("densenet121", (batch, 3, image_size, image_size))
    x = b.conv2d(b.input, INIT_FEATURES, 7, stride=2, padding=3, bias=False, name="features.conv0")
    x = b.relu(b.batch_norm(x, name="features.norm0"), name="features.relu0")
    x = b.max_pool2d(x, 3, 2, 1, name="features.pool0")
    for i, layers in enumerate(BLOCKS, start=1):
        x = dense_block(b, x, layers, f"features.denseblock{i}")
        if i < len(BLOCKS):
            x = transition(b, x, f"features.transition{i}")
    x = b.relu(b.batch_norm(x, name="features.norm5"), name="relu")
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    return b.build(b.linear(x, num_classes, name="classifier"))
