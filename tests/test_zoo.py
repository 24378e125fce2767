"""The zoo: torchvision's published parameter and MAC table, exact; names; initialisation."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.ir.analysis import summarize
from convbench.ir.verify import verify

# torchvision's published table: params / conv+linear MACs at 224×224 (MACs None where only params are quoted).
PUBLISHED = {
    "alexnet": (61_100_840, 714_188_480),
    "vgg11": (132_863_336, 7_609_090_048),
    "vgg13": (133_047_848, 11_308_466_176),
    "vgg16": (138_357_544, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464),
    "vgg11_bn": (132_868_840, 7_609_090_048),
    "vgg16_bn": (138_365_992, 15_470_264_320),
    "vgg19_bn": (143_678_248, 19_632_062_464),
    "googlenet": (6_624_904, 1_498_376_192),
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 4_089_184_256),
    "resnet101": (44_549_160, 7_801_405_440),
    "resnet152": (60_192_808, 11_513_626_624),
    "lenet5": (61_706, 416_520),
    "alexnet_2012": (62_378_344, None),
    "mobilenet_v3_large": (5_483_032, None),
    "mobilenet_v3_small": (2_542_856, None),
    "efficientnet_b0": (5_288_548, None),
    # the port's own module counted independently (torch.utils.flop_counter): exact
    "efficientnet_lite0": (4_652_008, 385_187_552),
    "efficientnet_lite1": (5_416_680, 600_185_232),
    "efficientnet_lite2": (6_092_072, 859_736_272),
}
# torchvision publishes these MACs to three decimals of a GMAC only
PUBLISHED_GMACS = {"mobilenet_v3_large": 0.217, "mobilenet_v3_small": 0.057, "efficientnet_b0": 0.386}

FOUNDATION_ZOO = ["lenet5", "alexnet", "alexnet_2012", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn",
                  "vgg13_bn", "vgg16_bn", "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50",
                  "resnet101", "resnet152"]


def test_zoo_names():
    assert set(FOUNDATION_ZOO) <= set(cb.models.names())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts(name):
    params, macs = PUBLISHED[name]
    s = summarize(verify(cb.models.build(name)))
    assert s.params == params
    if macs is not None:
        assert s.macs == macs
    if name in PUBLISHED_GMACS:
        assert round(s.macs / 1e9, 3) == PUBLISHED_GMACS[name]


def test_alexnet_2012_layer_table():
    g = cb.models.build("alexnet_2012")
    shapes = {n: g.types[n].shape[1:] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv5", "pool5")}
    assert shapes == {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
                      "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv5": (256, 13, 13),
                      "pool5": (256, 6, 6)}
    assert [n.op for n in g.nodes].count("lrn") == 2


def test_lenet5_layer_table():
    g = cb.models.build("lenet5")
    assert g.inputs["input"].shape == (1, 1, 32, 32)
    assert [g.types[n].shape[1:] for n in ("c1", "s2", "c3", "s4", "c5")] == [
        (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1)]
    assert g.types["output"].shape == (1, 10)


def test_torchvision_state_dict_keys():
    keys = set(cb.models.build("resnet50").params)
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias",
              "fc.weight", "fc.bias"):
        assert k in keys
    assert "inception4e.branch3.1.conv.weight" in cb.models.build("googlenet").params
    assert "features.41.running_var" in cb.models.build("vgg16_bn").params
    assert "classifier.6.bias" in cb.models.build("alexnet").params


def test_build_options_and_errors():
    g = cb.models.build("resnet18", batch=3, image_size=64, num_classes=17)
    assert g.inputs["input"].shape == (3, 3, 64, 64)
    assert g.types[g.outputs[0]].shape == (3, 17)
    with pytest.raises(KeyError, match="unknown model 'resnet19'; known models: alexnet"):
        cb.models.build("resnet19")
    with pytest.raises(ValueError, match="below its minimum"):
        cb.models.build("alexnet", image_size=32)


def test_init_params_deterministic():
    g = cb.models.build("resnet18", image_size=32)
    a, b = cb.models.init_params(g, seed=0), cb.models.init_params(g, seed=0)
    c = cb.models.init_params(g, seed=1)
    assert a.keys() == set(g.params)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])
    assert all(v.dtype == np.float32 and v.shape == g.params[k].shape for k, v in a.items())


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n.startswith("vgg") else [])
                                  for n in FOUNDATION_ZOO])  # a VGG's float64 forward at 224: 4-8 s
def test_logits_finite_and_informative(name):
    spec = cb.models.spec(name)
    g = cb.models.build(name, batch=2, image_size=spec.small_image_size)
    p = cb.models.init_params(g, seed=0)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
    y = cb.backends.get("numpy").compile(g, p)(x)
    assert np.isfinite(y).all()
    assert y.std(axis=1).min() > 1e-3 * max(1.0, np.abs(y).max())  # not constant within a row
    assert np.abs(y[0] - y[1]).max() > 1e-4  # two different images give different logits
    assert np.abs(y).max() < 1e4  # the residual stream did not explode


def test_resnet152_full_size_logits_are_sane():
    g = cb.models.build("resnet152", image_size=96)
    y = cb.backends.get("numpy").compile(g, cb.models.init_params(g))(
        np.random.default_rng(1).standard_normal((1, 3, 96, 96)).astype(np.float32))
    assert np.isfinite(y).all() and 1e-2 < y.std() < 1e3
