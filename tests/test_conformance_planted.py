"""The suite finds a planted bug, and only it: a copy of the torch backend whose conv2d lowering ignores
dilation must fail exactly the corpus cases with a dilated convolution (plain or fused), and pass the rest.
A second copy flips avg_pool2d's count_include_pad (same shapes, different values): it must fail exactly the
cases where that changes the answer, the average pools with padding."""

from __future__ import annotations

import dataclasses

import pytest

from convbench.testing import op_cases, run_case

pytest.importorskip("torch")
from convbench.backends import torch as torch_backend


def planted(name: str, op: str, rewrite) -> type:
    """A copy of the torch backend called ``name`` whose rule for ``op`` lowers ``rewrite(node.attrs)`` instead of
    the node's own attributes (fused_conv2d lowers its convolution through conv2d's rule too)."""
    def rule(lw, node):
        return torch_backend.LOWERINGS[op](lw, dataclasses.replace(node, attrs=rewrite(node.attrs)))

    lowering = type(f"{name}Lowering", (torch_backend.Lowering,), {"rules": {**torch_backend.LOWERINGS, op: rule}})
    return type(name, (torch_backend.TorchBackend,), {"name": name, "lowering": lowering})


IgnoresDilation = planted("torch-ignores-dilation", "conv2d", lambda a: dataclasses.replace(a, dilation=(1, 1)))
FlipsCountIncludePad = planted("torch-flips-count-include-pad", "avg_pool2d",
                               lambda a: dataclasses.replace(a, count_include_pad=not a.count_include_pad))


def _uses_padded_avg_pool(case) -> bool:
    return any(n.op == "avg_pool2d" and n.attrs.padding != (0, 0) for n in case.graph.nodes)


def _uses_dilated_conv(case) -> bool:
    """A conv whose dilation changes its result: > 1 along an axis where the kernel has more than one tap."""
    def dilated(n) -> bool:
        taps = case.graph.types[n.inputs[1]].shape[2:]
        return any(d > 1 and k > 1 for d, k in zip(n.attrs.dilation, taps, strict=True))
    return any(n.op in ("conv2d", "fused_conv2d") and dilated(n) for n in case.graph.nodes)


def test_planted_dilation_bug_fails_exactly_the_dilation_cases():
    cases = op_cases()
    results = {c.id: run_case(IgnoresDilation(), c) for c in cases}
    failed = {i for i, r in results.items() if r.status != "pass"}
    expected = {c.id for c in cases if _uses_dilated_conv(c)}
    assert len(expected) >= 5
    assert failed == expected
    assert all(results[i].status == "fail" for i in failed)  # wrong numbers (here: shapes), not crashes
    assert all("conv2d" in results[i].message and "dilation=" in results[i].message for i in failed)


def test_planted_count_include_pad_bug_fails_exactly_the_padded_average_pools():
    cases = op_cases()
    results = {c.id: run_case(FlipsCountIncludePad(), c) for c in cases}
    failed = {i for i, r in results.items() if r.status != "pass"}
    assert failed == {c.id for c in cases if _uses_padded_avg_pool(c)} and len(failed) >= 4
    assert all("max abs error" in results[i].message and "avg_pool2d" in results[i].message for i in failed)


def test_the_unplanted_backend_passes_the_same_cases():
    touched = [c for c in op_cases() if _uses_dilated_conv(c) or _uses_padded_avg_pool(c)]
    assert all(run_case("torch", c).status == "pass" for c in touched)
