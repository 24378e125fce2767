"""Inception v3 (Szegedy et al., 2015), torchvision's layout and key names; 299×299 input.

Every conv is torchvision's BasicConv2d (conv without bias, BN eps 1e-3, ReLU) named ``<module>.conv`` /
``<module>.bn``. Factorised convolutions use asymmetric kernels (1×7 and 7×1, 1×3 and 3×1).

| module              | block | output (at 299) |
|---------------------|-------|-----------------|
| Conv2d_1a_3x3 … 4a  | stem: 3×3/2 32, 3×3 32, 3×3 p1 64, max pool 3/2, 1×1 80, 3×3 192, max pool 3/2 | 192×35×35 |
| Mixed_5b, 5c, 5d    | A (pool features 32, 64, 64) | 288×35×35 |
| Mixed_6a            | B (grid reduction)           | 768×17×17 |
| Mixed_6b … 6e       | C (7×7 channels 128, 160, 160, 192) | 768×17×17 |
| Mixed_7a            | D (grid reduction)           | 1280×8×8  |
| Mixed_7b, 7c        | E (expanded filter banks)    | 2048×8×8  |

Head: global average pool, dropout 0.5, fc. The auxiliary classifier (``AuxLogits``, on Mixed_6e) only runs
in training, so inference graphs leave it out (torchvision's published MACs are without it); pass
``aux_logits=True`` for the training-time graph, whose second output is the auxiliary logits. torchvision's
``transform_input`` (a per-channel re-normalisation of the input) is not part of the graph.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph
from .googlenet import basic_conv  # the same BasicConv2d (conv, BN eps 1e-3, ReLU)


def pool_branch(b: GraphBuilder, x: str, out: int, name: str) -> str:
    pool = b.avg_pool2d(x, 3, 1, 1, name=f"{name}.branch_pool.avg_pool")
    return basic_conv(b, pool, out, 1, f"{name}.branch_pool")


def chain(b: GraphBuilder, x: str, name: str, layers: list[tuple[str, int, int | tuple[int, int], dict]]) -> str:
    """A sequence of BasicConv2d named ``name.suffix`` (or ``suffix`` at the top level), given as
    (suffix, channels, kernel, conv keywords) each."""
    for suffix, out, kernel, kw in layers:
        x = basic_conv(b, x, out, kernel, f"{name}.{suffix}" if name else suffix, **kw)
    return x


P1, P2 = {"padding": 1}, {"padding": 2}
ROW3, COL3 = {"padding": (0, 1)}, {"padding": (1, 0)}  # 1×3 and 3×1
ROW7, COL7 = {"padding": (0, 3)}, {"padding": (3, 0)}  # 1×7 and 7×1
S2 = {"stride": 2}


def inception_a(b: GraphBuilder, x: str, pool_features: int, name: str) -> str:
    return b.concat([
        basic_conv(b, x, 64, 1, f"{name}.branch1x1"),
        chain(b, x, name, [("branch5x5_1", 48, 1, {}), ("branch5x5_2", 64, 5, P2)]),
        chain(b, x, name, [("branch3x3dbl_1", 64, 1, {}), ("branch3x3dbl_2", 96, 3, P1),
                           ("branch3x3dbl_3", 96, 3, P1)]),
        pool_branch(b, x, pool_features, name),
    ], name=f"{name}.cat")


def inception_b(b: GraphBuilder, x: str, name: str) -> str:
    return b.concat([
        basic_conv(b, x, 384, 3, f"{name}.branch3x3", stride=2),
        chain(b, x, name, [("branch3x3dbl_1", 64, 1, {}), ("branch3x3dbl_2", 96, 3, P1),
                           ("branch3x3dbl_3", 96, 3, S2)]),
        b.max_pool2d(x, 3, 2, name=f"{name}.branch_pool"),
    ], name=f"{name}.cat")


def inception_c(b: GraphBuilder, x: str, c7: int, name: str) -> str:
    return b.concat([
        basic_conv(b, x, 192, 1, f"{name}.branch1x1"),
        chain(b, x, name, [("branch7x7_1", c7, 1, {}), ("branch7x7_2", c7, (1, 7), ROW7),
                           ("branch7x7_3", 192, (7, 1), COL7)]),
        chain(b, x, name, [("branch7x7dbl_1", c7, 1, {}), ("branch7x7dbl_2", c7, (7, 1), COL7),
                           ("branch7x7dbl_3", c7, (1, 7), ROW7), ("branch7x7dbl_4", c7, (7, 1), COL7),
                           ("branch7x7dbl_5", 192, (1, 7), ROW7)]),
        pool_branch(b, x, 192, name),
    ], name=f"{name}.cat")


def inception_d(b: GraphBuilder, x: str, name: str) -> str:
    return b.concat([
        chain(b, x, name, [("branch3x3_1", 192, 1, {}), ("branch3x3_2", 320, 3, S2)]),
        chain(b, x, name, [("branch7x7x3_1", 192, 1, {}), ("branch7x7x3_2", 192, (1, 7), ROW7),
                           ("branch7x7x3_3", 192, (7, 1), COL7), ("branch7x7x3_4", 192, 3, S2)]),
        b.max_pool2d(x, 3, 2, name=f"{name}.branch_pool"),
    ], name=f"{name}.cat")


def inception_e(b: GraphBuilder, x: str, name: str) -> str:
    # torchvision concatenates the two 1×3 / 3×1 halves first, then the branches; one flat concat in the same
    # channel order gives the same tensor with one copy fewer.
    y3 = basic_conv(b, x, 384, 1, f"{name}.branch3x3_1")
    dbl = chain(b, x, name, [("branch3x3dbl_1", 448, 1, {}), ("branch3x3dbl_2", 384, 3, P1)])
    return b.concat([
        basic_conv(b, x, 320, 1, f"{name}.branch1x1"),
        basic_conv(b, y3, 384, (1, 3), f"{name}.branch3x3_2a", **ROW3),
        basic_conv(b, y3, 384, (3, 1), f"{name}.branch3x3_2b", **COL3),
        basic_conv(b, dbl, 384, (1, 3), f"{name}.branch3x3dbl_3a", **ROW3),
        basic_conv(b, dbl, 384, (3, 1), f"{name}.branch3x3dbl_3b", **COL3),
        pool_branch(b, x, 192, name),
    ], name=f"{name}.cat")


def aux_head(b: GraphBuilder, x: str, num_classes: int) -> str:
    x = b.avg_pool2d(x, 5, 3, name="AuxLogits.avg_pool")
    x = chain(b, x, "AuxLogits", [("conv0", 128, 1, {}), ("conv1", 768, 5, {})])
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="AuxLogits.avgpool"), name="AuxLogits.flatten")
    return b.linear(x, num_classes, name="AuxLogits.fc")


def inception_v3(batch: int = 1, image_size: int = 299, num_classes: int = 1000, aux_logits: bool = False) -> Graph:
    b = GraphBuilder("inception_v3", (batch, 3, image_size, image_size))
    x = chain(b, b.input, "", [("Conv2d_1a_3x3", 32, 3, S2), ("Conv2d_2a_3x3", 32, 3, {}),
                               ("Conv2d_2b_3x3", 64, 3, P1)])
    x = b.max_pool2d(x, 3, 2, name="maxpool1")
    x = chain(b, x, "", [("Conv2d_3b_1x1", 80, 1, {}), ("Conv2d_4a_3x3", 192, 3, {})])
    x = b.max_pool2d(x, 3, 2, name="maxpool2")
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        x = inception_a(b, x, pool_features, name)
    x = inception_b(b, x, "Mixed_6a")
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x = inception_c(b, x, c7, name)
    aux = aux_head(b, x, num_classes) if aux_logits else None
    x = inception_e(b, inception_e(b, inception_d(b, x, "Mixed_7a"), "Mixed_7b"), "Mixed_7c")
    x = b.dropout(b.adaptive_avg_pool2d(x, 1, name="avgpool"), 0.5, name="dropout")
    logits = b.linear(b.flatten(x, name="flatten"), num_classes, name="fc")
    return b.build([logits, aux] if aux is not None else logits)
