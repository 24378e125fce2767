"""SqueezeNet 1.0 (Iandola et al., 2016), torchvision's layout and key names.

Fire module (squeeze s, expand e1 1×1 and e3 3×3): 1×1 conv s + ReLU, then 1×1 conv e1 and 3×3 conv e3 (pad 1),
each + ReLU, concatenated (e1 + e3 channels). Every conv has a bias; there is no BN.

| ``features.N`` | layer                    | out |
|----------------|--------------------------|-----|
| 0, 1           | 7×7/2 conv 96, ReLU      | 96  |
| 2              | 3×3/2 max pool (ceil)    |     |
| 3, 4, 5        | Fire 16/64/64, 16/64/64, 32/128/128 | 256 |
| 6              | 3×3/2 max pool (ceil)    |     |
| 7, 8, 9, 10    | Fire 32/128/128, 48/192/192, 48/192/192, 64/256/256 | 512 |
| 11             | 3×3/2 max pool (ceil)    |     |
| 12             | Fire 64/256/256          | 512 |

Classifier: dropout 0.5, 1×1 conv to the classes (``classifier.1``), ReLU, global average pool, flatten.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

# features index -> (squeeze, expand 1×1, expand 3×3) for Fire modules, "M" for a max pool
FEATURES: dict[int, tuple[int, int, int] | str] = {
    2: "M", 3: (16, 64, 64), 4: (16, 64, 64), 5: (32, 128, 128), 6: "M",
    7: (32, 128, 128), 8: (48, 192, 192), 9: (48, 192, 192), 10: (64, 256, 256), 11: "M", 12: (64, 256, 256),
}


def fire(b: GraphBuilder, x: str, squeeze: int, e1: int, e3: int, name: str) -> str:
    s = b.relu(b.conv2d(x, squeeze, 1, name=f"{name}.squeeze"), name=f"{name}.squeeze_activation")
    y1 = b.relu(b.conv2d(s, e1, 1, name=f"{name}.expand1x1"), name=f"{name}.expand1x1_activation")
    y3 = b.relu(b.conv2d(s, e3, 3, padding=1, name=f"{name}.expand3x3"), name=f"{name}.expand3x3_activation")
    return b.concat([y1, y3], name=f"{name}.cat")


def squeezenet1_0(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    b = GraphBuilder("squeezenet1_0", (batch, 3, image_size, image_size))
    x = b.relu(b.conv2d(b.input, 96, 7, stride=2, name="features.0"), name="features.1")
    for i, layer in FEATURES.items():
        if layer == "M":
            x = b.max_pool2d(x, 3, 2, ceil_mode=True, name=f"features.{i}")
        else:
            x = fire(b, x, *layer, name=f"features.{i}")
    x = b.dropout(x, 0.5, name="classifier.0")
    x = b.relu(b.conv2d(x, num_classes, 1, name="classifier.1"), name="classifier.2")
    x = b.adaptive_avg_pool2d(x, 1, name="classifier.3")
    return b.build(b.flatten(x, name="flatten"))
