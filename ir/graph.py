"""The graph IR: `TensorType`, `Node` and `Graph`, all frozen.

A node produces exactly one value, named like the node (as in torch.fx). Its inputs name other nodes'
values, graph inputs or parameters, in the order the op defines (conv2d: x, weight, bias). Parameter names are
torchvision ``state_dict`` keys, so a checkpoint loads by name. A pass takes a Graph and returns a new one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from math import prod
from typing import Any

import numpy as np

from .errors import IRError

# int8/uint8: quantize_linear outputs and quantized weights; int32: quantized biases
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int8", "uint8", "int32")


@dataclass(frozen=True)
class TensorType:
    """Shape and element type of a value. Activations are NCHW, conv weights OIHW."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d <= 0 for d in self.shape):
            raise IRError(f"tensor shape {self.shape} has a dimension that is not positive")
        if self.dtype not in DTYPES:
            raise IRError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{'×'.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Node:
    """One op application. ``attrs`` is the op's frozen attribute dataclass."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))


@dataclass(frozen=True, eq=True)
class Graph:
    """A CNN as a list of nodes in topological order.

    ``inputs`` and ``params`` map names to their types (params in state_dict order); ``outputs`` name the values
    the graph returns. Values are computed on demand from the ops' shape rules and cached on the instance.
    """

    inputs: Mapping[str, TensorType]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, TensorType] = field(default_factory=dict)
    name: str = "graph"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "params", dict(self.params))

    __hash__ = None  # type: ignore[assignment]  # holds dicts; compare, do not hash

    @cached_property
    def types(self) -> dict[str, TensorType]:
        """Type of every value (inputs, params, node outputs), from each op's shape rule."""
        from .ops import infer_node  # ops import graph types; import here to keep the module graph acyclic

        types: dict[str, TensorType] = {**self.inputs, **self.params}
        for node in self.nodes:
            types[node.name] = infer_node(node, types)
        return types

    @cached_property
    def node_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def users(self) -> dict[str, tuple[str, ...]]:
        """For each value, the nodes that read it, in schedule order."""
        users: dict[str, list[str]] = {name: [] for name in (*self.inputs, *self.params)}
        for node in self.nodes:
            users.setdefault(node.name, [])
            for i in node.inputs:
                users.setdefault(i, []).append(node.name)
        return {k: tuple(v) for k, v in users.items()}

    def sole_reader(self, value: str) -> Node | None:
        """The one node that reads ``value``, if exactly one does and the graph does not also return it: the
        condition for absorbing a value into its reader (fusion, BN folding, in-place epilogues)."""
        readers = self.users.get(value, ())
        if len(readers) != 1 or value in self.outputs:
            return None
        return self.node_by_name[readers[0]]

    @cached_property
    def last_read(self) -> dict[str, int]:
        """For each activation value some node reads, the schedule step of its last reader."""
        last: dict[str, int] = {}
        for step, node in enumerate(self.nodes):
            for i in node.inputs:
                if i not in self.params:
                    last[i] = step
        return last

    @cached_property
    def frees(self) -> tuple[tuple[str, ...], ...]:
        """Per step, the activations whose last reader is that step and that the graph does not return: what an
        executor may release after it."""
        frees: list[list[str]] = [[] for _ in self.nodes]
        keep = set(self.outputs)
        for value, step in self.last_read.items():
            if value not in keep:
                frees[step].append(value)
        return tuple(tuple(f) for f in frees)

    def is_param(self, value: str) -> bool:
        return value in self.params

    def activation_inputs(self, node: Node) -> tuple[str, ...]:
        """The node's inputs that are activations (not parameters)."""
        return tuple(i for i in node.inputs if i not in self.params)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def replace(self, **changes: Any) -> Graph:
        """A copy with some fields changed (the way passes build their result)."""
        fields = {"inputs": self.inputs, "nodes": self.nodes, "outputs": self.outputs,
                  "params": self.params, "name": self.name}
        fields.update(changes)
        return Graph(**fields)
