"""The Triton backend on the whole zoo (under the interpreter when there is no GPU): every model at its reduced
input size with batch 2 (the conformance suite's "small" cases), ResNet-18 at 224, and a float16 model."""

from __future__ import annotations

import pytest

from convbench.backends.triton import BACKEND
from convbench.testing import Expectations, conformance_params, model_case, run_case, slow_models

AVAILABLE, WHY = BACKEND.available()
needs_backend = pytest.mark.skipif(not AVAILABLE, reason=f"triton backend not available: {WHY}")


# One model per family in the fast subset: the interpreter takes 3-11 s per deeper model (measured, 2 workers).
FAST = ("lenet5", "alexnet", "googlenet", "resnet18", "mobilenet_v2", "squeezenet1_0", "mobilenet_v3_small",
        "efficientnet_lite0")
EXPECT = Expectations(slow=slow_models(FAST, "the Triton interpreter: 3-11 s a model"))


@pytest.mark.parametrize("item", conformance_params("triton", "models", EXPECT))
def test_models(item):
    item.check()


@needs_backend
def test_resnet18_at_224():
    case = model_case("resnet18", batch=1, image_size=224)
    exe = BACKEND.compile(case.graph, case.params)
    residual = [line for line in exe.report.details.plan if "+residual(" in line]
    assert len(residual) == 8, exe.report.details.plan  # every basic block: conv2 + BN + add + ReLU in one launch
    assert exe.report.details.launches == 23  # 20 convs (BN, adds and ReLUs inside), max pool, global pool, fc
    r = run_case(BACKEND, case)
    assert r.status == "pass", r.message
    assert r.agreement.top1 == 1.0


@needs_backend
@pytest.mark.parametrize("model", ["resnet18", "squeezenet1_0"])
def test_float16(model):
    """float16 storage, float32 accumulation. (Deeper nets drift past the float16 bound, 2% of max|logit|, on
    torch (CPU) as here, e.g. ResNet-50 5.5% / 5.4%, MobileNetV2 2.6% / 2.4%, GoogLeNet 2.2% / 2.6%.)"""
    r = run_case(BACKEND, model_case(model, batch=2, image_size=32), "float16")
    assert r.status == "pass", r.message
