"""JSON (de)serialisation of graphs, with a format version. Reading validates, then builds: one typed parse.

Reading is strict, because a value that is coerced is a graph that is silently different: every field is checked
against its exact type before anything is built (``true``/``false`` only for a bool, an integer and never
``"22"`` or ``1.7`` for an int, a list and never a string for a list, finite numbers only), unknown keys are
refused with the nearest known one, duplicate keys and NaN/Infinity literals are refused, and a graph must name
at least one output. Attribute types come from each op's attribute dataclass (its type hints), so the op
modules stay the one statement of what an attribute is; ``typed`` is the checker, which the results reader
(``convbench.bench.record``) uses too. Every failure is one `GraphFormatError` that says where (file, node,
field); a graph that parses then goes through `verify` (shapes, names, order).

Why typed parsing here and not pydantic or jsonschema: the schema already exists as the ops' frozen dataclasses;
a second copy of it in another library's terms would be one more thing to keep in step, and a dependency.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from . import ops
from .errors import GraphFormatError
from .graph import DTYPES, Graph, Node, TensorType
from .verify import verify

FORMAT = "convbench.graph"
VERSION = 1
GRAPH_KEYS = ("format", "version", "name", "inputs", "params", "nodes", "outputs")
NODE_KEYS = ("name", "op", "inputs", "attrs")
TENSOR_KEYS = ("shape", "dtype")


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
    """The graph as strict JSON; an attribute that is NaN or infinite is an error here, as it is when read."""
    try:
        return json.dumps(to_dict(graph), indent=indent, allow_nan=False)
    except ValueError:
        bad = [n.name for n in graph.nodes if not _finite_attrs(asdict(n.attrs))]
        raise GraphFormatError(f"{graph.name}: node(s) {bad} have NaN or infinite attributes, which JSON (and "
                               f"this format) cannot hold") from None


def _finite_attrs(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict | list | tuple):
        return all(_finite_attrs(v) for v in (value.values() if isinstance(value, dict) else value))
    return True


# -- exact types -----------------------------------------------------------------------------------------------

def hint_name(hint: Any) -> str:
    """``int | None``, ``list of int``, ``'a' | 'b'``: a type hint as an error message names it."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(hint_name(a) for a in args)
    if origin in (tuple, list) or hint is list:
        if origin is tuple and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {_PLURAL.get(args[0], hint_name(args[0]))}"
        return f"a list of {_PLURAL.get(args[0], hint_name(args[0])) if args else 'values'}"
    if origin is dict or hint is dict:
        return "an object"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
             type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


_PLURAL = {bool: "true/false values", int: "integers", float: "finite numbers", str: "strings"}


def show_value(value: Any) -> str:
    """A value as an error message quotes it: as JSON, cut at 60 characters."""
    text = json.dumps(value) if isinstance(value, bool | int | float | str | list | dict) or value is None \
        else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def typed(value: Any, hint: Any) -> Any:
    """``value`` (as JSON gave it) checked exactly against ``hint``, in the hint's Python form: lists become
    tuples where a tuple is asked, an integer becomes a float where a float is asked. `TypeError` names what was
    expected. Supported: bool, int, float, str, None, Any, unions, Literal, tuple[X, ...], tuple[X, Y], list[X],
    dict[str, X]."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for member in args:
            try:
                return typed(value, member)
            except TypeError:
                continue
    elif origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif origin in (tuple, list) or hint is list:
        args = args or (Any, Ellipsis)
        fixed = origin is tuple and args[-1] is not Ellipsis
        if type(value) in (list, tuple) and not fixed and args[0] in _SCALARS:  # fast: 20 000 timing samples
            if all(type(v) in _SCALARS[args[0]] for v in value) and (args[0] is not float or _all_finite(value)):
                items = [float(v) for v in value] if args[0] is float else list(value)
                return tuple(items) if origin is tuple else items
        elif type(value) in (list, tuple) and (not fixed or len(value) == len(args)):  # tuple: from to_dict()
            try:
                items = [typed(v, a) for v, a in zip(value, args if fixed else [args[0]] * len(value), strict=True)]
            except TypeError:
                pass  # named below as the whole list, not the element
            else:
                return tuple(items) if origin is tuple else items
    elif origin is dict or hint is dict:
        if type(value) is dict and not args:
            return value
        if type(value) is dict:
            try:
                return {k: typed(v, args[1]) for k, v in value.items()}
            except TypeError:
                pass
    elif hint is float:
        if type(value) in (int, float) and _finite(value):
            return float(value)
    elif hint is type(None):
        if value is None:
            return None
    elif hint in (bool, int, str):
        if type(value) is hint:
            return value
    else:
        raise NotImplementedError(f"typed(): type hint {hint!r} is not supported")  # a new attribute type
    raise TypeError(f"must be {hint_name(hint)}, got {show_value(value)}")


_SCALARS: dict[Any, tuple[type, ...]] = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}


def _all_finite(values: Any) -> bool:
    try:
        return all(map(math.isfinite, values))
    except OverflowError:
        return False


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def check_keys(obj: Mapping[str, Any], known: tuple[str, ...] | frozenset[str], where: str,
               what: str = "key") -> None:
    """Unknown keys of ``obj`` are an error naming the nearest known key (a misspelling is never a default)."""
    unknown = [k for k in obj if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            near = difflib.get_close_matches(k, list(known), n=1, cutoff=0.6)
            hints.append(f"{k!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise GraphFormatError(f"{where}: unknown {what}(s) {', '.join(hints)}; known: {', '.join(sorted(known))}")


def json_object(text: str | bytes, where: str, error: type[Exception] = GraphFormatError) -> Any:
    """Strict JSON: NaN/Infinity literals and duplicate keys are refused, deep nesting is an error, not a crash;
    every failure is one ``error`` that starts with ``where``."""
    def constant(name: str) -> None:
        raise error(f"{where}: {name} is not JSON (write a finite number)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            dup = next(k for i, (k, _) in enumerate(pairs) if any(k == p for p, _ in pairs[:i]))
            raise error(f"{where}: key {dup!r} appears twice in one object")
        return out

    try:
        return json.loads(text, parse_constant=constant, object_pairs_hook=no_duplicates)
    except error:
        raise
    except json.JSONDecodeError as e:
        raise error(f"{where}: not JSON (it does not parse: {e})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # an integer literal of more digits than Python converts
        raise error(f"{where}: {e}") from None


# -- reading ---------------------------------------------------------------------------------------------------

def _get(obj: dict[str, Any], key: str, hint: Any, where: str, default: Any = MISSING) -> Any:
    if key not in obj:
        if default is MISSING:
            raise GraphFormatError(f"{where}: missing field {key!r}")
        return default
    try:
        return typed(obj[key], hint)
    except TypeError as e:
        raise GraphFormatError(f"{where}: {key!r} {e}") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise GraphFormatError(f"{where}: must be an object, got {show_value(value)}")
    return value


def _read_tensor(obj: Any, where: str) -> TensorType:
    obj = _object(obj, where)
    check_keys(obj, TENSOR_KEYS, where)
    shape = _get(obj, "shape", tuple[int, ...], where)
    dtype = _get(obj, "dtype", Literal[DTYPES], where, "float32")  # type: ignore[valid-type]
    if any(d < 1 for d in shape):
        raise GraphFormatError(f"{where}: shape {list(shape)} has a dimension below 1")
    return TensorType(shape, dtype)


def _tensors(data: dict[str, Any], key: str) -> dict[str, TensorType]:
    table = _object(_get(data, key, dict, "graph"), f"graph {key!r}")
    return {name: _read_tensor(t, f"{key[:-1]} {name!r}") for name, t in table.items()}


def read_attrs(op_name: str, data: Any, where: str) -> Any:
    """An op's attribute dataclass from its JSON object, every field typed by the dataclass's own hints."""
    op = ops.get(op_name)
    data = _object(data, f"{where}: 'attrs'")
    hints = typing.get_type_hints(op.attrs_type)
    known = tuple(f.name for f in fields(op.attrs_type))
    check_keys(data, known, where, "attribute")
    values = {}
    for f in fields(op.attrs_type):
        required = f.default is MISSING and f.default_factory is MISSING
        if f.name not in data:
            if required:
                raise GraphFormatError(f"{where}: missing attribute {f.name!r}")
            continue
        try:
            values[f.name] = typed(data[f.name], hints[f.name])
        except TypeError as e:
            raise GraphFormatError(f"{where}: attribute {f.name!r} {e}") from None
    try:
        return op.attrs_type(**values)
    except (TypeError, ValueError) as e:  # the op's own range checks (IRError is a ValueError)
        raise GraphFormatError(f"{where}: bad attrs {show_value(data)}: {e}") from None


def from_dict(data: Any) -> Graph:
    data = _object(data, "graph")
    if data.get("format") != FORMAT:
        raise GraphFormatError(f"not a convbench graph (format {show_value(data.get('format'))}, expected {FORMAT!r})")
    check_keys(data, GRAPH_KEYS, "graph")
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise GraphFormatError(f"graph format version {show_value(version)} is not supported (this reads {VERSION})")
    inputs, params = _tensors(data, "inputs"), _tensors(data, "params")
    nodes = []
    for i, n in enumerate(_get(data, "nodes", list, "graph")):
        where = f"node #{i}"
        n = _object(n, where)
        if type(n.get("name")) is str:
            where = f"node #{i} {n['name']!r}"
        check_keys(n, NODE_KEYS, where)
        name, op_name = _get(n, "name", str, where), _get(n, "op", str, where)
        node_inputs = _get(n, "inputs", tuple[str, ...], where)
        attrs = read_attrs(op_name, n.get("attrs", {}), f"node {name!r} ({op_name})")
        nodes.append(Node(name, op_name, node_inputs, attrs))
    outputs = _get(data, "outputs", tuple[str, ...], "graph")
    if not outputs:
        raise GraphFormatError("graph: 'outputs' is empty; a graph must name at least one output")
    graph = Graph(inputs, tuple(nodes), outputs, params, _get(data, "name", str, "graph", "graph"))
    return verify(graph)


def from_json(text: str | bytes, where: str = "graph JSON") -> Graph:
    return from_dict(json_object(text, where))


def save(graph: Graph, path: str | Path) -> None:
    Path(path).write_text(to_json(graph))


def load(path: str | Path) -> Graph:
    """A graph file; every failure to read or parse it is one `GraphFormatError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise GraphFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return from_json(data, str(path))
    except GraphFormatError as e:
        message = str(e)
        raise GraphFormatError(message if message.startswith(str(path)) else f"{path}: {message}") from None


__all__ = ["FORMAT", "VERSION", "check_keys", "from_dict", "from_json", "hint_name", "json_object", "load",
           "read_attrs", "save", "show_value", "to_dict", "to_json", "typed"]
