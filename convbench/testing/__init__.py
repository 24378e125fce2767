"""The conformance suite: how a backend proves it computes what the IR means.

A guide for backend developers
==============================

Every backend is judged the same way: run a case, compare each output with the NumPy reference evaluated in
float64 on the same float32 inputs and parameters, under the tolerance of the dtype you ran in
(``convbench.backends.correctness.TOLERANCES``; the only place tolerances live). You never write expected values.

What there is to run
--------------------
- ``op_cases(ops=None) -> list[OpCase]``: the shared op corpus. Every registered op, every attribute, all
  dimensions distinct (N=2, C=3, H=7, W=5 …), and the edge cases: 1×1 spatial, kernel = input size,
  stride > kernel, padding > kernel, ceil_mode remainders (and torch's dropped last window), rectangular
  kernels, grouped/depthwise convs, awkward channel counts, plus multi-node patterns a lowering rewrites
  (conv+BN folding, a conv output read twice, residual/downsample blocks, inception concat, two graph outputs).
  Ids read like ``conv2d-k3-s2-p1-d2-g3``. ``ops=[…]`` keeps the cases that use only those ops.
- ``model_cases(size="small"|"full", models=None) -> list[ModelCase]``: the zoo at reduced input sizes with
  batch 2 (what CI runs) or at 224 with batch 1. Ids read like ``resnet50-b2-s32``.
- ``run_case(backend, case, dtype="float32", **compile_options) -> CaseResult``: status ``pass``/``fail``/
  ``skip``/``error``, the ``Agreement`` (max abs/rel error, top-1/top-5) and, when it fails, a message naming
  the case, op, shapes, attributes, error and tolerance. It skips (with the reason) when the backend is not
  available, declares ``dtypes`` without this one, or ``supports(node)`` is false for a node (pass
  ``fallback="numpy"`` to run those on the reference instead).
- Fuzzing (``convbench.testing.fuzz``, needs hypothesis): ``conv2d_cases()``, ``pool_cases()``,
  ``linear_cases()``, ``pad_cases()``, ``fuzz_cases()`` strategies and
  ``differential_test(backend, strategy, max_examples=…)``.
  A failure shrinks to a minimal configuration.

Your backend's test file
------------------------
::

    import pytest
    from convbench.testing import Expectations, conformance_params
    from convbench.testing.fuzz import differential_test

    EXPECT = Expectations(
        exclude={"lrn-*": "no LRN kernel: AlexNet-2012 only"},          # not run, reported as skipped
        xfail={"conv2d-*-d2-*": "dilated conv tiles read out of bounds (#42)"},  # must fail; strict
    )

    @pytest.mark.parametrize("item", conformance_params("mybackend", "ops", EXPECT))
    def test_ops(item):
        item.check()

    @pytest.mark.parametrize("item", conformance_params("mybackend", "models", EXPECT))
    def test_models(item):
        item.check()

    test_fuzz = differential_test("mybackend", max_examples=200)

Patterns are fnmatch patterns over case ids; one that matches no case is an error (stale lists fail loudly).
``conformance_params(..., dtype="bfloat16", channels_last=True)`` passes dtype and compile options through.
If the backend is unavailable here (no GPU, no library), every case is skipped with its reason.

The contract being tested (``convbench.backends.base``): ``name``; ``available() -> (ok, reason)`` never raises;
``supports(node)``; ``compile(graph, params, dtype=…, **options) -> Executable`` taking NumPy and returning
NumPy (a tuple for several graph outputs); optional ``dtypes``, ``version()``, ``device()``. An unsupported node
without ``fallback=`` raises ``UnsupportedNodeError``. Register a third-party backend through the
``convbench.backends`` entry-point group (docs/third_party_backend.md).
"""

from __future__ import annotations

from typing import Any

from .cases import OpCase, make_case, node_case
from .conformance import Conformance, Expectations, backend_or_skip, conformance_params, slow_models
from .corpus import op_cases
from .runner import CaseResult, judge, run_case, skip_reason
from .zoo_cases import ModelCase, model_case, model_cases

_FUZZ = ("conv2d_cases", "pool_cases", "linear_cases", "pad_cases", "fuzz_cases", "differential_test",
         "check_case")


def __getattr__(name: str) -> Any:  # fuzzing needs hypothesis, a test dependency: import it only when asked
    if name in _FUZZ:
        from . import fuzz

        return getattr(fuzz, name)
    raise AttributeError(f"module 'convbench.testing' has no attribute {name!r}")


__all__ = ["CaseResult", "Conformance", "Expectations", "ModelCase", "OpCase", "backend_or_skip", "conformance_params",
           "judge",
           "make_case", "model_case", "model_cases", "node_case", "op_cases", "run_case", "skip_reason", "slow_models",
           *_FUZZ]
