"""Static analysis: parameters, MACs, FLOPs and activation memory, per layer and in total.

Conventions (docs/design.md): MACs count conv2d and linear only, bias excluded, grouped convs per group — torchvision's
published "GFLOPS" column. FLOPs follow each op's stated rule (``convbench.ir.ops.<op>.OP.flop_rule``).
Params are what torchvision counts: weights and biases, BN gamma/beta, not BN running statistics (buffers).
Activation memory treats every value as its own buffer: ``activation_sum_bytes`` is the naive sum of all of them,
``activation_peak_bytes`` the most that is live at once when each buffer is freed after its last reader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import ops
from .graph import Graph

CONTRACTIONS, WINDOWS = ops.with_trait("contraction"), ops.with_trait("window")


@dataclass(frozen=True)
class LayerRow:
    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    flops: int
    activation_bytes: int


@dataclass(frozen=True)
class Summary:
    model: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerRow, ...]
    params: int
    param_bytes: int
    buffer_bytes: int
    macs: int
    flops: int
    conv_layers: int
    linear_layers: int
    activation_peak_bytes: int
    activation_sum_bytes: int

    @property
    def weight_layers(self) -> int:
        return self.conv_layers + self.linear_layers

    def to_dict(self, layers: bool = True) -> dict:
        d = asdict(self)
        d["weight_layers"] = self.weight_layers
        if not layers:
            del d["layers"]
        return d

    def table(self):
        """Per-layer rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.layers])


def buffer_params(graph: Graph) -> set[str]:
    """Parameters that are buffers (BN running statistics): stored, but not counted as parameters."""
    out = set()
    for node in graph.nodes:
        op = ops.get(node.op)
        out.update(i for k, i in enumerate(node.inputs) if op.role(k) in op.buffers and i in graph.params)
    return out


def live_bytes(graph: Graph) -> list[int]:
    """Bytes of activations live while each node runs (its inputs, its output, everything still needed)."""
    last_use: dict[str, int] = {}
    for step, node in enumerate(graph.nodes):
        for i in graph.activation_inputs(node):
            last_use[i] = step
    keep = set(graph.outputs)
    live = {name: t.nbytes for name, t in graph.inputs.items()}
    per_step = []
    for step, node in enumerate(graph.nodes):
        live[node.name] = graph.types[node.name].nbytes
        per_step.append(sum(live.values()))
        for i in set(graph.activation_inputs(node)):
            if last_use.get(i) == step and i not in keep:
                live.pop(i, None)
        if not graph.users.get(node.name) and node.name not in keep:
            live.pop(node.name, None)
    return per_step


def summarize(graph: Graph) -> Summary:
    types = graph.types
    buffers = buffer_params(graph)
    rows = []
    for node in graph.nodes:
        op = ops.get(node.op)
        ins = [types[i] for i in node.inputs]
        out = types[node.name]
        rows.append(LayerRow(
            name=node.name, op=node.op, output_shape=out.shape,
            params=sum(types[i].numel for i in node.inputs if i in graph.params and i not in buffers),
            macs=op.macs(node.attrs, ins, out), flops=op.flops(node.attrs, ins, out),
            activation_bytes=out.nbytes,
        ))
    counted = [t for name, t in graph.params.items() if name not in buffers]
    (input_type,) = graph.inputs.values() if len(graph.inputs) == 1 else (next(iter(graph.inputs.values())),)
    return Summary(
        model=graph.name,
        input_shape=input_type.shape,
        layers=tuple(rows),
        params=sum(t.numel for t in counted),
        param_bytes=sum(t.nbytes for t in counted),
        buffer_bytes=sum(graph.params[b].nbytes for b in buffers),
        macs=sum(r.macs for r in rows),
        flops=sum(r.flops for r in rows),
        # a fused node is still one layer: conv layers are the windowed contractions, linear layers the others
        conv_layers=sum(r.op in CONTRACTIONS and r.op in WINDOWS for r in rows),
        linear_layers=sum(r.op in CONTRACTIONS and r.op not in WINDOWS for r in rows),
        activation_peak_bytes=max(live_bytes(graph), default=0),
        activation_sum_bytes=sum(t.nbytes for t in graph.inputs.values()) + sum(r.activation_bytes for r in rows),
    )
