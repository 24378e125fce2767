"""load_checkpoint: torch state_dicts in torchvision's layout (num_batches_tracked and all) and .npz files load by
name and give the torch module's outputs; every missing, unexpected and misshapen key is reported at once."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.ir.errors import IRError
from convbench.models import CheckpointError, load_checkpoint
from convbench.models.inception import inception_v3

torch = pytest.importorskip("torch")


def trained_like(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Randomise BN statistics too (a fresh module's are 0 and 1), and count some batches."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1234)
    return module.eval()


def test_torchvision_layout_checkpoint_loads_and_gives_torch_s_logits(tmp_path):
    from _torchvision_layout import MobileNetV2

    module = trained_like(MobileNetV2(num_classes=10))
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(module.state_dict(), path)  # includes the BN layers' num_batches_tracked
    g = cb.models.build("mobilenet_v2", batch=2, image_size=40, num_classes=10)
    params = load_checkpoint(g, path)
    assert params.keys() == g.params.keys() and all(v.dtype == np.float32 for v in params.values())
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    for backend in ("numpy", "onnxruntime"):
        agreement = compare(cb.backends.get(backend).compile(g, params)(x), want, "float32")
        assert agreement.ok, (backend, agreement.reason)


def test_npz_checkpoint(tmp_path):
    g = cb.models.build("resnet18", image_size=32)
    params = cb.models.init_params(g, seed=3)
    np.savez(tmp_path / "resnet18.npz", **params)
    loaded = load_checkpoint(g, tmp_path / "resnet18.npz")
    assert all(np.array_equal(loaded[k], params[k]) for k in params)


def state_of(graph, seed: int = 0) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in cb.models.init_params(graph, seed, calibrate=False).items()}


def test_every_problem_is_listed_at_once(tmp_path):
    g = cb.models.build("squeezenet1_0", num_classes=10)
    state = state_of(cb.models.build("squeezenet1_0", num_classes=7))  # classifier.1 has 7 outputs
    del state["features.3.squeeze.weight"], state["features.12.expand3x3.bias"]
    state["fc.weight"] = torch.zeros(3)
    state["features.0.num_batches_tracked"] = torch.tensor(5)  # ignored, never "unexpected"
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(g, tmp_path / "bad.pth")
    err = e.value
    assert err.missing == ["features.3.squeeze.weight", "features.12.expand3x3.bias"]
    assert err.unexpected == ["fc.weight"]
    assert err.mismatched == [("classifier.1.weight", (7, 512, 1, 1), (10, 512, 1, 1)),
                              ("classifier.1.bias", (7,), (10,))]
    text = str(err)
    assert "classifier.1.weight: checkpoint (7, 512, 1, 1), graph (10, 512, 1, 1)" in text
    assert "2 missing key(s): features.3.squeeze.weight, features.12.expand3x3.bias" in text
    assert "1 unexpected key(s): fc.weight" in text


def test_strict_false_ignores_unexpected_keys_such_as_inception_s_aux_head(tmp_path):
    torch.save(state_of(inception_v3(aux_logits=True)), tmp_path / "inception_v3.pth")
    g = inception_v3()
    with pytest.raises(CheckpointError, match=r"AuxLogits\.conv0\.conv\.weight"):
        load_checkpoint(g, tmp_path / "inception_v3.pth")
    assert load_checkpoint(g, tmp_path / "inception_v3.pth", strict=False).keys() == g.params.keys()


def test_wrapped_prefixed_and_legacy_densenet_keys(tmp_path):
    g = cb.models.build("densenet121", image_size=32)
    state = state_of(g)
    # torchvision's published DenseNet weights predate PyTorch 0.4's module naming: "norm.1" for "norm1"
    legacy = {k.replace("denselayer1.norm1.", "denselayer1.norm.1.").replace("denselayer2.conv2.",
                                                                              "denselayer2.conv.2."): v
              for k, v in state.items()}
    assert legacy.keys() != state.keys()
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in legacy.items()}}, tmp_path / "dp.pth")
    loaded = load_checkpoint(g, tmp_path / "dp.pth")
    assert all(np.array_equal(loaded[k], state[k].numpy()) for k in state)


def test_bad_files_are_named(tmp_path):
    g = cb.models.build("lenet5")
    with pytest.raises(IRError, match="does not exist"):
        load_checkpoint(g, tmp_path / "missing.pth")
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(IRError, match=r"unknown format '\.h5'"):
        load_checkpoint(g, tmp_path / "weights.h5")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(IRError, match="holds a list, not a state_dict"):
        load_checkpoint(g, tmp_path / "list.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a pickle")
    with pytest.raises(IRError, match=r"could not be read by torch\.load"):
        load_checkpoint(g, tmp_path / "garbage.pth")
