"""The Triton backend: hand-written Triton kernels (``convbench.kernels.triton``), one launch per fused group.

Where it runs: natively on a CUDA GPU when ``torch.cuda.is_available()``, otherwise under Triton's interpreter
on CPU tensors (``TRITON_INTERPRET=1``, set when this module is imported, before anything imports triton). The
interpreter runs the very same kernels, slowly: it is how CI checks them without a GPU. Run it with
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` (several times faster on small blocks). Its timings mean nothing.

Compile plans the graph once: the pass pipeline (``passes=``, "default": drop identities, fold BN into the
conv/linear weights, fold constants, fuse conv/linear → add → activation into one node), an adaptive pool that
only replicates folded into the linear after it (`fold_replicating_pools`), then lowering (`triton_lower`:
activations absorbed into their producer's epilogue, concat inputs written in place and concats of concats as
views, weights packed in the compute dtype). ``exe.info["plan"]`` lists the launches, each with the IR nodes it
covers; ``exe.plan`` is the `triton_plan.Plan` itself.

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

from ..ir.graph import Graph, Node, TensorType
from ..ir.passes import run_pipeline
from ..ir.verify import verify
from .base import BackendError, BackendUnavailableError, Executable, check_supported
from .numpy_ref import cast_params

OPTIONS = ("dtype", "tf32", "passes", "threads", "fallback")


def _missing() -> str:
    """Why the backend cannot load here ("" when it can): checked without importing torch or triton."""
    for module, extra in (("torch", "torch"), ("triton", "triton")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; pip install -c constraints.txt 'convbench[{extra}]'"
    return ""


if not _missing():
    # Decide native vs interpreter now, before anything in this process imports triton (see kernels/triton).
    from ..kernels import triton as _kernels  # noqa: F401


class TritonBackend:
    name = "triton"

    @property
    def dtypes(self) -> tuple[str, ...]:
        if _missing():
            return ("float32", "float16")
        from ..kernels.triton import runtime

        return runtime.supported_dtypes()

    def available(self) -> tuple[bool, str]:
        missing = _missing()
        if missing:
            return False, missing
        try:
            from ..kernels.triton import runtime  # selects the mode, then imports triton
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
        from ..kernels.triton import runtime

        if runtime.INTERPRET:
            return "cpu"
        import torch

        return f"cuda ({torch.cuda.get_device_name()})"

    def supports(self, node: Node) -> bool:
        if _missing():
            return False
        from .triton_lower import supported

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

        from ..kernels.triton import runtime
        from .torch_layers import intra_op_threads
        from .triton_lower import lower

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


def fold_replicating_pools(graph: Graph, params: Mapping[str, np.ndarray]
                           ) -> tuple[Graph, dict[str, np.ndarray], dict[str, str]]:
    """Fold adaptive_avg_pool2d → flatten → linear into the linear where the pool only replicates.

    When the pool's output size is a multiple of its input's (VGG and AlexNet below their design size: the
    features end 1×1 and the pool copies each value 49 or 36 times), every output cell averages one input
    element, so linear(flatten(pool(x))) = W'·flatten(x) with W' the sum of the weight columns that read copies
    of one element. The pool and its copies disappear and K shrinks by the replication factor (fc6 of VGG at
    32×32: 25088 → 512). Exact up to summation order. Returns the graph, its parameters and, per rewritten
    linear, a note for the plan. Pure: the inputs are not modified.
    """
    nodes, types, weights, notes = list(graph.nodes), dict(graph.params), dict(params), {}
    by_name = graph.node_by_name
    for node in graph.nodes:
        weight = node.inputs[1] if node.op in ("linear", "fused_linear") else None
        if weight not in graph.params or graph.users[weight] != (node.name,):
            continue
        flat = by_name.get(node.inputs[0])
        pool = by_name.get(flat.inputs[0]) if flat is not None and flat.op == "flatten" else None
        if (pool is None or pool.op != "adaptive_avg_pool2d" or flat.attrs.start_dim != 1
                or graph.users[flat.name] != (node.name,) or graph.users[pool.name] != (flat.name,)
                or {flat.name, pool.name} & set(graph.outputs)):
            continue
        (_, c, h, w), (oh, ow) = graph.types[pool.inputs[0]].shape, pool.attrs.output_size
        if oh % h or ow % w:
            continue
        wide = np.asarray(params[weight], dtype=np.float64)
        folded = wide.reshape(-1, c, h, oh // h, w, ow // w).sum(axis=(3, 5)).reshape(len(wide), c * h * w)
        weights[weight] = folded.astype(np.float32)
        types[weight] = TensorType(folded.shape, graph.params[weight].dtype)
        nodes[nodes.index(flat)] = Node(flat.name, "flatten", (pool.inputs[0],), flat.attrs)
        nodes.remove(pool)
        notes[node.name] = f"{pool.name} {h}×{w}→{oh}×{ow} (a copy) folded into the weight"
    if not notes:
        return graph, dict(params), notes
    return verify(graph.replace(nodes=tuple(nodes), params=types)), weights, notes


BACKEND = TritonBackend()
