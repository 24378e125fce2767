"""Low precision on small graphs, the arithmetic check: torch float16 op conformance, and an int8 QDQ graph
(ir/passes/quantize.py) on torch (eager: exact quantize/dequantize arithmetic; compiled: oneDNN's u8×s8 kernels)
and on OpenVINO (its low-precision transformations), each against the float64 reference of that same quantized
graph under the int8 tolerance; TVM and Triton run a QDQ graph's exact arithmetic with float32 convs. Which
kernels ran is asserted from what each engine reports, not assumed."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.backends import get
from convbench.backends.base import BackendError, UnsupportedDtypeError
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.ir.ops.quantize_linear import QuantAttrs
from convbench.ir.passes.quantize import quantize_graph
from convbench.models import init_params
from convbench.testing import backend_or_skip, conformance_params

torch = pytest.importorskip("torch")
from convbench.backends.torch.quant_rules import QAdd, QConv2d, QMaxPool, QPad  # noqa: E402

SHAPE = (2, 3, 7, 5)  # every dim distinct


def _float_net():
    """conv → relu6, a depthwise conv, a 1×1 conv, the residual add, pooling and a linear head: each kind of
    layer the quantization pass rewrites (per-channel weights, int32 biases, a shared activation QDQ)."""
    b = GraphBuilder("qnet", SHAPE)
    y = b.relu6(b.conv2d(b.input, 4, 3, name="c1", padding=1))
    d = b.relu6(b.conv2d(y, 4, 3, name="dw", padding=1, groups=4))
    z = b.conv2d(d, 4, 1, name="c2")
    y = b.flatten(b.adaptive_avg_pool2d(b.add(y, z)))
    return b.build(b.linear(y, 6, name="fc"))


def _quantized(graph, seed: int, batches: int = 2):
    """``graph``'s QDQ graph calibrated on ``batches`` seeded normal inputs, its parameters (seeded alike), one
    more input drawn after them, and the float64 reference of the QDQ graph on it (one array per graph output)."""
    shape = next(iter(graph.inputs.values())).shape
    rng = np.random.default_rng(seed)
    calibration = [rng.standard_normal(shape).astype(np.float32) for _ in range(batches)]
    qg, qp = quantize_graph(graph, init_params(graph, seed=seed), calibration)
    x = rng.standard_normal(shape).astype(np.float32)
    return qg, qp, x, get("numpy").compile(qg, qp, dtype="float64")(x)


@pytest.fixture(scope="module")
def qnet():
    qg, qp, x, ref = _quantized(_float_net(), seed=0, batches=3)
    return qg, qp, x, np.asarray(ref)


@pytest.mark.parametrize("item", conformance_params("torch", "ops", dtype="float16"))
def test_torch_ops_float16(item):
    item.check()


@pytest.mark.parametrize("prepack", [True, False])
def test_torch_int8_eager_is_the_quantized_arithmetic(qnet, prepack):
    """With prepack (the CPU default) each conv is one oneDNN u8×s8 call on the codes; without, a float32 conv on
    the dequantized weights. Either is the QDQ graph's arithmetic to float32 rounding: the integer sums are exact."""
    qg, qp, x, ref = qnet
    exe = get("torch").compile(qg, qp, threads=1, prepack=prepack)
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    assert exe.report.accuracy_dtype == "int8" and agreement.ok, agreement
    assert agreement.max_rel < 1e-5, agreement
    convs = [m for m in exe.artifact.modules() if isinstance(m, QConv2d)]
    assert exe.report.details.int8_convs == len(convs) == (3 if prepack else 0)
    assert any(f"eagerly, {len(convs)} convolutions" in w for w in exe.report.warnings)
    if prepack:  # the convs read the codes: their inputs' and weights' dequantize_linear are gone
        code = exe.artifact.code
        # and fc's weight is a float32 constant, dequantized once at compile time, not an op per call
        assert "dequantize_per_channel" not in code and "relu6_dequantized =" not in code, code
        assert {m.activation for m in convs} == {"relu6", None}  # c1's ReLU6 is its post-op
        # only quantize_linear reads each conv's output: oneDNN writes the codes (c1's two readers share them)
        assert all(m.output[2] == torch.uint8 for m in convs), convs
        # the add reads the two codes and writes its own (torch's quantized add kernel)
        assert [type(m) for m in exe.artifact.modules() if isinstance(m, QAdd)] == [QAdd], code
        assert code.count("decomposed.quantize_per_tensor") == 3, code  # the input's, the pool's, flatten's
        assert any("3 of them write their output's uint8 codes" in w for w in exe.report.warnings)


def test_torch_int8_on_a_fused_qdq_graph_keeps_its_epilogues(qnet):
    """`passes.fuse` makes conv+ReLU6 between QDQ pairs one fused_conv2d: it runs in float32 on its dequantized
    weights (its activation is its own rule's), the plain conv2d left on the codes; the arithmetic is the same."""
    from convbench.ir.passes import fuse

    qg, qp, x, ref = qnet
    fused = fuse(qg)
    assert [n.op for n in fused.nodes if "conv" in n.op] == ["fused_conv2d", "fused_conv2d", "conv2d"]
    exe = get("torch").compile(fused, qp, threads=1)
    agreement = compare(np.asarray(exe(x)), ref, "int8")
    assert agreement.ok and agreement.max_rel < 1e-5 and exe.report.details.int8_convs == 1, agreement


def test_torch_int8_residual_add_relu_runs_on_the_codes():
    """ResNet's block end: conv (stride 2, padding 1×2) + the downsampled identity, then ReLU, read by two convs:
    one quantized add with the ReLU, writing the codes both convs read; the QDQ graph's arithmetic throughout."""
    b = GraphBuilder("qres", (2, 3, 9, 7))
    x = b.relu(b.conv2d(b.input, 5, 3, name="stem", padding=1))
    y = b.conv2d(x, 6, 3, name="c", stride=2, padding=(1, 2))
    z = b.relu(b.add(y, b.conv2d(x, 6, 1, name="down", stride=2, padding=(0, 1))))
    graph = b.build([b.conv2d(z, 4, 1, name="after1"), b.conv2d(z, 2, 3, name="after2", padding=1)])
    qg, qp, x, ref = _quantized(graph, seed=1)
    exe = get("torch").compile(qg, qp, threads=1)
    for y, r in zip(exe(x), ref, strict=True):
        agreement = compare(np.asarray(y), np.asarray(r), "int8")
        assert agreement.ok and agreement.max_rel < 1e-5, agreement
    adds = [m for m in exe.artifact.modules() if isinstance(m, QAdd)]
    assert len(adds) == 1 and adds[0].relu and exe.report.details.int8_convs == 5
    assert "decomposed.dequantize" not in exe.artifact.code, exe.artifact.code


def test_torch_int8_same_padding_pads_the_codes():
    """TF "same" padding (EfficientNet-Lite): dequantize → pad (0, 1, 0, 2) → quantize alike is a pad of the codes
    with their zero point, channels_last kept for the strided depthwise conv that reads them."""
    b = GraphBuilder("qpad", (2, 4, 9, 7))
    x = b.relu6(b.conv2d(b.input, 6, 1, name="expand"))
    y = b.relu6(b.conv2d(b.pad(x, (0, 1, 0, 2)), 6, 3, name="dw", stride=2, groups=6))
    graph = b.build(b.conv2d(y, 3, 1, name="project"))
    qg, qp, x, ref = _quantized(graph, seed=2)
    exe = get("torch").compile(qg, qp, threads=1)
    agreement = compare(np.asarray(exe(x)), np.asarray(ref), "int8")
    assert agreement.ok and agreement.max_rel < 1e-5, agreement
    pads = [m for m in exe.artifact.modules() if isinstance(m, QPad)]
    assert len(pads) == 1 and pads[0].zero == 128 + qg.node_by_name["relu6_quantized"].attrs.zero_point[0], pads
    assert "decomposed" not in exe.artifact.code.split("self.expand")[1], exe.artifact.code  # codes only after


@pytest.mark.parametrize("window", [dict(kernel_size=3, stride=2, padding=1),  # ResNet's stem pool
                                    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                                         ceil_mode=True)])
def test_torch_int8_max_pool_pools_the_codes(window):
    """dequantize → max pool → quantize alike (ir/passes/quantize.SHARED) is the pool of the uint8 codes
    (`QMaxPool`): max commutes with the monotone dequantize, padding is never the max; the float64 reference of
    the QDQ graph to float32 rounding, channels_last kept for the conv that reads it."""
    b = GraphBuilder("qpool", (2, 3, 13, 11))
    x = b.relu(b.conv2d(b.input, 5, 3, name="stem", stride=2, padding=(1, 2)))
    graph = b.build(b.conv2d(b.max_pool2d(x, **window), 4, 1, name="after"))
    qg, qp, x, ref = _quantized(graph, seed=3)
    exe = get("torch").compile(qg, qp, threads=1)
    agreement = compare(np.asarray(exe(x)), np.asarray(ref), "int8")
    assert agreement.ok and agreement.max_rel < 1e-5, agreement
    pools = [m for m in exe.artifact.modules() if isinstance(m, QMaxPool)]
    assert len(pools) == 1 and exe.report.details.int8_convs == 2, exe.artifact.code
    assert "decomposed" not in exe.artifact.code.split("self.stem")[1], exe.artifact.code  # codes only after
    assert any("1 zero pads and max pools run on the codes" in w for w in exe.report.warnings)


@pytest.mark.slow  # inductor compiles C++: ~10 s on 2 cores
def test_torch_int8_compile_runs_onednn_int8_kernels(qnet):
    qg, qp, x, ref = qnet
    exe = get("torch").compile(qg, qp, threads=1, compile=True)
    agreement = compare(np.asarray(exe(x)), ref, "int8")
    assert agreement.ok, agreement
    d = exe.report.details
    # inductor matched dequantize → conv/linear into onednn.qconv/qlinear (u8 activations × s8 weights)
    assert (d.int8_convs, d.int8_linears) == (3, 1), d
    assert not exe.report.warnings


def test_torch_int8_graph_runs_at_float32_only(qnet):
    qg, qp, _, _ = qnet
    with pytest.raises(UnsupportedDtypeError, match="int8 QDQ graph: it runs with dtype int8 or float32"):
        get("torch").compile(qg, qp, dtype="bfloat16")


def test_torch_reports_the_kernels_a_16_bit_dtype_gets():
    graph = _float_net()
    params = init_params(graph, seed=1)
    bf16 = get("torch").compile(graph, params, dtype="bfloat16", threads=1)
    assert bf16.report.details.cpu_isa and not bf16.report.warnings
    fp16 = get("torch").compile(graph, params, dtype="float16", threads=1)
    if torch.ops.mkldnn._is_mkldnn_fp16_supported():  # AVX512-FP16 / AMX-FP16: oneDNN runs it, nothing to say
        assert not fp16.report.warnings
    else:
        assert any("ATen's fallback kernels" in w for w in fp16.report.warnings), fp16.report.warnings


def _openvino():
    b = get("openvino")
    ok, why = b.available()
    if not ok:
        pytest.skip(why)
    return b


def test_openvino_int8_runs_int8_layers(qnet):
    qg, qp, x, ref = qnet
    exe = _openvino().compile(qg, qp, threads=1, precision="int8")
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    assert exe.report.accuracy_dtype == "int8" and agreement.ok, agreement
    # the runtime model's u8 layers: at least the three convolutions and the linear head, none of them left in f32
    # (4 on Zen 4, where the residual add fuses into c2 as a sum post-op; 5 on an AMX Xeon: the count is the CPU's)
    assert exe.report.details.int8_layers >= 4, exe.report.details
    assert not exe.report.warnings
    assert set(_conv_precisions(exe).values()) <= {"u8", "i8"}, _conv_precisions(exe)


def _conv_precisions(exe) -> dict[str, str]:
    """Each convolution of OpenVINO's runtime model: the precision it reads."""
    return {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str).lower()
            for op in exe.artifact.get_runtime_model().get_ops()
            if op.get_rt_info()["layerType"].astype(str) == "Convolution"}


def test_openvino_int8_convolutions_read_the_codes():
    """Asymmetric int8 activations go to OpenVINO as u8 codes (zero point + 128: `as_uint8`), the same real values:
    on an AMX CPU it ran convs of 64 channels on i8 codes in f32 (brgconv_avx512_f32: ResNet-50 b1 41.6 ms, and
    5.9 ms with u8 codes, brgconv_avx512_amx_I8). The QDQ graph's arithmetic either way."""
    b = GraphBuilder("qwide", (2, 64, 11, 9))
    x = b.relu(b.conv2d(b.input, 48, 3, name="c1", padding=(1, 2)))
    graph = b.build(b.conv2d(x, 40, 1, name="c2"))
    qg, qp, x, ref = _quantized(graph, seed=4)
    assert all(qg.node_by_name[q].attrs.zero_point[0] != 0 for q in ("input_quantized", "relu_quantized"))
    exe = _openvino().compile(qg, qp, threads=1, precision="int8")
    agreement = compare(np.asarray(exe(x)), np.asarray(ref), "int8")
    assert agreement.ok, agreement
    assert _conv_precisions(exe) == {"c1": "u8", "c2": "u8"}, _conv_precisions(exe)


def test_openvino_int8_needs_a_quantized_graph_and_a_quantized_graph_runs_f32_around_it(qnet):
    qg, qp, _, _ = qnet
    with pytest.raises(BackendError, match="precision='int8' needs a quantized graph"):
        _openvino().compile(_float_net(), init_params(_float_net()), precision="int8")
    with pytest.raises(UnsupportedDtypeError, match=r"is quantized .*not 'bf16'"):
        _openvino().compile(qg, qp, precision="bf16")


@pytest.mark.parametrize("backend", ["torch", "openvino", "triton", pytest.param("tvm", marks=pytest.mark.slow)])
def test_dtype_int8_is_the_quantized_graph_and_refuses_a_float_one(qnet, backend):
    """``--dtype int8`` (what check/run ask after quantizing): the QDQ graph's arithmetic, never a float32 run."""
    qg, qp, x, ref = qnet
    b = _openvino() if backend == "openvino" else backend_or_skip(backend)
    exe = b.compile(qg, qp, dtype="int8", threads=1)
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    assert exe.report.dtype == exe.report.accuracy_dtype == "int8" and agreement.ok, agreement
    with pytest.raises(BackendError, match=r"int8.*needs a quantized graph|int8 runs a quantized"):
        b.compile(_float_net(), init_params(_float_net()), dtype="int8")


@pytest.mark.parametrize("backend", [pytest.param("tvm", marks=pytest.mark.slow), "triton"])  # TVM: two builds, ~3 s
def test_int8_rounds_half_to_even_warns_and_refuses_float16(qnet, backend):
    """quantize_linear's ties go to the even code, as ONNX and the reference do (TVM's round is LLVM nearbyint,
    Triton's kernel rounds by hand: kernels/triton/quant.py); the report says the convs ran in float32; a QDQ
    graph is never relabelled float16."""
    b = backend_or_skip(backend)
    g = GraphBuilder("ties", (2, 5))
    q = g.node("quantize_linear", [g.input], QuantAttrs((0.5,), (3,)), name="q")
    graph = g.build(g.node("dequantize_linear", [q], QuantAttrs((0.5,), (3,)), name="dq"))
    x = np.array([[0.25, 0.75, 1.25, -0.25, -1.25], [63.0, 64.0, -65.25, -66.0, 0.0]], np.float32)
    got = np.asarray(b.compile(graph, {}, dtype="int8", threads=1)(x))
    want = np.asarray(get("numpy").compile(graph, {}, dtype="float64")(x))
    # x / 0.5 = 0.5, 1.5, 2.5, -0.5, -2.5 round to 0, 2, 2, -0, -2 (then + 3, saturated to [-128, 127])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[0], [0.0, 1.0, 1.0, 0.0, -1.0])
    qg, qp, x, _ = qnet
    exe = b.compile(qg, qp, dtype="int8", threads=1)
    assert any("int8" in w and "float32" in w for w in exe.report.warnings), exe.report.warnings  # what ran how
    with pytest.raises(UnsupportedDtypeError, match="int8 QDQ graph: it runs with dtype int8"):
        b.compile(qg, qp, dtype="float16")


@pytest.mark.parametrize("layout, activations", [("nhwc", "int8"), ("nchw", "int8"), ("nhwc", "uint8")])
def test_triton_int8_convs_read_the_codes(qnet, layout, activations):
    """The three convs run on their input's codes (its dequantize absorbed, no launch): the conv and the 1×1 as
    int8 tl.dot kernels (uint8 codes shifted into int8), the depthwise one as exact integer sums; the linear too
    (tests/test_triton_int8_linear.py); all against the float64 reference of the quantized graph, to float32
    rounding."""
    qg, qp, x, ref = qnet
    if activations == "uint8":
        rng = np.random.default_rng(0)
        calibration = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(3)]
        qg, qp = quantize_graph(_float_net(), init_params(_float_net(), seed=0), calibration, activations="uint8")
        ref = np.asarray(get("numpy").compile(qg, qp, dtype="float64")(x))
    exe = backend_or_skip("triton").compile(qg, qp, dtype="int8", layout=layout)
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    assert agreement.ok and agreement.max_rel < 1e-5, agreement
    plan = exe.report.details.plan
    int8 = [line for line in plan if "conv2d int8" in line]
    assert len(int8) == 3 and "on the codes of input_quantized" in int8[0], plan
    assert not any(line.startswith(("input_dequantized:", "relu6_dequantized:", "relu6_1_dequantized:"))
                   for line in plan)
    assert sum(": linear int8 " in line for line in plan) == 1, plan
    assert any("3 of 3 convolutions and 1 of 1 linears run on the int8 codes" in w for w in exe.report.warnings), \
        exe.report.warnings


def _relu_net():
    b = GraphBuilder("relunet", SHAPE)
    y = b.relu(b.conv2d(b.input, 4, 3, name="c1", padding=1))
    y = b.add(y, b.conv2d(y, 4, 1, name="c2"))
    return b.build(b.linear(b.flatten(b.adaptive_avg_pool2d(y)), 6, name="fc"))


@pytest.mark.slow  # three TVM builds: ~4 s
def test_tvm_float16_is_mixed_precision_where_it_converts_and_refused_where_not():
    b = get("tvm")
    ok, why = b.available()
    if not ok:
        pytest.skip(why)
    graph = _relu_net()
    params = init_params(graph, seed=2)
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    ref = np.asarray(get("numpy").compile(graph, params, dtype="float64")(x))
    exe = b.compile(graph, params, dtype="float16", threads=1)
    agreement = compare(np.asarray(exe(x)), ref, exe.report.accuracy_dtype)
    # float16 operands (1e-3 relative rounding each), float32 accumulation: well inside the float16 bound, and
    # not float32's exactness either (a float32 run under a float16 label would be ~1e-7)
    assert exe.report.accuracy_dtype == "float16" and agreement.ok and agreement.max_rel > 1e-5, agreement
    assert any("ToMixedPrecision" in w for w in exe.report.warnings)
    # relu6 lowers to R.clip, whose PrimValue bounds TVM 0.27's pass cannot type: refused, not run as float32
    with pytest.raises(UnsupportedDtypeError, match="ToMixedPrecision cannot convert"):
        b.compile(_float_net(), init_params(_float_net()), dtype="float16")
    with pytest.raises(UnsupportedDtypeError, match="bfloat16"):
        b.compile(graph, params, dtype="bfloat16")
