"""The IR lowered to a fixed sequence of oneDNN primitives, one rule per op (`LOWERINGS`: the one list of what the
oneDNN backend runs).

Everything is decided once, at compile time: each primitive is created with its descriptors, each weight is
reordered into the layout its primitive chose, and every activation gets a buffer; a call then only executes the
primitives in order (`Program.run`). That is where this backend gains on torch, which re-derives descriptors and
looks its primitive up on every op call (~50 µs a conv, measured).

Layouts: a 4-D activation is NHWC (``acdb``) in the compute dtype everywhere: the layout AMX and AVX-512 brgemm
convolutions read and write directly, so no reorder sits between two convolutions. Other ranks are plain
row-major. Weights are ``any`` (the primitive's blocked layout). Inputs are reordered in from float32 NCHW and
outputs out to float32, both also primitives. A view (flatten, reshape) needs a plain layout: an NHWC value is
reordered to NCHW first, except where H = W = 1 and the two are the same bytes.

Buffers are reused by liveness (a released buffer goes back to a pool, the smallest that fits is taken). All
primitives share one scratchpad. A parameter is read once into a persistent buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ...ir import ops
from ...ir.graph import Graph, Node
from ...ir.passes.int8_patterns import Int8Conv, as_uint8, int8_convs
from ...ir.passes.quantize import is_quantized
from . import capi
from .capi import Buffer, Engine, Handle
from .code_patterns import Int8Add, OnCodes, code_pads, foldable_pad, int8_adds, int8_on_codes

FLT_MAX = float(np.finfo(np.float32).max)


def _clip(low: float | None, high: float | None) -> tuple[int, float, float]:
    low, high = -FLT_MAX if low is None else low, FLT_MAX if high is None else high
    if low > high:  # torch.clamp's rule: max wins, so every output is high (oneDNN's clip refuses low > high)
        return capi.ELTWISE_LINEAR, 0.0, high
    return capi.ELTWISE_CLIP_V2, low, high


# activation op -> (eltwise algorithm, alpha, beta) as oneDNN defines them, standalone and as post-ops alike
ELTWISE: dict[str, Callable[[Any], tuple[int, float, float]]] = {
    "relu": lambda a: (capi.ELTWISE_RELU, 0.0, 0.0),
    "leaky_relu": lambda a: (capi.ELTWISE_RELU, a.negative_slope, 0.0),
    "relu6": lambda a: (capi.ELTWISE_CLIP_V2, 0.0, 6.0),
    "clip": lambda a: _clip(a.min, a.max),
    "sigmoid": lambda a: (capi.ELTWISE_LOGISTIC, 0.0, 0.0),
    "tanh": lambda a: (capi.ELTWISE_TANH, 0.0, 0.0),
    "elu": lambda a: (capi.ELTWISE_ELU, a.alpha, 0.0),
    "silu": lambda a: (capi.ELTWISE_SWISH, 1.0, 0.0),
    "hardswish": lambda a: (capi.ELTWISE_HARDSWISH, 1 / 6, 0.5),  # x·min(max(x/6 + 1/2, 0), 1)
    "hardsigmoid": lambda a: (capi.ELTWISE_HARDSIGMOID, 1 / 6, 0.5),
}


@dataclass
class Value:
    """A tensor of the program: its logical shape (NCHW order), its oneDNN descriptor and the buffer under it."""

    shape: tuple[int, ...]
    md: Handle
    buffer: Buffer
    tag: int  # capi.NHWC or a plain tag
    memory: Handle | None = None

    @property
    def plain(self) -> bool:
        return self.tag != capi.NHWC or self.shape[2:] == (1, 1)


@dataclass
class Step:
    node: str
    primitive: capi.Primitive
    args: list[tuple[int, Handle]]
    args_array: Any = None  # ctypes Arg array (the args and the scratchpad), built by Program.finish
    nargs: int = 0


@dataclass
class Program:
    """The compiled network: the steps in order and the memories a call binds its arrays to."""

    engine: Engine
    steps: list[Step]
    inputs: list[Handle]  # user memories (float32, plain), rebound to each call's input arrays
    outputs: list[tuple[Handle, tuple[int, ...]]]  # user memories of the outputs and their shapes
    keep: list[Any] = field(default_factory=list)  # buffers and descriptors the memories point at
    scratchpad: int = 0
    scratch: Buffer | None = None  # the one scratchpad's buffer, made by finish

    def finish(self) -> None:
        scratch = self.scratch = Buffer(self.scratchpad)  # kept by the program; neither activation nor constant
        lib = self.engine.lib
        for step in self.steps:
            args = list(step.args)
            if step.primitive.scratchpad:
                md = step.primitive.md(lib, capi.Q_SCRATCHPAD_MD)
                args.append((capi.SCRATCHPAD, self.engine.memory(md, scratch)))
            step.args_array = (capi.Arg * len(args))(*[capi.Arg(a, m) for a, m in args])
            step.nargs = len(args)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        engine, lib = self.engine, self.engine.lib
        arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]  # alive until the call returns
        for memory, x in zip(self.inputs, arrays, strict=True):
            engine.set_handle(memory, x.ctypes.data)
        outs = [np.empty(shape, np.float32) for _, shape in self.outputs]
        for (memory, _), y in zip(self.outputs, outs, strict=True):
            engine.set_handle(memory, y.ctypes.data)
        execute, stream = lib.dnnl_primitive_execute, engine.stream
        for step in self.steps:
            status = execute(step.primitive.handle, stream, step.nargs, step.args_array)
            if status:
                capi.check(status, f"running node {step.node!r} ({step.primitive.impl})")
        engine.wait()
        return outs


Rule = Callable[["Lowering", Node], Value]


class LoweringError(RuntimeError):
    """oneDNN refused a node: names the node, its op and input shapes, and what oneDNN said."""

    def __init__(self, node: Node, graph: Graph, error: capi.DnnlError):
        self.node, self.status = node, error.status
        shapes = ", ".join(str(graph.types[i].shape) for i in node.inputs if i in graph.types)
        super().__init__(f"node {node.name!r} ({node.op}, inputs {shapes}): {error}")


class Lowering:
    """Builds a `Program`: one instance per compile. ``rules`` maps each op to its rule (`LOWERINGS`)."""

    rules: ClassVar[Mapping[str, Rule]] = {}  # rules.LOWERINGS, assigned there

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str, engine: Engine):
        self.graph, self.params, self.engine, self.lib = graph, params, engine, engine.lib
        self.dt = capi.DTYPES[dtype]
        self.env: dict[str, Value] = {}
        self.steps: list[Step] = []
        self.keep: list[Any] = []
        self.pool: list[Buffer] = []
        self.users: dict[int, int] = {}  # id(buffer) -> live values on it
        self.scratchpad = 0
        self.impls: dict[str, int] = {}
        self.node: Node | None = None
        self.int8: dict[str, Int8Conv] = {}  # conv name -> its int8 pattern (a QDQ graph's convs on the codes)
        self.int8_adds: dict[str, Int8Add] = {}  # add name -> its int8 pattern (residual adds on the codes)
        self.on_codes: dict[str, OnCodes] = {}  # max_pool2d/pad name -> its int8 pattern (run on the codes)
        self.deferred: set[str] = set()  # nodes not lowered in order: constants (read on demand) and absorbed ones
        self.coded: dict[str, str] = {}  # quantize_linear -> the value holding its codes (a conv or add wrote them)
        self.same: dict[str, str] = {}  # a quantize_linear -> an earlier one of the same value and attrs (same codes)
        self.shifted: set[str] = set()  # int8 codes held as uint8, zero point + 128 (quant_rules.codes)
        self.code_pads: dict[str, str] = {}  # int8 conv -> the pad on the codes it takes as its padding
        if dtype == "int8" or is_quantized(graph):
            self.int8 = int8_convs(graph, params)
            self.int8_adds = int8_adds(graph)
            self.on_codes = int8_on_codes(graph)
            self.deferred = {n.name for n in graph.nodes if n.op == "dequantize_linear" and n.inputs[0] in graph.params}
            self.deferred |= {c.dequantize for c in self.int8.values()}
            first: dict[tuple, str] = {}
            for n in graph.nodes:  # a residual's skip is quantized once more for the add, alike: reuse the codes
                if n.op == "quantize_linear" and n.name not in graph.outputs:
                    self.same[n.name] = first.setdefault((n.inputs[0], n.attrs), n.name)
            self.same = {k: v for k, v in self.same.items() if k != v}
            self.deferred |= set(self.same)
            for pattern in [*self.int8_adds.values(), *self.on_codes.values()]:
                self.deferred |= {*pattern.absorbed}
            self.shifted = {n.name for n in graph.nodes if as_uint8(graph, n.name)}
            self.code_pads = code_pads(graph, self.on_codes, self.int8)
            for conv, pad in self.code_pads.items():  # the pad and the codes it is quantized into: never made
                self.deferred |= {pad, self.int8[conv].codes}
        # zero pads that become their float conv's padding (an int8 conv's input pad runs on the codes instead)
        self.folded_pads = {n.name for n in graph.nodes if foldable_pad(graph, n) and graph.sole_reader(n.name).name
                            not in self.int8}
        self.deferred |= self.folded_pads
        self.arrays: dict[str, np.ndarray] = {}
        self.last: dict[str, int] = {}  # value -> index of the last node that reads it (`sources`)
        self.index = -1  # the node being lowered
        self.made: list[Value] = []  # the values the current node's rule made: all but its result are temporaries

    # -- buffers and values ---------------------------------------------------------------------------------

    def buffer(self, nbytes: int) -> Buffer:
        fits = [b for b in self.pool if b.nbytes >= nbytes]
        if fits:
            best = min(fits, key=lambda b: b.nbytes)
            self.pool.remove(best)
            return best
        buf = Buffer(nbytes)
        self.keep.append(buf)
        return buf

    def value(self, shape: Sequence[int], md: Handle, tag: int, buffer: Buffer | None = None) -> Value:
        buf = buffer if buffer is not None else self.buffer(self.engine.size(md))
        self.users[id(buf)] = self.users.get(id(buf), 0) + 1
        v = Value(tuple(shape), md, buf, tag)
        v.memory = self.engine.memory(md, buf)
        self.made.append(v)
        return v

    def release(self, v: Value) -> None:
        key = id(v.buffer)
        self.users[key] -= 1
        if self.users[key] == 0 and v.buffer.pooled:
            self.pool.append(v.buffer)

    def layout(self, shape: Sequence[int]) -> int:
        return capi.NHWC if len(shape) == 4 else capi.PLAIN[len(shape)]

    def new(self, shape: Sequence[int], dt: int | None = None) -> Value:
        """A fresh activation of ``shape`` in the default layout (NHWC for 4-D) and the compute dtype."""
        tag = self.layout(shape)
        return self.value(shape, self.engine.md(shape, self.dt if dt is None else dt, tag), tag)

    def const(self, array: np.ndarray, dt: int | None = None, tag: int | None = None) -> Value:
        """A constant in a persistent buffer: float32 plain, then reordered into ``dt``/``tag`` if those differ."""
        a = np.ascontiguousarray(array, dtype=np.float32)
        shape = a.shape or (1,)
        buf = Buffer(a.nbytes)
        buf.pooled = False
        self.keep.append(buf)
        buf.view(np.float32, shape)[...] = a.reshape(shape)
        v = self.value(shape, self.engine.md(shape, capi.F32, capi.PLAIN[len(shape)]), capi.PLAIN[len(shape)], buf)
        want_dt, want_tag = dt if dt is not None else capi.F32, tag if tag is not None else v.tag
        if (want_dt, want_tag) == (capi.F32, v.tag):
            return v
        return self.converted(v, self.engine.md(shape, want_dt, want_tag), want_tag, now=True)

    def array(self, name: str) -> np.ndarray | None:
        """The value of ``name`` where it is known at compile time: a parameter, or a dequantize_linear of one
        (a quantized weight or bias: its reference, in float64, once); else None."""
        if self.graph.is_param(name):
            return self.params[name]
        if name in self.deferred and (node := self.graph.node_by_name[name]).inputs[0] in self.graph.params:
            if name not in self.arrays:
                codes = np.asarray(self.params[node.inputs[0]], np.float64)
                self.arrays[name] = ops.get("dequantize_linear").reference(node.attrs, codes)
            return self.arrays[name]
        return None

    def read(self, name: str) -> Value:
        name = self.same.get(name, name)
        if name not in self.env:  # a compile-time value read as an activation: a constant in the activations' layout
            a = self.array(name)
            if a is None:
                raise capi.DnnlError(f"value {name!r} was never computed (a rule absorbed it)", 2)
            self.env[name] = self.const(a, self.dt, self.layout(a.shape))
        return self.env[name]

    def converted(self, v: Value, md: Handle, tag: int, now: bool = False) -> Value:
        """``v`` in descriptor ``md``: ``v`` itself if it already is, else a reorder (run once, now, for a constant;
        else a step of every call)."""
        if self.engine.equal(v.md, md):
            return v
        prim = self.primitive(self.lib.dnnl_reorder_primitive_desc_create, v.md, self.engine.engine,
                              md, self.engine.engine, None, what=f"reordering {v.shape}", count=not now)
        if now:
            out = Value(v.shape, md, Buffer(self.engine.size(md)), tag)
            out.buffer.pooled = False
            self.keep.append(out.buffer)
            out.memory = self.engine.memory(md, out.buffer)
            self.users[id(out.buffer)] = 1
            self.execute_now(prim, [(capi.FROM, v.memory), (capi.TO, out.memory)])
            return out
        return self.reordered(v, prim, md, tag)

    def reordered(self, v: Value, prim: capi.Primitive, md: Handle, tag: int) -> Value:
        """A fresh value in ``md``, written from ``v`` by the reorder ``prim`` on every call."""
        out = self.value(v.shape, md, tag)
        self.step(prim, [(capi.FROM, v.memory), (capi.TO, out.memory)])
        return out

    def plain(self, v: Value) -> Value:
        if v.plain:
            return v
        tag = capi.PLAIN[len(v.shape)]
        return self.converted(v, self.engine.md(v.shape, self.engine.dtype(v.md), tag), tag)

    def view(self, v: Value, shape: Sequence[int]) -> Value:
        """``v`` as ``shape`` (flatten, reshape): the same bytes, in a plain layout and ``v``'s own data type."""
        p = self.plain(v)
        tag = capi.PLAIN[len(shape)]
        return self.value(shape, self.engine.md(shape, self.engine.dtype(p.md), tag), tag, p.buffer)

    def bias(self, name: str, o: int, dt: int = capi.F32) -> Value:
        """A conv's or linear's bias, or a batch_norm's statistic, as a (O,) vector of ``dt``: a compile-time value
        once (a parameter, a dequantized int32 bias), a computed one converted every call."""
        if (known := self.array(name)) is not None:
            return self.const(known, dt, capi.A)
        return self.converted(self.read(name), self.engine.md((o,), dt, capi.A), capi.A)

    def writes_codes(self, readers: Sequence[Node], producer: str) -> None:
        """``producer``'s value holds the codes of these quantize_linear ``readers``: they become that value."""
        for reader in readers:
            self.coded[reader.name] = producer

    # -- primitives -----------------------------------------------------------------------------------------

    def primitive(self, create: Callable[..., int], *args: Any, what: str, count: bool = True) -> capi.Primitive:
        """A primitive of this program (``count``: in the report's implementations; a compile-time reorder is not)."""
        prim = capi.primitive(self.engine, create, *args, what=what)
        if count:
            self.impls[prim.impl] = self.impls.get(prim.impl, 0) + 1
        self.scratchpad = max(self.scratchpad, prim.scratchpad)
        return prim

    def step(self, prim: capi.Primitive, args: list[tuple[int, Handle]]) -> None:
        self.steps.append(Step(self.node.name if self.node else "<io>", prim, args))

    def execute_now(self, prim: capi.Primitive, args: list[tuple[int, Handle]]) -> None:
        if prim.scratchpad:
            scratch = Buffer(prim.scratchpad)
            args = [*args, (capi.SCRATCHPAD, self.engine.memory(prim.md(self.lib, capi.Q_SCRATCHPAD_MD), scratch))]
        arr = (capi.Arg * len(args))(*[capi.Arg(a, m) for a, m in args])
        capi.check(self.lib.dnnl_primitive_execute(prim.handle, self.engine.stream, len(args), arr),
                   "a compile-time reorder")
        self.engine.wait()

    def attr(self, activation: str | None, residual: Value | None = None,
             in_place: bool = False) -> tuple[capi.Attr, list]:
        """The attribute of a conv/linear/pool: + residual, then the activation. The residual is a sum post-op
        where the primitive writes over it (``in_place``: `overwritable`), else a binary add post-op reading it."""
        attr, extra = capi.Attr(self.engine), []
        if residual is not None and in_place:
            attr.sum()
        elif residual is not None:
            index = attr.binary(capi.BINARY_ADD, residual.md)
            extra.append((capi.post_op_arg(index, capi.SRC_1), residual.memory))
        if activation is not None:  # a fused op's activation is one without attributes
            attr.eltwise(*ELTWISE[activation](None))
        return attr, extra

    def overwritable(self, name: str, md: Handle) -> Value | None:
        """``name``'s value where the current node may write its output over it: this node is its last reader, it
        is no graph output or constant, no other value shares its buffer, and it has the output's descriptor. A
        residual added in place (a sum post-op) is read and written once, where a separate output also costs the
        write-allocate reads of fresh lines (ResNet-50 bf16 b8: its 1×1 convs 23.8 ms in sequence, OpenVINO's 18.7)."""
        name = self.same.get(name, name)
        v = self.env.get(name)
        if (v is None or self.last.get(name) != self.index or name in self.graph.outputs
                or self.array(name) is not None or not v.buffer.pooled or self.users.get(id(v.buffer)) != 1
                or not self.engine.equal(v.md, md)):
            return None
        return v

    def type(self, name: str) -> tuple[int, ...]:
        return self.graph.types[name].shape

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> Program:
        graph, engine = self.graph, self.engine
        inputs = []
        for name, t in graph.inputs.items():
            tag, dt = capi.PLAIN[t.rank], capi.CODES.get(t.dtype, self.dt)
            user = Value(t.shape, engine.md(t.shape, capi.F32, tag), Buffer(0), tag)
            user.memory = engine.memory(user.md, None)
            inputs.append(user.memory)
            self.keep.append(user)
            self.users[id(user.buffer)] = 1
            user.buffer.pooled = False
            want = self.layout(t.shape)
            md = engine.md(t.shape, dt, want)
            # always a step, even where the layouts agree: the user memory is rebound to each call's array
            prim = self.primitive(self.lib.dnnl_reorder_primitive_desc_create, user.md, engine.engine, md,
                                  engine.engine, None, what=f"input {name!r} of shape {t.shape}")
            self.env[name] = self.reordered(user, prim, md, want)
        self.last = last = {}
        for i, node in enumerate(graph.nodes):
            for name in self.sources(node.inputs):
                last[name] = i
        for i, node in enumerate(graph.nodes):
            self.index = i
            if node.name in self.deferred:
                continue
            self.node, self.made = node, []
            try:
                result = self.env[node.name] = self.rules[node.op](self, node)
            except capi.DnnlError as e:
                raise LoweringError(node, self.graph, e) from None
            for v in self.made:  # a reorder's or a view's intermediate: its buffer is free once this node ran
                if v is not result:
                    self.release(v)
            for name in dict.fromkeys(self.sources(node.inputs)):
                if last.get(name) == i and name not in graph.outputs and name in self.env \
                        and self.array(name) is None:
                    self.release(self.env[name])
        self.node = None
        outputs = []
        for name in graph.outputs:
            v = self.env[name]
            tag = capi.PLAIN[len(v.shape)]
            user_md = engine.md(v.shape, capi.F32, tag)
            memory = engine.memory(user_md, None)
            prim = self.primitive(self.lib.dnnl_reorder_primitive_desc_create, v.md, engine.engine, user_md,
                                  engine.engine, None, what=f"output {name!r}")
            self.step(prim, [(capi.FROM, v.memory), (capi.TO, memory)])
            outputs.append((memory, v.shape))
        program = Program(engine, self.steps, inputs, outputs, self.keep, self.scratchpad)
        program.finish()
        return program

    def sources(self, names: Sequence[str]) -> list[str]:
        """The values ``names`` stand for at run time: an absorbed node (deferred, not a constant) is what it reads,
        so a buffer lives until the node that absorbed its reader has run."""
        out = []
        for name in names:
            name = self.same.get(name, name)
            if name in self.deferred and self.array(name) is None:
                out += self.sources(self.graph.node_by_name[name].inputs)
            else:
                out.append(name)
        return out
