"""The oneDNN backend: convbench's own lowering of the IR straight onto oneDNN primitives, created once per compile.

Where torch runs the same oneDNN kernels, each op call re-derives descriptors, looks its primitive up in a cache and
wraps tensors (~50 µs on top of a conv's kernel, measured on ResNet-50's small convs); OpenVINO avoids that by
compiling a graph. This backend does the same with its own rules: `lowering.Lowering` builds a `lowering.Program`,
a fixed list of primitives with their memories bound, and a call only executes them (`capi`: oneDNN's C API
through ctypes, ~1 µs a primitive). The rules (`rules.LOWERINGS`, the one list of what it runs) fuse what the
IR's passes fused: conv/linear + bias + residual add + activation is one primitive with post-ops.

Precision: ``dtype`` float32, bfloat16 or float16 is the compute dtype of every activation and weight (bias and the
I/O stay float32); bfloat16 runs AMX tiles or AVX-512-BF16 where the CPU has them, float16 AVX-512-FP16 (a CPU
without it: `UnsupportedDtypeError`). ``details.implementations`` counts the kernels oneDNN picked (e.g.
``brgconv:avx512_core_amx``), so a report shows what ran. int8 takes a QDQ graph (`quant_rules`): its convs run on the
codes (s8/u8 × s8, writing the next layer's codes themselves), the rest in float32 between reorders with scales and
zero points; judged with the int8 tolerance against the QDQ graph's float64 evaluation.

Threads: libdnnl runs on the system's GNU OpenMP, separate from the copy torch bundles; ``threads`` (default: the
physical cores) is set on it before every call, so two executables with different counts do not interfere.
"""

from __future__ import annotations

import ctypes as C
import functools
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...ir.train import training_gaps
from ..base import BackendError, Options, UnsupportedDtypeError, option, physical_cores
from ..template import Built, Prepared, TemplateBackend, int8_graph
from . import capi
from .lowering import Lowering, LoweringError
from .rules import LOWERINGS

# the precisions whose kernels a CPU may lack: probed with a small convolution before a compile
PROBED = ("bfloat16", "float16")


@dataclass(frozen=True)
class OnednnOptions(Options):
    # the default pipeline unless asked otherwise: a batch_norm folded into its conv and conv + add + activation
    # fused into one primitive are what make the program short ("none" ablates them)
    passes: str | tuple[str, ...] | None = option(
        "default", "a pass pipeline (none, default, all) or pass names joined by '+', run before lowering")


@dataclass(frozen=True)
class OnednnDetails:
    onednn: str  # the library's version
    isa: str  # the instruction set oneDNN dispatches to (dnnl_get_effective_cpu_isa)
    primitives: int  # steps a call executes (reorders in and out included)
    implementations: dict[str, int] = field(default_factory=dict)  # oneDNN kernel name -> primitives using it
    activation_bytes: int = 0  # the activation buffers after reuse by liveness
    constant_bytes: int = 0  # weights in their primitives' layouts, and other constants
    scratchpad_bytes: int = 0  # the one scratchpad every primitive shares
    int8_convs: int = 0  # convolutions run on the int8 codes (a QDQ graph's)
    lower_s: float = 0.0


ISA = {0x0: "default", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0xF: "avx2_vnni", 0x1F: "avx2_vnni_2",
       0x27: "avx512_core", 0x67: "avx512_core_vnni", 0xE7: "avx512_core_bf16", 0x1EF: "avx512_core_fp16",
       0xFEF: "avx512_core_amx", 0x1FEF: "avx512_core_amx_fp16"}


class OnednnBackend(TemplateBackend):
    name = "onednn"
    Options = OnednnOptions
    dtypes = ("float32", "bfloat16", "float16", "int8")
    table = "backends/onednn/rules.py: LOWERINGS"
    gaps: ClassVar[dict[str, str]] = training_gaps()

    def available(self) -> tuple[bool, str]:
        try:
            lib = capi.load()
            capi.omp()
        except OSError as e:
            return False, str(e)
        return True, f"oneDNN {lib.version} ({self.isa()})"

    def version(self) -> str:
        ok, _ = self.available()
        return capi.load().version if ok else ""

    def isa(self) -> str:
        lib = capi.load()
        return ISA.get(lib.dnnl_get_effective_cpu_isa(), "unknown")

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(LOWERINGS)

    def param_dtype(self, options: Options) -> str:
        return "float32"  # weights arrive as float32 and are converted by their reorder into the compute dtype

    def build(self, prepared: Prepared) -> Built:
        graph, opts = prepared.graph, prepared.options
        quantized = int8_graph(self.name, graph, opts.dtype)
        if prepared.fallback_nodes:
            raise BackendError(f"onednn backend: no reference fallback inside a oneDNN program; "
                               f"{', '.join(prepared.fallback_nodes)} have no rule in {self.table}")
        threads = opts.threads or physical_cores()
        capi.omp().omp_set_num_threads(threads)
        engine = _engine()
        if opts.dtype in PROBED:
            _probe(engine, opts.dtype)
        start = time.perf_counter()
        lowering = Lowering(graph, prepared.params, "int8" if quantized else opts.dtype, engine)
        try:
            program = lowering.run()
        except LoweringError as e:
            if e.status == capi.UNIMPLEMENTED and opts.dtype != "float32":
                raise UnsupportedDtypeError(f"onednn backend: no {opts.dtype} kernel on this CPU ({self.isa()}) "
                                            f"for {e}") from None
            raise BackendError(f"onednn backend: {graph.name}: {e}") from None
        lower_s = time.perf_counter() - start
        buffers = [b for b in lowering.keep if isinstance(b, capi.Buffer)]
        pooled = sum(b.nbytes for b in buffers if b.pooled)
        constant = sum(b.nbytes for b in buffers if not b.pooled)
        details = OnednnDetails(onednn=capi.load().version, isa=self.isa(), primitives=len(program.steps),
                                implementations=dict(sorted(lowering.impls.items())),
                                activation_bytes=pooled, constant_bytes=constant,
                                scratchpad_bytes=program.scratchpad, int8_convs=len(lowering.int8),
                                lower_s=lower_s)
        omp = capi.omp()

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            omp.omp_set_num_threads(threads)
            try:
                return program.run(inputs)
            except capi.DnnlError as e:
                raise BackendError(f"onednn backend: running {graph.name} failed: {e}") from None

        return Built(run, artifact=program, details=details, graph=graph, device="cpu", threads=threads,
                     accuracy_dtype="int8" if quantized else opts.dtype)


@functools.cache
def _engine() -> capi.Engine:
    """One CPU engine and stream per process: every program runs on them."""
    return capi.Engine()


def _probe(engine: capi.Engine, dtype: str) -> None:
    """`UnsupportedDtypeError` where oneDNN has no ``dtype`` convolution on this CPU (float16 without AVX-512-FP16)."""
    dt = capi.DTYPES[dtype]
    pd = capi.Handle()
    shape = (2, 16, 5, 3)
    args = [engine.md(shape, dt, capi.NHWC), engine.md((16, 16, 1, 1), dt, capi.ANY), None,
            engine.md(shape, dt, capi.NHWC), capi.dims((1, 1)), capi.dims((0, 0)), capi.dims((0, 0)),
            capi.dims((0, 0)), None]
    status = engine.lib.dnnl_convolution_forward_primitive_desc_create(
        C.byref(pd), engine.engine, capi.FORWARD_INFERENCE, capi.CONVOLUTION_DIRECT, *args)
    if status == capi.UNIMPLEMENTED:
        raise UnsupportedDtypeError(f"onednn backend: oneDNN {capi.load().version} has no {dtype} convolution on "
                                    f"this CPU ({OnednnBackend().isa()})")
    capi.check(status, f"probing {dtype}")
    engine.lib.dnnl_primitive_desc_destroy(pd)


BACKEND = OnednnBackend()
