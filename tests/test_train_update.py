"""The optimizer update between train steps (ir/optim.py `Updater`): the torch backend's (torch.optim's fused
kernel, backends/torch/optim.py) against the NumPy one every other backend gets, the harness's choice of it
(`backends.base.updater_for`), and the torch train lowering's grouped gradient calls and BN statistics."""
from __future__ import annotations

import numpy as np
import pytest

from convbench.backends import get
from convbench.backends.base import updater_for
from convbench.bench.train_case import Stepper
from convbench.ir.optim import SGD, Adam, NumpyUpdater

torch = pytest.importorskip("torch")

from convbench.backends.torch.optim import TorchUpdater  # noqa: E402 - needs torch

SHAPES = {"conv.weight": (3, 5, 7, 2), "bn.bias": (11,), "fc.weight": (13, 4)}  # every dim distinct


def _tensors(seed: int, dtype: type) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


@pytest.mark.parametrize("optimizer", [SGD(lr=0.1), SGD(lr=0.05, momentum=0.0, weight_decay=0.0),
                                       Adam(lr=0.01, weight_decay=1e-2)], ids=["sgd", "sgd-plain", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_update_matches_the_numpy_update(optimizer, dtype):
    params = _tensors(0, dtype)
    ref, mine = NumpyUpdater(optimizer, params), TorchUpdater(optimizer, params)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for k in range(4):
        grads = _tensors(k + 1, dtype)
        if k == 2:
            del grads["bn.bias"]  # no gradient this step: both leave it (and its state) as it is
        kept = {n: g.copy() for n, g in grads.items()}
        ref.step(grads)
        mine.step(grads)
        assert all(np.array_equal(grads[n], kept[n]) for n in grads), "the update wrote over a gradient"
        want, got = ref.params(), mine.params()
        for n in SHAPES:
            assert got[n].dtype == dtype and got[n].shape == SHAPES[n]
            np.testing.assert_allclose(got[n], want[n], rtol=tol, atol=tol, err_msg=f"{n} after step {k}")
    assert np.array_equal(params["fc.weight"], _tensors(0, dtype)["fc.weight"]), "the caller's arrays changed"


def test_the_harness_takes_the_backends_updater_and_falls_back_to_numpy():
    from convbench.bench.workload import SEED, make_workload
    from convbench.ir.train import train_step
    from convbench.testing.train_check import batch_of

    w = make_workload("lenet5", 2, 32)
    step = train_step(w.graph, SGD(lr=0.1))
    x, labels = batch_of(w.graph, SEED)
    x = x.astype(np.float32)
    steppers = {}
    for name in ("torch", "numpy"):
        backend = get(name)
        exe = backend.compile(step.graph, w.params, dtype="float32")
        steppers[name] = Stepper(exe, step, w.params, x, labels, "float32", backend)
    assert isinstance(steppers["torch"].updater, TorchUpdater)
    # a train step keeps freed activation buffers in the process (layers.keep_freed_memory); inference does not
    import platform

    glibc = platform.libc_ver()[0] == "glibc"
    assert steppers["torch"].exe.report.details.malloc == ("mmap_threshold=32MiB trim_threshold=2047MiB" if glibc
                                                           else None)
    assert get("torch").compile(w.graph, w.params).report.details.malloc is None
    assert isinstance(steppers["numpy"].updater, NumpyUpdater)
    assert isinstance(updater_for(None, step.optimizer, {}, None), NumpyUpdater)  # a backend without the hook
    for _ in range(2):
        values = {name: s() for name, s in steppers.items()}
    assert values["torch"].loss == pytest.approx(values["numpy"].loss, rel=1e-5)
    got, want = steppers["torch"].parameters(), steppers["numpy"].parameters()
    assert set(got) == set(w.graph.params)
    for n in step.trained:  # two updates from the same gradients (each backend's, agreeing to float32 rounding)
        np.testing.assert_allclose(got[n], want[n], rtol=1e-4, atol=1e-5, err_msg=n)


def test_torch_train_lowering_groups_gradients_and_takes_bn_statistics_from_the_kernel():
    """ResNet-18's step: one autograd call per conv/BN/linear (not one per input), BN's running statistics from
    its own kernel (no separate mean/var pass), ReLU and the residual add without autograd, in place where
    torchvision's are."""
    from convbench.backends.torch import train_rules
    from convbench.bench.workload import make_workload
    from convbench.ir.train import train_step

    w = make_workload("resnet18", 2, 32)
    step = train_step(w.graph, SGD(lr=0.1))
    exe = get("torch").compile(step.graph, w.params, dtype="float32")
    calls = [n.target for n in exe.artifact.graph.nodes if n.op == "call_function"]
    ops = [n.op for n in step.forward.nodes]
    # every forward node but the ReLUs and adds: one call, though a conv has two vjp nodes and a BN three
    assert calls.count(train_rules.vjp_grads) == len(ops) - ops.count("relu") - ops.count("add")
    assert sum(n.op == "vjp" for n in step.graph.nodes) > len(ops) + ops.count("conv2d") + ops.count("batch_norm")
    assert calls.count(train_rules.batch_norm_with_stats) == ops.count("batch_norm")
    from convbench.backends.torch import layers

    assert layers.running_stat not in calls
    assert calls.count(torch.relu_) == ops.count("relu")  # every ReLU follows a BN or a residual add
    import operator

    assert calls.count(operator.iadd) == ops.count("add")


def test_a_train_step_keeps_freed_memory_in_the_heap():
    # What keep_freed_memory is for, checked on glibc itself: a freed block at the heap's top stays mapped (no
    # trim), so the next step reuses it without page faults. (A threshold mallopt cannot take, 2**34 as a C int,
    # once reached glibc as 0 and trimmed at every free.)
    import ctypes
    import platform

    from convbench.backends.torch import layers

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")
    assert layers.keep_freed_memory() is not None
    libc = ctypes.CDLL("libc.so.6")
    libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(24 << 20)  # below the mmap threshold: the heap grows to hold it
    top = libc.sbrk(0)
    libc.free(block)
    assert libc.sbrk(0) == top
