"""Every Triton kernel against the float64 NumPy reference of its IR op (under the interpreter when there is no
GPU): small shapes with every dimension distinct, then shapes just past the interpreter's block caps so that
multi-program grids, K loops with a ragged last block and every mask path run; fp16; strided views in and out.
"""

from __future__ import annotations

import numpy as np
import pytest

from convbench.backends.correctness import compare
from convbench.backends.triton import BACKEND
from convbench.ir import ops as ir_ops
from convbench.ir.ops._base import NoAttrs
from convbench.ir.ops._pool import PoolAttrs
from convbench.ir.ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from convbench.ir.ops.clip import ClipAttrs
from convbench.ir.ops.conv2d import Conv2dAttrs
from convbench.ir.ops.lrn import LrnAttrs
from convbench.ir.ops.pad import PadAttrs
from convbench.ir.ops.softmax import SoftmaxAttrs

_ok, _why = BACKEND.available()  # the backend module has chosen the mode before anything imports triton
if not _ok:
    pytest.skip(_why, allow_module_level=True)

import torch  # noqa: E402

from convbench.kernels.triton import (  # noqa: E402
    concat,
    conv2d,
    depthwise,
    elementwise,
    linear,
    lrn,
    pad,
    pool,
    quant,
    runtime,
    softmax,
)

DEV = runtime.DEVICE


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, *shape]).standard_normal(shape)


def t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEV, dtype)


def check(y: torch.Tensor, ref: np.ndarray, dtype: str = "float32") -> None:
    got = y.detach().to(torch.float64).cpu().numpy()
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    a = compare(got, ref, dtype)
    assert a.ok, a.reason


def ref_conv(x, w, b, attrs: Conv2dAttrs, residual=None, activation=None, alpha=0.0) -> np.ndarray:
    y = ir_ops.get("conv2d").reference(attrs, x, w, b)
    return ref_epilogue(y, residual, activation, alpha)


def ref_epilogue(y, residual, activation, alpha=0.0) -> np.ndarray:
    if residual is not None:
        y = y + residual
    if activation is None:
        return y
    op = ir_ops.get(activation)  # the kernels' alpha is the first scalar attribute (a slope, elu's alpha, clip's min)
    return op.reference(NoAttrs() if op.attrs_type is NoAttrs else op.attrs_type(alpha), y)


# -- conv2d -----------------------------------------------------------------------------------------------------
CONVS = {  # id: (x shape, weight shape, stride, padding, dilation, groups)
    "3x3": ((2, 3, 7, 5), (4, 3, 3, 3), 1, 0, 1, 1),
    "3x3-s2-p1": ((2, 3, 9, 7), (4, 3, 3, 3), 2, 1, 1, 1),
    "rect": ((2, 3, 8, 6), (5, 3, 3, 2), (2, 1), (1, 0), 1, 1),
    "dilated": ((2, 3, 9, 8), (4, 3, 2, 3), 1, (1, 2), (3, 2), 1),
    "grouped": ((2, 6, 9, 8), (9, 2, 3, 3), 2, 1, 2, 3),
    "depthwise": ((2, 5, 7, 6), (5, 1, 3, 3), 1, 1, 1, 5),
    "depthwise-x2-s2": ((2, 3, 9, 7), (6, 1, 3, 3), 2, 1, 1, 3),
    "1x1-s2": ((3, 6, 7, 5), (4, 6, 1, 1), 2, 0, 1, 1),
    "5x5-p2": ((2, 3, 11, 9), (7, 3, 5, 5), 1, 2, 1, 1),
    "7x7-s2-p3": ((1, 3, 13, 11), (5, 3, 7, 7), 2, 3, 1, 1),
    "11x11-s4-p2": ((2, 3, 37, 33), (6, 3, 11, 11), 4, 2, 1, 1),
    "pad-gt-kernel": ((2, 3, 6, 5), (4, 3, 2, 2), 1, 3, 1, 1),
    "in1x1": ((2, 3, 1, 1), (4, 3, 3, 3), 1, 1, 1, 1),
}


@pytest.mark.parametrize("case", list(CONVS), ids=list(CONVS))
@pytest.mark.parametrize("epilogue", ["plain", "bias-residual-relu"])
def test_conv2d(case, epilogue):
    xs, ws, stride, padding, dilation, groups = CONVS[case]
    attrs = Conv2dAttrs(stride, padding, dilation, groups)
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    fused = epilogue != "plain"
    ref = ir_ops.get("conv2d").reference(attrs, x, w, b if fused else None)
    r = rand(*ref.shape, seed=1) if fused else None
    ref = ref_epilogue(ref, r, "relu" if fused else None)
    y = conv2d.conv2d(t(x), conv2d.pack_weight(t(w), t(b) if fused else None, groups), stride=attrs.stride,
                      padding=attrs.padding, dilation=attrs.dilation, residual=t(r) if fused else None,
                      activation="relu" if fused else None)
    check(y, ref)


@pytest.mark.parametrize("activation", elementwise.ACTIVATIONS)
def test_conv2d_epilogue_activations(activation):
    attrs = Conv2dAttrs(1, 1)
    x, w, b = rand(2, 3, 6, 5), rand(4, 3, 3, 3), rand(4)
    y = conv2d.conv2d(t(x), conv2d.pack_weight(t(w), t(b)), padding=(1, 1), activation=activation, alpha=0.3)
    check(y, ref_conv(x, w, b, attrs, activation=activation, alpha=0.3))


def test_conv2d_multi_tile():
    """M, K and O each just past the interpreter's caps: 2 × 2 programs, a ragged second K step, residual."""
    caps = conv2d.INTERPRETER_CAPS
    c = caps["BLOCK_K"] // 9 + 3  # K = 9·C > BLOCK_K
    o = caps["BLOCK_N"] + 9
    h, w = 25, (caps["BLOCK_M"] // 50) + 3  # M = 2·h·w > BLOCK_M
    attrs = Conv2dAttrs(1, 1)
    x, wt, b = rand(2, c, h, w), rand(o, c, 3, 3) / 10, rand(o)
    r = rand(2, o, h, w, seed=1)
    y = conv2d.conv2d(t(x), conv2d.pack_weight(t(wt), t(b)), padding=(1, 1), residual=t(r), activation="relu")
    check(y, ref_conv(x, wt, b, attrs, r, "relu"))


def test_depthwise_multi_tile():
    """Pixels past BLOCK_P and planes past BLOCK_R at that width: a 2 × 2 grid, ragged both ways."""
    caps = depthwise.INTERPRETER_CAPS
    side = int(np.sqrt(caps["BLOCK_P"])) + 5
    c = caps["TILE"] // caps["BLOCK_P"] // 2 + 1
    x, w, b = rand(2, c, side + 2, side), rand(c, 1, 3, 3), rand(c)
    y = conv2d.conv2d(t(x), conv2d.pack_weight(t(w), t(b), groups=c), padding=(1, 1), activation="relu6")
    check(y, ref_conv(x, w, b, Conv2dAttrs(1, 1, 1, c), activation="relu6"))


def test_conv2d_strided_views_in_and_out():
    """Input, residual and output are channel slices of larger tensors (concat in place, DenseNet views)."""
    attrs = Conv2dAttrs(1, 1)
    big_x, w, b = rand(2, 7, 6, 5), rand(4, 3, 3, 3), rand(4)
    big_r = rand(2, 9, 6, 5, seed=1)
    x, r = big_x[:, 2:5], big_r[:, 3:7]
    out = torch.zeros(2, 10, 6, 5, device=DEV)
    conv2d.conv2d(t(big_x)[:, 2:5], conv2d.pack_weight(t(w), t(b)), padding=(1, 1), residual=t(big_r)[:, 3:7],
                  activation="relu", out=out[:, 5:9])
    check(out[:, 5:9], ref_conv(x, w, b, attrs, r, "relu"))
    assert not out[:, :5].any() and not out[:, 9:].any(), "wrote outside its slice"


def test_conv2d_float16():
    attrs = Conv2dAttrs(2, 1)
    x, w, b = rand(2, 5, 9, 7), rand(6, 5, 3, 3), rand(6)
    y = conv2d.conv2d(t(x, torch.float16), conv2d.pack_weight(t(w), t(b), dtype=torch.float16), stride=(2, 2),
                      padding=(1, 1), activation="relu")
    assert y.dtype == torch.float16
    check(y, ref_conv(x, w, b, attrs, activation="relu"), "float16")


def test_conv2d_and_linear_bfloat16():
    """bf16 operands (on GPU straight into tl.dot; under the interpreter, whose dot is wrong for bf16, upcast)."""
    x, w, b = rand(2, 3, 7, 5), rand(4, 3, 3, 3), rand(4)
    y = conv2d.conv2d(t(x, torch.bfloat16), conv2d.pack_weight(t(w), t(b), dtype=torch.bfloat16), padding=(1, 1))
    check(y, ref_conv(x, w, b, Conv2dAttrs(1, 1)), "bfloat16")
    xl, wl = rand(3, 20), rand(5, 20)
    check(linear.linear(t(xl, torch.bfloat16), linear.pack_weight(t(wl), dtype=torch.bfloat16)), xl @ wl.T,
          "bfloat16")


def test_conv2d_tf32_only_when_asked():
    assert conv2d.precision(torch.float32, tf32=False) == "ieee"
    assert conv2d.precision(torch.float32, tf32=True) == "tf32"
    assert conv2d.precision(torch.float16, tf32=True) == "ieee"  # TF32 is a float32 mode


def test_conv2d_rejects_bad_arguments():
    w = conv2d.pack_weight(t(rand(4, 3, 3, 3)))
    with pytest.raises(ValueError, match="input has 5 channels"):
        conv2d.conv2d(t(rand(2, 5, 7, 6)), w)
    with pytest.raises(ValueError, match="does not fit"):
        conv2d.conv2d(t(rand(2, 3, 2, 2)), w)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        conv2d.conv2d(t(rand(2, 3, 7, 6)), w, residual=t(rand(2, 4, 7, 6)))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        conv2d.pack_weight(t(rand(5, 3, 3, 3)), groups=2)


# -- linear -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,k,n,bias,residual,activation", [
    (2, 7, 5, True, False, None), (1, 9, 3, False, False, "relu"), (3, 67, 33, True, True, "tanh"),
])
def test_linear(m, k, n, bias, residual, activation):
    x, w, b, r = rand(m, k), rand(n, k), rand(n), rand(m, n, seed=1)
    ref = ref_epilogue(x @ w.T + (b if bias else 0), r if residual else None, activation)
    y = linear.linear(t(x), linear.pack_weight(t(w), t(b) if bias else None), residual=t(r) if residual else None,
                      activation=activation)
    check(y, ref)


def test_linear_multi_tile_rank3_float16():
    caps = linear.INTERPRETER_CAPS
    m, k, n = caps["BLOCK_M"] + 3, caps["BLOCK_K"] + 5, caps["BLOCK_N"] + 7
    x, w, b = rand(m, k), rand(n, k) / 10, rand(n)
    check(linear.linear(t(x), linear.pack_weight(t(w), t(b)), activation="relu"), np.maximum(x @ w.T + b, 0))
    x3 = rand(2, 3, 7)
    w3, b3 = rand(5, 7), rand(5)
    y = linear.linear(t(x3, torch.float16), linear.pack_weight(t(w3), t(b3), dtype=torch.float16))
    check(y, x3 @ w3.T + b3, "float16")


# -- pooling ----------------------------------------------------------------------------------------------------
POOLS = {  # id: (x shape, kernel, stride, padding, dilation, ceil_mode, count_include_pad)
    "k2-s2": ((2, 3, 8, 6), 2, 2, 0, 1, False, True),
    "k3-s2-p1": ((2, 3, 9, 7), 3, 2, 1, 1, False, True),
    "k3-s2-ceil": ((2, 3, 8, 6), 3, 2, 0, 1, True, True),
    "k2-s2-p1-ceil-drop-last": ((2, 3, 5, 4), 2, 2, 1, 1, True, True),
    "k3-s1-p1-ceil": ((2, 3, 7, 5), 3, 1, 1, 1, True, True),
    "rect": ((2, 3, 8, 6), (3, 2), (2, 1), (1, 0), 1, False, True),
    "exclude-pad-ceil": ((2, 3, 8, 6), 3, 2, 1, 1, True, False),
    "kernel-eq-input": ((2, 3, 7, 5), (7, 5), None, 0, 1, False, True),
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", list(POOLS), ids=list(POOLS))
def test_pool2d(kind, case):
    xs, k, s, p, d, ceil, include = POOLS[case]
    attrs = PoolAttrs(k, s, p, d, ceil, include)
    x = rand(*xs)
    y = pool.pool2d(t(x), attrs.kernel_size, kind=kind, stride=attrs.stride, padding=attrs.padding,
                    dilation=attrs.dilation, ceil_mode=ceil, count_include_pad=include)
    check(y, ir_ops.get(f"{kind}_pool2d").reference(attrs, x))


def test_max_pool2d_dilated_and_multi_tile_into_a_slice():
    attrs = PoolAttrs(3, 2, 1, (2, 1), True)
    x = rand(2, 3, 9, 8)
    check(pool.pool2d(t(x), (3, 3), kind="max", stride=(2, 2), padding=(1, 1), dilation=(2, 1), ceil_mode=True),
          ir_ops.get("max_pool2d").reference(attrs, x))
    caps = pool.INTERPRETER_CAPS
    side = int(np.sqrt(caps["BLOCK_P"])) + 3  # P > BLOCK_P; N·C > BLOCK_R at that BLOCK_P
    c = caps["TILE"] // caps["BLOCK_P"] // 2 + 1
    x = rand(2, c, side + 1, side)
    out = torch.zeros(2, c + 3, side + 1, side, device=DEV)
    pool.pool2d(t(x), (3, 3), kind="avg", stride=(1, 1), padding=(1, 1), count_include_pad=False,
                out=out[:, 1:c + 1])
    check(out[:, 1:c + 1], ir_ops.get("avg_pool2d").reference(PoolAttrs(3, 1, 1, 1, False, False), x))


@pytest.mark.parametrize("shape,size", [((2, 3, 7, 5), (1, 1)), ((2, 3, 7, 5), (2, 3)), ((2, 3, 6, 4), (3, 2)),
                                        ((2, 3, 1, 4), (6, 5)), ((2, 3, 1, 1), (7, 7))])
def test_adaptive_avg_pool2d(shape, size):
    x = rand(*shape)
    check(pool.adaptive_avg_pool2d(t(x), size), ir_ops.get("adaptive_avg_pool2d").reference(AdaptivePoolAttrs(size), x))


def test_global_avg_pool_multi_chunk():
    side = int(np.sqrt(pool.ADAPTIVE_INTERPRETER_CAPS["BLOCK_T"])) + 2  # window > BLOCK_T: two chunks
    x = rand(3, 5, side, side + 1)
    check(pool.adaptive_avg_pool2d(t(x), (1, 1)), x.mean(axis=(2, 3), keepdims=True))


# -- softmax, LRN -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,axis", [((3, 10), 1), ((3, 10), 0), ((2, 3, 7, 5), 1), ((2, 3, 7, 5), -1)])
def test_softmax(shape, axis):
    x = rand(*shape) * 5
    check(softmax.softmax(t(x), axis), ir_ops.get("softmax").reference(SoftmaxAttrs(axis), x))


def test_softmax_long_rows_and_many_rows():
    length = softmax.INTERPRETER_CAPS["BLOCK_L"] + 9  # two chunks: the online max/sum rescaling runs
    x = rand(3, length) * 20
    check(softmax.softmax(t(x), 1), ir_ops.get("softmax").reference(SoftmaxAttrs(1), x))
    x = rand(70, 1000)
    check(softmax.softmax(t(x, torch.float16), 1), ir_ops.get("softmax").reference(SoftmaxAttrs(1), x), "float16")


@pytest.mark.parametrize("size,alpha,beta,k,shape", [
    (5, 1e-4, 0.75, 2.0, (2, 7, 5, 4)), (2, 1e-2, 0.75, 2.0, (2, 5, 4, 3)), (7, 1e-1, 0.75, 2.0, (2, 3, 7, 5)),
    (4, 1e-3, 0.5, 1.0, (2, 8, 3, 5)),
])
def test_lrn(size, alpha, beta, k, shape):
    x = rand(*shape) * 3
    check(lrn.lrn(t(x), size, alpha, beta, k), ir_ops.get("lrn").reference(LrnAttrs(size, alpha, beta, k), x))


def test_lrn_multi_tile():
    caps = lrn.INTERPRETER_CAPS
    side = int(np.sqrt(caps["BLOCK_P"])) + 3
    x = rand(2, caps["TILE"] // caps["BLOCK_P"] // 2 + 1, side, side + 2) * 3
    check(lrn.lrn(t(x), 5, 1e-2, 0.75, 2.0), ir_ops.get("lrn").reference(LrnAttrs(5, 1e-2, 0.75, 2.0), x))


# -- elementwise ------------------------------------------------------------------------------------------------
IR_ACTIVATIONS = sorted(ir_ops.with_trait("activation"))


@pytest.mark.parametrize("name", IR_ACTIVATIONS)
def test_activation(name):
    """Every op with the "activation" trait computes its reference, through the kernel's own table."""
    x = rand(2, 3, 7, 5) * 4
    check(elementwise.activation(t(x), name, alpha=0.2), ref_epilogue(x, None, name, 0.2))


def test_the_kernel_table_is_the_ir_activation_ops():
    assert set(elementwise.ACTIVATIONS) == set(IR_ACTIVATIONS) == {"relu", "relu6", "leaky_relu", "sigmoid", "tanh",
                                                                   "elu", "hardswish", "hardsigmoid", "silu", "clip"}


def test_clip_takes_both_bounds_and_either_alone():
    x = rand(3, 10) * 3
    for lo, hi in [(-1.0, 0.5), (None, 0.25), (-0.5, None), (1.0, -1.0)]:
        alpha, beta = (-np.inf if lo is None else lo), (np.inf if hi is None else hi)
        check(elementwise.activation(t(x), "clip", alpha, beta), ir_ops.get("clip").reference(ClipAttrs(lo, hi), x))


def test_mul_same_shape_and_per_channel_gate():
    x, y, gate = rand(2, 3, 7, 5), rand(2, 3, 7, 5, seed=1), rand(2, 3, 1, 1, seed=2)
    check(elementwise.mul(t(x), t(y)), x * y)
    check(elementwise.mul(t(x), t(gate)), x * gate)
    n = elementwise.INTERPRETER_CAPS["BLOCK"] // 35 + 3  # a gate over more than one program
    big, g = rand(n, 1, 7, 5), rand(n, 1, 1, 1, seed=3)
    check(elementwise.mul(t(big), t(g)), big * g)
    with pytest.raises(ValueError, match=r"\(N, C, 1, 1\)"):
        elementwise.mul(t(x), t(rand(2, 3, 1, 5)))


@pytest.mark.parametrize("pads", [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (1, 2, 3, 4), (0, 0, 0, 0)])
def test_pad(pads):
    x, ref = rand(2, 3, 7, 5), ir_ops.get("pad").reference
    check(pad.pad(t(x), pads), ref(PadAttrs(pads), x))
    check(pad.pad(t(x)[:, 1:], pads, -2.5), ref(PadAttrs(pads, -2.5), x[:, 1:]))  # a strided view in
    check(pad.pad(t(x, torch.float16), pads, 1.5), ref(PadAttrs(pads, 1.5), x), "float16")


def test_pad_multi_tile():
    side = int(np.sqrt(pad.INTERPRETER_CAPS["BLOCK_P"])) + 1
    x = rand(2, pad.INTERPRETER_CAPS["TILE"] // pad.INTERPRETER_CAPS["BLOCK_P"] + 1, side, side - 2)
    check(pad.pad(t(x), (0, 0, 1, 1)), ir_ops.get("pad").reference(PadAttrs((0, 0, 1, 1)), x))


def test_an_activation_without_its_kernel_branch_fails_when_traced(monkeypatch):
    """A name in the table but missing from `activate`'s chain must not compute the identity."""
    monkeypatch.setattr(elementwise, "ACTIVATIONS", (*elementwise.ACTIVATIONS, "softplus"))
    with pytest.raises(Exception) as raised:  # the interpreter's error, or the compiler's (its cause says why)
        elementwise.activation(t(rand(3, 4)), "softplus")
    chain, e = [], raised.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("unknown ACTIVATION" in message for message in chain), chain
    with pytest.raises(ValueError, match="activation must be None or one of"):
        elementwise.activation(t(rand(3, 4)), "gelu")


def test_add_and_multi_block():
    a, b, c = rand(2, 3, 7, 5), rand(2, 3, 7, 5, seed=1), rand(2, 3, 7, 5, seed=2)
    check(elementwise.add(t(a), t(b)), a + b)
    check(elementwise.add(t(a), t(b), t(c), activation="relu"), np.maximum(a + b + c, 0))
    n = elementwise.INTERPRETER_CAPS["BLOCK"] + 11
    a, b = rand(n), rand(n, seed=1)
    check(elementwise.activation(elementwise.add(t(a), t(b)), "elu", alpha=0.5), ref_epilogue(a + b, None, "elu", 0.5))


def test_channel_affine_strided_input():
    big = rand(2, 9, 7, 5)
    scale, shift = rand(4, seed=1), rand(4, seed=2)
    y = elementwise.channel_affine(t(big)[:, 3:7], t(scale), t(shift), activation="relu")
    check(y, np.maximum(big[:, 3:7] * scale[:, None, None] + shift[:, None, None], 0))
    x2 = rand(4, 6)
    check(elementwise.channel_affine(t(x2), t(rand(6)), t(rand(6, seed=3))), x2 * rand(6) + rand(6, seed=3))


def test_elementwise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation must be None or one of"):
        elementwise.activation(t(rand(3, 4)), "gelu")
    with pytest.raises(ValueError, match="share shape and dtype"):
        elementwise.add(t(rand(3, 4)), t(rand(4, 3)))


# -- concat -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes,axis", [
    ([(2, 3, 7, 5), (2, 4, 7, 5)], 1), ([(2, 1, 7, 5), (2, 3, 7, 5), (2, 6, 7, 5)], 1),
    ([(2, 3, 7, 5), (2, 3, 7, 4)], -1), ([(2, 3, 7, 5), (1, 3, 7, 5)], 0), ([(3, 10), (3, 4)], 1),
])
def test_concat(shapes, axis):
    xs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    y = concat.concat([t(x) for x in xs], axis)
    assert torch.equal(y.cpu(), torch.from_numpy(np.concatenate(xs, axis)).float())


def test_copy_multi_tile_from_a_strided_view():
    caps = concat.INTERPRETER_CAPS
    side = int(np.sqrt(caps["BLOCK_P"])) + 3
    c = caps["TILE"] // caps["BLOCK_P"] // 2 + 1
    src = t(rand(2, c + 2, side, side + 1))[:, 1:c + 1]
    dst = torch.empty(2, c, side, side + 1, device=DEV)
    assert torch.equal(concat.copy(src, dst), src)


def test_quantize_rounds_half_to_even_exactly_and_saturates():
    """Code for code the reference's: ties to the even code, 0.49999997 to 0 (floor(v + 0.5) would give 1), far
    out of range saturated."""
    from convbench.ir.ops.quantize_linear import QuantAttrs
    from convbench.ir.ops.quantize_linear import reference as quantize_ref

    x = np.array([0.25, 0.75, 1.25, -0.25, -1.25, 0.24999999, 63.0, 64.0, -65.25, -66.0, 1e30, -1e30], np.float32)
    got = quant.qdq(t(x), t(np.array([0.5])), t(np.array([3.0])), dequantize=False, code_range=(-128, 127))
    want = quantize_ref(QuantAttrs((0.5,), (3,)), x)
    np.testing.assert_array_equal(got.cpu().numpy(), want)
    assert want[5] == 3.0 and list(want[:5]) == [3.0, 5.0, 5.0, 3.0, 1.0]


@pytest.mark.parametrize("axis, channels_last", [(1, True), (1, False), (3, False), (2, True)])
def test_quantize_and_dequantize_per_channel_in_either_layout(axis, channels_last):
    from convbench.ir.ops.dequantize_linear import reference as dequantize_ref
    from convbench.ir.ops.quantize_linear import QuantAttrs
    from convbench.ir.ops.quantize_linear import reference as quantize_ref

    x = rand(2, 3, 7, 5).astype(np.float32) * 3
    c = x.shape[axis]
    attrs = QuantAttrs(tuple(0.01 + 0.02 * k for k in range(c)), tuple(k - c // 2 for k in range(c)), axis, "int8")
    xt = t(x)
    if channels_last:
        xt = xt.to(memory_format=torch.channels_last)
    scale, zero = t(np.array(attrs.scale)), t(np.array(attrs.zero_point, np.float32))
    q = quant.qdq(xt, scale, zero, dequantize=False, code_range=(-128, 127), axis=axis)
    assert q.stride() == xt.stride()
    np.testing.assert_array_equal(q.cpu().numpy(), quantize_ref(attrs, x))
    d = quant.qdq(q, scale, zero, dequantize=True, axis=axis)
    np.testing.assert_allclose(d.cpu().numpy(), dequantize_ref(attrs, quantize_ref(attrs, x)), rtol=1e-6)


@pytest.mark.parametrize("case", ["3x3-s2-p1", "rect", "dilated", "grouped", "1x1-s2", "pad-gt-kernel", "depthwise",
                                  "depthwise-x2-s2"])
@pytest.mark.parametrize("channels_last, codes", [(False, "int8"), (True, "int8"), (True, "uint8")])
def test_conv2d_int8_is_the_dequantized_conv(case, channels_last, codes):
    """int8 codes × int8 weights in an int32 tl.dot (depthwise: the direct kernel's integer sums in float32): the
    float64 conv of the dequantized values, to float32 rounding (the sums are exact; only the final scaling
    rounds). Padding reads the zero point, so a padded tap is the real 0 the reference pads with; the zero point
    is not 0, so that matters."""
    xs, ws, stride, padding, dilation, groups = CONVS[case]
    attrs = Conv2dAttrs(stride, padding, dilation, groups)
    rng = np.random.default_rng(3)
    lo = 0 if codes == "uint8" else -128
    xq = rng.integers(lo, lo + 256, xs).astype(np.float32)
    wq = rng.integers(-127, 128, ws).astype(np.int8)
    sx, zx, sw, b = 0.037, lo + 139, 0.01 + 0.005 * np.arange(ws[0]), rand(ws[0])
    x_real = (xq.astype(np.float64) - zx) * sx
    w_real = wq.astype(np.float64) * sw.reshape(-1, 1, 1, 1)
    ref = ir_ops.get("conv2d").reference(attrs, x_real, w_real, b)
    r = rand(*ref.shape, seed=2)
    ref = ref_epilogue(ref, r, "relu")
    packed = conv2d.pack_int8(torch.from_numpy(wq), t(sw), sx, zx, t(b), groups, codes)
    x = t(xq)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = conv2d.conv2d_int8(x, packed, stride=attrs.stride, padding=attrs.padding, dilation=attrs.dilation,
                           residual=t(r), activation="relu")
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    check(y, ref)


def test_conv2d_int8_refuses_float_weights_and_a_depthwise_kernel_past_float32s_integers():
    with pytest.raises(ValueError, match="weight codes must be int8"):
        conv2d.pack_int8(t(rand(4, 3, 3, 3)), t(np.ones(4)), 0.1, 0)
    with pytest.raises(ValueError, match="depthwise 23×23 kernel's integer sums could exceed"):
        conv2d.pack_int8(torch.zeros(5, 1, 23, 23, dtype=torch.int8), t(np.ones(5)), 0.1, 0, groups=5)
    conv2d.pack_int8(torch.zeros(5, 1, 22, 22, dtype=torch.int8), t(np.ones(5)), 0.1, 0, groups=5)  # 484 taps fit
