"""The OpenVINO backend: each IR node lowered to OpenVINO's Python opset API, one ``ov.Model``, compiled by its CPU
plugin (or a GPU it sees). A peer engine, like ONNX Runtime: the arithmetic is OpenVINO's, not convbench's.

Lowering (`lowering.Lowering`, its rules in `lowering.LOWERINGS`: the one list of what it runs) builds the model
node by node with ``openvino.opset16`` (`lowering.OPSET`), not through an ONNX file. Parameters become constants
once, at compile time. A batch_norm folds into the conv2d/linear before it where
`ir.passes.fold_batch_norm.foldable` allows (``fold_conv_bn_weights``, in float64), else it is a per-channel
multiply-add; fused_conv2d/fused_linear lower to the conv/matmul, + residual, + activation, which the CPU plugin
fuses itself. Every OpenVINO node is named after its IR node, so a model's cache key is stable across compiles.

Precision. ``dtype`` stays "float32": it is the I/O dtype (inputs and outputs are float32 arrays). ``precision`` is
OpenVINO's inference precision, always set explicitly as ``INFERENCE_PRECISION_HINT`` (on a CPU with bf16 support
OpenVINO's default is bf16, so an unset hint would run bf16 under a float32 label) and read back from the compiled
model; ``report.accuracy_dtype`` is the precision that ran (f32 → float32, bf16 → bfloat16, f16 → float16), so
correctness is judged with that tolerance. A precision the device lacks (``OPTIMIZATION_CAPABILITIES``) is an
`UnsupportedDtypeError`, skipped by ``check`` and unsupported in ``run`` (without it, OpenVINO on a CPU without f16
silently runs bf16 for f16); a compiled model reporting another precision than asked is a warning, and ``details``
records what ran. int8 takes a quantized graph (``ir/passes/quantize.py``): quantize_linear lowers to
FakeQuantize + Convert, dequantize_linear to Convert → Subtract → Multiply, the QDQ pattern OpenVINO's
low-precision transformations turn into int8 convolutions/matmuls (the rest runs f32); ``details.int8_layers``
counts the layers the compiled model runs in i8/u8, and the result is judged with the int8 tolerance.

Options: `OpenVinoOptions`. ``threads`` is ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default, all cores),
``streams`` ``NUM_STREAMS``, ``hint`` ``PERFORMANCE_HINT``; the executable runs one synchronous infer request per
call, so a throughput hint only pays off for a caller that runs several requests. What the compiled model reports
(threads, streams, pinning, hyper-threading, core type, requests) is in `OpenVinoDetails`; ``exe.artifact`` is the
``CompiledModel``. Any OpenVINO failure is one `BackendError` naming the node or option it concerns.

``cache_dir``: convbench's compile cache (`cache.py`) in front of OpenVINO's. Keyed on the compile's inputs before
the pipeline; a hit (`OpenVinoBackend.cached`, ``details.cache_hit``) skips the pipeline and the lowering and
compiles the stored xml by path, which OpenVINO answers from its own blob (``details.loaded_from_cache``). A hit
and a miss end in the same `_finish`: the same run, the same report read back from the compiled model.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from ...ir.graph import Graph
from ...ir.passes.quantize import is_quantized
from ...ir.train import training_gaps
from ..base import BackendError, Options, UnsupportedDtypeError, option
from ..template import Built, Cached, Prepared, TemplateBackend
from . import cache
from .lowering import Lowering, message

ACCURACY = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "int8": "int8"}  # what ran -> its tolerance
CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16", "int8": "INT8"}  # OPTIMIZATION_CAPABILITIES names
# the case dtype (`--dtype`) each precision hint answers; float32 keeps the `precision` option (f32 by default)
DTYPE_PRECISION = {"bfloat16": "bf16", "float16": "f16", "int8": "int8"}
# int8 is a QDQ graph's quantized layers; what is left unquantized (pooling, the SE gates …) runs in f32
HINT = {"int8": "f32"}
INT8_LAYERS = ("Convolution", "FullyConnected", "MatMul", "Eltwise")  # runtime-model layer types counted as int8
INSTALL = "openvino is not installed; pip install -c constraints.txt 'convbench[openvino]'"
# read back from the compiled model into the report: threading and pinning as OpenVINO chose them
RECORDED = ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS",
            "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING",
            "SCHEDULING_CORE_TYPE", "EXECUTION_MODE_HINT", "EXECUTION_DEVICES")


@dataclass(frozen=True)
class OpenVinoOptions(Options):
    precision: Literal["f32", "bf16", "f16", "int8"] = option(
        "f32", "inference precision (INFERENCE_PRECISION_HINT), set explicitly and read back: f32, bf16, f16; "
               "int8 runs a quantized (QDQ) graph's int8 layers, the rest f32; dtype stays float32, the I/O dtype")
    streams: int | None = option(None, "NUM_STREAMS (None: what the hint picks)")
    hint: Literal["latency", "throughput"] = option("latency", "PERFORMANCE_HINT")
    cache_dir: str | None = option(None, "compile cache directory (convbench's entry + OpenVINO's blob): a second "
                                         "compile skips the pipeline, the lowering and OpenVINO's compile")
    device: str = option("CPU", "OpenVINO device: CPU, or GPU where OpenVINO sees one")

    def __post_init__(self) -> None:
        for name in ("threads", "streams"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"option {name} must be ≥ 1 or None, got {value}")


@dataclass(frozen=True)
class OpenVinoDetails:
    openvino: str
    device: str
    precision_asked: str
    precision_ran: str  # INFERENCE_PRECISION_HINT as the compiled model reports it
    threads: int | None  # INFERENCE_NUM_THREADS read back
    streams: int | None  # NUM_STREAMS read back
    hint: str  # PERFORMANCE_HINT read back
    num_requests: int | None  # OPTIMAL_NUMBER_OF_INFER_REQUESTS
    cache_dir: str | None
    loaded_from_cache: bool | None  # LOADED_FROM_CACHE: the compiled model came from a cache blob
    folded_batch_norms: int
    ov_ops: int  # operations in the ov.Model (parameters, constants and results included)
    lower_s: float  # IR -> ov.Model
    ov_compile_s: float  # Core.compile_model (or the cache load)
    properties: dict[str, str] = field(default_factory=dict)  # RECORDED, as strings
    # conv/matmul/eltwise layers of the compiled (runtime) model whose runtimePrecision is i8/u8: int8 kernels ran
    int8_layers: int = 0
    cache_hit: bool | None = None  # convbench's cache entry was used: pipeline and lowering skipped (None: no cache)
    cache_key: str | None = None  # the entry's key (cache.py): convbench-KEY.json, -KEY.GEN.{xml,bin} in cache_dir
    cache_s: float = 0.0  # in convbench's cache: the key, and the entry's read (a hit) or write (a miss)


@functools.cache
def _core() -> Any:
    """One ``openvino.Core`` per process (it loads the device plugins once); options go to each compile."""
    import openvino as ov

    return ov.Core()


def _openvino_build() -> str:
    import openvino as ov

    return ov.__version__


def _text(value: Any) -> str:
    """A property value as the report stores it: element types by name, enums without their class."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    if isinstance(value, list | tuple | set):
        return ",".join(_text(v) for v in value)
    return str(value).rsplit(".", 1)[-1] if type(value).__module__.startswith("openvino") else str(value)


def _read(compiled: Any, name: str) -> Any:
    try:
        return compiled.get_property(name)
    except Exception:  # a device that does not report it (the GPU plugin lacks some CPU properties)
        return None


class OpenVinoBackend(TemplateBackend):
    name = "openvino"
    peer: ClassVar[bool] = True  # a peer engine (OpenVINO's own compiler), not a convbench lowering
    Options = OpenVinoOptions
    # the I/O dtype (the arithmetic's precision is the precision option); int8 is precision int8 (a QDQ graph)
    dtypes = ("float32", "bfloat16", "float16", "int8")  # each the precision hint DTYPE_PRECISION names
    table = "backends/openvino/lowering.py: LOWERINGS"
    gaps: ClassVar[dict[str, str]] = training_gaps()  # every inference op lowers; the train-step ops do not yet
    lowering: type[Lowering] = Lowering  # a subclass may swap rules (the planted-rule test)
    # compile properties beyond the options' (`convbench profile --openvino` adds PERF_COUNT for its counters)
    properties: ClassVar[dict[str, Any]] = {}

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, INSTALL
        try:
            devices = _core().available_devices
        except Exception as e:  # installed but broken (a missing plugin library)
            return False, f"openvino does not load: {message(e)}; pip install -c constraints.txt 'convbench[openvino]'"
        return True, f"openvino {self.version()} ({', '.join(devices)})"

    def version(self) -> str:
        if importlib.util.find_spec("openvino") is None:
            return ""
        import openvino as ov

        return ov.__version__.split("-")[0]  # "2026.4.1"; the build string is in OpenVinoDetails.openvino

    def device(self) -> str:
        ok, _ = self.available()
        return ", ".join(d.lower() for d in _core().available_devices) if ok else "cpu"

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(self.lowering.rules)

    def precisions(self, device: str = "CPU") -> tuple[str, ...]:
        """The precisions ``device`` offers (its OPTIMIZATION_CAPABILITIES), in `ACCURACY`'s order."""
        caps = set(_core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
        return tuple(p for p in ACCURACY if CAPABILITY[p] in caps)

    def _settle(self, graph: Graph, opts: OpenVinoOptions) -> tuple[OpenVinoOptions, str, bool]:
        """(the options as compiled: the dtype's precision, the device, whether ``graph`` is quantized); every
        refusal of the options, before anything is lowered or loaded."""
        core = _core()
        device = _check_device(core, opts.device)
        if opts.dtype in DTYPE_PRECISION:  # the harness's --dtype bfloat16/float16/int8: that precision hint
            wanted = DTYPE_PRECISION[opts.dtype]
            if opts.precision not in ("f32", wanted):
                raise UnsupportedDtypeError(f"openvino backend: dtype {opts.dtype} runs precision {wanted!r}, not "
                                            f"option precision={opts.precision!r}")
            opts = dataclasses.replace(opts, precision=wanted)
        # what the graph and the precision say together comes before what this device offers: the same bad pair
        # is the same error on every CPU (a quantized graph at bf16 is refused as such where the CPU has no bf16 too)
        quantized = is_quantized(graph)
        if opts.precision == "int8" and not quantized:
            raise BackendError(f"openvino backend: option precision='int8' needs a quantized graph (QDQ nodes: "
                               f"ir/passes/quantize.py); {graph.name} has none")
        if quantized and opts.precision not in ("int8", "f32"):  # judged by the QDQ arithmetic, the rest in f32
            raise UnsupportedDtypeError(f"openvino backend: {graph.name} is quantized (QDQ nodes): its unquantized "
                                        f"parts run f32 (precision 'int8' or 'f32'), not {opts.precision!r}")
        if opts.precision not in self.precisions(device):  # unsupported here, as a dtype a backend lacks is
            raise UnsupportedDtypeError(
                f"openvino backend: option precision={opts.precision!r} is not supported on {device} "
                f"({core.get_property(device, 'FULL_DEVICE_NAME')}); it offers {', '.join(self.precisions(device))}")
        _check_cache_dir(opts.cache_dir)
        return opts, device, quantized

    def config(self, opts: OpenVinoOptions) -> dict[str, Any]:
        """What ``compile_model`` is given: the options' properties (`_config`), then the class's `properties`."""
        return {**_config(opts), **self.properties}

    def cached(self, graph: Graph, params: dict[str, np.ndarray], options: OpenVinoOptions) -> Cached | None:
        """With ``cache_dir``: the entry of these inputs compiled from its xml (a hit), else its key for `build`
        to store under; an entry that does not read back or load is a warning and a cold compile."""
        if options.cache_dir is None:
            return None
        _check_cache_dir(options.cache_dir)
        start = time.perf_counter()
        key = cache.key(self, graph, params, options, _openvino_build())
        entry = cache.Entry(options.cache_dir, key, key_s=time.perf_counter() - start)
        try:
            record = entry.read()
        except cache.CacheEntryError as e:
            return Cached(entry, warnings=(f"openvino backend: option cache_dir={options.cache_dir!r}: {e}; "
                                           f"compiled anew and rewritten",))
        if record is None:
            return Cached(entry)
        ran_graph = record["graph"] or graph  # None: the pipeline left the caller's graph as it was
        opts, device, quantized = self._settle(ran_graph, options)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        try:
            compiled = _core().compile_model(str(entry.model(record)), device, self.config(opts))
        except Exception as e:  # OpenVINO refused the stored model: compile it anew from the graph
            return Cached(entry, warnings=(f"openvino backend: option cache_dir={options.cache_dir!r}: OpenVINO "
                                           f"could not load the cache entry {entry.model(record).name}: {message(e)}; "
                                           f"compiled anew and rewritten",))
        if not _read(compiled, "LOADED_FROM_CACHE"):  # OpenVINO compiled the stored xml + bin: were they ours?
            try:
                entry.check_weights(record)
            except cache.CacheEntryError as e:
                return Cached(entry, warnings=(f"openvino backend: option cache_dir={options.cache_dir!r}: {e}; "
                                               f"compiled anew and rewritten",))
        built = _finish(compiled, ran_graph, opts, device, quantized, lower_s=0.0,
                        ov_compile_s=time.perf_counter() - start, folded=record["folded_batch_norms"],
                        ov_ops=record["ov_ops"], entry=entry, cache_s=read_s, hit=True)
        return Cached(entry, built=built, pipeline=record["pipeline"])

    def build(self, prepared: Prepared) -> Built:
        graph = prepared.graph
        if prepared.fallback_nodes:  # only an op registered after this table was written gets here
            raise BackendError(f"openvino backend: no reference fallback inside an OpenVINO model; "
                               f"{', '.join(prepared.fallback_nodes)} have no lowering in {self.table}")
        opts, device, quantized = self._settle(graph, prepared.options)
        start = time.perf_counter()
        lowering = self.lowering(graph, prepared.params)
        model = lowering.run()
        lower_s = time.perf_counter() - start
        entry: cache.Entry | None = prepared.cache.key if prepared.cache is not None else None
        cache_s, source = 0.0, model
        if entry is not None:  # stored, then compiled by path: the key OpenVINO's blob has on a hit too
            start = time.perf_counter()
            kept = graph is prepared.source or graph == prepared.source  # no passes: nothing to store or parse
            source = str(entry.write(model, None if kept else graph, {"pipeline": prepared.pipeline.describe(),
                                                    "ov_ops": len(model.get_ops()),
                                                    "folded_batch_norms": len(lowering.folded)}))
            cache_s = entry.key_s + time.perf_counter() - start
        start = time.perf_counter()
        try:
            try:
                compiled = _core().compile_model(source, device, self.config(opts))
            except Exception:
                if source is model or os.path.exists(source):
                    raise
                # another process's rewrite of this entry removed the files just written: compile the model itself
                compiled = _core().compile_model(model, device, self.config(opts))
        except Exception as e:
            raise BackendError(_compile_error(e, graph, opts, device)) from None
        return _finish(compiled, graph, opts, device, quantized, lower_s=lower_s,
                       ov_compile_s=time.perf_counter() - start, folded=len(lowering.folded),
                       ov_ops=len(model.get_ops()), entry=entry, cache_s=cache_s, hit=False)


def _finish(compiled: Any, graph: Graph, opts: OpenVinoOptions, device: str, quantized: bool, *, lower_s: float,
            ov_compile_s: float, folded: int, ov_ops: int, entry: cache.Entry | None, cache_s: float,
            hit: bool) -> Built:
    """The executable of a compiled model, hit or miss alike: its report read back from the compiled model."""
    props = {k: _read(compiled, k) for k in RECORDED}
    ran = _text(_read(compiled, "INFERENCE_PRECISION_HINT"))
    int8_layers = _int8_layers(compiled)
    warnings = []
    if quantized and not int8_layers:
        warnings.append(f"openvino backend: {graph.name} is quantized but no layer of the compiled model runs "
                        "in int8 (its low-precision transformations matched no QDQ pattern)")
    if quantized:  # the QDQ arithmetic is what the result is judged by
        ran = "int8" if ran == HINT["int8"] else ran
    if ran != ("int8" if quantized else opts.precision):
        warnings.append(f"openvino backend: INFERENCE_PRECISION_HINT={opts.precision} was asked, the compiled "
                        f"model on {device} reports {ran}; judged as {ACCURACY.get(ran, ran)}")
    threads = props["INFERENCE_NUM_THREADS"]
    details = OpenVinoDetails(
        openvino=_openvino_build(), device=device, precision_asked=opts.precision, precision_ran=ran,
        threads=threads, streams=props["NUM_STREAMS"], hint=_text(props["PERFORMANCE_HINT"]).lower(),
        num_requests=props["OPTIMAL_NUMBER_OF_INFER_REQUESTS"], cache_dir=opts.cache_dir,
        loaded_from_cache=_read(compiled, "LOADED_FROM_CACHE") if opts.cache_dir else None,
        folded_batch_norms=folded, ov_ops=ov_ops, lower_s=lower_s, ov_compile_s=ov_compile_s,
        properties={k: _text(v) for k, v in props.items() if v is not None}, int8_layers=int8_layers,
        cache_hit=hit if entry is not None else None, cache_key=entry.key if entry is not None else None,
        cache_s=cache_s)
    return Built(_runner(compiled, graph), artifact=compiled, details=details, graph=graph, device=device.lower(),
                 threads=threads, accuracy_dtype=ACCURACY.get(ran, ACCURACY[opts.precision]), warnings=warnings)


def _check_device(core: Any, device: str) -> str:
    """``device`` when OpenVINO sees it ("GPU" also matches "GPU.0"), else the error naming the option."""
    seen = list(core.available_devices)
    if device in seen or any(d.startswith(device + ".") for d in seen):
        return device
    raise BackendError(f"openvino backend: option device={device!r}: OpenVINO sees only {', '.join(seen)}")


def _check_cache_dir(cache_dir: str | None) -> None:
    """A cache directory OpenVINO can write blobs into (OpenVINO itself ignores a plain file in its place)."""
    if cache_dir is None:
        return
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise BackendError(f"openvino backend: option cache_dir={cache_dir!r} is not a usable directory: "
                           f"{e.strerror or e}") from None
    if not os.access(cache_dir, os.W_OK | os.X_OK):
        raise BackendError(f"openvino backend: option cache_dir={cache_dir!r} is not writable")


def _config(opts: OpenVinoOptions) -> dict[str, Any]:
    import openvino.properties as props
    import openvino.properties.hint as hints

    mode = {"latency": hints.PerformanceMode.LATENCY, "throughput": hints.PerformanceMode.THROUGHPUT}[opts.hint]
    precision = HINT.get(opts.precision, opts.precision)
    config: dict[str, Any] = {hints.inference_precision: precision, hints.performance_mode: mode}
    if opts.threads is not None:
        config[props.inference_num_threads] = opts.threads
    if opts.streams is not None:
        config[props.streams.num] = opts.streams
    if opts.cache_dir is not None:
        config[props.cache_dir] = opts.cache_dir
    return config


def _int8_layers(compiled: Any) -> int:
    """Layers of the compiled model that OpenVINO's CPU plugin runs with int8 inputs (its runtime model's
    ``runtimePrecision``): how a QDQ graph is known to have run int8 kernels, not float ones."""
    try:
        ops = compiled.get_runtime_model().get_ops()
    except Exception:  # a device without a runtime model
        return 0
    count = 0
    for op in ops:
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        precision = info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else ""
        count += kind in INT8_LAYERS and precision in ("i8", "u8")
    return count


def _compile_error(e: BaseException, graph: Graph, opts: OpenVinoOptions, device: str) -> str:
    """The one message for a failed ``compile_model``: the IR node OpenVINO names (nodes carry IR names), else
    the options it was compiled with."""
    text = message(e)
    named = [n for n in graph.nodes if re.search(rf"(?<![\w.]){re.escape(n.name)}(?![\w.])", text)]
    if named:
        node = max(named, key=lambda n: len(n.name))
        return f"openvino backend: OpenVINO rejected node {node.name!r} ({node.op}) of {graph.name}: {text}"
    return (f"openvino backend: OpenVINO could not compile {graph.name} for device={device!r} with "
            f"precision={opts.precision!r}, hint={opts.hint!r}, threads={opts.threads}, streams={opts.streams}, "
            f"cache_dir={opts.cache_dir!r}: {text}")


def _runner(compiled: Any, graph: Graph):
    """One synchronous infer request; inputs are shared with OpenVINO (float32, contiguous), outputs copied out
    (the request reuses its output tensors)."""
    request = compiled.create_infer_request()
    n_out = len(graph.outputs)

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {k: np.ascontiguousarray(x, dtype=np.float32) for k, x in enumerate(inputs)}
        try:
            request.infer(feed, share_inputs=True, share_outputs=True)
        except Exception as e:
            raise BackendError(f"openvino backend: running {graph.name} failed: {message(e)}") from None
        return [np.array(request.get_output_tensor(k).data, copy=True) for k in range(n_out)]

    return run


BACKEND = OpenVinoBackend()
