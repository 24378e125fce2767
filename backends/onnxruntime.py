"""The ONNX Runtime backend: the graph exported with `convbench.ir.onnx_export.to_onnx` and run by onnxruntime's
CPU execution provider — the CPU runtime most people would otherwise pick, so the peer every CPU result is
compared with in the same run.

Its lowering table is the ONNX export table (`convbench.ir.onnx_export.EMITTERS`); `supports` narrows it per
node with `unsupported_reason` (LRN of even size has no exact ONNX form). With ``fallback="numpy"`` such nodes
run on the reference and the rest is split into ORT sessions at those nodes.

Options: `OrtOptions` (``convbench backends --options``). ``threads`` are intra-op threads, by default the
physical cores (ORT's own default, set explicitly so the report records the number that ran); inter-op is 1 and
execution sequential, as a CNN's graph is a chain. ``spinning`` is off unless asked for: spinning shaves a little
off ORT's own latency, but the threads keep spinning after ``run`` returns: timed in one process, the next
candidate ran 1.7× slower until ``session.intra_op.allow_spinning`` was "0".

float32, and int8: a QDQ graph (`convbench.ir.passes.quantize.quantize_graph`; `convbench check --dtype int8`
quantizes first, calibrating on the photographs) exported as QuantizeLinear/DequantizeLinear pairs, which ORT's
graph optimiser fuses into QLinearConv / QGemm / QLinearAdd (int8 activations by default: this ORT's uint8 ×
int8 kernels saturate on this CPU). dtype int8 on a graph without QDQ nodes is refused with that advice, never run
as float32; its accuracy dtype is "int8" (judged against the NumPy reference of the same quantized graph).
float64/16-bit: ORT's CPU kernels for them are partial (no float64 Conv), so they are refused, not half-run.
``exe.artifact`` is the tuple of ``onnxruntime.InferenceSession`` in run order (one without fallback);
``exe.report.details`` is an `OrtDetails`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from ..ir import ops as ir_ops
from ..ir.graph import Graph, Node
from ..ir.train import training_gaps
from .base import BackendError, Options, option, physical_cores
from .template import Built, Prepared, TemplateBackend, int8_graph


def _import_error() -> str:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as e:
        return f"{e}; pip install -c constraints.txt 'convbench[onnx]'"
    if "CPUExecutionProvider" not in onnxruntime.get_available_providers():
        return f"onnxruntime has no CPUExecutionProvider (providers: {onnxruntime.get_available_providers()})"
    return ""


@dataclass(frozen=True)
class OrtOptions(Options):
    threads: int | None = option(None, "intra-op threads (None: the physical cores, ORT's own default)")
    spinning: bool = option(False, "idle intra-op threads spin-wait for the next op (and keep spinning after run)")
    optimization: Literal["all", "extended", "basic", "disable"] = option(
        "all", "ORT's graph optimisation level (all: fusions and NCHWc layout)")


@dataclass(frozen=True)
class OrtDetails:
    sessions: int  # ORT sessions the graph runs in: 1, or more when fallback nodes split it
    optimization: str
    spinning: bool
    onnxruntime: str


class OnnxRuntimeBackend(TemplateBackend):
    name = "onnxruntime"
    peer: ClassVar[bool] = True  # a peer engine running the exported model, not a convbench lowering
    Options = OrtOptions
    dtypes = ("float32", "int8")
    table = "ir/onnx_export.py: EMITTERS"
    gaps = training_gaps()  # the train-step ops (loss, gradients, train-mode forms): not lowered yet

    def available(self) -> tuple[bool, str]:
        reason = _import_error()
        return (False, reason) if reason else (True, f"onnxruntime {self.version()} (CPUExecutionProvider)")

    def version(self) -> str:
        try:
            import onnxruntime
        except ImportError:
            return ""
        return onnxruntime.__version__

    def lowered_ops(self) -> frozenset[str]:
        from ..ir.onnx_export import EMITTERS  # imports no onnx: the table answers without it

        return frozenset(EMITTERS)

    def supports(self, node: Node) -> bool:
        """In the export table, and exactly expressible in ONNX (`unsupported_reason`: not an LRN of even size)."""
        from ..ir.onnx_export import unsupported_reason

        return super().supports(node) and unsupported_reason(node) is None

    def build(self, prepared: Prepared) -> Built:
        import onnxruntime

        opts = prepared.options
        quantized = int8_graph(self.name, prepared.graph, opts.dtype)
        threads = physical_cores() if opts.threads is None else opts.threads
        settings = {"threads": threads, "spinning": opts.spinning, "optimization": opts.optimization}
        run, sessions = _build(prepared.graph, prepared.params, set(prepared.fallback_nodes), settings)
        details = OrtDetails(len(sessions), opts.optimization, opts.spinning, onnxruntime.__version__)
        return Built(run, artifact=sessions, details=details, threads=threads,
                     accuracy_dtype="int8" if quantized else None)


def _session(graph: Graph, weights: Mapping[str, np.ndarray], settings: Mapping[str, Any]):
    import onnxruntime as ort

    from ..ir.onnx_export import to_onnx

    so = ort.SessionOptions()
    so.intra_op_num_threads = settings["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[settings["optimization"]]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings["spinning"] else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT warns about initializers it could fold, which is noise here
    model = to_onnx(graph, {p: weights[p] for p in graph.params}, check=False).SerializeToString()
    try:
        return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types; say which graph it refused
        raise BackendError(f"onnxruntime backend: ORT could not load {graph.name}: {type(e).__name__}: {e}") from e


def _segments(graph: Graph, fallback: set[str]) -> list[tuple[bool, list[Node]]]:
    """Maximal runs of consecutive nodes (in schedule order) that ORT runs, or that fall back: (on_ort, nodes)."""
    runs: list[tuple[bool, list[Node]]] = []
    for node in graph.nodes:
        on_ort = node.name not in fallback
        if runs and runs[-1][0] == on_ort:
            runs[-1][1].append(node)
        else:
            runs.append((on_ort, [node]))
    return runs


def _subgraph(graph: Graph, nodes: list[Node], index: int, later: set[str]) -> Graph:
    """The run ``nodes`` as a graph: inputs are the activations it reads from before, outputs what is read after."""
    made = {n.name for n in nodes}
    reads = [i for n in nodes for i in n.inputs]
    inputs = dict.fromkeys(i for i in reads if i not in made and i not in graph.params)
    params = dict.fromkeys(i for i in reads if i in graph.params)
    outputs = [n.name for n in nodes if n.name in later or n.name in graph.outputs]
    types = graph.types
    return Graph({i: types[i] for i in inputs}, tuple(nodes), tuple(outputs), {p: types[p] for p in params},
                 f"{graph.name}[{index}]")


def _build(graph: Graph, weights: Mapping[str, np.ndarray], fallback: set[str], settings: Mapping[str, Any]):
    """(run, sessions): one ORT session for the whole graph, or sessions between the fallback nodes."""
    input_names, output_names = list(graph.inputs), list(graph.outputs)
    dtypes = [np.dtype(t.dtype) for t in graph.inputs.values()]  # float32, or int8/uint8 into a dequantize
    if not fallback:
        session = _session(graph, weights, settings)

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            feed = {n: np.ascontiguousarray(x, dtype=d) for n, x, d in zip(input_names, inputs, dtypes, strict=True)}
            return session.run(output_names, feed)

        return run, (session,)

    steps: list[tuple[Any, Graph | Node]] = []
    runs = _segments(graph, fallback)
    for k, (on_ort, nodes) in enumerate(runs):
        if not on_ort:
            steps.extend((None, n) for n in nodes)
            continue
        later = {i for _, rest in runs[k + 1:] for n in rest for i in n.inputs}
        sub = _subgraph(graph, nodes, k, later)
        steps.append((_session(sub, weights, settings), sub))

    def run_split(inputs: list[np.ndarray]) -> list[np.ndarray]:
        env: dict[str, np.ndarray] = {n: np.ascontiguousarray(x, dtype=d)
                                      for n, x, d in zip(input_names, inputs, dtypes, strict=True)}
        for session, item in steps:
            if session is None:  # a fallback node, on the reference
                args = [weights[i] if i in weights else env[i] for i in item.inputs]
                env[item.name] = ir_ops.get(item.op).reference(item.attrs, *args)
            else:
                outs = session.run(list(item.outputs), {i: env[i] for i in item.inputs})
                env.update(zip(item.outputs, outs, strict=True))
        return [env[o] for o in output_names]

    return run_split, tuple(s for s, _ in steps if s is not None)


BACKEND = OnnxRuntimeBackend()
