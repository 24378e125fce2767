"""Hand-written CPU schedules for TVM's fused functions: what an untuned compile runs instead of plain loops.

Untuned, TVM 0.27 legalizes a conv2d into naive scalar loops on one thread (ResNet-50 takes seconds), and its
default CPU pipeline has no conv schedule (DLight's CPU rules cover GEMV and reductions only). This rule is the
classic direct-convolution micro-kernel, written as a TIR schedule on the legalized NCHW function (matmul gets
the same micro-kernel; everything else, parallel loops):

- the output channels are tiled ``om × V`` (V = the SIMD width in floats: 16 with AVX-512, 8 with AVX2) and the
  output row ``wi`` pixels at a time; the ``wi × om`` accumulator vectors live in registers (a ``local`` buffer
  laid out channel-innermost, fully unrolled) while the reduction runs over input channels and kernel taps;
- each step of the reduction broadcasts one input pixel and multiplies it by ``om`` contiguous weight vectors: the
  weight is re-laid out as (O/(om·V), C, KH, KW, om·V) by a layout-rewrite block that ``SplitLayoutRewritePreproc``
  moves out and ``FoldConstant`` evaluates once at compile time (MetaSchedule's own weight-prepacking mechanism);
- the epilogue the function fused (bias, residual add, ReLU …) is applied to the accumulator tile before its one
  store, so the intermediate conv output never exists in memory;
- the (batch, channel tile, output row) loops run in parallel on TVM's thread pool; the padded input is made once,
  in parallel over its channels (an unpadded conv reads its input directly).

It applies to functions with one plain (groups = 1) NCHW conv2d reduction, its padding, and elementwise
epilogues, whose output channels divide by the vector width; anything else keeps TVM's default (``None``). A
MetaSchedule database record, when there is one, takes precedence: this rule only runs on functions left
unscheduled after the database was applied.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tvm import s_tir, tirx
from tvm.s_tir import dlight

PREPROC = "meta_schedule.layout_rewrite_preproc"  # the annotation SplitLayoutRewritePreproc looks for
# Accumulator vectors per register tile. Measured on ResNet-50's layers (1 thread, AVX-512): tiles of 14–16
# accumulators (7×2, 4×4, 8×2) ran at 0.9–1.05× torch's speed on 3×3 convs; 28 (14×2) or om = 8 spilled or
# strided and ran at half that.
ACCUMULATORS = 18


def vector_lanes(target: Any) -> int:
    """float32 lanes of the target's widest vector unit."""
    features = " ".join(str(a) for a in (target.attrs.get("mattr") or []))
    mcpu = str(target.attrs.get("mcpu", ""))
    avx512 = "avx512" in features or mcpu in AVX512_CPUS
    return 16 if avx512 else 8


# LLVM CPU names with AVX-512F (what `llvm_get_system_cpu()` returns on those machines).
AVX512_CPUS = frozenset({
    "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server", "tigerlake",
    "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5",
    "x86-64-v4",
})


def lanes_dividing(channels: int, target: Any) -> int | None:
    """The widest vector (the target's, or a half or quarter of it, down to 4 floats) that divides ``channels``:
    the kernels have no ragged vector; None when not even 4 does."""
    lanes = vector_lanes(target)
    while lanes > 4 and channels % lanes:
        lanes //= 2
    return lanes if channels % lanes == 0 else None


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def register_tile(out_w: int, channel_vectors: int) -> tuple[int, int]:
    """(wi, om): output pixels × channel vectors held in registers. Each reduction step loads ``om`` weight vectors
    and broadcasts ``wi`` input pixels (a memory operand of the FMA with AVX-512) for ``wi·om`` FMAs, so minimise
    the loads per FMA, 1/om + 1/wi, with at most ``ACCUMULATORS`` accumulators and om ≤ 4, ``wi`` dividing the
    output width and ``om`` the channel vectors (no ragged tiles in the unrolled kernel)."""
    candidates = [(wi, om) for wi in range(1, min(out_w, 16) + 1) if out_w % wi == 0
                  for om in range(1, min(channel_vectors, 4) + 1) if channel_vectors % om == 0
                  and wi * om <= ACCUMULATORS]
    return min(candidates, key=lambda t: (1 / t[0] + 1 / t[1], -t[0] * t[1]))


def _prepack(sch: s_tir.Schedule, block: Any, index_map: Any) -> None:
    """Re-lay out ``block``'s weight (its read 1) by ``index_map`` in a block of its own, annotated so that
    ``SplitLayoutRewritePreproc`` moves it out and ``FoldConstant`` runs it once, at compile time."""
    packed = sch.cache_read(block, 1, "global")
    sch.transform_layout(packed, ("write", 0), index_map)
    sch.annotate(packed, PREPROC, True)


def _is_conv(sch: s_tir.Schedule, block: Any) -> bool:
    stmt = sch.get(block)
    kinds = [iv.iter_type for iv in stmt.iter_vars]
    return len(kinds) == 7 and kinds.count(tirx.IterVar.CommReduce) == 3 and stmt.name_hint.startswith("conv2d_nchw")


def _written_shape(sch: s_tir.Schedule, block: Any) -> tuple[int, ...]:
    """The shape of the buffer ``block`` writes."""
    return tuple(int(d) for d in sch.get(block).writes[0].source.shape)


def _is_copy(sch: s_tir.Schedule, block: Any) -> bool:
    """``block`` (a conv's padding) writes a buffer the shape of the one it reads: padding by zero, which TVM's
    conv2d still emits as a copy of the whole input. Inlined, it costs nothing; made, it was a 3.2 MB copy per
    image before each of ResNet-50's 56×56 pointwise convs (0.1 GFLOP); without it the 56×56 and 28×28 ones ran
    1.2–2.9× faster."""
    stmt = sch.get(block)
    return len(stmt.reads) == 1 and tuple(int(d) for d in stmt.reads[0].source.shape) == _written_shape(sch, block)


def schedule_conv2d(func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
    """The schedule described in the module docstring, or None where it does not apply."""
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    positions = [i for i, b in enumerate(blocks) if _is_conv(sch, b)]
    if len(positions) != 1 or positions[0] > 1:  # one conv, after at most its padding
        return None
    conv, before, after = blocks[positions[0]], blocks[:positions[0]], blocks[positions[0] + 1:]
    shape = _written_shape(sch, conv)
    if any(_written_shape(sch, b) != shape for b in after):  # an epilogue that broadcasts the conv's output (a
        return None  # squeeze-and-excitation gate times the activation) cannot be inlined into its tile store
    _, o, _, w, *_ = sch.get_loops(conv)
    out_channels, out_w = int(sch.get(o).extent), int(sch.get(w).extent)
    lanes = lanes_dividing(out_channels, target)
    if lanes is None:
        return None
    wi, om = register_tile(out_w, out_channels // lanes)

    if before and _is_copy(sch, before[0]):  # no padding (1×1 convs): read the input itself, not a copy of it
        sch.compute_inline(before[0])
        before = []
    # The epilogue: every elementwise block but the last inlined into the next, the last into the tile store.
    for block in after[:-1]:
        sch.compute_inline(block)
    n, o, h, w, c, kh, kw = sch.get_loops(conv)
    oo, om_loop, ov = sch.split(o, [None, om, lanes])
    wo, wi_loop = sch.split(w, [None, wi])
    sch.reorder(n, oo, h, wo, c, kh, kw, wi_loop, om_loop, ov)

    # Weights: (O, C, KH, KW) -> (O/(om·V), C, KH, KW, om·V).
    block_o = om * lanes
    _prepack(sch, conv, lambda o_, c_, kh_, kw_: (o_ // block_o, c_, kh_, kw_, o_ % block_o))

    store = sch.cache_write(conv, 0, "local")  # conv now accumulates into `local`; `store` writes it out
    sch.transform_layout(conv, ("write", 0), lambda n_, o_, h_, w_: (n_, h_, w_, o_))  # channels innermost
    if after:  # the epilogue reads the store's output: fold it into the store
        sch.reverse_compute_inline(after[-1])
    sch.reverse_compute_at(store, wo)
    sch.vectorize(ov)
    sch.unroll(om_loop)
    sch.unroll(wi_loop)
    store_loops = sch.get_loops(store)[4:]  # under (n, oo, h, wo): the tile's (n, o, h, w)
    sch.vectorize(store_loops[-1])
    sch.parallel(sch.fuse(n, oo, h))
    # Last: loop kinds can only be set while the conv is still one reduction block. The init loops copy the
    # (unrolled, vectorized) tile loops.
    sch.decompose_reduction(conv, c)

    if before:  # the padded input, made once, in parallel over (n, c)
        pad_loops = sch.get_loops(before[0])
        sch.parallel(sch.fuse(*pad_loops[:2]))
    return sch


def schedule_matmul(func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
    """linear: ``out[M, N] = x[M, K] · w[K, N]`` (+ epilogue) with the conv's micro-kernel: ``mi`` rows × ``nm``
    vectors of N accumulators, the weight packed as (N/(nm·V), K, nm·V) at compile time, parallel over N tiles."""
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if not blocks or not sch.get(blocks[0]).name_hint.startswith("matmul") or len(sch.get_loops(blocks[0])) != 3:
        return None
    mm, after = blocks[0], blocks[1:]
    rows, cols = (int(sch.get(lp).extent) for lp in sch.get_loops(mm)[:2])
    lanes = lanes_dividing(cols, target)
    if lanes is None:
        return None
    mi, nm = register_tile(rows, cols // lanes)
    for block in after[:-1]:
        sch.compute_inline(block)
    m, n, k = sch.get_loops(mm)
    mo, mi_loop = sch.split(m, [None, mi])
    no, nm_loop, nv = sch.split(n, [None, nm, lanes])
    sch.reorder(no, mo, k, mi_loop, nm_loop, nv)
    block_n = nm * lanes
    _prepack(sch, mm, lambda k_, n_: (n_ // block_n, k_, n_ % block_n))
    store = sch.cache_write(mm, 0, "local")
    if after:
        sch.reverse_compute_inline(after[-1])
    sch.reverse_compute_at(store, mo)
    sch.vectorize(nv)
    sch.unroll(nm_loop)
    sch.unroll(mi_loop)
    sch.vectorize(sch.get_loops(store)[-1])
    sch.parallel(no)
    sch.decompose_reduction(mm, k)
    return sch


def schedule_parallel(func: tirx.PrimFunc, _target: Any) -> s_tir.Schedule | None:
    """Everything else (pools, softmax, LRN, elementwise): each root loop nest parallel over its leading
    spatial loops, so no function runs on one thread while the others use the pool."""
    sch = s_tir.Schedule(func)
    done = False
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        loops = sch.get_loops(block)
        kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
        spatial = []
        for lp, kind in zip(loops, kinds, strict=False):  # block vars bind loops in order after LegalizeOps
            if kind != tirx.IterVar.DataPar or len(spatial) == 2:
                break
            spatial.append(lp)
        if len(loops) != len(kinds) or not spatial:
            continue
        sch.parallel(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0])
        done = True
    return sch if done else None


class HandWritten(dlight.ScheduleRule):
    """The rules above as one DLight rule (the first that applies), for ``dlight.ApplyDefaultSchedule`` on the
    functions a tuning database left unscheduled. ``applied`` counts the functions each rule scheduled."""

    def __init__(self) -> None:
        self.applied: Counter[str] = Counter()

    def apply(self, func: tirx.PrimFunc, target: Any, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        for kind, rule in RULES.items():
            try:
                sch = rule(func, target)
            except s_tir.ScheduleError:  # a shape this rule did not foresee: the next rule, or TVM's loops
                continue
            if sch is not None:
                self.applied[kind] += 1
                return sch
        return None


RULES = {"conv2d": schedule_conv2d, "matmul": schedule_matmul, "parallel": schedule_parallel}
