"""JSON (de)serialisation of graphs, with a format version. Reading checks every field and names the node."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import ops
from .errors import GraphFormatError, IRError
from .graph import Graph, Node, TensorType
from .verify import verify

FORMAT = "convbench.graph"
VERSION = 1


def _tensor(t: TensorType) -> dict[str, Any]:
    return {"shape": list(t.shape), "dtype": t.dtype}


def to_dict(graph: Graph) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "inputs": {k: _tensor(t) for k, t in graph.inputs.items()},
        "params": {k: _tensor(t) for k, t in graph.params.items()},
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": asdict(n.attrs)}
                  for n in graph.nodes],
        "outputs": list(graph.outputs),
    }


def to_json(graph: Graph, indent: int | None = 1) -> str:
    return json.dumps(to_dict(graph), indent=indent)


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise GraphFormatError(f"{where}: missing field {key!r}")
    return obj[key]


def _read_tensor(obj: Any, where: str) -> TensorType:
    try:
        return TensorType(tuple(_field(obj, "shape", where)), obj.get("dtype", "float32"))
    except (TypeError, ValueError) as e:
        raise GraphFormatError(f"{where}: bad tensor type {obj!r}: {e}") from None


def from_dict(data: dict[str, Any]) -> Graph:
    if _field(data, "format", "graph") != FORMAT:
        raise GraphFormatError(f"not a convbench graph (format {data.get('format')!r}, expected {FORMAT!r})")
    if _field(data, "version", "graph") != VERSION:
        raise GraphFormatError(f"graph format version {data['version']!r} is not supported (this reads {VERSION})")
    inputs = {k: _read_tensor(v, f"input {k!r}") for k, v in _field(data, "inputs", "graph").items()}
    params = {k: _read_tensor(v, f"param {k!r}") for k, v in _field(data, "params", "graph").items()}
    nodes = []
    for i, n in enumerate(_field(data, "nodes", "graph")):
        where = f"node #{i} {n.get('name', '?')!r}" if isinstance(n, dict) else f"node #{i}"
        name, op_name = _field(n, "name", where), _field(n, "op", where)
        op = ops.get(op_name)
        try:
            attrs = op.attrs_from_dict(dict(n.get("attrs") or {}))
        except (TypeError, IRError) as e:
            raise GraphFormatError(f"node {name!r} ({op_name}): bad attrs {n.get('attrs')!r}: {e}") from None
        nodes.append(Node(name, op_name, tuple(_field(n, "inputs", where)), attrs))
    graph = Graph(inputs, tuple(nodes), tuple(_field(data, "outputs", "graph")), params,
                  data.get("name", "graph"))
    return verify(graph)


def from_json(text: str) -> Graph:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphFormatError(f"graph JSON does not parse: {e}") from None
    return from_dict(data)


def save(graph: Graph, path: str | Path) -> None:
    Path(path).write_text(to_json(graph))


def load(path: str | Path) -> Graph:
    return from_json(Path(path).read_text())
