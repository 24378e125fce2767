"""Each IR op as a torch functional call: the independent oracle the VJP and train-step tests differentiate with
torch.autograd (an IR→torch mapping written for the tests, not the torch backend's lowering)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from convbench.ir.graph import Graph
from convbench.ir.ops.dropout_train import scaled_mask


def _act(name: str | None, z: torch.Tensor) -> torch.Tensor:
    return z if name is None else RULES[name](None, z)


def _fused_conv(a, x, w, *rest):
    b = rest[0] if a.bias else None
    z = F.conv2d(x, w, b, a.stride, a.padding, a.dilation, a.groups)
    return _act(a.activation, z + rest[-1] if a.residual else z)


def _fused_linear(a, x, w, *rest):
    z = F.linear(x, w, rest[0] if a.bias else None)
    return _act(a.activation, z + rest[-1] if a.residual else z)


def _pad(a, x):
    top, left, bottom, right = a.pads
    return F.pad(x, (left, right, top, bottom), value=a.value)


def _running_stat(a, x, running):
    axes = [d for d in range(x.ndim) if d != 1]
    stat = x.mean(axes) if a.stat == "mean" else x.var(axes, unbiased=True)
    return (1 - a.momentum) * running + a.momentum * stat


RULES: dict[str, Callable[..., torch.Tensor]] = {
    "conv2d": lambda a, x, w, b=None: F.conv2d(x, w, b, a.stride, a.padding, a.dilation, a.groups),
    "linear": lambda a, x, w, b=None: F.linear(x, w, b),
    "max_pool2d": lambda a, x: F.max_pool2d(x, a.kernel_size, a.stride, a.padding, a.dilation, a.ceil_mode),
    "avg_pool2d": lambda a, x: F.avg_pool2d(x, a.kernel_size, a.stride, a.padding, a.ceil_mode,
                                            a.count_include_pad),
    "adaptive_avg_pool2d": lambda a, x: F.adaptive_avg_pool2d(x, a.output_size),
    "relu": lambda a, x: F.relu(x),
    "relu6": lambda a, x: F.relu6(x),
    "leaky_relu": lambda a, x: F.leaky_relu(x, a.negative_slope),
    "elu": lambda a, x: F.elu(x, a.alpha),
    "sigmoid": lambda a, x: torch.sigmoid(x),
    "tanh": lambda a, x: torch.tanh(x),
    "hardswish": lambda a, x: F.hardswish(x),
    "hardsigmoid": lambda a, x: F.hardsigmoid(x),
    "silu": lambda a, x: F.silu(x),
    "clip": lambda a, x: torch.clamp(x, a.min, a.max),
    "softmax": lambda a, x: F.softmax(x, a.axis),
    "batch_norm": lambda a, x, w, b, m, v: F.batch_norm(x, m, v, w, b, training=False, eps=a.eps),
    "batch_norm_train": lambda a, x, w, b: F.batch_norm(x, None, None, w, b, training=True, eps=a.eps),
    "running_stat": _running_stat,
    "lrn": lambda a, x: F.local_response_norm(x, a.size, a.alpha, a.beta, a.k),
    "add": lambda a, *xs: sum(xs[1:], xs[0]),
    "mul": lambda a, x, y: x * y,
    "concat": lambda a, *xs: torch.cat(xs, a.axis),
    "flatten": lambda a, x: torch.flatten(x, a.start_dim),
    "reshape": lambda a, x: x.reshape(a.shape),
    "pad": _pad,
    "dropout": lambda a, x: x,
    "dropout_train": lambda a, x: x * torch.from_numpy(scaled_mask(a, tuple(x.shape), np.float64)),
    "fused_conv2d": _fused_conv,
    "fused_linear": _fused_linear,
    "softmax_cross_entropy": lambda a, z, y: F.cross_entropy(z, y.long(), label_smoothing=a.label_smoothing),
}


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.array(a))
    t = t.double() if t.is_floating_point() else t
    return t.requires_grad_(grad)


def run_torch(graph: Graph, values: Mapping[str, torch.Tensor], *, training: bool = False,
              buffers: Mapping[str, torch.Tensor] | None = None,
              dropout: Mapping[str, object] | None = None) -> list[torch.Tensor]:
    """``graph`` evaluated with torch ops on ``values`` (inputs and parameters). ``training``: batch_norm nodes
    use batch statistics and update ``buffers`` (running mean/var tensors) in place, momentum 0.1, as
    nn.BatchNorm2d in train mode does; a dropout node applies the mask of ``dropout[node]`` (the IR train step's
    DropoutTrainAttrs: torch's own masks are other random numbers)."""
    env = dict(values)
    for node in graph.nodes:
        args = [env[i] for i in node.inputs]
        if training and node.op == "batch_norm":
            x, w, b = args[:3]
            mean, var = (buffers[i] for i in node.inputs[3:])
            env[node.name] = F.batch_norm(x, mean, var, w, b, training=True, momentum=0.1, eps=node.attrs.eps)
        elif training and node.op == "dropout":
            env[node.name] = RULES["dropout_train"](dropout[node.name], args[0])
        else:
            env[node.name] = RULES[node.op](node.attrs, *args)
    return [env[o] for o in graph.outputs]
