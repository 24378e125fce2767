"""Modules and functions the torch backend's generated code calls (imported only when torch is installed).

`PackedConv2d` is the reason eager lowering beats a hand-written module on CPU: ``nn.Conv2d`` on a channels_last
input hands oneDNN plain OHWI weights, which it reorders into its blocked layout on every call (at batch 1 that
costs more than the convolution); here they are reordered once, at compile time, for the input shape the graph
fixes, and a following ReLU/ReLU6 runs as the convolution's post-op.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...ir import ops as ir_ops
from ...ir.graph import Node

# IR activation -> oneDNN post-op (name, scalars)
POST_OPS: dict[str | None, tuple[str, list[float]]] = {None: ("none", []), "relu": ("relu", []),
                                                       "relu6": ("hardtanh", [0.0, 6.0])}


def can_prepack(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN's pre-packed convolution is there: CPU, mkldnn built in, and bfloat16 only where the CPU has it."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def canonical_conv(a: Any, taps: tuple[int, ...]) -> Any:
    """The same convolution without dilation along an axis with a 1-tap kernel, where it cannot matter:
    oneDNN's NHWC kernels crash on it in some shapes (found by differential fuzzing: input (3, 3, 3, 1),
    kernel 1×1, stride (3, 2), padding (3, 1), dilation (1, 2), bias)."""
    return dataclasses.replace(a, dilation=tuple(1 if k == 1 else d for k, d in zip(taps, a.dilation, strict=True)))


def onednn_unsafe(a: Any, taps: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Shapes oneDNN's convolution gets wrong, found by differential fuzzing, which run as `NchwConv2d`: a stride
    > 1 along an axis with a single output (NHWC kernels, eager and pre-packed, return uninitialised memory: input
    (3, 1, 7, 2), kernel 3×3, stride (1, 2), padding (2, 1), dilation (2, 1)), and padding as wide as the dilated
    kernel, so that a window can see only padding (NHWC kernels segfault, and on an AVX512-FP16 CPU the float16
    NCHW kernel asks for 2^44 bytes and is killed: input (3, 3, 11, 1), kernel 3×2, stride 2, padding (1, 3),
    dilation (3, 2)). The first is an AVX-512 kernel's (oneDNN's AVX2 brg_conv_fwd on a Zen 3 computes it right),
    the second segfaults the AVX2 kernels too; both detours apply on every CPU: no CNN in the zoo has either shape,
    so they cost nothing there."""
    return (any(o == 1 and s > 1 for o, s in zip(out, a.stride, strict=True))
            or pads_past_kernel(a, taps))


def pads_past_kernel(a: Any, taps: tuple[int, ...]) -> bool:
    """Whether the padding along an axis is as wide as the dilated kernel: a window there can see only padding."""
    spans = [d * (k - 1) + 1 for k, d in zip(taps, a.dilation, strict=True)]
    return any(p >= span for p, span in zip(a.padding, spans, strict=True))


class PackedConv2d(nn.Module):
    """conv2d (+ ReLU/ReLU6) as one oneDNN call on weights pre-packed for ``input_shape``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation, groups: int,
                 input_shape: tuple[int, ...], activation: str | None = None):
        super().__init__()
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.groups, self.activation = groups, activation
        self.post_op, self.scalars = POST_OPS[activation]
        # plain attributes, not buffers: the blocked weight must not be touched by .to(memory_format=...)
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(weight, self.padding, self.stride, self.dilation,
                                                                   groups, list(input_shape))
        self.bias = bias
        self.weight_shape = tuple(weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, self.padding, self.stride,
                                                       self.dilation, self.groups, self.post_op, self.scalars, "")

    def extra_repr(self) -> str:
        return (f"weight={self.weight_shape}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, groups={self.groups}, activation={self.activation}")


class PackedConvAdd(nn.Module):
    """A pre-packed conv2d + a residual (+ ReLU) as one oneDNN call, the add and the activation post-ops of the
    convolution (`fuse_residual_adds`): ``in_place`` writes the result over the residual's buffer (oneDNN's sum
    post-op), which the rewrite allows only where nothing reads that buffer afterwards."""

    def __init__(self, conv: PackedConv2d, activation: str | None, in_place: bool):
        super().__init__()
        self.conv, self.activation, self.in_place = conv, activation, in_place

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if self.in_place:
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                residual, x, c.packed, c.bias, c.padding, c.stride, c.dilation, c.groups, "add", None,
                self.activation, [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, c.packed, c.bias, c.padding, c.stride, c.dilation, c.groups, "add", None, self.activation,
            [], "")

    def extra_repr(self) -> str:
        return f"+ residual{' in place' if self.in_place else ''}, activation={self.activation}"


RESIDUAL_ADDS = {operator.add, operator.iadd, torch.add}
RELUS = {torch.relu, torch.relu_, F.relu}


def fuse_residual_adds(gm: torch.fx.GraphModule, example: list[torch.Tensor]) -> list[str]:
    """Rewrite ``relu(conv(x) + r)`` and ``conv(x) + r`` into one `PackedConvAdd` where ``conv`` is a
    `PackedConv2d` without a post-op whose output only that add reads, and ``r`` has the conv output's shape,
    dtype and strides (no broadcast, the same layout). The ResNet bottleneck's conv3 + identity + ReLU: one pass
    over the output instead of three (conv, add, relu). ``r`` is overwritten when it is a temporary (made by a module or
    call here, not a graph input, output or view) that nothing reads after the add. Returns the fused adds'
    fx names."""
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.inference_mode():
        ShapeProp(gm).propagate(*example)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    returned = set(next(iter(gm.graph.find_nodes(op="output"))).all_input_nodes)
    fused = []
    for add in list(gm.graph.nodes):
        if add.op != "call_function" or add.target not in RESIDUAL_ADDS or len(add.args) != 2 or add.kwargs:
            continue
        for conv_node, residual in (add.args, add.args[::-1]):
            conv = _plain_packed(gm, conv_node)
            if conv is None or not isinstance(residual, torch.fx.Node) or len(conv_node.users) != 1:
                continue
            out, res = conv_node.meta.get("tensor_meta"), residual.meta.get("tensor_meta")
            if (out is None or res is None or tuple(out.shape) != tuple(res.shape) or out.dtype != res.dtype
                    or tuple(out.stride) != tuple(res.stride)):  # the conv's own (channels_last) layout
                continue
            relu = next(iter(add.users)) if len(add.users) == 1 else None
            relu = relu if relu is not None and relu.target in RELUS and relu.args == (add,) else None
            last = relu or add
            # the residual's buffer may be written over: a fresh temporary nothing reads after the add
            in_place = (residual.op == "call_module" or residual.target in RELUS | RESIDUAL_ADDS) and \
                residual not in returned and all(order[u] <= order[add] for u in residual.users)
            name = f"{conv_node.target}_residual"
            gm.add_submodule(name, PackedConvAdd(conv, "relu" if relu is not None else None, in_place))
            with gm.graph.inserting_before(last):
                new = gm.graph.call_module(name, (conv_node.args[0], residual))
            new.meta = dict(last.meta)
            last.replace_all_uses_with(new)
            for dead in (relu, add, conv_node):
                if dead is not None:
                    gm.graph.erase_node(dead)
            fused.append(add.name)
            break
    if fused:
        gm.graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
    return fused


def _plain_packed(gm: torch.fx.GraphModule, node: Any) -> PackedConv2d | None:
    if not isinstance(node, torch.fx.Node) or node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    return module if type(module) is PackedConv2d and module.activation is None else None


def nchw_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
                groups: int, pad_first: bool) -> torch.Tensor:
    """conv2d on an NCHW buffer, for the shapes oneDNN gets wrong (`onednn_unsafe`); with ``pad_first`` the input
    is zero-padded first (``F.pad``) so that oneDNN sees a convolution without padding, none of whose windows sees
    only padding."""
    if pad_first:  # F.pad takes the last axis first: (left, right, top, bottom)
        x, padding = F.pad(x.contiguous(), (padding[1], padding[1], padding[0], padding[0])), (0, 0)
    return F.conv2d(x.contiguous(), weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)


class NchwConv2d(nn.Module):
    """`nchw_conv2d` (+ ReLU/ReLU6) on weights the graph fixes, whatever the graph's layout. Weights are plain
    attributes: ``.to(memory_format=...)`` leaves them NCHW."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation, groups: int,
                 activation: str | None = None, pad_first: bool = False):
        super().__init__()
        self.weight, self.bias, self.activation, self.pad_first = weight, bias, activation, pad_first
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nchw_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        self.pad_first)
        if self.activation == "relu":
            return torch.relu_(y)
        return relu6_(y) if self.activation == "relu6" else y

    def extra_repr(self) -> str:
        return (f"weight={tuple(self.weight.shape)}, stride={self.stride}, padding={self.padding}, "
                f"pad_first={self.pad_first}, dilation={self.dilation}, groups={self.groups}, "
                f"activation={self.activation}")


class NumpyFallback(nn.Module):
    """Runs one IR node on the NumPy reference (float32) from inside the fx graph."""

    def __init__(self, node: Node, params: dict[str, np.ndarray]):
        super().__init__()
        self.node, self.params = node, params

    def forward(self, *acts: torch.Tensor) -> torch.Tensor:
        it = iter(acts)
        args = [self.params[i] if i in self.params else next(it).float().cpu().numpy() for i in self.node.inputs]
        y = ir_ops.get(self.node.op).reference(self.node.attrs, *args)
        ref = acts[0] if acts else torch.empty(0)
        # a copy: references may return a view of their input (flatten, dropout), and the result may be
        # updated in place downstream
        return torch.from_numpy(np.array(y, dtype=np.float32)).to(ref.device, ref.dtype)


def add_n(*xs: torch.Tensor) -> torch.Tensor:
    """Sum of three or more tensors (a two-input add is ``+``)."""
    out = xs[0] + xs[1]
    for x in xs[2:]:
        out += x
    return out


def relu6_(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x, inplace=True)


def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """F.local_response_norm, in float32 for 16-bit inputs (torch's CPU kernel, avg_pool3d, has no bfloat16)."""
    if x.dtype in (torch.float32, torch.float64):
        return F.local_response_norm(x, size, alpha, beta, k)
    return F.local_response_norm(x.float(), size, alpha, beta, k).to(x.dtype)


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (a process-wide setting: restore it)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- train-step helpers (backends/torch/train.py) -------------------------------------------------------------

MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
# never give the heap's top back between steps: the largest value mallopt takes (its argument is a C int; 2**34,
# as it was, reached glibc as 0, "trim at every free", so each step took its buffers back as fresh pages)
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> str | None:
    """glibc's malloc told to reuse freed activation buffers instead of handing them back to the OS, for a train
    step's executable (process-wide; returns what was set, None where the C library is not glibc).

    Why: a step allocates and frees the same activation and gradient buffers every step (ResNet-50 b8@224: 25 MB
    each). With glibc's defaults many of them are mmap'ed and unmapped, or trimmed off the heap's top, so the next
    step takes them back as fresh zeroed pages: 53–60 thousand minor page faults a step, which made the forward
    convs and BN 25–30 % slower than the same step written by hand (torch.profiler self time: 537 against 414 ms
    of forward convs), which glibc's dynamic threshold happened to spare. With these thresholds given to both
    (GLIBC_TUNABLES, one process, alternating steps) the two steps took 1.49–1.66 s and 1.52–1.62 s, and the
    backend's faults went to 0 a step. Freed memory then stays in the process (the peak RSS is unchanged, it is
    just not returned)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int  # overflow: an error
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        ok = libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold, TRIM_THRESHOLD)
    except (OSError, AttributeError, ctypes.ArgumentError):
        return None
    return f"mmap_threshold={MMAP_THRESHOLD >> 20}MiB trim_threshold={TRIM_THRESHOLD >> 20}MiB" if ok else None


def leaf(x: torch.Tensor) -> torch.Tensor:
    """A forward node's input cut from the values before it: the node's own autograd graph starts here, so a vjp
    node's ``torch.autograd.grad`` differentiates that one node and nothing upstream (the IR sums the paths)."""
    return x.detach().requires_grad_(x.is_floating_point())


def vjp_grad(out: torch.Tensor, value: torch.Tensor, dy: torch.Tensor | None) -> torch.Tensor:
    """d⟨out, dy⟩/d value through the one node that computed ``out`` from the leaf ``value`` (dy = 1 for a scalar
    loss); the node's autograd graph is kept for its other inputs' vjp nodes."""
    (g,) = torch.autograd.grad(out, value, dy, retain_graph=True)
    return g


def running_stat(x: torch.Tensor, running: torch.Tensor, stat: str, momentum: float) -> torch.Tensor:
    """BN's running statistic after the step (ir/ops/running_stat.py: unbiased batch variance, torch's update)."""
    x = x.detach()
    axes = [d for d in range(x.ndim) if d != 1]
    batch = x.mean(axes) if stat == "mean" else x.var(axes, correction=1)
    return (1 - momentum) * running + momentum * batch
