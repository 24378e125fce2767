"""ir/passes/quantize.py: calibration (min/max and percentile observers), QDQ placement (conv/linear inputs, the
residual add, per-channel int8 weights, int32 biases), BN folded first, the pipeline keeping the weight QDQ, and
the errors; dimensions distinct (N=2, C=3, H=7, W=5)."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.backends.numpy_ref import BACKEND as NUMPY
from convbench.ir.builder import GraphBuilder
from convbench.ir.errors import IRError
from convbench.ir.passes import quantize, run_pipeline
from convbench.ir.passes.quantize import BIAS_MAX, is_quantized, quantize_graph, weight_max
from convbench.models import init_params


def residual_net():
    """conv(stride 2, pad 1) → BN → relu → grouped conv → add(residual) → pool → flatten → linear."""
    b = GraphBuilder("qnet", (2, 3, 9, 7))
    x = b.relu(b.batch_norm(b.conv2d(b.input, 6, 3, stride=2, padding=1, bias=False, name="c1"), name="bn1"),
               name="r1")
    y = b.conv2d(x, 6, 3, padding=1, groups=3, name="c2")
    z = b.add(y, x, name="res")
    return b.build(b.linear(b.flatten(b.adaptive_avg_pool2d(z, 1, name="pool"), name="flat"), 4, name="fc"))


def calib(shape=(2, 3, 9, 7), n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def net():
    g = residual_net()
    return g, init_params(g, seed=3)


@pytest.mark.parametrize("bits", [8, 7])
def test_placement_weights_biases_and_activations(net, bits):
    g, p = net
    qg, qp = quantize_graph(g, p, calib(), weight_bits=bits)
    ops = {n.name: n for n in qg.nodes}
    assert "bn1" not in ops and not any(n.op == "batch_norm" for n in qg.nodes)  # folded before quantizing
    for conv in ("c1", "c2", "fc"):
        x, w, bias = ops[conv].inputs
        assert ops[x].op == ops[w].op == ops[bias].op == "dequantize_linear"
        wq = ops[w].inputs[0]
        assert qg.params[wq].dtype == "int8" and qp[wq].dtype == np.int8 and np.abs(qp[wq]).max() == weight_max(bits)
        assert ops[w].attrs.axis == 0 and len(ops[w].attrs.scale) == qg.params[wq].shape[0]
        assert set(ops[w].attrs.zero_point) == {0}  # symmetric per output channel
        bq = ops[bias].inputs[0]
        assert qg.params[bq].dtype == "int32" and ops[bias].attrs.dtype == "int32"
        x_scale = ops[x].attrs.scale[0]
        assert np.allclose(ops[bias].attrs.scale, np.float32(x_scale) * np.asarray(ops[w].attrs.scale, np.float32))
    # the residual add reads both inputs dequantized; r1 (read by c2 and the add) has one pair per reader, alike
    assert all(ops[i].op == "dequantize_linear" for i in ops["res"].inputs)
    pairs = [n for n in qg.nodes if n.op == "quantize_linear" and n.inputs == ("r1",)]
    assert [n.name for n in pairs] == ["r1_quantized", "r1_quantized@res"] and pairs[0].attrs == pairs[1].attrs
    # fc's input is made by flatten ← pool (MOVERS), so the pool's input is quantized too: the add's output;
    # the relu reads the conv's float output (its own output is what is quantized)
    assert ops["pool"].inputs == ("res_dequantized",) and ops["flat"].inputs == ("pool_dequantized",)
    assert ops["r1"].inputs == ("c1",)
    assert set(qg.params) == {n for n in qp} and all(t.dtype in ("int8", "int32") for t in qg.params.values())


def test_minmax_scales_cover_the_calibration_range_and_percentile_clips_an_outlier(net):
    g, p = net
    cal = calib()
    qg, _ = quantize_graph(g, p, cal, observer="minmax")
    q_in = next(n for n in qg.nodes if n.name == "input_quantized").attrs
    lo, hi = min(float(c.min()) for c in cal), max(float(c.max()) for c in cal)
    assert q_in.dtype == "int8" and np.isclose(q_in.scale[0], (hi - lo) / 255, rtol=1e-6)
    assert np.isclose(-128 - lo / q_in.scale[0], q_in.zero_point[0], atol=0.5)
    # percentile: a batch's 99.99 % point of 18 432 values falls between its 2nd and 3rd largest, so one pixel of
    # 1000 no longer sets the whole scale (min/max takes it)
    b = GraphBuilder("wide", (2, 3, 64, 48))
    g1 = b.build(b.conv2d(b.input, 4, 1, name="c"))
    p1 = init_params(g1, seed=0)
    spiked = calib((2, 3, 64, 48), n=1)
    spiked[0][0, 0, 0, 0] = 1000.0
    wide = next(n for n in quantize_graph(g1, p1, spiked)[0].nodes if n.name == "input_quantized").attrs
    tight = next(n for n in quantize_graph(g1, p1, spiked, observer="percentile")[0].nodes
                 if n.name == "input_quantized").attrs
    assert wide.scale[0] > 1000 / 255 and tight.scale[0] < 10 / 255


def test_symmetric_and_uint8_activations(net):
    g, p = net
    sym = next(n for n in quantize_graph(g, p, calib(), symmetric=True)[0].nodes if n.op == "quantize_linear")
    u8 = next(n for n in quantize_graph(g, p, calib(), activations="uint8")[0].nodes if n.op == "quantize_linear")
    assert sym.attrs.zero_point == (0,) and sym.attrs.dtype == "int8"
    assert u8.attrs.dtype == "uint8" and 0 < u8.attrs.zero_point[0] < 255
    with pytest.raises(IRError, match="symmetric activations are int8"):
        quantize_graph(g, p, calib(), activations="uint8", symmetric=True)


def test_the_quantized_graph_stays_close_to_the_float_graph(net):
    g, p = net
    cal = calib(n=4)
    qg, qp = quantize_graph(g, p, cal)
    x = cal[1]
    y = NUMPY.compile(g, p, dtype="float64")(x)
    yq = NUMPY.compile(qg, qp, dtype="float64")(x)
    assert np.abs(yq - y).max() <= 0.05 * np.abs(y).max()  # 8-bit steps of ~1/255 of each range, a few layers
    assert not np.array_equal(yq, y)


def test_the_default_pipeline_keeps_the_weight_qdq_and_fuses_only_inside_the_pairs(net):
    g, p = net
    qg, qp = quantize_graph(g, p, calib())
    out = run_pipeline(qg, qp, "default")
    ops_after = [n.op for n in out.graph.nodes]
    assert ops_after.count("dequantize_linear") == [n.op for n in qg.nodes].count("dequantize_linear")
    assert is_quantized(out.graph) and "fused_conv2d" in ops_after  # c1 + relu fused; the pairs stay around it
    x = calib(seed=5)[0]
    a = NUMPY.compile(qg, qp, dtype="float64")(x)
    b = NUMPY.compile(out.graph, out.params, dtype="float64")(x)
    assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()


def test_a_dead_channel_with_a_bias_keeps_its_int32_code_in_float32_range():
    b = GraphBuilder("dead", (2, 3, 7, 5))
    g = b.build(b.conv2d(b.input, 4, 3, name="c"))
    p = init_params(g, seed=0)
    p["c.weight"][1] = 1e-12  # a channel BN folding left at ~0, with a bias of order one
    p["c.bias"][1] = 0.7
    qg, qp = quantize_graph(g, p, calib((2, 3, 7, 5)))
    assert np.abs(qp["c.bias_quantized"]).max() <= BIAS_MAX
    x = calib((2, 3, 7, 5), seed=9)[0]
    y = NUMPY.compile(qg, qp, dtype="float64")(x)
    assert np.allclose(y[:, 1], 0.7, atol=1e-3)


def test_errors_name_what_is_wrong(net):
    g, p = net
    qg, qp = quantize_graph(g, p, calib())
    with pytest.raises(IRError, match="already quantized"):
        quantize_graph(qg, qp, calib())
    with pytest.raises(IRError, match=r"calibration batch 0: input 'input' has shape \(2, 3, 5, 5\)"):
        quantize_graph(g, p, [np.zeros((2, 3, 5, 5), np.float32)])
    with pytest.raises(IRError, match="unknown observer 'entropy'"):
        quantize_graph(g, p, calib(), observer="entropy")
    with pytest.raises(IRError, match="no calibration batches"):
        quantize_graph(g, p, [])


def test_quantize_model_calibrates_an_image_graph_on_the_photographs_and_says_how():
    pytest.importorskip("skimage", reason="convbench[weights] is not installed")
    from convbench.testing.quantized import photo_calibration, quantize_model

    b = GraphBuilder("tiny", (1, 3, 32, 32))
    g = b.build(b.conv2d(b.input, 4, 3, name="c"))
    p = init_params(g, seed=0)
    qg, _, settings = quantize_model(g, p, views=1)
    cal = photo_calibration(32, "imagenet", views=1)
    lo, hi = min(float(c.min()) for c in cal), max(float(c.max()) for c in cal)
    q_in = next(n for n in qg.nodes if n.name == "input_quantized").attrs
    assert lo < -1.5 and hi > 1.5 and q_in.scale[0] <= (hi - lo) / 255 * (1 + 1e-6)  # the photographs' range
    assert settings["observer"] == "percentile" and "photographs: 1 views each" in settings["calibration"]
    with pytest.raises(ValueError, match="not an image graph"):
        quantize_model(*net_graph_params(), inputs=None)


def net_graph_params():
    g = residual_net()  # (2, 3, 9, 7): too small to be a photograph
    return g, init_params(g, seed=3)


def test_a_zero_pad_and_a_max_pool_quantize_their_output_as_their_input():
    """Their outputs hold only input values (and 0): one quantization, so an engine moves the codes themselves;
    an average pool makes new values and is calibrated on its own."""
    b = GraphBuilder("movers", (2, 3, 9, 7))
    x = b.relu(b.conv2d(b.input, 4, 3, name="c1", padding=1))
    p = b.max_pool2d(b.pad(x, (0, 1, 0, 2)), 3, stride=2)
    y = b.conv2d(p, 5, 1, name="c2")
    g = b.build(b.conv2d(b.avg_pool2d(y, 2), 3, 1, name="c3"))
    qg, _ = quantize_graph(g, init_params(g, seed=0), calib(), observer="percentile", percentile=99.0)
    attrs = {n.inputs[0]: n.attrs for n in qg.nodes if n.op == "quantize_linear"}
    pad, pool = (n.name for n in qg.nodes if n.op in ("pad", "max_pool2d"))
    assert attrs[x] == attrs[pad] == attrs[pool]
    avg = next(n.name for n in qg.nodes if n.op == "avg_pool2d")
    assert attrs[avg] != attrs[y]


@pytest.mark.parametrize(("flags", "bits"), [
    ({"sse2", "avx2"}, 7),  # a Zen 3: VPMADDUBSW's int16 pairs saturate at 8-bit weights
    ({"sse2", "avx2", "avx512f", "avx512_vnni"}, 8), ({"sse2", "avx2", "avx_vnni"}, 8),
    ({"sse2", "amx_int8"}, 8), ({"asimd", "asimddp"}, 8)])  # an aarch64 CPU: no VPMADDUBSW
def test_the_default_weight_width_is_what_the_cpu_computes_exactly(net, monkeypatch, flags, bits):
    from convbench.bench import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    assert quantize.host_weight_bits() == bits
    g, p = net
    qg, qp = quantize_graph(g, p, calib())
    assert max(int(np.abs(qp[k]).max()) for k, t in qg.params.items() if t.dtype == "int8") == weight_max(bits)
    with pytest.raises(IRError, match="weight_bits must be one of"):
        quantize_graph(g, p, calib(), weight_bits=4)


def test_mse_clip_rounds_each_channel_with_no_more_error_than_its_full_range():
    """Normal, Laplace and Student-t(2) channels of 1152 weights: the heavier the tail, the more clipping pays."""
    rng = np.random.default_rng(5)
    w = np.stack([rng.standard_normal((128, 3, 3)), rng.laplace(size=(128, 3, 3)), rng.standard_t(2, (128, 3, 3))])
    full, fa = quantize.weight_codes(w, bits=7, clip="absmax")
    mse, ma = quantize.weight_codes(w, bits=7, clip="mse")

    def err(codes, attrs):
        return ((codes * np.asarray(attrs.scale)[:, None, None, None] - w) ** 2).reshape(3, -1).sum(axis=1)

    assert (err(mse, ma) <= err(full, fa) * (1 + 1e-6)).all() and err(mse, ma)[2] < err(full, fa)[2]
    ratios = np.asarray(ma.scale) / np.asarray(fa.scale)
    assert ratios[2] < 1 and all(min(abs(r - c) for c in quantize.CLIP_RATIOS) < 1e-6 for r in ratios)
    assert np.abs(mse).max() == weight_max(7)


@pytest.mark.parametrize("groups", [1, 3])
def test_mean_shift_is_the_output_shift_of_the_weight_error_on_a_channel_constant_input(groups):
    rng = np.random.default_rng(groups)
    error = rng.standard_normal((6, 6 // groups, 3, 2))
    mean = rng.standard_normal(6)
    x = np.broadcast_to(mean[None, :, None, None], (2, 6, 7, 5)).copy()
    b = GraphBuilder("shift", (2, 6, 7, 5))
    g = b.build(b.conv2d(b.input, 6, (3, 2), groups=groups, bias=False, name="c"))
    y = NUMPY.compile(g, {"c.weight": error}, dtype="float64")(x)
    assert np.allclose(y, quantize.mean_shift(error, mean, groups)[None, :, None, None])
    linear_error = rng.standard_normal((4, 6))
    assert np.allclose(quantize.mean_shift(linear_error, mean), linear_error @ mean)


def test_bias_correction_removes_the_mean_error_the_weights_rounding_adds():
    """conv (stride 2, dilation 2; no padding, where every tap sees E[x]): each output channel's mean over the
    calibration batches is off by the weight rounding's Σ Δw·E[x] without the correction; with it, only the
    activations' rounding is left (measured: max 0.0067 against 0.038). The input's channel means are far from 0,
    as post-ReLU activations' are."""
    b = GraphBuilder("bc", (2, 3, 7, 5))
    g = b.build(b.conv2d(b.input, 4, 3, stride=2, padding=0, dilation=2, name="c"))
    p = init_params(g, seed=2)
    cal = [x + np.array([3.0, -2.0, 5.0], np.float32)[None, :, None, None] for x in calib((2, 3, 7, 5), n=4)]
    ref = np.concatenate([NUMPY.compile(g, p, dtype="float64")(x) for x in cal])

    def mean_error(correct: bool) -> np.ndarray:
        qg, qp = quantize_graph(g, p, cal, weight_bits=7, weight_clip="absmax", bias_correction=correct)
        y = np.concatenate([NUMPY.compile(qg, qp, dtype="float64")(x) for x in cal])
        return np.abs((y - ref).mean(axis=(0, 2, 3)))

    assert mean_error(True).max() < 0.3 * mean_error(False).max()
    with pytest.raises(IRError, match="weight_clip must be one of"):
        quantize_graph(g, p, cal, weight_clip="entropy")
