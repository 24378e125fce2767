"""Every built-in backend lowers every registered op or declares it a gap with a reason, and this test is what
fails when an op is added without a lowering (README, "Adding an op")."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from convbench.backends import registry
from convbench.ir import ops
from convbench.ir.ops import _REGISTRY, OpDef, first_input, per_element, same_type
from convbench.testing.coverage import coverage_problems

BUILTIN = list(registry.BUILTIN)


@pytest.mark.parametrize("backend", BUILTIN)
def test_every_registered_op_is_lowered_or_a_declared_gap(backend):
    assert coverage_problems(backend) == []


@dataclass(frozen=True)
class _NoAttrs:
    pass


def test_an_op_registered_without_lowerings_fails_on_every_backend_but_the_reference():
    op = OpDef(name="softplus_for_coverage_test", attrs_type=_NoAttrs, inputs=("x",),
               traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(3),
               reference=lambda attrs, x: x, flop_rule="3 per element")
    ops.register(op)
    try:
        for backend in BUILTIN:
            problems = coverage_problems(backend)
            if backend == "numpy":  # every op carries its reference: the reference backend runs it
                assert problems == []
                continue
            assert len(problems) == 1, (backend, problems)
            assert f"backend {backend!r} neither lowers nor declares as a gap: {op.name}" in problems[0]
            assert "add a rule to" in problems[0] and ".gaps" in problems[0]
    finally:
        del _REGISTRY[op.name]
    assert op.name not in ops.names()
