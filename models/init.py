"""Deterministic parameter initialisation that keeps activations finite and informative through ResNet-152.

Weights of conv2d and linear are He-normal (std √(2/fan_in)), biases small (std 0.01), BN gamma/beta near
1/0. BN running statistics are then calibrated: one float32 reference forward pass on a batch of standard-normal images
where each batch_norm records the mean and variance of its own input before applying them. Every BN output
therefore starts unit-scaled, as after training, and a residual stream grows like √depth, not 2^depth.
Each parameter's generator is seeded by (seed, name), so adding a layer never changes another's values.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..ir import interpreter, ops
from ..ir.graph import Graph, Node


def calibration_batch(height: int, width: int) -> int:
    """Images in the calibration batch: enough that layers at 1×1 spatial size see many samples per channel."""
    return 16 if height * width <= 64 * 64 else 4


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _roles(graph: Graph) -> dict[str, tuple[str, str]]:
    """param name -> (op, role) of its first reader."""
    roles: dict[str, tuple[str, str]] = {}
    for node in graph.nodes:
        op = ops.get(node.op)
        for k, i in enumerate(node.inputs):
            if i in graph.params:
                roles.setdefault(i, (node.op, op.role(k)))
    return roles


def _draw(seed: int, name: str, shape: tuple[int, ...], op: str, role: str) -> np.ndarray:
    rng = _rng(seed, name)
    noise = rng.standard_normal(shape, dtype=np.float32)  # float32 draws: twice as fast for VGG's 143M weights
    if role == "weight" and len(shape) >= 2:
        noise *= np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        return noise
    if op == "batch_norm":
        base = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}[role]
        return np.float32(base) + np.float32(0.05) * noise
    return np.float32(0.01) * noise


def init_params(graph: Graph, seed: int = 0, calibrate: bool = True) -> dict[str, np.ndarray]:
    """Parameters for ``graph`` keyed by state_dict name, float32; reproducible for a given seed."""
    roles = _roles(graph)
    params = {name: _draw(seed, name, t.shape, *roles[name]) for name, t in graph.params.items()}
    if calibrate and any(n.op == "batch_norm" for n in graph.nodes):
        _calibrate_bn(graph, params, seed)
    return params


def _calibrate_bn(graph: Graph, params: dict[str, np.ndarray], seed: int) -> None:
    """Set each BN's running statistics to those of its input on one standard-normal image (in place)."""

    def hook(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
        if node.op != "batch_norm":
            return None
        x = args[0].astype(np.float64)
        axes = (0, *range(2, x.ndim))
        # The floor (a tenth of the layer's mean variance) keeps a channel that happened to be constant on
        # the calibration batch from amplifying whatever a later input puts there.
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        var = var + 0.1 * var.mean() + 1e-5
        params[node.inputs[3]] = mean.astype(np.float32)
        params[node.inputs[4]] = var.astype(np.float32)
        return ops.get("batch_norm").reference(node.attrs, args[0], *(params[i] for i in node.inputs[1:]))

    (name, t), = graph.inputs.items()
    shape = (calibration_batch(*t.shape[2:4]), *t.shape[1:])
    x = _rng(seed, "calibration input").standard_normal(shape, dtype=np.float32)
    interpreter.run(graph, params, {name: x}, hook=hook)
