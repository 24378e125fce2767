"""The Triton backend: hand-written Triton kernels (``convbench.kernels.triton``), one launch per fused group.

Where it runs: natively on a CUDA GPU when ``torch.cuda.is_available()``, otherwise under Triton's interpreter
on CPU tensors (``TRITON_INTERPRET=1``, set when this module is imported, before anything imports triton). The
interpreter runs the very same kernels, slowly: it is how CI checks them without a GPU. Run it with
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` (several times faster on small blocks). Its timings mean nothing.

Compile (the template, `backends/template.py`) runs the pass pipeline (``passes=``, "default" here: drop
identities, fold BN into the conv/linear weights, fold constants, fuse conv/linear → add → activation into one
node); `build` then folds an adaptive pool that only replicates into the linear after it
(`ir.passes.fold_replicating_pools`) and lowers (`lower`: activations absorbed into their producer's epilogue,
concat inputs written in place and concats of concats as views, weights packed in the compute dtype).
``exe.artifact`` is the `plan.Plan`; ``exe.report.details`` (`TritonDetails`) lists its launches, each with
the IR nodes it covers (``print("\\n".join(exe.report.details.plan))``).

Options (`TritonOptions`): ``dtype`` ("float32", "float16"; "bfloat16" on GPU only; "int8": a QDQ graph, its convs
and linears on the int8 codes, the rest its exact float32 arithmetic: `quant_rules`), ``tf32`` (float32 matmuls
on TF32 tensor cores; then judged with the "tf32" tolerance, ``report.accuracy_dtype``), ``layout`` ("nhwc", the
default: activations channels-last between layers, convs as the channels-last GEMM; "nchw": the plain layout
and NCHW kernels, kept as the simpler oracle the NHWC plan is tested against), ``configs`` (a tuned GEMM config
JSON; default: ``data/<gpu>-triton<version>.json`` here or in $CONVBENCH_TRITON_CONFIGS, if there is one),
``cuda_graph`` (on CUDA the whole plan replays as one CUDA graph; `graphs`), ``passes``, ``threads`` (torch's
intra-op threads while running), ``fallback="numpy"`` (unsupported nodes on the reference; there are none
among the registered ops).

NHWC is the default because it is the layout the GPU kernels are fast in (contiguous channel vectors per tap,
loads that vectorize and pipeline; under the interpreter 1.0–1.3× NCHW's time); NCHW stays because its kernel
takes any strides and is the plainest statement of the convolution, which makes it the oracle.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...ir.graph import Node
from ...ir.passes import fold_replicating_pools
from ...ir.passes.constant_fold import fold_constants
from ...ir.train import training_gaps
from ..base import BackendError, Options, option
from ..template import Built, Prepared, TemplateBackend, int8_graph


def _missing() -> str:
    """Why the backend cannot load here ("" when it can): checked without importing torch or triton."""
    for module, extra in (("torch", "torch"), ("triton", "triton")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; pip install -c constraints.txt 'convbench[{extra}]'"
    return ""


if not _missing():
    # Decide native vs interpreter now, before anything in this process imports triton (see kernels/triton).
    from ...kernels import triton as _kernels  # noqa: F401


@dataclass(frozen=True)
class TritonOptions(Options):
    passes: str | tuple[str, ...] | None = option(
        "default", "a pass pipeline (none, default, all) or pass names joined by '+', run before lowering")
    tf32: bool = option(False, "float32 matmuls on TF32 tensor cores (GPU); correctness then uses the tf32 "
                               "tolerance")
    layout: Literal["nhwc", "nchw"] = option("nhwc", "activations between layers: nhwc (channels-last GEMM "
                                                     "convs) or nchw (the plain layout, the oracle)")
    configs: str | None = option(None, "a tuned GEMM config JSON (GPU); default: the table for this GPU and "
                                       "triton in backends/triton/data/ or $CONVBENCH_TRITON_CONFIGS")
    cuda_graph: bool = option(True, "on CUDA, replay the whole plan as one CUDA graph captured after a warm-up")


@dataclass(frozen=True)
class TritonDetails:
    mode: str  # "cuda" or "interpreter"
    triton: str  # triton's version
    plan: tuple[str, ...]  # one line per step: the launch and the IR nodes it covers
    launches: int  # steps that launch a kernel (views do not)
    fused_launches: int  # launches that cover more than one IR node
    nodes: int  # nodes of the graph as given, before the passes
    layout: str = "nhwc"  # the activations' layout between layers
    split_k_launches: int = 0  # GEMM launches whose K loop is split (plus one reduction launch each)
    configs: str = ""  # the tuned-config file used ("" if none)
    cuda_graph: str = "off"  # "on", "off", or why capture was not possible


class TritonBackend(TemplateBackend):
    """Every inference op has a row in ``lower.LOWERINGS``; the train-step ops are its only ``gaps``."""

    name = "triton"
    Options = TritonOptions
    table = "backends/triton/lower.py: LOWERINGS"
    gaps = training_gaps()  # the train-step ops: not lowered

    @property
    def dtypes(self) -> tuple[str, ...]:  # bfloat16 only natively: it depends on the machine
        if _missing():
            return ("float32", "float16", "int8")
        from ...kernels.triton import runtime

        return (*runtime.supported_dtypes(), "int8")  # int8: a QDQ graph's arithmetic (quant_rules.py)

    def available(self) -> tuple[bool, str]:
        missing = _missing()
        if missing:
            return False, missing
        try:
            from ...kernels.triton import runtime  # selects the mode, then imports triton
        except Exception as e:  # a broken install is a reason, not a crash
            return False, f"triton failed to load: {type(e).__name__}: {e}"
        if runtime.MODE_ERROR:
            return False, runtime.MODE_ERROR
        from . import lower  # the kernels

        if lower.IMPORT_ERROR:
            return False, f"the triton kernels failed to load: {lower.IMPORT_ERROR}"
        if runtime.INTERPRET:
            return True, f"triton {self.version()} under the interpreter (no CUDA GPU: CPU, slow)"
        return True, f"triton {self.version()} on {self.device()}"

    def version(self) -> str:
        if _missing():
            return ""
        import triton

        return triton.__version__

    def device(self) -> str:
        if _missing():
            return "cpu"
        from ...kernels.triton import runtime

        if runtime.INTERPRET:
            return "cpu"
        import torch

        return f"cuda ({torch.cuda.get_device_name()})"

    def device_name(self) -> str:
        """The GPU's name as tuned-config files are keyed ("" under the interpreter)."""
        from ...kernels.triton import runtime

        if runtime.INTERPRET:
            return ""
        import torch

        return torch.cuda.get_device_name()

    def lowered_ops(self) -> frozenset[str]:
        from . import lower  # loads without torch and triton (the table only)

        return frozenset(lower.LOWERINGS)

    def supports(self, node: Node) -> bool:
        if _missing():
            return False
        from . import lower

        # nothing runs without the kernels; else the table, narrowed where they refuse an attribute
        return not lower.IMPORT_ERROR and lower.supported(node)

    def build(self, prepared: Prepared) -> Built:
        import torch

        from ...kernels.triton import runtime
        from ..torch.layers import intra_op_threads
        from . import lower, quant_rules
        from .graphs import graphed

        opts: TritonOptions = prepared.options  # type: ignore[assignment]
        quantized = int8_graph(self.name, prepared.graph, opts.dtype)
        # float32 weights in (BN folding computed in float64); the compute dtype is applied when packing
        graph, weights, notes = fold_replicating_pools(prepared.graph, prepared.params)
        int8 = {**quant_rules.int8_convs(graph, weights, prepared.fallback_nodes, float_sums=True),
                **quant_rules.int8_linears(graph, weights, prepared.fallback_nodes)} if quantized else {}
        if quantized:  # the dequantized weights and biases once, as float32 parameters (quant_rules.py)
            graph, weights = fold_constants(graph, weights, dequantize=True)
        tdtype = runtime.DTYPES["float32" if quantized else opts.dtype]
        table = config_table(opts.configs, self.device_name())
        plan = lower.lower(graph, weights, tdtype, opts.tf32, original=prepared.source,
                           fallback=prepared.fallback_nodes, notes=notes, layout=opts.layout, table=table, int8=int8)
        input_names, threads = list(graph.inputs), opts.threads
        with torch.inference_mode():
            example = {n: torch.zeros(t.shape, dtype=tdtype, device=runtime.DEVICE) for n, t in graph.inputs.items()}
            execute, graph_state = graphed(plan.execute, example, opts.cuda_graph, runtime.INTERPRET)

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode(), intra_op_threads(threads):
                feed = {n: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(runtime.DEVICE, tdtype)
                        for n, x in zip(input_names, inputs, strict=True)}
                outs = execute(feed)
                return [o.to(torch.float32).cpu().numpy() for o in outs]

        launches = [s for s in plan.steps if s.kernel != "view"]
        details = TritonDetails(mode=runtime.mode(), triton=self.version(), plan=tuple(plan.lines()),
                                launches=len(launches), fused_launches=sum(len(s.covers) > 1 for s in launches),
                                nodes=len(prepared.source.nodes), layout=opts.layout,
                                split_k_launches=sum(s.split_k > 1 for s in launches),
                                configs=str(table.path) if table and table.path else "", cuda_graph=graph_state)
        accuracy = "int8" if quantized else "tf32" if opts.tf32 and opts.dtype == "float32" else None
        return Built(run, artifact=plan, details=details, graph=graph, device=self.device(), accuracy_dtype=accuracy,
                     warnings=[quant_rules.warning(int8, graph)] if quantized else [])


DATA_DIR = Path(__file__).parent / "data"  # shipped tuned-config tables, one file per GPU and triton version


def config_dirs() -> list[Path]:
    """Where tuned-config tables are looked for: the shipped ones, then $CONVBENCH_TRITON_CONFIGS (default
    ~/.cache/convbench/triton), where `benchmarks/triton_gpu.py --tune` writes."""
    cache = os.environ.get("CONVBENCH_TRITON_CONFIGS") or Path.home() / ".cache" / "convbench" / "triton"
    return [DATA_DIR, Path(cache)]


def config_table(path: str | None, gpu: str):
    """The tuned-config table for this run: ``path`` if given (validated, under the interpreter too), else the
    one for this GPU and triton version, if any (none under the interpreter: one large block there)."""
    import triton

    from ...kernels.triton import configs

    try:
        if path:
            return configs.load(path)
        return configs.find(config_dirs(), gpu, triton.__version__) if gpu else None
    except configs.ConfigFileError as e:
        raise BackendError(f"triton backend: option configs: {e}") from e


BACKEND = TritonBackend()
