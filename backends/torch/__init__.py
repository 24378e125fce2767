"""The PyTorch backend: the IR lowered to a ``torch.fx.GraphModule``, one fx node per IR node.

Lowering (`lower`) walks the IR in schedule order. Nodes with parameters become modules (``nn.Conv2d``,
``nn.Linear``, ``nn.BatchNorm``, `PackedConv2d`) registered under the IR node's name, so the generated code reads
like torchvision's (``layer1_0_conv1 = getattr(self.layer1, "0").conv1(maxpool)``, print ``lower(g, p).code``);
every other op is one ``torch``/``F`` call. Three rewrites pay for the IR (ResNet-50, 1 thread: 1.33× batch 1,
1.40× batch 8 over the hand-written torchvision-style module; benchmarks/torch_vs_handwritten.py):

- a batch_norm whose input is a conv2d/linear read by nothing else is folded into that layer's weights
  (``ir.passes.fold_batch_norm.fold_conv_bn_weights``, in float64, once) and disappears, as does dropout;
- on CPU with channels_last (``prepack``, the default there without ``compile``) each conv2d's weights are
  reordered once into oneDNN's blocked layout and a ReLU/ReLU6 that alone reads its output becomes the
  convolution's post-op (`layers.PackedConv2d`); shapes oneDNN's NHWC kernels get wrong run NCHW
  (`nhwc_unsafe`);
- relu/relu6/add write in place when they are the only reader of a buffer the graph does not return.

Options of `TorchBackend.compile`: ``dtype`` ("float32", "bfloat16"); ``channels_last`` (NHWC activations and
weights; default: on for graphs with convolutions); ``prepack`` (above; default: wherever it applies);
``compile`` (``torch.compile`` with inductor and, on CPU, freezing: weights folded as constants and pre-packed
for oneDNN; compiled at compile time with a warm-up call, ``info["compile_s"]``);
``threads`` (torch's intra-op threads while this executable runs, restored afterwards); ``device`` ("cpu" or
"cuda"); ``fallback="numpy"`` (unsupported nodes run on the reference, listed in ``fallback_nodes``);
``passes`` (a pipeline of ``convbench.ir.passes`` run first, "none" by default; ``info["passes"]`` records it).
Parameters are converted once, at compile time; calls run under ``torch.inference_mode``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.passes import run_pipeline
from ..base import BackendError, Executable, check_supported
from .lowering import _IMPORT_ERROR, DTYPES, LOWERINGS, OPTIONS, SUPPORTED, Lowering, lower, torch

if torch is not None:
    from .layers import can_prepack, intra_op_threads


class TorchBackend:
    name = "torch"
    dtypes = DTYPES
    lowering: type[Lowering] = Lowering

    def available(self) -> tuple[bool, str]:
        return (False, _IMPORT_ERROR) if torch is None else (True, f"torch {torch.__version__}")

    def version(self) -> str:
        return "" if torch is None else torch.__version__

    def device(self) -> str:
        return "cpu" if torch is None or not torch.cuda.is_available() else "cpu, cuda"

    def supports(self, node: Node) -> bool:
        return node.op in SUPPORTED

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32",
                channels_last: bool | None = None, compile: bool = False, threads: int | None = None,
                device: str = "cpu", fallback: str | None = None, passes: Any = None, prepack: bool | None = None,
                **options: Any) -> Executable:
        if torch is None:
            raise BackendError(_IMPORT_ERROR)
        if options:
            raise BackendError(f"torch backend: unknown option(s) {sorted(options)}; known: {OPTIONS}")
        if dtype not in DTYPES:
            raise BackendError(f"torch backend: dtype {dtype!r} is not supported; use one of {DTYPES}")
        if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
            raise BackendError(f"torch backend: device {device!r} is not available (cpu, or cuda with a GPU)")
        pipeline = run_pipeline(graph, params, passes, self.supports)  # fuses only what supports() accepts
        graph, params = pipeline.graph, pipeline.params
        fallback_nodes = check_supported(self, graph, fallback)
        if channels_last is None:
            channels_last = any(n.op in ("conv2d", "fused_conv2d") for n in graph.nodes)
        packable = channels_last and not compile and can_prepack(getattr(torch, dtype), torch.device(device))
        if prepack and not packable:
            raise BackendError("torch backend: prepack needs channels_last, compile=False and oneDNN on CPU "
                               f"with {dtype} support")
        prepack = packable if prepack is None else prepack
        start = time.perf_counter()
        gm = lower(graph, params, dtype, channels_last, device, fallback_nodes, self.lowering, prepack)
        lower_s = time.perf_counter() - start
        tdtype, dev = getattr(torch, dtype), torch.device(device)
        ranks = [t.rank for t in graph.inputs.values()]
        layout = torch.channels_last if channels_last else torch.contiguous_format

        def prepare(inputs: list[np.ndarray]) -> list[torch.Tensor]:
            xs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev, tdtype) for x in inputs]
            return [x.contiguous(memory_format=layout) if r == 4 else x for x, r in zip(xs, ranks, strict=True)]

        fn: Callable = gm
        compile_s = 0.0
        if compile:  # compile now, with a warm-up call, so the first timed call is not the compilation
            start = time.perf_counter()
            # freezing: inductor treats the weights as constants, folds them and pre-packs them for oneDNN on CPU
            fn = torch.compile(gm, backend="inductor", dynamic=False, options={"freezing": device == "cpu"})
            try:
                with torch.inference_mode(), intra_op_threads(threads):
                    fn(*prepare([np.zeros(t.shape, np.float32) for t in graph.inputs.values()]))
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise BackendError(f"torch backend: torch.compile failed on {graph.name}: "
                                   f"{type(e).__name__}: {first}") from e
            compile_s = time.perf_counter() - start

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode(), intra_op_threads(threads):
                outs = fn(*prepare(inputs))
                return [o.to(torch.float32).cpu().numpy() for o in outs]

        info = {"dtype": dtype, "channels_last": channels_last, "compile": compile, "threads": threads,
                "device": device, "lower_s": lower_s, "compile_s": compile_s, "fx_nodes": len(gm.graph.nodes),
                "folded_batch_norms": len(gm.meta["folded_batch_norms"]), "prepack": prepack,
                "post_ops": len(gm.meta["post_ops"]), "torch": torch.__version__,
                "passes": pipeline.pipeline, "pipeline": pipeline.describe()}
        exe = Executable(graph, self.name, run, info, fallback_nodes)
        exe.module = gm  # type: ignore[attr-defined]  # the fx GraphModule; exe.module.code is the Python
        return exe


BACKEND = TorchBackend()

__all__ = ["BACKEND", "LOWERINGS", "SUPPORTED", "Lowering", "TorchBackend", "lower"]
