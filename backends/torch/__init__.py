"""The PyTorch backend: the IR lowered to a ``torch.fx.GraphModule``, one fx node per IR node.

Lowering (`lower`) walks the IR in schedule order. Nodes with parameters become modules (``nn.Conv2d``,
``nn.Linear``, ``nn.BatchNorm``, `PackedConv2d`) registered under the IR node's name, so the generated code reads
like torchvision's (``layer1_0_conv1 = getattr(self.layer1, "0").conv1(maxpool)``, print ``exe.artifact.code``);
every other op is one ``torch``/``F`` call. Three rewrites pay for the IR (ResNet-50, 1 thread: 1.33× batch 1,
1.40× batch 8 over the hand-written torchvision-style module; benchmarks/torch_vs_handwritten.py):

- a batch_norm whose input is a conv2d/linear read by nothing else is folded into that layer's weights
  (``ir.passes.fold_batch_norm.fold_conv_bn_weights``, in float64, once) and disappears, as does dropout;
- on CPU with channels_last (``prepack``, the default there without ``compile``) each conv2d's weights are
  reordered once into oneDNN's blocked layout and a ReLU/ReLU6 that alone reads its output becomes the
  convolution's post-op (`layers.PackedConv2d`); shapes oneDNN's NHWC kernels get wrong run NCHW
  (`nhwc_unsafe`);
- relu/relu6/add write in place when they are the only reader of a buffer the graph does not return.

Options: `TorchOptions` (``convbench backends --options``); dtypes "float32" and "bfloat16". ``threads`` is
torch's intra-op thread count while this executable runs, restored afterwards. Parameters are converted once, at
compile time; calls run under ``torch.inference_mode``. ``exe.artifact`` is the fx GraphModule (with
``compile``: torch.compile's wrapper of it, which forwards ``.code`` and the modules); ``exe.report.details``
is a `TorchDetails`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from ...ir import ops as ir_ops
from ...ir.graph import Graph
from ..base import BackendError, Options, option
from ..template import Built, Prepared, TemplateBackend
from .lowering import _IMPORT_ERROR, DTYPES, LOWERINGS, Lowering, lower, lower_verified, torch

if torch is not None:
    from .layers import can_prepack, intra_op_threads

# channels_last is the default where the graph convolves: the ops that are both a contraction and a window
CONVOLUTIONS = ir_ops.with_trait("contraction") & ir_ops.with_trait("window")


@dataclass(frozen=True)
class TorchOptions(Options):
    channels_last: bool | None = option(None, "NHWC activations and weights (default: on for graphs with "
                                              "convolutions)")
    compile: bool = option(False, "torch.compile with inductor (on CPU with freezing: weights folded and "
                                  "pre-packed), compiled and warmed up at compile time")
    device: Literal["cpu", "cuda"] = option("cpu", "where the weights live and the kernels run")
    prepack: bool | None = option(None, "conv weights reordered once into oneDNN's blocked layout, ReLU/ReLU6 as "
                                        "post-op (default: wherever it applies: CPU, channels_last, no compile)")

    def __post_init__(self) -> None:
        if self.device == "cuda" and torch is not None and not torch.cuda.is_available():
            raise ValueError("device 'cuda' is not available (cpu, or cuda with a GPU)")


@dataclass(frozen=True)
class TorchDetails:
    channels_last: bool
    compile: bool
    prepack: bool
    lower_s: float  # IR -> fx GraphModule, parameters converted
    torch_compile_s: float  # torch.compile's compilation and warm-up call (0 without compile)
    fx_nodes: int
    folded_batch_norms: int
    post_ops: int  # activations pre-packed convolutions apply
    torch: str


class TorchBackend(TemplateBackend):
    name = "torch"
    Options = TorchOptions
    dtypes = DTYPES
    table = "backends/torch/lowering.py: LOWERINGS"
    gaps: ClassVar[dict[str, str]] = {}  # every registered op lowers, the train-step ops included (lowering.py: _vjp)
    lowering: type[Lowering] = Lowering  # a subclass may swap rules (tests/test_conformance_planted.py)

    def available(self) -> tuple[bool, str]:
        return (False, _IMPORT_ERROR) if torch is None else (True, f"torch {torch.__version__}")

    def version(self) -> str:
        return "" if torch is None else torch.__version__

    def device(self) -> str:
        return "cpu" if torch is None or not torch.cuda.is_available() else "cpu, cuda"

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(self.lowering.rules)

    def build(self, prepared: Prepared) -> Built:
        graph, opts = prepared.graph, prepared.options
        dtype, device = opts.dtype, opts.device
        train = any(n.op == "vjp" for n in graph.nodes)  # a train step (ir/train.py): runs under autograd
        if train and opts.compile:
            raise BackendError("torch backend: compile is not supported for a train step yet (its vjp nodes call "
                               "torch.autograd.grad, which dynamo does not trace)")
        # a train step lowers every layer functionally (lowering.py: all_params): channels_last only when asked
        channels_last = (any(n.op in CONVOLUTIONS for n in graph.nodes) and not train if opts.channels_last is None
                         else opts.channels_last)
        packable = (channels_last and not opts.compile and not train
                    and can_prepack(getattr(torch, dtype), torch.device(device)))
        if opts.prepack and not packable:
            raise BackendError("torch backend: prepack needs channels_last, compile=False and oneDNN on CPU "
                               f"with {dtype} support")
        prepack = packable if opts.prepack is None else opts.prepack
        start = time.perf_counter()
        gm = lower_verified(graph, prepared.params, dtype, channels_last, device, prepared.fallback_nodes,
                            self.lowering, prepack)
        lower_s = time.perf_counter() - start
        prepare = _input_converter(graph, getattr(torch, dtype), torch.device(device), channels_last)
        fn: Callable = gm
        torch_compile_s = 0.0
        if opts.compile:
            start = time.perf_counter()
            fn = _torch_compile(gm, graph, prepare, opts.threads, device)
            torch_compile_s = time.perf_counter() - start
        threads = opts.threads

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with (torch.enable_grad() if train else torch.inference_mode()), intra_op_threads(threads):
                outs = fn(*prepare(inputs))
                return [o.detach().to(torch.float32).cpu().numpy() for o in outs]

        details = TorchDetails(channels_last, opts.compile, prepack, lower_s, torch_compile_s, len(gm.graph.nodes),
                               len(gm.meta["folded_batch_norms"]), len(gm.meta["post_ops"]), torch.__version__)
        return Built(run, artifact=fn, details=details, device=device)


def _input_converter(graph: Graph, dtype: torch.dtype, device: torch.device,
                     channels_last: bool) -> Callable[[list[np.ndarray]], list[torch.Tensor]]:
    """NumPy inputs -> tensors of the executable's dtype, device and (for rank-4 inputs) memory format."""
    ranks = [t.rank for t in graph.inputs.values()]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    ints = [t.dtype == "int64" for t in graph.inputs.values()]  # a train step's labels

    def prepare(inputs: list[np.ndarray]) -> list[torch.Tensor]:
        xs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(device) if i else
              torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device, dtype)
              for x, i in zip(inputs, ints, strict=True)]
        return [x.contiguous(memory_format=layout) if r == 4 else x for x, r in zip(xs, ranks, strict=True)]

    return prepare


def _torch_compile(gm: torch.fx.GraphModule, graph: Graph, prepare: Callable, threads: int | None,
                   device: str) -> Callable:
    """``torch.compile`` of ``gm``, compiled now with a warm-up call so the first timed call is not the
    compilation; a failure is a `BackendError` naming the graph."""
    # freezing: inductor treats the weights as constants, folds them and pre-packs them for oneDNN on CPU
    fn = torch.compile(gm, backend="inductor", dynamic=False, options={"freezing": device == "cpu"})
    try:
        with torch.inference_mode(), intra_op_threads(threads):
            fn(*prepare([np.zeros(t.shape, np.float32) for t in graph.inputs.values()]))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BackendError(f"torch backend: torch.compile failed on {graph.name}: "
                           f"{type(e).__name__}: {first}") from e
    return fn


BACKEND = TorchBackend()

__all__ = ["BACKEND", "LOWERINGS", "Lowering", "TorchBackend", "TorchDetails", "TorchOptions", "lower"]
