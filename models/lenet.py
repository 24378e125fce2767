"""LeNet-5 (LeCun et al., 1998), the classic form: 1×32×32 input, tanh, average-pool subsampling.

| layer | maps | size  | kernel          |
|-------|------|-------|-----------------|
| C1    | 6    | 28×28 | 5×5 conv        |
| S2    | 6    | 14×14 | 2×2 avg, /2     |
| C3    | 16   | 10×10 | 5×5 conv, every map of S2 connected to every C3 map |
| S4    | 16   | 5×5   | 2×2 avg, /2     |
| C5    | 120  | 1×1   | 5×5 conv        |
| F6    | 84   |       | fully connected |
| out   | 10   |       | fully connected |
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph


def lenet5(batch: int = 1, image_size: int = 32, num_classes: int = 10) -> Graph:
    b = GraphBuilder("lenet5", (batch, 1, image_size, image_size))
    x = b.tanh(b.conv2d(b.input, 6, 5, name="c1"), name="c1_tanh")
    x = b.avg_pool2d(x, 2, 2, name="s2")
    x = b.tanh(b.conv2d(x, 16, 5, name="c3"), name="c3_tanh")
    x = b.avg_pool2d(x, 2, 2, name="s4")
    x = b.tanh(b.conv2d(x, 120, 5, name="c5"), name="c5_tanh")
    x = b.flatten(x, name="flatten")
    x = b.tanh(b.linear(x, 84, name="f6"), name="f6_tanh")
    return b.build(b.linear(x, num_classes, name="output"))
