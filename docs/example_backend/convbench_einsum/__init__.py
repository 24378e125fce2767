"""convbench-einsum: the worked example of a third-party backend (see docs/third_party_backend.md).

conv2d and linear are ``numpy.einsum`` contractions over strided window views; relu, add, flatten and dropout
are elementwise. Every other op is unsupported: ``compile`` raises ``UnsupportedNodeError`` naming those nodes
unless the caller passes ``fallback="numpy"``, in which case they run on the reference and the executable lists
them in ``fallback_nodes``. The conformance suite skips (with that reason) the cases it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convbench.backends.base import BackendError, Executable, check_supported
from convbench.backends.template import cast_params
from convbench.ir import interpreter
from convbench.ir.graph import Graph, Node

__version__ = "0.1.0"


def conv2d(attrs: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    (sh, sw), (ph, pw), (dh, dw), g = attrs.stride, attrs.padding, attrs.dilation, attrs.groups
    o, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    # (N, C, OH, OW, KH, KW): every window, dilated taps only, strided positions only
    win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    n, _, oh, ow = win.shape[:4]
    y = np.einsum("ngchwij,gocij->ngohw", win.reshape(n, g, cg, oh, ow, kh, kw), w.reshape(g, o // g, cg, kh, kw),
                  optimize=True).reshape(n, o, oh, ow)
    return y if b is None else y + b.reshape(1, o, 1, 1)


def linear(attrs: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = np.einsum("...i,oi->...o", x, w)
    return y if b is None else y + b


RULES: dict[str, Callable[..., np.ndarray]] = {
    "conv2d": conv2d,
    "linear": linear,
    "relu": lambda attrs, x: np.maximum(x, 0),
    "add": lambda attrs, *xs: sum(xs[1:], xs[0]),
    "flatten": lambda attrs, x: x.reshape(*x.shape[: attrs.start_dim], -1),
    "dropout": lambda attrs, x: x,
}
DTYPES = ("float32", "float64")


class EinsumBackend:
    name = "einsum"
    dtypes = DTYPES

    def available(self) -> tuple[bool, str]:
        return True, f"numpy {np.__version__}"  # nothing to miss: numpy is a dependency

    def version(self) -> str:
        return __version__

    def device(self) -> str:
        return "cpu"

    def supports(self, node: Node) -> bool:
        return node.op in RULES

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32",
                fallback: str | None = None, **options: Any) -> Executable:
        if dtype not in DTYPES:
            raise BackendError(f"einsum backend: dtype {dtype!r} is not supported; use one of {DTYPES}")
        if options:
            raise BackendError(f"einsum backend: unknown option(s) {sorted(options)}")
        fallback_nodes = check_supported(self, graph, fallback)  # raises UnsupportedNodeError without fallback
        weights = cast_params(graph, params, dtype)  # once, at compile time

        def hook(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
            rule = RULES.get(node.op)
            return None if rule is None else rule(node.attrs, *args)  # None: the reference runs the node

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            feed = {name: np.asarray(x, dtype=dtype) for name, x in zip(graph.inputs, inputs, strict=True)}
            return interpreter.run(graph, weights, feed, hook=hook)

        return Executable(graph, self.name, run, {"dtype": dtype}, fallback_nodes)


BACKEND = EinsumBackend()
