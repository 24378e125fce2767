"""VGG (Simonyan & Zisserman, 2014), configurations A, B, D, E = VGG-11, 13, 16, 19, with and without BN.

Every conv is 3×3, pad 1, followed by ReLU (and BN before it in the ``_bn`` variants); "M" is a 2×2/2 max pool.
Then adaptive 7×7 average pool, fc 4096, fc 4096, fc 1000 with dropout — torchvision's layout and key names.
"""

from __future__ import annotations

from functools import partial

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg(config: str, batch_norm: bool, batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    b = GraphBuilder(config + ("_bn" if batch_norm else ""), (batch, 3, image_size, image_size))
    x, i = b.input, 0  # i: torchvision's index into `features`
    for v in CONFIGS[config]:
        if v == "M":
            x, i = b.max_pool2d(x, 2, 2, name=f"features.{i}"), i + 1
            continue
        x = b.conv2d(x, int(v), 3, padding=1, name=f"features.{i}")
        if batch_norm:
            x, i = b.batch_norm(x, name=f"features.{i + 1}"), i + 1
        x, i = b.relu(x, name=f"features.{i + 1}"), i + 2
    x = b.flatten(b.adaptive_avg_pool2d(x, 7, name="avgpool"), name="flatten")
    x = b.dropout(b.relu(b.linear(x, 4096, name="classifier.0"), name="classifier.1"), name="classifier.2")
    x = b.dropout(b.relu(b.linear(x, 4096, name="classifier.3"), name="classifier.4"), name="classifier.5")
    return b.build(b.linear(x, num_classes, name="classifier.6"))


vgg11 = partial(vgg, "vgg11", False)
vgg13 = partial(vgg, "vgg13", False)
vgg16 = partial(vgg, "vgg16", False)
vgg19 = partial(vgg, "vgg19", False)
vgg11_bn = partial(vgg, "vgg11", True)
vgg13_bn = partial(vgg, "vgg13", True)
vgg16_bn = partial(vgg, "vgg16", True)
vgg19_bn = partial(vgg, "vgg19", True)
