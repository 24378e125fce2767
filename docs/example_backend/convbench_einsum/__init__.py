"""convbench-einsum: the worked example of a third-party backend (see docs/third_party_backend.md).

conv2d and linear are ``numpy.einsum`` contractions over strided window views; relu, add, flatten and dropout
are elementwise. `RULES` is its lowering table, the one list of what it runs: ``supports`` answers from it, and
``compile`` (convbench's template) raises ``UnsupportedNodeError`` naming every other node unless the caller
passes ``fallback="numpy"``, in which case they run on the reference and the executable lists them in
``fallback_nodes``. The conformance suite skips (with that reason) the cases it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convbench.backends.base import Options, option
from convbench.backends.template import Built, Prepared, TemplateBackend
from convbench.ir import interpreter
from convbench.ir.graph import Node

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


@dataclass(frozen=True)
class EinsumOptions(Options):
    """dtype, threads, passes and fallback come from `Options`; a backend's own options go here, each with
    ``option(default, "one-line doc")``. Redeclaring an inherited one changes its default or its doc:"""

    threads: int | None = option(None, "recorded only: NumPy's BLAS threads are fixed when numpy loads "
                                       "(OPENBLAS_NUM_THREADS, which `convbench run` sets per case)")


@dataclass(frozen=True)
class EinsumDetails:
    """What ``exe.report.details`` holds: the facts about this build that only this backend knows."""

    einsum_nodes: int  # nodes RULES runs; the rest fell back to the reference


class EinsumBackend(TemplateBackend):
    name = "einsum"
    Options = EinsumOptions
    dtypes = ("float32", "float64")
    table = "convbench_einsum: RULES"

    def available(self) -> tuple[bool, str]:
        return True, f"numpy {np.__version__}"  # nothing to miss: numpy is a dependency

    def version(self) -> str:
        return __version__

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(RULES)

    def param_dtype(self, options: EinsumOptions) -> str:
        return options.dtype  # the template casts the weights once, before build: float64 runs in float64

    def build(self, prepared: Prepared) -> Built:
        # the template has parsed the options, checked the dtype, verified the graph, run the passes, checked
        # support (prepared.fallback_nodes: what runs on the reference) and cast the parameters
        graph, weights, dtype = prepared.graph, prepared.params, prepared.options.dtype
        fallback = set(prepared.fallback_nodes)

        def hook(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
            if node.name in fallback:
                return None  # None: the reference interpreter runs the node
            return RULES[node.op](node.attrs, *args)

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            feed = {name: np.asarray(x, dtype=dtype) for name, x in zip(graph.inputs, inputs, strict=True)}
            return interpreter.run(graph, weights, feed, hook=hook)

        return Built(run, details=EinsumDetails(len(graph.nodes) - len(fallback)))


BACKEND = EinsumBackend()
