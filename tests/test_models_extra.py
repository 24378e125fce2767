"""MobileNetV2, SqueezeNet 1.0, DenseNet-121, Inception v3: torchvision's published counts exactly, its state_dict
keys, and the same outputs as torchvision-layout torch modules (written in _torchvision_layout.py) given the same
weights; and relu6, the op MobileNetV2 brought."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.ir import ops
from convbench.ir.analysis import summarize
from convbench.ir.errors import IRError
from convbench.ir.graph import TensorType
from convbench.ir.ops._base import NoAttrs
from convbench.ir.verify import verify
from convbench.models.inception import inception_v3

# torchvision's model table: parameters and "GFLOPS" (= conv + linear MACs, bias excluded) at the native size.
PUBLISHED = {
    "mobilenet_v2": (3_504_872, 0.301),
    "squeezenet1_0": (1_248_424, 0.819),
    "densenet121": (7_978_856, 2.834),
    "inception_v3": (23_834_568, 5.713),  # inference graph: torchvision runs AuxLogits only in training
}
# torchvision's meta "min_size"; squeezenet's is 21 there because torch's ceil_mode pools accept a window wider
# than their input (2 rows, kernel 3), which the IR's shape rule refuses.
MIN_SIZE = {"mobilenet_v2": 1, "squeezenet1_0": 21, "densenet121": 29, "inception_v3": 75}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts(name):
    params, gmacs = PUBLISHED[name]
    s = summarize(verify(cb.models.build(name)))
    assert s.params == params
    assert round(s.macs / 1e9, 3) == gmacs


def test_inception_v3_with_aux_head_has_torchvision_s_parameter_count():
    g = verify(inception_v3(aux_logits=True))
    s = summarize(g)
    assert s.params == 27_161_264  # torchvision's num_params: its checkpoint carries AuxLogits
    assert round(s.macs / 1e9, 3) == 5.719  # not the published 5.713: torchvision counts the eval graph
    assert [g.types[o].shape for o in g.outputs] == [(1, 1000), (1, 1000)]
    assert "AuxLogits.conv1.conv.weight" in g.params and g.outputs[1] == "AuxLogits.fc"
    with pytest.raises(IRError, match="AuxLogits"):  # the aux head needs a 17×17 Mixed_6e: 299 input
        inception_v3(image_size=298, aux_logits=True)


@pytest.mark.parametrize("name", sorted(MIN_SIZE))
def test_min_image_size(name):
    spec = cb.models.spec(name)
    assert spec.min_image_size == MIN_SIZE[name]
    verify(cb.models.build(name, image_size=spec.min_image_size))
    if spec.min_image_size > 1:
        with pytest.raises(IRError):
            cb.models.build(name, image_size=spec.min_image_size - 1)


def test_architecture_details():
    mb = cb.models.build("mobilenet_v2")
    assert mb.types["features.18.2"].shape == (1, 1280, 7, 7)
    assert sum(n.op == "add" for n in mb.nodes) == 10  # residuals where stride 1 keeps the channels
    assert [n.attrs.groups for n in mb.nodes if n.name == "features.2.conv.1.0"] == [96]  # depthwise
    dn = cb.models.build("densenet121")
    assert dn.types["features.denseblock4.cat"].shape == (1, 1024, 7, 7)
    assert dn.types["features.transition3.pool"].shape == (1, 512, 7, 7)
    inc = cb.models.build("inception_v3")
    assert [inc.types[f"Mixed_{m}.cat"].shape[1:] for m in ("5d", "6e", "7c")] == [
        (288, 35, 35), (768, 17, 17), (2048, 8, 8)]
    assert inc.params["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)  # asymmetric kernels
    sq = cb.models.build("squeezenet1_0")
    assert sq.types["features.12.cat"].shape == (1, 512, 13, 13)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_matches_torchvision_layout_module(name):
    """Same keys (a torchvision checkpoint loads strictly) and the same logits in float64 as the torch module."""
    from _torchvision_layout import MODULES

    spec = cb.models.spec(name)
    g = cb.models.build(name, batch=2, image_size=spec.small_image_size, num_classes=10)
    params = cb.models.init_params(g, seed=0)
    module = MODULES[name](num_classes=10).double().eval()
    keys = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(g.params)
    module.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in params.items()}, strict=False)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    agreement = compare(cb.backends.get("numpy").compile(g, params, dtype="float64")(x), want, "float64")
    assert agreement.ok, agreement.reason


def test_inception_aux_keys_match_torchvision_layout():
    from _torchvision_layout import InceptionV3

    keys = {k for k in InceptionV3(aux_logits=True).state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(inception_v3(aux_logits=True).params)


def test_relu6_reference_matches_torch():
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 5)) * 5
    x[0, 0, 0, :3] = [0.0, 6.0, -0.0]
    op = ops.get("relu6")
    np.testing.assert_array_equal(op.reference(NoAttrs(), x), torch.nn.functional.relu6(torch.from_numpy(x)).numpy())
    t = TensorType((2, 3, 7, 5))
    assert op.infer(NoAttrs(), [t]) == t and op.flops(NoAttrs(), [t], t) == 2 * t.numel
