"""The graph IR: types, nodes, graphs, ops, builder, verification, serialisation and analysis."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import GraphFormatError, IRError, ShapeError, UnknownOpError
from .graph import Graph, Node, TensorType
from .serialize import from_json, load, save, to_json
from .verify import verify

# ONNX interop needs the onnx package: imported on first use, so `import convbench` does not load it.
_ONNX = {"from_onnx": "onnx_import", "OnnxImportError": "onnx_import", "to_onnx": "onnx_export",
         "OnnxExportError": "onnx_export"}


def __getattr__(name: str) -> Any:
    if name in _ONNX:
        module = importlib.import_module(f".{_ONNX[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Graph", "GraphFormatError", "IRError", "Node", "OnnxExportError", "OnnxImportError", "ShapeError",
           "TensorType", "UnknownOpError", "from_json", "from_onnx", "load", "save", "to_json", "to_onnx", "verify"]
