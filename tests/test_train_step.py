"""The train step built from the IR (ir/train.py, ir/autodiff.py) and its NumPy reference trainer
(backends/numpy_train.py) against torch.autograd + torch.optim in float64: the loss, every parameter's gradient,
every parameter and running statistic after the update; the overfit-one-batch smoke check; the counts; bad input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from convbench import models
from convbench.backends.numpy_train import NumpyTrainer, TrainInputError
from convbench.ir import ops
from convbench.ir.analysis import summarize
from convbench.ir.autodiff import NoVjpError, backward
from convbench.ir.builder import GraphBuilder
from convbench.ir.errors import IRError, ShapeError
from convbench.ir.graph import TensorType
from convbench.ir.ops import _REGISTRY, OpDef, first_input, per_element, same_type
from convbench.ir.optim import SGD, Adam
from convbench.ir.train import train_step
from convbench.ir.train_counts import train_counts

torch = pytest.importorskip("torch")
from _torch_ops import run_torch, t64  # noqa: E402  (needs torch)


def _batch(graph, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = next(iter(graph.inputs.values())).shape
    classes = graph.types[graph.outputs[0]].shape[1]
    return rng.standard_normal(shape), rng.integers(0, classes, shape[0])


def _close(got: np.ndarray, want: np.ndarray, what: str, rtol: float = 1e-9, floor: float = 1e-14) -> None:
    """Agreement on the tensor's own scale: max |got − want| ≤ rtol · max |want| + floor."""
    err = float(np.abs(np.asarray(got) - want).max()) if np.size(want) else 0.0
    assert err <= rtol * float(np.abs(want).max()) + floor, f"{what}: max abs error {err:.3g}"


def _noise_floor(grads: dict[str, np.ndarray]) -> float:
    """Rounding noise on the model's gradient scale: what a gradient that is 0 in exact arithmetic comes out as (a
    BN's β whose output feeds a conv and another train-mode BN: that BN's dx sums to 0 over each channel)."""
    return 1e-12 * max(float(np.abs(g).max()) for g in grads.values())


def torch_steps(graph, params, x, labels, optimizer, steps: int, dropout=None):
    """The same model trained by torch: its ops, autograd, torch.optim; BN in train mode (nn.BatchNorm2d's
    semantics, momentum 0.1); dropout with the IR step's masks. Per step (loss, grads), then the final values."""
    buffers = {n for n in graph.params if any(s in n for s in ("running_mean", "running_var"))}
    leaves = {n: t64(a, grad=n not in buffers) for n, a in params.items()}
    trained = [leaves[n] for n in graph.params if n not in buffers]
    opt = (torch.optim.SGD(trained, lr=optimizer.lr, momentum=optimizer.momentum,
                           weight_decay=optimizer.weight_decay) if isinstance(optimizer, SGD)
           else torch.optim.Adam(trained, lr=optimizer.lr, betas=optimizer.betas, eps=optimizer.eps,
                                 weight_decay=optimizer.weight_decay))
    history = []
    for _ in range(steps):
        opt.zero_grad()
        (logits,) = run_torch(graph, {**leaves, "input": t64(x)}, training=True,
                              buffers={n: leaves[n] for n in buffers}, dropout=dropout)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        loss.backward()
        history.append((loss.item(), {n: leaves[n].grad.numpy().copy() for n in graph.params if n not in buffers}))
        opt.step()
    return history, {n: t.detach().numpy() for n, t in leaves.items()}


# ResNet-18 at 64 rather than its small size 32: at 32 with batch 2 its last stage is 1×1, so each BN there
# normalises 2 values per channel, which is so ill-conditioned that float64 rounding alone grows to 1e-7 relative
# after one step (in both frameworks alike); at 64 (8 values per channel) the two agree to 1e-13.
SIZES = {"lenet5": 32, "resnet18": 64}


@pytest.mark.parametrize("model, optimizer", [
    ("lenet5", SGD(lr=0.05)), ("resnet18", SGD(lr=0.05)), ("lenet5", Adam(lr=1e-3, weight_decay=1e-4)),
], ids=["lenet5-sgd", "resnet18-sgd", "lenet5-adam"])
def test_train_step_matches_torch_autograd_and_optim_in_float64(model, optimizer):
    graph = models.build(model, batch=2, image_size=SIZES[model])
    params = {k: v.astype(np.float64) for k, v in models.init_params(graph).items()}
    x, labels = _batch(graph)
    step = train_step(graph, optimizer)
    trainer = NumpyTrainer(step, params, dtype="float64")
    history, final = torch_steps(graph, params, x, labels, optimizer, steps=2)  # 2: the momentum buffers act
    for (want_loss, want_grads), k in zip(history, range(2), strict=True):
        out = trainer.step(x, labels=labels)
        assert out.loss == pytest.approx(want_loss, rel=1e-12), k
        assert set(out.grads) == set(want_grads)
        for name, g in out.grads.items():
            _close(g, want_grads[name], f"step {k}: gradient of {name}", floor=_noise_floor(want_grads))
    assert set(trainer.params) == set(final)
    for name, p in trainer.params.items():
        _close(p, final[name], f"{name} after 2 steps", rtol=1e-11)


@pytest.mark.parametrize("model", ["googlenet", "mobilenet_v2", "densenet121"])
def test_more_zoo_models_match_torch_after_one_step(model):
    """Inception concats, depthwise convs with relu6 and dropout, dense concatenation: loss, gradients and the
    parameters after one SGD step (64 px: every BN normalises at least 8 values per channel)."""
    graph = models.build(model, batch=2, image_size=64)
    params = {k: v.astype(np.float64) for k, v in models.init_params(graph).items()}
    x, labels = _batch(graph, 3)
    step = train_step(graph, SGD(lr=0.01))
    masks = {n.name: n.attrs for n in step.graph.nodes if n.op == "dropout_train"}
    assert masks or model == "densenet121"
    out = NumpyTrainer(step, params).step(x, labels=labels)
    [(loss, grads)], final = torch_steps(graph, params, x, labels, step.optimizer, 1, dropout=masks)
    assert out.loss == pytest.approx(loss, rel=1e-11)
    for name, g in out.grads.items():
        _close(g, grads[name], f"gradient of {name}", rtol=1e-8, floor=_noise_floor(grads))
    for name, p in out.params.items():
        _close(p, final[name], f"{name} after the step", rtol=1e-10)


def test_gradients_do_not_update_and_float32_agrees_with_float64():
    graph = models.build("resnet18", batch=2, image_size=SIZES["resnet18"])
    params = models.init_params(graph)
    x, labels = _batch(graph, 1)
    step = train_step(graph)
    t64_, t32 = NumpyTrainer(step, params, "float64"), NumpyTrainer(step, params, "float32")
    loss64, g64 = t64_.gradients(x, labels=labels)
    loss32, g32 = t32.gradients(x, labels=labels)
    assert t64_.steps == 0 and all(np.array_equal(t64_.params[k], params[k].astype(np.float64)) for k in params)
    assert loss32 == pytest.approx(loss64, rel=1e-4)
    for name in g64:
        assert g32[name].dtype == np.float32
        _close(g32[name], g64[name], name, rtol=1e-3)


@pytest.mark.parametrize("model, steps", [("lenet5", 10), ("resnet18", 5)])
def test_overfit_one_batch(model, steps):
    """K steps of SGD (lr 0.05, momentum 0.9) on one fixed batch of 4 lower the loss at least 10×."""
    graph = models.build(model, batch=4, image_size=32)
    trainer = NumpyTrainer(train_step(graph, SGD(lr=0.05)), models.init_params(graph), "float32")
    x, labels = _batch(graph, 2)
    losses = [trainer.step(x, labels=labels).loss for _ in range(steps + 1)]
    assert losses[-1] < losses[0] / 10, losses


# -- the step's structure and counts ---------------------------------------------------------------------------

def test_train_mode_graph_and_every_parameter_trained():
    graph = models.build("resnet18", batch=2, image_size=32)
    step = train_step(graph)
    kinds = {n.op for n in step.graph.nodes}
    assert "batch_norm" not in kinds and {"batch_norm_train", "running_stat", "vjp"} <= kinds
    buffers = {p for p in graph.params if "running" in p}
    assert set(step.grads) == set(graph.params) - buffers and set(step.buffers) == buffers and step.frozen == ()
    assert step.graph.outputs == ("loss", *step.grads.values(), *step.buffers.values())
    assert step.graph.inputs["labels"].dtype == "int64" and step.graph.inputs["labels"].shape == (2,)
    # the input image's gradient is never computed (nothing trains below it)
    assert "input/grad" not in step.graph.node_by_name and "conv1/grad" in step.graph.node_by_name


def test_conv_and_linear_backward_is_two_macs_each_but_the_first_layer_s_data_gradient():
    graph = models.build("resnet50", batch=1)
    step = train_step(graph)
    types = step.graph.types
    data = weight = 0
    for node in step.graph.nodes:
        if node.op == "vjp" and node.attrs.op in ("conv2d", "linear") and node.attrs.wrt < 2:
            flops = ops.get("vjp").flops(node.attrs, [types[i] for i in node.inputs], types[node.name])
            data, weight = (data + flops, weight) if node.attrs.wrt == 0 else (data, weight + flops)
    macs = summarize(graph).macs
    conv1 = next(r.macs for r in summarize(graph).layers if r.name == "conv1")
    assert weight == 2 * macs and data == 2 * (macs - conv1)
    counts = train_counts(step)
    assert counts.backward_weight_flops > weight and counts.backward_data_flops > data  # + BN, relu, pools, sums
    assert 2.9 < counts.ratio_to_inference < 3.1  # "≈ 3× forward"


def test_step_memory_is_liveness_over_forward_and_backward():
    """conv → relu → flatten → linear: the backward keeps the input (conv's weight gradient), relu's output (its
    own gradient; the conv output is freed), flatten's output (linear's weight gradient), the logits and labels
    (the loss's gradient); gradients and SGD's momentum are one parameter set each."""
    b = GraphBuilder("tiny", (2, 3, 7, 5), input_name="input")
    y = b.linear(b.flatten(b.relu(b.conv2d(b.input, 4, 3, padding=1, name="conv"), name="relu")), 6, name="fc")
    step = train_step(b.build(y))
    c = train_counts(step)
    f32 = 4
    saved = (2 * 3 * 7 * 5 + 2 * 4 * 7 * 5 + 2 * 140 + 2 * 6) * f32 + 2 * 8
    assert c.saved_activation_bytes == saved
    params = (4 * 3 * 9 + 4 + 6 * 140 + 6) * f32
    assert c.param_bytes == c.gradient_bytes == c.optimizer_state_bytes == params
    assert train_counts(train_step(b.build(y), Adam())).optimizer_state_bytes == 2 * params
    assert c.activation_peak_bytes >= saved and c.step_peak_bytes > 3 * params + saved


# -- bad input --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Attrs:
    pass


def test_an_op_without_a_vjp_on_the_path_is_one_error_naming_node_and_op():
    op = OpDef(name="softplus_without_vjp", attrs_type=_Attrs, inputs=("x",), traits={"elementwise"},
               overwrites=first_input, infer=same_type, flops=per_element(3), reference=lambda a, x: x,
               flop_rule="3 per element")
    ops.register(op)
    try:
        b = GraphBuilder("novjp", (2, 3, 7, 5))
        y = b.node("softplus_without_vjp", [b.conv2d(b.input, 4, 3, name="conv")], _Attrs(), name="soft")
        with pytest.raises(NoVjpError, match=r"'soft' \(softplus_without_vjp\)"):
            train_step(b.build(b.linear(b.flatten(y), 5, name="fc")))
    finally:
        del _REGISTRY[op.name]


def test_bad_labels_and_inputs_are_clear_errors():
    graph = models.build("lenet5", batch=2)
    trainer = NumpyTrainer(train_step(graph), models.init_params(graph))
    x, _ = _batch(graph)
    with pytest.raises(TrainInputError, match=r"labels must be in \[0, 10\).*sample\(s\) \[1\].*\[10\]"):
        trainer.step(x, labels=np.array([3, 10]))
    with pytest.raises(TrainInputError, match=r"labels must be in \[0, 10\).*\[-1\]"):
        trainer.step(x, labels=np.array([-1, 0]))
    with pytest.raises(TrainInputError, match=r"labels must have shape \(2,\).*got shape \(3,\)"):
        trainer.step(x, labels=np.array([1, 2, 3]))
    with pytest.raises(TrainInputError, match="integer class indices"):
        trainer.step(x, labels=np.array([0.5, 1.0]))
    with pytest.raises(TrainInputError, match=r"input 'input' must have shape \(2, 1, 32, 32\)"):
        trainer.step(x[:1], labels=np.array([1, 2]))
    assert trainer.steps == 0
    with pytest.raises(ShapeError, match=r"labels must have shape \(2,\)"):
        ops.get("softmax_cross_entropy").infer(None, [graph.types["output"], TensorType((3,), "int64")])


def test_a_softmax_output_is_refused_and_the_loss_must_be_a_scalar():
    b = GraphBuilder("probs", (2, 7))
    with pytest.raises(IRError, match="is a softmax"):
        train_step(b.build(b.softmax(b.linear(b.input, 5, name="fc"))))
    b = GraphBuilder("vector", (2, 7))
    g = b.build(b.linear(b.input, 5, name="fc"))
    with pytest.raises(IRError, match=r"must be a scalar, 'fc' has shape \(2, 5\)"):
        backward(g, "fc", ["fc.weight"])
