"""ONNX's own node conformance cases through `from_onnx` and the NumPy backend: every selected case (the 2-D float
cases of the ONNX ops the importer handles, weights as initializers; `convbench.testing.onnx_conformance`) either
agrees with ONNX's expected output or is refused with a convbench error naming the reason recorded here. Never a
wrong answer, never a raw KeyError or IndexError out of the importer.

Before the mobile ops (pad, mul, hardswish, hardsigmoid, silu, clip, reshape), 81 of these 146 cases passed and
65 were refused; now 118 pass and the 28 below are refused.
"""

from __future__ import annotations

import functools

import pytest

onnx = pytest.importorskip("onnx")
from convbench.testing.onnx_conformance import node_cases, run_node_case  # noqa: E402

NOT_INFERENCE = "training"  # a training-only behaviour: the IR describes inference
# case -> a phrase its refusal must contain (why the IR cannot take it)
EXPECTED_REFUSALS = {
    # broadcasting other than mul's (N, C, 1, 1) gate: along the last axis of a rank-3 tensor
    "test_add_bcast": "no broadcasting",
    "test_mul_bcast": "broadcasts only (N, C, 1, 1)",
    # count_include_pad=0 excludes padding from the divisor, so the padding beyond the IR pool's symmetric
    # half-kernel cannot become a pad node
    "test_averagepool_2d_same_upper": "count_include_pad=0",
    "test_averagepool_2d_same_lower": "count_include_pad=0",
    "test_averagepool_2d_pads": "count_include_pad=0",
    "test_batchnorm_example_training_mode": NOT_INFERENCE,
    "test_batchnorm_epsilon_training_mode": NOT_INFERENCE,
    "test_training_dropout_default": NOT_INFERENCE,
    "test_training_dropout": NOT_INFERENCE,
    # a second output the IR op does not produce, returned by the graph
    "test_dropout_default_mask": "mask output is used",
    "test_dropout_default_mask_ratio": "mask output is used",
    "test_training_dropout_default_mask": "mask output is used",
    "test_training_dropout_mask": "mask output is used",
    "test_training_dropout_zero_ratio_mask": "mask output is used",
    "test_maxpool_with_argmax_2d_precomputed_pads": "Indices output is used",
    "test_maxpool_with_argmax_2d_precomputed_strides": "Indices output is used",
    "test_gemm_transposeA": "transA=1",
    "test_gemm_all_attributes": "transA=1",
    # ONNX's HardSigmoid with alpha/beta other than torch's 1/6, 1/2 (ONNX's own default is 0.2)
    "test_hardsigmoid_example": "alpha = 1/6",
    "test_hardsigmoid": "alpha = 1/6",
    "test_hardsigmoid_default": "alpha = 1/6",
    # batched or vector MatMul: linear takes a 2-D weight
    "test_matmul_3d": "not a 2-D weight",
    "test_matmul_4d": "not a 2-D weight",
    "test_matmul_bcast": "not a 2-D weight",
    "test_matmul_1d_3d": "not a 2-D weight",
    "test_matmul_4d_1d": "not a 2-D weight",
    "test_matmul_1d_1d": "not a 2-D weight",
    "test_reshape_allowzero_reordered": "empty dimension",  # a (0, 3, 4) tensor
}


@functools.cache
def cases() -> dict:
    return {c.name: c for c in node_cases()}


NAMES = sorted(cases())


def test_the_selection_is_what_the_note_counts():
    assert len(NAMES) == 146
    assert set(EXPECTED_REFUSALS) <= set(NAMES), sorted(set(EXPECTED_REFUSALS) - set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_onnx_node_case(name):
    result = run_node_case(cases()[name])
    assert result.status in ("pass", "refused"), f"{name}: {result.status}: {result.message}"
    if name in EXPECTED_REFUSALS:
        assert result.status == "refused", f"{name} now imports: remove it from EXPECTED_REFUSALS"
        assert EXPECTED_REFUSALS[name] in result.message, result.message
    else:
        assert result.status == "pass", result.message
