"""The Triton backend: hand-written Triton kernels (``convbench.kernels.triton``), one launch per fused group.

Where it runs: natively on a CUDA GPU when ``torch.cuda.is_available()``, otherwise under Triton's interpreter
on CPU tensors (``TRITON_INTERPRET=1``, set when this module is imported, before anything imports triton). The
interpreter runs the very same kernels, slowly: it is how CI checks them without a GPU. Run it with
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` (several times faster on small blocks). Its timings mean nothing.

Compile plans the graph once: the pass pipeline (``passes=``, "default": drop identities, fold BN into the
conv/linear weights, fold constants, fuse conv/linear → add → activation into one node), an adaptive pool that
only replicates folded into the linear after it (`fold_replicating_pools`), then lowering (`lower`:
activations absorbed into their producer's epilogue, concat inputs written in place and concats of concats as
views, weights packed in the compute dtype). ``exe.info["plan"]`` lists the launches, each with the IR nodes it
covers; ``exe.plan`` is the `plan.Plan` itself.

Options: ``dtype`` ("float32", "float16"; "bfloat16" on GPU only), ``tf32`` (float32 matmuls on TF32 tensor
cores; then judged with the "tf32" tolerance, ``info["accuracy_dtype"]``), ``passes`` (a pipeline name or pass
list), ``threads`` (torch's intra-op threads while running), ``fallback="numpy"`` (unsupported nodes on the
reference; there are none among the registered ops).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.passes import fold_replicating_pools, run_pipeline
from ...ir.verify import verify
from ..base import BackendError, BackendUnavailableError, Executable, check_supported
from ..template import cast_params

OPTIONS = ("dtype", "tf32", "passes", "threads", "fallback")


def _missing() -> str:
    """Why the backend cannot load here ("" when it can): checked without importing torch or triton."""
    for module, extra in (("torch", "torch"), ("triton", "triton")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; pip install -c constraints.txt 'convbench[{extra}]'"
    return ""


if not _missing():
    # Decide native vs interpreter now, before anything in this process imports triton (see kernels/triton).
    from ...kernels import triton as _kernels  # noqa: F401


class TritonBackend:
    name = "triton"

    @property
    def dtypes(self) -> tuple[str, ...]:
        if _missing():
            return ("float32", "float16")
        from ...kernels.triton import runtime

        return runtime.supported_dtypes()

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

    def supports(self, node: Node) -> bool:
        if _missing():
            return False
        from .lower import supported

        return supported(node)

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32", tf32: bool = False,
                passes: Any = "default", threads: int | None = None, fallback: str | None = None,
                **options: Any) -> Executable:
        ok, why = self.available()
        if not ok:
            raise BackendUnavailableError(f"triton backend: {why}")
        if options:
            raise BackendError(f"triton backend: unknown option(s) {sorted(options)}; known: {list(OPTIONS)}")
        if dtype not in self.dtypes:
            raise BackendError(f"triton backend: dtype {dtype!r} is not supported here; use one of {self.dtypes}")
        import torch

        from ...kernels.triton import runtime
        from ..torch.layers import intra_op_threads
        from .lower import lower

        start = time.perf_counter()
        verify(graph)
        # float32 in (BN folding computes in float64 internally); the compute dtype is applied when packing
        pipeline = run_pipeline(graph, cast_params(graph, params, "float32"), passes, self.supports)
        optimised, weights, notes = fold_replicating_pools(pipeline.graph, pipeline.params)
        fallback_nodes = check_supported(self, optimised, fallback)
        tdtype = runtime.DTYPES[dtype]
        plan = lower(optimised, weights, tdtype, tf32, original=graph, fallback=fallback_nodes, notes=notes)
        input_names = list(graph.inputs)

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode(), intra_op_threads(threads):
                feed = {n: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(runtime.DEVICE, tdtype)
                        for n, x in zip(input_names, inputs, strict=True)}
                outs = plan.execute(feed)
                return [o.to(torch.float32).cpu().numpy() for o in outs]

        launches = [s for s in plan.steps if s.kernel != "view"]
        info = {"dtype": dtype, "accuracy_dtype": "tf32" if tf32 and dtype == "float32" else dtype,
                "mode": runtime.mode(), "device": self.device(), "triton": self.version(), "threads": threads,
                "passes": pipeline.pipeline, "pipeline": pipeline.describe(), "plan": plan.lines(),
                "launches": len(launches), "fused_launches": sum(len(s.covers) > 1 for s in launches),
                "nodes": len(graph.nodes), "compile_s": time.perf_counter() - start}
        exe = Executable(optimised, self.name, run, info, fallback_nodes)
        exe.plan = plan  # type: ignore[attr-defined]  # the launch plan; print("\n".join(exe.info["plan"]))
        return exe


BACKEND = TritonBackend()
