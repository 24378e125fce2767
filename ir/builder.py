"""`GraphBuilder`: write a model the way its paper's layer table reads.

Each call appends one node, creates its parameters under ``name.weight`` / ``name.bias`` … (torchvision's
state_dict keys), checks the shape at once (so a model file fails at the line that is wrong) and returns the
name of the value it produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import ops
from .errors import IRError
from .graph import Graph, Node, TensorType
from .ops._base import NoAttrs, pair
from .ops._pool import PoolAttrs
from .ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from .ops.batch_norm import BatchNormAttrs
from .ops.clip import ClipAttrs
from .ops.concat import ConcatAttrs
from .ops.conv2d import Conv2dAttrs
from .ops.dropout import DropoutAttrs
from .ops.elu import EluAttrs
from .ops.flatten import FlattenAttrs
from .ops.leaky_relu import LeakyReluAttrs
from .ops.lrn import LrnAttrs
from .ops.pad import PadAttrs
from .ops.reshape import ReshapeAttrs
from .ops.softmax import SoftmaxAttrs


class GraphBuilder:
    def __init__(self, name: str, input_shape: Sequence[int], dtype: str = "float32", input_name: str = "input"):
        self.name = name
        self.dtype = dtype
        self.input = input_name
        self._inputs = {input_name: TensorType(tuple(input_shape), dtype)}
        self._params: dict[str, TensorType] = {}
        self._nodes: list[Node] = []
        self._types: dict[str, TensorType] = dict(self._inputs)

    # -- plumbing -------------------------------------------------------------------------------------------
    def shape(self, value: str) -> tuple[int, ...]:
        return self._types[value].shape

    def _fresh(self, base: str) -> str:
        if base not in self._types:
            return base
        i = 1
        while f"{base}_{i}" in self._types:
            i += 1
        return f"{base}_{i}"

    def param(self, name: str, shape: Sequence[int]) -> str:
        if name in self._types:
            raise IRError(f"{self.name}: parameter {name!r} is defined twice")
        t = TensorType(tuple(shape), self.dtype)
        self._params[name] = t
        self._types[name] = t
        return name

    def node(self, op: str, inputs: Sequence[str], attrs: Any = None, name: str | None = None) -> str:
        """Append ``op`` applied to ``inputs``; the name defaults to the op's name, made unique."""
        name = self._fresh(name or op)
        node = Node(name, op, tuple(inputs), NoAttrs() if attrs is None else attrs)
        self._types[name] = ops.infer_node(node, self._types)
        self._nodes.append(node)
        return name

    def build(self, outputs: Sequence[str] | str) -> Graph:
        outs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        return Graph(self._inputs, tuple(self._nodes), outs, self._params, self.name)

    # -- layers ---------------------------------------------------------------------------------------------
    def conv2d(self, x: str, out_channels: int, kernel_size: int | Sequence[int], *, name: str, stride=1,
               padding=0, dilation=1, groups: int = 1, bias: bool = True) -> str:
        kh, kw = pair(kernel_size, "kernel_size")
        c = self.shape(x)[1]
        inputs = [x, self.param(f"{name}.weight", (out_channels, c // groups, kh, kw))]
        if bias:
            inputs.append(self.param(f"{name}.bias", (out_channels,)))
        return self.node("conv2d", inputs, Conv2dAttrs(stride, padding, dilation, groups), name)

    def linear(self, x: str, out_features: int, *, name: str, bias: bool = True) -> str:
        inputs = [x, self.param(f"{name}.weight", (out_features, self.shape(x)[-1]))]
        if bias:
            inputs.append(self.param(f"{name}.bias", (out_features,)))
        return self.node("linear", inputs, None, name)

    def batch_norm(self, x: str, *, name: str, eps: float = 1e-5) -> str:
        c = self.shape(x)[1]
        stats = [self.param(f"{name}.{role}", (c,)) for role in ("weight", "bias", "running_mean", "running_var")]
        return self.node("batch_norm", [x, *stats], BatchNormAttrs(eps), name)

    def max_pool2d(self, x: str, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                   name: str | None = None) -> str:
        return self.node("max_pool2d", [x], PoolAttrs(kernel_size, stride, padding, dilation, ceil_mode), name)

    def avg_pool2d(self, x: str, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                   count_include_pad=True, name: str | None = None) -> str:
        attrs = PoolAttrs(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)
        return self.node("avg_pool2d", [x], attrs, name)

    def adaptive_avg_pool2d(self, x: str, output_size=1, *, name: str | None = None) -> str:
        return self.node("adaptive_avg_pool2d", [x], AdaptivePoolAttrs(output_size), name)

    def relu(self, x: str, *, name: str | None = None) -> str:
        return self.node("relu", [x], None, name)

    def relu6(self, x: str, *, name: str | None = None) -> str:
        return self.node("relu6", [x], None, name)

    def leaky_relu(self, x: str, negative_slope: float = 0.01, *, name: str | None = None) -> str:
        return self.node("leaky_relu", [x], LeakyReluAttrs(negative_slope), name)

    def sigmoid(self, x: str, *, name: str | None = None) -> str:
        return self.node("sigmoid", [x], None, name)

    def tanh(self, x: str, *, name: str | None = None) -> str:
        return self.node("tanh", [x], None, name)

    def elu(self, x: str, alpha: float = 1.0, *, name: str | None = None) -> str:
        return self.node("elu", [x], EluAttrs(alpha), name)

    def softmax(self, x: str, axis: int = 1, *, name: str | None = None) -> str:
        return self.node("softmax", [x], SoftmaxAttrs(axis), name)

    def lrn(self, x: str, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, *,
            name: str | None = None) -> str:
        return self.node("lrn", [x], LrnAttrs(size, alpha, beta, k), name)

    def add(self, *xs: str, name: str | None = None) -> str:
        return self.node("add", xs, None, name)

    def concat(self, xs: Sequence[str], axis: int = 1, *, name: str | None = None) -> str:
        return self.node("concat", xs, ConcatAttrs(axis), name)

    def flatten(self, x: str, start_dim: int = 1, *, name: str | None = None) -> str:
        return self.node("flatten", [x], FlattenAttrs(start_dim), name)

    def dropout(self, x: str, p: float = 0.5, *, name: str | None = None) -> str:
        return self.node("dropout", [x], DropoutAttrs(p), name)

    def pad(self, x: str, pads: Sequence[int], value: float = 0.0, *, name: str | None = None) -> str:
        """Constant padding of H and W; ``pads`` is (top, left, bottom, right)."""
        return self.node("pad", [x], PadAttrs(tuple(pads), value), name)

    def mul(self, x: str, y: str, *, name: str | None = None) -> str:
        """x · y, ``y`` of x's shape or (N, C, 1, 1) (a squeeze-and-excitation gate)."""
        return self.node("mul", [x, y], None, name)

    def hardswish(self, x: str, *, name: str | None = None) -> str:
        return self.node("hardswish", [x], None, name)

    def hardsigmoid(self, x: str, *, name: str | None = None) -> str:
        return self.node("hardsigmoid", [x], None, name)

    def silu(self, x: str, *, name: str | None = None) -> str:
        return self.node("silu", [x], None, name)

    def clip(self, x: str, min: float | None = None, max: float | None = None, *, name: str | None = None) -> str:
        return self.node("clip", [x], ClipAttrs(min, max), name)

    def reshape(self, x: str, shape: Sequence[int], *, name: str | None = None) -> str:
        return self.node("reshape", [x], ReshapeAttrs(tuple(shape)), name)
