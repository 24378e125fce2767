"""Triton's int8 linear (`kernels.triton.linear.linear_int8`, the rule `backends.triton.quant_rules.int8_linear`,
the pattern `ir.passes.int8_patterns.int8_linears`): the activation codes × the weight codes in an int32 tl.dot
(the int8 conv's kernel on the 1×1 view), its input's dequantize absorbed; against the float64 reference of the
quantized graph. Under the interpreter when there is no GPU: tiny shapes, every dim distinct."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.backends import get
from convbench.backends.correctness import compare
from convbench.backends.triton import BACKEND
from convbench.ir.builder import GraphBuilder
from convbench.ir.graph import Graph, Node, TensorType
from convbench.ir.ops._base import NoAttrs
from convbench.ir.ops.quantize_linear import QuantAttrs
from convbench.ir.passes.quantize import quantize_graph
from convbench.models import init_params

_ok, _why = BACKEND.available()  # the backend module has chosen the mode before anything imports triton
if not _ok:
    pytest.skip(_why, allow_module_level=True)

import torch  # noqa: E402

from convbench.kernels.triton import linear, runtime  # noqa: E402


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(runtime.DEVICE, torch.float32)


@pytest.mark.parametrize("shape, codes, per_channel, bias", [((2, 7), "int8", True, True),
                                                             ((2, 3, 7), "uint8", False, False)])
def test_linear_int8_is_the_dequantized_linear(shape, codes, per_channel, bias):
    """Σ (q_x − z_x)·q_w exact in int32, then s_x·s_w[o], bias, residual and relu: the float64 linear of the
    dequantized values to float32 rounding (the zero point is not 0, so its subtraction matters)."""
    rng = np.random.default_rng(5)
    lo = 0 if codes == "uint8" else -128
    xq = rng.integers(lo, lo + 256, shape).astype(np.float32)
    wq = rng.integers(-127, 128, (5, 7)).astype(np.int8)
    sx, zx = 0.041, lo + 117
    sw = 0.01 + 0.004 * np.arange(5) if per_channel else np.array([0.013])
    b = rng.standard_normal(5) if bias else None
    ref = ((xq.astype(np.float64) - zx) * sx) @ (wq.astype(np.float64) * sw.reshape(-1, 1)).T
    ref = ref + (b if bias else 0.0)
    r = rng.standard_normal(ref.shape)
    ref = np.maximum(ref + r, 0.0)
    packed = linear.pack_int8(torch.from_numpy(wq), _t(sw), sx, zx, _t(b) if bias else None, codes)
    y = linear.linear_int8(_t(xq), packed, residual=_t(r), activation="relu")
    assert tuple(y.shape) == ref.shape
    agreement = compare(y.to(torch.float64).cpu().numpy(), ref, "float32")
    assert agreement.ok, agreement


def _quantized_linear(shape: tuple[int, ...], bias: bool, relu: bool, activations: str):
    b = GraphBuilder("fc", shape)
    y = b.linear(b.input, 5, name="fc", bias=bias)
    graph = b.build(b.relu(y) if relu else y)
    rng = np.random.default_rng(1)
    calibration = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    qg, qp = quantize_graph(graph, init_params(graph, seed=1), calibration, activations=activations)
    x = rng.standard_normal(shape).astype(np.float32)
    return qg, qp, x, np.asarray(get("numpy").compile(qg, qp, dtype="float64")(x))


@pytest.mark.parametrize("shape, bias, relu, activations", [((2, 7), True, False, "int8"),
                                                            ((2, 3, 7), False, True, "int8"),
                                                            ((2, 7), True, True, "uint8")])
def test_a_quantized_linear_runs_on_the_codes(shape, bias, relu, activations):
    """The QDQ graph's linear (a fused_linear with its relu) is one int8 launch reading the input's codes: no
    dequantize launch, the warning counts it, and it agrees with the float64 reference to float32 rounding."""
    qg, qp, x, ref = _quantized_linear(shape, bias, relu, activations)
    exe = BACKEND.compile(qg, qp, dtype="int8")
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    assert exe.report.accuracy_dtype == "int8" and agreement.ok and agreement.max_rel < 1e-5, agreement
    plan = exe.report.details.plan
    lines = [line for line in plan if "linear int8 7→5 on the codes of input_quantized" in line]
    assert len(lines) == 1 and (" +bias" in lines[0]) == bias and lines[0].split("  [")[0].endswith(
        " relu" if relu else "bias" if bias else "input_quantized"), plan
    assert not any(line.startswith("input_dequantized:") for line in plan), plan
    assert exe.report.details.launches == 2, plan  # the input's quantize_linear, then the int8 linear
    assert any("0 of 0 convolutions and 1 of 1 linears run on the int8 codes" in w for w in exe.report.warnings), \
        exe.report.warnings


@pytest.mark.parametrize("weight", ["asymmetric", "axis1", "float"])
def test_a_linear_whose_weight_is_not_a_symmetric_int8_param_stays_float(weight):
    """An int8 weight with a zero point, one per-channel along the input axis, or a float weight: not the int8
    pattern, so the input's dequantize is launched and the linear runs in float32 (still the QDQ graph's value)."""
    xa = QuantAttrs((0.02,), (-3,))
    nodes = [Node("xq", "quantize_linear", ("x",), xa), Node("xd", "dequantize_linear", ("xq",), xa)]
    rng = np.random.default_rng(2)
    if weight == "float":
        params, w = {"w": rng.standard_normal((5, 7)).astype(np.float32)}, "w"
    else:
        wa = QuantAttrs((0.01,), (4,)) if weight == "asymmetric" else QuantAttrs(0.01 + 0.002 * np.arange(7), axis=1)
        params, w = {"w": rng.integers(-127, 128, (5, 7)).astype(np.int8)}, "wd"
        nodes.append(Node("wd", "dequantize_linear", ("w",), wa))
    nodes.append(Node("fc", "linear", ("xd", w), NoAttrs()))
    types = {"w": TensorType((5, 7), "float32" if weight == "float" else "int8")}
    graph = Graph({"x": TensorType((2, 7))}, nodes, ("fc",), types, name="fc")
    x = rng.standard_normal((2, 7)).astype(np.float32)
    ref = np.asarray(get("numpy").compile(graph, params, dtype="float64")(x))
    exe = BACKEND.compile(graph, params, dtype="int8")
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    assert agreement.ok, agreement
    plan = exe.report.details.plan
    assert not any("int8" in line for line in plan if line.startswith("fc:")), plan
    assert any(line.startswith("xd: dequantize_linear") for line in plan), plan
    assert any("0 of 1 linears run on the int8 codes" in w for w in exe.report.warnings), exe.report.warnings
