"""The PyTorch backend: the IR lowered to a ``torch.fx.GraphModule``, one fx node per IR node.

Lowering (`lower`) walks the IR in schedule order. Nodes with parameters become modules (``nn.Conv2d``,
``nn.Linear``, ``nn.BatchNorm``, `PackedConv2d`) registered under the IR node's name, so the generated code reads
like torchvision's (``layer1_0_conv1 = getattr(self.layer1, "0").conv1(maxpool)``, print ``exe.artifact.code``);
every other op is one ``torch``/``F`` call. The rewrites pay for the IR (ResNet-50, 1 thread: 1.33× batch 1,
1.40× batch 8 over the hand-written torchvision-style module; benchmarks/torch_vs_handwritten.py):

- a batch_norm whose input is a conv2d/linear read by nothing else is folded into that layer's weights
  (``ir.passes.fold_batch_norm.fold_conv_bn_weights``, in float64, once) and disappears, as does dropout;
- on CPU with channels_last (``prepack``, the default there without ``compile``) each conv2d's weights are
  reordered once into oneDNN's blocked layout and a ReLU/ReLU6 that alone reads its output becomes the
  convolution's post-op (`layers.PackedConv2d`); shapes oneDNN gets wrong run NCHW, zero-padded first where a
  window could see only padding (`layers.onednn_unsafe`, on every layout);
- relu/relu6/add write in place when they are the only reader of a buffer the graph does not return;
- with prepack and ``residual_post_ops``, a residual add (+ ReLU) after such a conv becomes its oneDNN post-op
  too (`layers.fuse_residual_adds`: ResNet-50's 16 bottleneck ends, one pass over the output instead of three;
  opt-in until the interleaved timing on a quiet machine says it pays).

Options: `TorchOptions` (``convbench backends --options``); dtypes "float32", "bfloat16" and "float16" (on a CPU
without AVX512-FP16 float16 runs ATen's fallback kernels, not oneDNN: a warning says so), and "int8": a QDQ graph
(``ir/passes/quantize.py``; dtype int8 refuses any other), float32 I/O, judged with the int8 tolerance: eagerly its
convs of the int8 pattern run oneDNN's u8×s8 kernel (`quant_rules.QConv2d`), the other quantize/dequantize ops are
torch's ``quantized_decomposed`` (exact float32 arithmetic); with ``compile`` inductor matches them around
conv/linear into oneDNN u8×s8 kernels (``details.int8_convs`` counts both kinds). ``threads`` is torch's
intra-op thread count while this executable runs, restored afterwards. Parameters are converted once, at compile
time; calls run under ``torch.inference_mode``. ``exe.artifact`` is the fx GraphModule (with
``compile``: torch.compile's wrapper of it, which forwards ``.code`` and the modules); ``exe.report.details``
is a `TorchDetails`.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from ...ir import ops as ir_ops
from ...ir.graph import Graph
from ...ir.optim import Optimizer, Updater
from ...ir.passes.quantize import is_quantized
from ..base import BackendError, Executable, Options, option
from ..template import Built, Prepared, TemplateBackend, int8_graph
from .lowering import _IMPORT_ERROR, DTYPES, LOWERINGS, Lowering, lower, lower_verified, torch

if torch is not None:
    from .layers import can_prepack, fuse_residual_adds, intra_op_threads, keep_freed_memory

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
    residual_post_ops: bool = option(True, "with prepack: a residual add (+ ReLU) after a conv becomes its oneDNN "
                                           "post-op, written over the residual's buffer where nothing reads it after "
                                           "(ResNet-50: 1.05-1.07x at b1 and b8, two interleaved runs)")

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
    cpu_isa: str = ""  # ATen's vector ISA (torch.backends.cpu.get_cpu_capability()), "" off CPU
    # int8 QDQ graphs: the convs/linears that run oneDNN int8 kernels; with compile the QDQ → conv/linear patterns
    # inductor replaced (its qconv/qlinear weight-prepack matcher counts), eagerly quant_rules.QConv2d's convs
    int8_convs: int = 0
    int8_linears: int = 0
    residual_post_ops: int = 0  # residual adds (+ ReLU) pre-packed convolutions apply (layers.fuse_residual_adds)
    malloc: str | None = None  # a train step: the glibc malloc thresholds it set (layers.keep_freed_memory)


class TorchBackend(TemplateBackend):
    name = "torch"
    Options = TorchOptions
    dtypes = DTYPES
    table = "backends/torch/lowering.py: LOWERINGS"
    # every registered op lowers: the train-step ops (lowering.py: _vjp) and the int8 QDQ pair included
    gaps: ClassVar[dict[str, str]] = {}
    lowering: type[Lowering] = Lowering  # a subclass may swap rules (tests/test_conformance_planted.py)

    def available(self) -> tuple[bool, str]:
        return (False, _IMPORT_ERROR) if torch is None else (True, f"torch {torch.__version__}")

    def version(self) -> str:
        return "" if torch is None else torch.__version__

    def device(self) -> str:
        return "cpu" if torch is None or not torch.cuda.is_available() else "cpu, cuda"

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(self.lowering.rules)

    def updater(self, optimizer: Optimizer, params: Mapping[str, np.ndarray], exe: Executable) -> Updater:
        """A train step's optimizer update as torch.optim's fused kernel (backends/torch/optim.py; the optional
        hook of backends/base.py)."""
        from .optim import updater

        return updater(optimizer, params, exe)

    def build(self, prepared: Prepared) -> Built:
        graph, opts = prepared.graph, prepared.options
        device = opts.device
        quantized = int8_graph(self.name, graph, opts.dtype)
        # quantized_decomposed computes in float32 and dequantizes to it: a QDQ graph's I/O and unquantized ops
        dtype = "float32" if opts.dtype == "int8" else opts.dtype
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
        prepare = _input_converter(graph, getattr(torch, dtype), torch.device(device), channels_last)
        # under the run's thread count: oneDNN picks a pre-packed weight's blocking for the threads it packs with,
        # and a run with other threads reorders every weight on every call (ResNet-50 packed at 2, run at 1: 126
        # weight reorders a call, 100 ms at 32 px against 7)
        with intra_op_threads(opts.threads):
            gm = lower_verified(graph, prepared.params, dtype, channels_last, device, prepared.fallback_nodes,
                                self.lowering, prepack)
            residual = (fuse_residual_adds(gm, prepare([np.zeros(t.shape, np.float32)
                                                        for t in graph.inputs.values()]))
                        if prepack and opts.residual_post_ops and not quantized else [])
        lower_s = time.perf_counter() - start
        fn: Callable = gm
        torch_compile_s = 0.0
        matched = {"qconv": len(gm.meta["int8_convs"]), "qlinear": 0}  # eager: quant_rules.QConv2d
        if opts.compile:
            start = time.perf_counter()
            fn, matched = _torch_compile(gm, graph, prepare, opts.threads, device)
            torch_compile_s = time.perf_counter() - start
        threads = opts.threads
        # inductor's int8 weight packing (onednn.qconv_prepack) is constant-folded only outside inference_mode
        grad_mode = torch.enable_grad if train else torch.no_grad if quantized else torch.inference_mode

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with grad_mode(), intra_op_threads(threads):
                outs = fn(*prepare(inputs))
                return [o.detach().to(torch.float32).cpu().numpy() for o in outs]

        details = TorchDetails(channels_last, opts.compile, prepack, lower_s, torch_compile_s, len(gm.graph.nodes),
                               len(gm.meta["folded_batch_norms"]), len(gm.meta["post_ops"]), torch.__version__,
                               cpu_isa=torch.backends.cpu.get_cpu_capability() if device == "cpu" else "",
                               int8_convs=matched["qconv"], int8_linears=matched["qlinear"],
                               residual_post_ops=len(residual), malloc=keep_freed_memory() if train else None)
        return Built(run, artifact=fn, details=details, device=device, accuracy_dtype="int8" if quantized else None,
                     warnings=_precision_warnings(dtype, device, quantized, opts.compile, sum(matched.values()),
                                                     *(len(gm.meta[k]) for k in ("requantized", "int8_adds",
                                                                                 "int8_shared"))))


def _input_converter(graph: Graph, dtype: torch.dtype, device: torch.device,
                     channels_last: bool) -> Callable[[list[np.ndarray]], list[torch.Tensor]]:
    """NumPy inputs -> tensors of the executable's dtype, device and (for rank-4 inputs) memory format."""
    ranks = [t.rank for t in graph.inputs.values()]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # integer inputs keep their type: a train step's int64 labels, a dequantize_linear's int8/uint8 codes
    ints = [t.dtype if t.dtype in ("int64", "int8", "uint8") else None for t in graph.inputs.values()]

    def prepare(inputs: list[np.ndarray]) -> list[torch.Tensor]:
        xs = [torch.from_numpy(np.ascontiguousarray(x).astype(i)).to(device) if i else
              torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device, dtype)
              for x, i in zip(inputs, ints, strict=True)]
        return [x.contiguous(memory_format=layout) if r == 4 else x for x, r in zip(xs, ranks, strict=True)]

    return prepare


def _precision_warnings(dtype: str, device: str, quantized: bool, compiled: bool, int8_layers: int,
                        requantized: int = 0, adds: int = 0, shared: int = 0) -> list[str]:
    """What the report should say about the kernels a low precision gets on this machine. Seen with
    ONEDNN_VERBOSE=1 on Zen 4 (AVX-512 BF16 and VNNI, no AMX, no AVX512-FP16), torch 2.13 / oneDNN 3.12:
    bfloat16 conv and linear run oneDNN's brg_conv_fwd / brg_matmul:avx512_core_bf16; float16 calls no oneDNN
    primitive at all (ATen's own kernels, ~12× slower than bfloat16 on a 3×3 conv); an int8 QDQ graph with
    compile runs brg_conv_fwd:avx512_core_vnni with u8 activations and s8 weights."""
    if device != "cpu":
        return []
    out = []
    if dtype == "float16" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
        out.append("torch backend: float16 on this CPU runs ATen's fallback kernels, not oneDNN (it has no "
                   "AVX512-FP16/AMX-FP16): expect it slower than float32")
    if quantized and not compiled:
        out.append(f"torch backend: eagerly, {int8_layers} convolutions of the int8 QDQ graph run oneDNN's u8×s8 "
                   f"kernel (onednn.qconv2d_pointwise; {requantized} of them write their output's uint8 codes "
                   f"themselves), {adds} adds and {shared} zero pads and max pools run on the codes; linears, the "
                   "other adds and the other quantize/dequantize ops run as exact float32 arithmetic "
                   "(torch.ops.quantized_decomposed); "
                   "compile=True lowers the linears into oneDNN's int8 kernels too")
    if quantized and compiled and not int8_layers:
        out.append("torch backend: inductor matched no QDQ conv/linear pattern: the int8 graph runs as float32 "
                   "fake-quant arithmetic, not oneDNN int8 kernels")
    return out


def _torch_compile(gm: torch.fx.GraphModule, graph: Graph, prepare: Callable, threads: int | None,
                   device: str) -> tuple[Callable, dict[str, int]]:
    """``torch.compile`` of ``gm``, compiled now with a warm-up call so the first timed call is not the
    compilation, and how many int8 conv/linear patterns inductor matched into oneDNN kernels; a failure is a
    `BackendError` naming the graph."""
    from torch._dynamo.utils import counters

    # freezing: inductor treats the weights as constants, folds them and pre-packs them for oneDNN on CPU
    fn = torch.compile(gm, backend="inductor", dynamic=False, options={"freezing": device == "cpu"})
    quantized = is_quantized(graph)
    before = {k: counters["inductor"][f"{k}_weight_prepack_matcher_count"] for k in ("qconv", "qlinear")}
    # inductor constant-folds its oneDNN weight packing only under the global freezing flag, the per-call option is
    # not enough: int8 fails without it ("UnsupportedOperatorException"; and it needs no_grad, not inference_mode),
    # float convs stay aten::mkldnn_convolution reordering their weights every call (ResNet-50 bf16 b1 on an AMX
    # Xeon: 20.08 ms a call; with the flag mkldnn._convolution_pointwise on packed weights, 13.87 ms)
    frozen = torch._inductor.config.patch(freezing=True) if device == "cpu" else contextlib.nullcontext()
    try:
        with frozen, torch.no_grad() if quantized else torch.inference_mode(), intra_op_threads(threads):
            fn(*prepare([np.zeros(t.shape, np.float32) for t in graph.inputs.values()]))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BackendError(f"torch backend: torch.compile failed on {graph.name}: "
                           f"{type(e).__name__}: {first}") from e
    return fn, {k: counters["inductor"][f"{k}_weight_prepack_matcher_count"] - v for k, v in before.items()}


BACKEND = TorchBackend()

__all__ = ["BACKEND", "LOWERINGS", "Lowering", "TorchBackend", "TorchDetails", "TorchOptions", "lower"]
