"""Patterns the oneDNN rules absorb: a zero pad into the conv that reads it (`foldable_pad`, and `code_pads` for an
int8 conv's), and the parts of a QDQ graph besides its convs that run on the codes (`quant_rules`).

Residual adds (`int8_adds`, `quant_rules.int8_add`):
The quantization pass leaves each residual add as dequantize(a) + dequantize(b) → [relu] → quantize_linear (one
or several readers with one scale and zero point: the next conv's input, the next add's skip). Such an add is one
oneDNN binary primitive reading both codes and writing the output codes: the two dequantize_linear nodes, the
relu and the float sum are absorbed, and every quantize_linear reader is that primitive's output.

Max pools and pads (`int8_on_codes`): dequantize → max_pool2d or pad → quantize_linear with the same scale and zero
point is that op on the codes themselves, exactly (dequantizing is increasing, and quantizing back with the same
scale and zero point returns each code): a max skips padding either way, and a pad fills with its value's code
(TF "same" padding before EfficientNet's strided depthwise convs).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import Graph, Node
from ...ir.passes.int8_patterns import Int8Conv, as_uint8


@dataclass(frozen=True)
class Int8Add:
    dequantize: tuple[Node, Node]  # the inputs' dequantize_linear nodes (they give the codes and their scales)
    relu: Node | None
    quantize: tuple[Node, ...]  # the quantize_linear readers, all of one scale and zero point
    absorbed: tuple[str, ...]  # not lowered on their own: the relu, and each dequantize only this add reads


def int8_adds(graph: Graph) -> dict[str, Int8Add]:
    """add name -> `Int8Add` for each add of the pattern (see the module's docstring)."""
    found = {}
    for node in graph.nodes:
        if node.op != "add" or len(node.inputs) != 2:
            continue
        dqs = [graph.node_by_name.get(i) for i in node.inputs]
        if not all(d is not None and d.op == "dequantize_linear" and not d.attrs.per_channel
                   and d.attrs.dtype in ("int8", "uint8") and d.inputs[0] not in graph.params for d in dqs):
            continue
        reader = graph.sole_reader(node.name)
        relu = reader if reader is not None and reader.op == "relu" else None
        tail = relu.name if relu is not None else node.name
        readers = _readers(graph, tail)
        if tail in graph.outputs or not alike(graph, readers, readers[0]):
            continue
        absorbed = [d.name for d in dqs if graph.sole_reader(d.name) is node] + ([relu.name] if relu else [])
        found[node.name] = Int8Add((dqs[0], dqs[1]), relu, tuple(readers), tuple(absorbed))
    return found


@dataclass(frozen=True)
class OnCodes:
    dequantize: Node
    quantize: tuple[Node, ...]
    absorbed: tuple[str, ...]


def alike(graph: Graph, readers: list[Node], like: Node, held: str | None = None) -> bool:
    """Whether ``readers`` are per-tensor quantize_linear nodes with ``like``'s scale and zero point, all held alike
    (as uint8 or not: `as_uint8`), and like the codes ``held`` where those are given."""
    if not readers:
        return False
    shifted = as_uint8(graph, held) if held is not None else as_uint8(graph, readers[0].name)
    return all(q.op == "quantize_linear" and not q.attrs.per_channel and q.attrs == like.attrs
                                 and as_uint8(graph, q.name) == shifted for q in readers)


def _readers(graph: Graph, name: str) -> list[Node]:
    return [graph.node_by_name[n] for n in graph.users.get(name, ())]


CODE_OPS = ("max_pool2d", "pad")


def int8_on_codes(graph: Graph) -> dict[str, OnCodes]:
    """max_pool2d/pad name -> `OnCodes` for each of the pattern (see the module's docstring)."""
    found = {}
    for node in graph.nodes:
        d = graph.node_by_name.get(node.inputs[0]) if node.op in CODE_OPS else None
        if d is None or d.op != "dequantize_linear" or d.attrs.per_channel or d.inputs[0] in graph.params:
            continue
        readers = _readers(graph, node.name)
        if node.name in graph.outputs or not alike(graph, readers, d, d.inputs[0]):
            continue
        absorbed = (d.name,) if graph.sole_reader(d.name) is node else ()
        found[node.name] = OnCodes(d, tuple(readers), absorbed)
    return found


def foldable_pad(graph: Graph, node: Node) -> bool:
    """A zero pad that only a float convolution reads (as its input): its rows and columns become the conv's own
    (asymmetric) padding, so the padded copy is never made (TF "same" padding before a strided conv)."""
    reader = graph.sole_reader(node.name)
    return (node.op == "pad" and node.attrs.value == 0.0 and reader is not None
            and reader.op in ("conv2d", "fused_conv2d") and reader.inputs[0] == node.name)



def code_pads(graph: Graph, on_codes: dict[str, OnCodes], convs: dict[str, Int8Conv]) -> dict[str, str]:
    """int8 conv name -> the zero pad on the codes it can take as its own padding: the pad's codes are quantized
    again only for this conv, and 0.0's code as held is 0 (post-ReLU6 values: int8 zero point −128, held as uint8
    with 0), so oneDNN's zero padding of the codes is the pad, whatever its kernels do with a source zero point.
    The padded copy is never made (EfficientNet's TF "same" pads before a strided depthwise conv: 1.4 ms of a 69 ms
    lite0 int8 batch of 8 on a Zen 3)."""
    found = {}
    for name, plan in convs.items():
        q = graph.node_by_name[plan.codes]
        pad = graph.node_by_name.get(q.inputs[0])
        if (pad is None or pad.op != "pad" or pad.name not in on_codes or pad.attrs.value != 0.0
                or on_codes[pad.name].quantize != (q,)
                or graph.sole_reader(q.name) is None or graph.sole_reader(q.name).name != plan.dequantize):
            continue
        held_zero = q.attrs.zero_point[0] + (128 if as_uint8(graph, q.name) else 0)
        if held_zero == 0:
            found[name] = pad.name
    return found
