"""Differential fuzzing with hypothesis: random conv2d / pooling / linear / pad configurations, each checked against the
float64 reference exactly like a corpus case. Every configuration is drawn from small integers, so hypothesis
shrinks a failure to a minimal one and prints it as ``OpCase('fuzz-conv2d-…': conv2d x(1,1,3,1) …)``.

Tensors stay small (≤ 4 channels per group, ≤ 12 pixels a side) so hundreds of cases take seconds.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ..ir.ops._pool import PoolAttrs
from ..ir.ops.conv2d import Conv2dAttrs
from ..ir.ops.pad import PadAttrs
from .cases import OpCase, node_case, pair_tag
from .runner import resolve, run_case, skip_reason

small = st.integers


def _size(draw, span: int, pad: int) -> int:
    """A spatial size for which a window spanning ``span`` with padding ``pad`` has at least one output."""
    return max(1, span - 2 * pad) + draw(small(0, 6))


@st.composite
def conv2d_cases(draw) -> OpCase:
    groups = draw(small(1, 3))
    c, o = groups * draw(small(1, 3)), groups * draw(small(1, 3))
    k = (draw(small(1, 4)), draw(small(1, 4)))
    d = (draw(small(1, 3)), draw(small(1, 3)))
    s = (draw(small(1, 3)), draw(small(1, 3)))
    p = (draw(small(0, 3)), draw(small(0, 3)))
    n = draw(small(1, 3))
    h, w = (_size(draw, d[i] * (k[i] - 1) + 1, p[i]) for i in (0, 1))
    bias = draw(st.booleans())
    case_id = (f"fuzz-conv2d-x{n}x{c}x{h}x{w}-o{o}-k{pair_tag(k)}-s{pair_tag(s)}-p{pair_tag(p)}-d{pair_tag(d)}"
               f"-g{groups}" + ("" if bias else "-nobias"))
    params = [("weight", (o, c // groups, *k))] + ([("bias", (o,))] if bias else [])
    return node_case(case_id, "conv2d", Conv2dAttrs(s, p, d, groups), [(n, c, h, w)], params)


@st.composite
def pool_cases(draw) -> OpCase:
    op = draw(st.sampled_from(["max_pool2d", "avg_pool2d"]))
    k = (draw(small(1, 4)), draw(small(1, 4)))
    s = (draw(small(1, 4)), draw(small(1, 4)))
    p = (draw(small(0, k[0] // 2)), draw(small(0, k[1] // 2)))
    d = (draw(small(1, 2)), draw(small(1, 2))) if op == "max_pool2d" else (1, 1)
    ceil_mode = draw(st.booleans())
    include_pad = draw(st.booleans()) if op == "avg_pool2d" else True
    n, c = draw(small(1, 3)), draw(small(1, 4))
    h, w = (_size(draw, d[i] * (k[i] - 1) + 1, p[i]) for i in (0, 1))
    case_id = (f"fuzz-{op}-x{n}x{c}x{h}x{w}-k{pair_tag(k)}-s{pair_tag(s)}-p{pair_tag(p)}"
               + (f"-d{pair_tag(d)}" if d != (1, 1) else "") + ("-ceil" if ceil_mode else "")
               + ("" if include_pad else "-nopad"))
    return node_case(case_id, op, PoolAttrs(k, s, p, d, ceil_mode, include_pad), [(n, c, h, w)])


@st.composite
def linear_cases(draw) -> OpCase:
    lead = tuple(draw(st.lists(small(1, 4), min_size=1, max_size=2)))
    fin, fout = draw(small(1, 24)), draw(small(1, 24))
    bias = draw(st.booleans())
    case_id = f"fuzz-linear-x{'x'.join(map(str, (*lead, fin)))}-o{fout}" + ("" if bias else "-nobias")
    params = [("weight", (fout, fin))] + ([("bias", (fout,))] if bias else [])
    return node_case(case_id, "linear", None, [(*lead, fin)], params)


@st.composite
def pad_cases(draw) -> OpCase:
    """Each side padded 0–3 independently (so asymmetric almost always), sometimes with a fill value, on inputs
    down to 1×1."""
    pads = tuple(draw(small(0, 3)) for _ in range(4))
    value = draw(st.sampled_from([0.0, 0.0, -2.5]))
    n, c, h, w = draw(small(1, 3)), draw(small(1, 4)), draw(small(1, 8)), draw(small(1, 8))
    case_id = f"fuzz-pad-x{n}x{c}x{h}x{w}-p{'-'.join(map(str, pads))}" + (f"-v{value}" if value else "")
    return node_case(case_id, "pad", PadAttrs(pads, value), [(n, c, h, w)])


def fuzz_cases() -> st.SearchStrategy[OpCase]:
    """conv2d, pooling, linear and pad configurations, in that proportion of interest (conv first)."""
    return st.one_of(conv2d_cases(), pool_cases(), linear_cases(), pad_cases())


def check_case(backend: str, case: OpCase, dtype: str = "float32", **compile_options: Any) -> None:
    """Assert ``case`` passes on ``backend``. Unsupported configurations are rejected (hypothesis draws
    another), so a backend that lacks, say, dilated pooling is fuzzed on the rest."""
    b = resolve(backend)
    assume(skip_reason(b, case.graph, dtype, compile_options.get("fallback")) is None)
    r = run_case(b, case, dtype, **compile_options)
    assert r.status == "pass", f"[{r.status}] {r.message}"


def differential_test(backend: str, strategy: st.SearchStrategy[OpCase] | None = None, *, dtype: str = "float32",
                      max_examples: int = 100, **compile_options: Any):
    """A pytest test function fuzzing ``backend`` with ``strategy`` (default `fuzz_cases`)::

        test_fuzz_conv = differential_test("mybackend", conv2d_cases(), max_examples=200)

    It skips when the backend is not available here (with the backend's reason)."""

    # Derandomized: CI sees the same cases every run, so a failure is a regression, not a new draw. Set
    # CONVBENCH_FUZZ_EXPLORE=1 to draw fresh cases (how a backend developer hunts for new failures).
    @settings(max_examples=max_examples, deadline=None, database=None,
              derandomize=not os.environ.get("CONVBENCH_FUZZ_EXPLORE"),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=strategy if strategy is not None else fuzz_cases())
    def run(case: OpCase) -> None:
        check_case(backend, case, dtype, **compile_options)

    def test() -> None:
        import pytest

        ok, why = resolve(backend).available()
        if not ok:
            pytest.skip(f"backend {backend!r} is not available: {why}")
        run()

    test.__name__ = f"test_fuzz_{backend}"
    return test
