"""The whole Triton plan as one CUDA graph: captured once after a warm-up, replayed per call, so a batch-1 run
pays one graph launch instead of one host-side launch (argument packing, grid lambda, allocator) per kernel.

`GraphedPlan` owns static input buffers (the graph reads its inputs from fixed addresses): a call copies the
feed in, replays, and copies the outputs out (the next replay overwrites them). Capture needs every launch to
be capturable: the kernels are (no host sync, no CPU tensors); allocations inside the capture come from the
graph's private pool, so the split-K workspaces and every step's output keep their addresses. If capture is
impossible (no CUDA, an uncapturable op, a driver error) it falls back to running the plan step by step and
says why in ``reason``.

``cuda`` is the ``torch.cuda`` module; the tests pass a fake with the same five names (Stream, current_stream,
stream, CUDAGraph, graph) to check this host logic on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Execute = Callable[[dict[str, torch.Tensor]], list[torch.Tensor]]


class GraphedPlan:
    def __init__(self, execute: Execute, example: Mapping[str, torch.Tensor], cuda: Any, warmup: int = 2):
        self.execute = execute
        self.static_in = {k: v.clone() for k, v in example.items()}
        self.graph: Any = None
        self.static_out: list[torch.Tensor] = []
        self.reason = ""
        try:
            # warm-up on a side stream (as torch's make_graphed_callables): the first launches compile the kernels
            # and let the allocator settle, neither of which may happen during capture
            side = cuda.Stream()
            side.wait_stream(cuda.current_stream())
            with cuda.stream(side):
                for _ in range(warmup):
                    execute(self.static_in)
            cuda.current_stream().wait_stream(side)
            graph = cuda.CUDAGraph()
            with cuda.graph(graph):
                self.static_out = list(execute(self.static_in))
            self.graph = graph
        except Exception as e:  # capture impossible here: run step by step instead, and say why
            self.graph, self.static_out = None, []
            self.reason = f"capture failed, running step by step: {type(e).__name__}: {e}"

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, feed: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.graph is None:
            return self.execute(dict(feed))
        if set(feed) != set(self.static_in):
            raise ValueError(f"cuda graph: inputs {sorted(feed)} differ from the captured {sorted(self.static_in)}")
        for name, x in feed.items():
            buf = self.static_in[name]
            if x.shape != buf.shape or x.dtype != buf.dtype:
                raise ValueError(f"cuda graph: input {name!r} is {x.dtype} {tuple(x.shape)}, the graph was captured "
                                 f"for {buf.dtype} {tuple(buf.shape)}")
            buf.copy_(x)
        self.graph.replay()
        return [o.clone() for o in self.static_out]


def graphed(execute: Execute, example: Mapping[str, torch.Tensor], enabled: bool, interpret: bool,
            cuda: Any = None) -> tuple[Execute, str]:
    """``execute`` wrapped in a CUDA graph where it can be, and what happened ("on", "off", or why not)."""
    if not enabled:
        return execute, "off"
    if interpret:
        return execute, "off (the interpreter runs on the CPU: no CUDA graphs)"
    g = GraphedPlan(execute, example, cuda if cuda is not None else torch.cuda)
    return g, "on" if g.captured else g.reason
