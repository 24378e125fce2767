"""GoogLeNet (Szegedy et al., 2014), torchvision's variant: BN (eps 1e-3) after every conv, ceil_mode pools,
no auxiliary heads, and a 3×3 conv in the "5×5" branch (as torchvision has it, so its checkpoints load).

Inception table: (in, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj).
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph

INCEPTION: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def basic_conv(b: GraphBuilder, x: str, out_channels: int, kernel: int, name: str, **kw) -> str:
    """torchvision's BasicConv2d: conv (no bias) → BN(eps 1e-3) → ReLU."""
    x = b.conv2d(x, out_channels, kernel, bias=False, name=f"{name}.conv", **kw)
    return b.relu(b.batch_norm(x, eps=1e-3, name=f"{name}.bn"), name=f"{name}.relu")


def inception(b: GraphBuilder, x: str, name: str) -> str:
    _, c1, c3r, c3, c5r, c5, proj = INCEPTION[name]
    b1 = basic_conv(b, x, c1, 1, f"{name}.branch1")
    b2 = basic_conv(b, basic_conv(b, x, c3r, 1, f"{name}.branch2.0"), c3, 3, f"{name}.branch2.1", padding=1)
    b3 = basic_conv(b, basic_conv(b, x, c5r, 1, f"{name}.branch3.0"), c5, 3, f"{name}.branch3.1", padding=1)
    pool = b.max_pool2d(x, 3, 1, 1, ceil_mode=True, name=f"{name}.branch4.0")
    b4 = basic_conv(b, pool, proj, 1, f"{name}.branch4.1")
    return b.concat([b1, b2, b3, b4], name=f"{name}.concat")


def googlenet(batch: int = 1, image_size: int = 224, num_classes: int = 1000) -> Graph:
    b = GraphBuilder("googlenet", (batch, 3, image_size, image_size))
    x = basic_conv(b, b.input, 64, 7, "conv1", stride=2, padding=3)
    x = b.max_pool2d(x, 3, 2, ceil_mode=True, name="maxpool1")
    x = basic_conv(b, x, 64, 1, "conv2")
    x = basic_conv(b, x, 192, 3, "conv3", padding=1)
    x = b.max_pool2d(x, 3, 2, ceil_mode=True, name="maxpool2")
    x = inception(b, inception(b, x, "inception3a"), "inception3b")
    x = b.max_pool2d(x, 3, 2, ceil_mode=True, name="maxpool3")
    for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        x = inception(b, x, name)
    x = b.max_pool2d(x, 2, 2, ceil_mode=True, name="maxpool4")
    x = inception(b, inception(b, x, "inception5a"), "inception5b")
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    x = b.dropout(x, 0.2, name="dropout")
    return b.build(b.linear(x, num_classes, name="fc"))
