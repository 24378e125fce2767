"""The one compile template of the built-in backends, and the option machinery third-party ones may use too.

`TemplateBackend.compile` does, in this order, for every backend:

1. parse the options against the backend's frozen `Options` dataclass (unknown names and wrong types are one
   error naming the option, its type and the backend; ``"8"`` from the CLI becomes 8 where the field is an int);
2. refuse a dtype the backend lacks (`UnsupportedDtypeError`) and a backend that is not available here;
3. verify the graph, cast the parameters once (`cast_params`), run the pass pipeline (``passes``);
4. check support per node against the backend's lowering table (or route to the reference with ``fallback``);
5. call the backend's ``build(Prepared) -> Built`` and wrap the result in an `Executable` with a `CompileReport`
   whose ``compile_s`` is the wall time of all of the above.

A backend with a compile cache of its own answers `TemplateBackend.cached` after step 3's cast, keyed on what the
caller gave (graph, parameters, options): a hit skips the pipeline and ``build``; a miss carries its key to
``build`` (``Prepared.cache``), which fills the cache.
"""

from __future__ import annotations

import inspect
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal, get_args, get_origin

import numpy as np

from ..ir.graph import Graph, Node, TensorType
from ..ir.passes import PipelineResult, run_pipeline
from ..ir.verify import verify
from .base import (
    BackendError,
    BackendUnavailableError,
    CompileReport,
    Executable,
    Options,
    UnsupportedDtypeError,
    check_supported,
)


def cast_params(graph: Graph, params: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The graph's parameters as contiguous arrays of ``dtype``; a missing or misshapen one is named."""
    missing = [p for p in graph.params if p not in params]
    if missing:
        raise BackendError(f"{graph.name}: {len(missing)} parameter(s) missing, e.g. {missing[:3]}")
    out = {}
    for name, t in graph.params.items():
        a = np.asarray(params[name])
        if a.shape != t.shape:
            raise BackendError(f"{graph.name}: parameter {name!r} has shape {a.shape}, the graph expects {t.shape}")
        out[name] = np.ascontiguousarray(a, dtype=dtype)
    return out


def int8_graph(backend: str, graph: Graph, dtype: str) -> bool:
    """Whether ``graph`` is an int8 QDQ graph (`ir.passes.quantize.is_quantized`), checked against the compile's
    dtype for a backend that runs one as its exact quantize/dequantize arithmetic with float32 around it: dtype
    int8 needs such a graph (never a float32 run under an int8 label), and such a graph runs at int8 or float32."""
    from ..ir.passes.quantize import is_quantized

    quantized = is_quantized(graph)
    if dtype == "int8" and not quantized:
        raise BackendError(f"{backend} backend: dtype int8 runs a quantized (QDQ) graph and {graph.name} has no "
                           f"quantize/dequantize nodes: quantize it first with convbench.ir.passes.quantize."
                           f"quantize_graph (convbench check/run --dtype int8 do)")
    if quantized and dtype not in ("int8", "float32"):
        raise UnsupportedDtypeError(f"{backend} backend: {graph.name} is an int8 QDQ graph: it runs with dtype int8 "
                                    f"or float32 (its I/O and unquantized ops in float32), not {dtype}")
    return quantized


# -- options ---------------------------------------------------------------------------------------------------

def type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    if get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if get_origin(hint) is tuple:
        return f"tuple[{type_name(get_args(hint)[0])}, ...]"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


_NO = object()


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as an instance of ``hint``, or `_NO`. Strings from the CLI are parsed; bools are not ints."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if hint is type(None):
        return None if value is None or (isinstance(value, str) and value.lower() == "none") else _NO
    if origin in (typing.Union, types.UnionType):
        for member in get_args(hint):  # None first where it is a member, so "none" is not read as a string
            if member is type(None) and _coerce(value, member) is None:
                return None
        for member in get_args(hint):
            if member is not type(None) and (out := _coerce(value, member)) is not _NO:
                return out
        return _NO
    if origin is Literal:
        return value if value in get_args(hint) else _NO
    if origin is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return _NO
    if hint is bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return _NO
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return _NO
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value) if isinstance(value, str) else _NO
        except ValueError:
            return _NO
    if hint is str:
        return value if isinstance(value, str) else _NO
    return value if isinstance(value, hint) else _NO


def option_fields(options_type: type[Options]) -> dict[str, tuple[Any, Any, str]]:
    """name -> (type hint, default, doc) of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(options_type)
    out = {}
    for f in fields(options_type):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        out[f.name] = (hints[f.name], default, f.metadata.get("doc", ""))
    return out


def parse_options(backend: str, options_type: type[Options], raw: Mapping[str, Any]) -> Options:
    """The options dataclass for ``raw``; one `BackendError` naming every unknown option or mistyped value."""
    known = option_fields(options_type)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BackendError(f"{backend} backend: unknown option(s) {unknown}; known: {', '.join(known)}")
    values, bad = {}, []
    for name, value in raw.items():
        hint = known[name][0]
        out = _coerce(value, hint)
        if out is _NO:
            bad.append(f"{name} must be {type_name(hint)}, got {value!r}")
        else:
            values[name] = out
    if bad:
        raise BackendError(f"{backend} backend: option {'; '.join(bad)}")
    try:
        return options_type(**values)
    except (TypeError, ValueError) as e:  # an Options.__post_init__ check
        raise BackendError(f"{backend} backend: {e}") from None


def accepted_options(backend: Any) -> frozenset[str] | None:
    """The option names ``backend.compile`` takes: its `Options` fields, or the keyword parameters of its
    ``compile`` (None: it takes any keyword). The harness passes a backend only what it accepts."""
    options_type = getattr(backend, "Options", None)
    if isinstance(options_type, type) and issubclass(options_type, Options):
        return frozenset(option_fields(options_type))
    params = list(inspect.signature(backend.compile).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params[2:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


# -- the template ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    """What every backend's ``build`` receives: the graph after the pipeline, its parameters cast once."""

    source: Graph  # the graph as the caller gave it
    graph: Graph  # after the pass pipeline
    params: dict[str, np.ndarray]
    options: Options
    fallback_nodes: tuple[str, ...]
    pipeline: PipelineResult
    cache: Cached | None = None  # the backend's cache lookup that missed: its key, for build to store under


@dataclass
class Built:
    """What a backend's ``build`` returns; the template adds the common fields of the report."""

    run: Callable[[list[np.ndarray]], list[np.ndarray]]
    artifact: Any = None
    details: Any = None
    graph: Graph | None = None  # the graph the executable runs, where build rewrote it further
    device: str = "cpu"
    threads: int | None = None  # the threads it actually runs with, where the engine picks them
    accuracy_dtype: str | None = None  # where it differs from the dtype (Triton's tf32)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cached:
    """What a backend's own compile cache answered for one compile's inputs (`TemplateBackend.cached`)."""

    key: Any  # the backend's key of the inputs: a miss's build stores under it
    built: Built | None = None  # a hit: what build returned for these inputs, its graph the pipeline's
    pipeline: dict[str, Any] | None = None  # a hit: PipelineResult.describe() of the compile that filled it
    fallback_nodes: tuple[str, ...] = ()  # a hit: the nodes that compile routed to the reference
    warnings: tuple[str, ...] = ()  # into the report, hit or miss (an unreadable entry that was compiled anew)


class TemplateBackend:
    """Base class of the built-in backends: ``compile`` is the template, ``build`` the backend's own step.

    ``lowered_ops()`` returns the keys of the backend's lowering table, the one list of what it runs;
    ``supports`` derives from it (a backend narrows it per node only where its kernels refuse some attributes).
    ``gaps`` maps each registered op the backend does not lower to the reason: tests/test_coverage.py fails
    when an op is neither lowered nor a declared gap.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    dtypes: tuple[str, ...] = ("float32",)
    gaps: ClassVar[Mapping[str, str]] = {}
    table: ClassVar[str] = ""  # where the lowering table lives ("backends/torch/lowering.py: LOWERINGS")

    def available(self) -> tuple[bool, str]:
        return True, ""

    def lowered_ops(self) -> frozenset[str]:
        raise NotImplementedError

    def supports(self, node: Node) -> bool:
        return node.op in self.lowered_ops()

    def device(self) -> str:
        return "cpu"

    def param_dtype(self, options: Options) -> str:
        """The dtype parameters are cast to before the pipeline (BN folding then computes in it)."""
        return "float32"

    def build(self, prepared: Prepared) -> Built:
        raise NotImplementedError

    def cached(self, graph: Graph, params: dict[str, np.ndarray], options: Options) -> Cached | None:
        """The backend's own compile cache for the caller's graph, its parameters (cast to ``param_dtype``) and
        the options: a `Cached` (a hit carries ``built``), or None where the backend keeps no cache (default)."""
        return None

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], **options: Any) -> Executable:
        start = time.perf_counter()
        opts = parse_options(self.name, self.Options, options)
        if opts.dtype not in self.dtypes:
            raise UnsupportedDtypeError(f"{self.name} backend: dtype {opts.dtype!r} is not supported here; "
                                        f"use one of {tuple(self.dtypes)}")
        ok, why = self.available()
        if not ok:
            raise BackendUnavailableError(f"{self.name} backend: {why}")
        verify(graph)
        pdtype = self.param_dtype(opts)
        source_params = cast_params(graph, params, pdtype)
        cache = self.cached(graph, source_params, opts)
        if cache is not None and cache.built is not None:  # a hit: the pipeline and build ran when it was stored
            built, described, fallback = cache.built, cache.pipeline or {}, cache.fallback_nodes
            graph_out = built.graph or graph
        else:
            pipeline = run_pipeline(graph, source_params, opts.passes, self.supports,
                                    TensorType((1,), opts.dtype).itemsize)
            fallback = check_supported(self, pipeline.graph, opts.fallback)
            weights = cast_params(pipeline.graph, pipeline.params, pdtype)
            built = self.build(Prepared(graph, pipeline.graph, weights, opts, fallback, pipeline, cache))
            described, graph_out = pipeline.describe(), built.graph or pipeline.graph
        warnings = (*(cache.warnings if cache is not None else ()), *built.warnings)
        report = CompileReport(
            backend=self.name, dtype=opts.dtype, accuracy_dtype=built.accuracy_dtype or opts.dtype,
            device=built.device, threads=built.threads if built.threads is not None else opts.threads,
            pipeline=described, compile_s=time.perf_counter() - start, options=opts,
            fallback_nodes=fallback, warnings=warnings, details=built.details)
        return Executable(graph_out, self.name, built.run, report, built.artifact)
