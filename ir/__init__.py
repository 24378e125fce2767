"""The graph IR: types, nodes, graphs, ops, builder, verification, serialisation and analysis."""

from __future__ import annotations

from .errors import GraphFormatError, IRError, ShapeError, UnknownOpError
from .graph import Graph, Node, TensorType
from .serialize import from_json, load, save, to_json
from .verify import verify

__all__ = ["Graph", "GraphFormatError", "IRError", "Node", "ShapeError", "TensorType", "UnknownOpError",
           "from_json", "load", "save", "to_json", "verify"]
