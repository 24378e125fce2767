"""AlexNet: torchvision's single-tower variant, and the 2012 paper/lecture architecture.

torchvision (``alexnet``): 64@11×11/4 p2, pool, 192@5×5 p2, pool, 384, 256, 256 @3×3, pool, adaptive 6×6,
dropout, fc 4096, dropout, fc 4096, fc 1000. Parameter names ``features.N`` / ``classifier.N`` as torchvision.

2012 (``alexnet_2012``), one tower, no channel groups:

| layer | output     | kernel                        |
|-------|------------|-------------------------------|
| conv1 | 55×55×96   | 11×11, stride 4, pad 0        |
| pool1 | 27×27×96   | 3×3 max, stride 2; then LRN   |
| conv2 | 27×27×256  | 5×5, pad 2                    |
| pool2 | 13×13×256  | 3×3 max, stride 2; then LRN   |
| conv3 | 13×13×384  | 3×3, pad 1                    |
| conv4 | 13×13×384  | 3×3, pad 1                    |
| conv5 | 13×13×256  | 3×3, pad 1                    |
| pool5 | 6×6×256    | 3×3 max, stride 2             |
| fc6, fc7, fc8 | 4096, 4096, 1000 | dropout before fc6 and fc7 |

LRN: size 5, alpha 1e-4, beta 0.75, k 2.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph


def alexnet(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    b = GraphBuilder("alexnet", (batch, 3, image_size, image_size))
    x = b.relu(b.conv2d(b.input, 64, 11, stride=4, padding=2, name="features.0"), name="features.1")
    x = b.max_pool2d(x, 3, 2, name="features.2")
    x = b.relu(b.conv2d(x, 192, 5, padding=2, name="features.3"), name="features.4")
    x = b.max_pool2d(x, 3, 2, name="features.5")
    x = b.relu(b.conv2d(x, 384, 3, padding=1, name="features.6"), name="features.7")
    x = b.relu(b.conv2d(x, 256, 3, padding=1, name="features.8"), name="features.9")
    x = b.relu(b.conv2d(x, 256, 3, padding=1, name="features.10"), name="features.11")
    x = b.max_pool2d(x, 3, 2, name="features.12")
    x = b.flatten(b.adaptive_avg_pool2d(x, 6, name="avgpool"), name="flatten")
    x = b.relu(b.linear(b.dropout(x, name="classifier.0"), 4096, name="classifier.1"), name="classifier.2")
    x = b.relu(b.linear(b.dropout(x, name="classifier.3"), 4096, name="classifier.4"), name="classifier.5")
    return b.build(b.linear(x, num_classes, name="classifier.6"))


def alexnet_2012(batch: int = 1, image_size: int = 227, num_classes: int = 1000) -> Graph:
    b = GraphBuilder("alexnet_2012", (batch, 3, image_size, image_size))
    x = b.relu(b.conv2d(b.input, 96, 11, stride=4, name="conv1"), name="relu1")
    x = b.lrn(b.max_pool2d(x, 3, 2, name="pool1"), size=5, alpha=1e-4, beta=0.75, k=2.0, name="norm1")
    x = b.relu(b.conv2d(x, 256, 5, padding=2, name="conv2"), name="relu2")
    x = b.lrn(b.max_pool2d(x, 3, 2, name="pool2"), size=5, alpha=1e-4, beta=0.75, k=2.0, name="norm2")
    x = b.relu(b.conv2d(x, 384, 3, padding=1, name="conv3"), name="relu3")
    x = b.relu(b.conv2d(x, 384, 3, padding=1, name="conv4"), name="relu4")
    x = b.relu(b.conv2d(x, 256, 3, padding=1, name="conv5"), name="relu5")
    x = b.flatten(b.max_pool2d(x, 3, 2, name="pool5"), name="flatten")
    x = b.relu(b.linear(b.dropout(x, name="drop6"), 4096, name="fc6"), name="relu6")
    x = b.relu(b.linear(b.dropout(x, name="drop7"), 4096, name="fc7"), name="relu7")
    return b.build(b.linear(x, num_classes, name="fc8"))
