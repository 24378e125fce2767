"""The hand-written TVM CPU schedules (backends/tvm/schedule.py): which functions each rule takes, and that what
they compute matches the float64 reference on shapes with every dimension distinct, through every tile path
(vector widths 16, 8 and 4; register tiles that do and do not fill the output row; epilogues with bias,
residual and activation; stride, padding, dilation, batch > 1). The conformance suite runs the same rules on
its op corpus (tests/test_tvm_conformance.py); this file makes sure the rules actually fire."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder

tvm = pytest.importorskip("tvm")

from convbench.backends.tvm import schedule as tvm_schedule  # noqa: E402

TVM = cb.backends.get("tvm")


def run(graph: cb.Graph, **options):
    params = cb.models.init_params(graph, seed=0, calibrate=False)
    x = np.random.default_rng(1).standard_normal(graph.inputs["input"].shape).astype(np.float32)
    ref = cb.backends.get("numpy").compile(graph, params, dtype="float64")(x.astype(np.float64))
    exe = TVM.compile(graph, params, threads=2, use_shipped_db=False, **options)
    agreement = compare(exe(x), ref, "float32")
    assert agreement.ok, agreement
    return exe.report.details


def conv_graph(out_channels: int, *, stride=1, padding=0, dilation=1, kernel=3, groups=1, bias=True,
               residual=False, input_shape=(2, 5, 11, 13)) -> cb.Graph:
    b = GraphBuilder("conv", input_shape)
    y = b.conv2d(b.input, out_channels, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 bias=bias, name="conv")
    if residual:  # a second conv of the same output shape to add: the fused add-relu epilogue
        skip = b.conv2d(b.input, out_channels, kernel, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, bias=False, name="skip")
        y = b.add(y, skip)
    return b.build(b.relu(y))


@pytest.mark.parametrize(("out_channels", "options"), [
    (32, {}),                                                 # V = 16, 2 vectors; 11×13 output
    (32, {"stride": 2, "padding": (1, 2)}),                   # 6×7 output, asymmetric padding
    (24, {"dilation": 2, "padding": 2, "bias": False}),       # V = 8, 3 vectors, no bias
    (12, {"kernel": (1, 3), "padding": (0, 1)}),              # V = 4, non-square kernel
    (48, {"residual": True, "padding": 1}),                   # bias + residual + ReLU folded into the store
    (16, {"kernel": 7, "stride": 2, "padding": 3, "input_shape": (3, 3, 23, 17)}),  # a stem: C = 3, 7×7/2
    (20, {"kernel": 1, "residual": True}),                    # pointwise: reads the input itself (V = 4)
    (32, {"kernel": 1, "stride": 2, "bias": False}),          # a ResNet downsample: 1×1/2, unpadded
])
def test_conv_rule_matches_the_reference(out_channels, options):
    details = run(conv_graph(out_channels, **options))
    convs = 2 if options.get("residual") else 1
    assert details.hand_scheduled.get("conv2d") == convs, details.hand_scheduled


def test_convs_the_rule_does_not_take_are_still_correct_and_parallel():
    # Grouped (and so depthwise) convs and output channels with no vector width: TVM's loops, made parallel.
    details = run(conv_graph(10, groups=5, padding=1))
    assert "conv2d" not in details.hand_scheduled and details.hand_scheduled.get("parallel", 0) >= 1
    assert "conv2d" not in run(conv_graph(6, padding=1)).hand_scheduled


@pytest.mark.parametrize(("batch", "features", "out"), [(1, 37, 48), (3, 29, 40), (5, 11, 20)])
def test_matmul_rule_matches_the_reference(batch, features, out):
    b = GraphBuilder("fc", (batch, features))
    details = run(b.build(b.relu(b.linear(b.input, out, name="fc"))))
    assert details.hand_scheduled.get("matmul") == 1


def test_pools_softmax_and_lrn_take_the_parallel_rule():
    b = GraphBuilder("misc", (2, 6, 13, 11))
    x = b.lrn(b.max_pool2d(b.input, 3, 2, padding=1, ceil_mode=True), size=3)
    x = b.softmax(b.flatten(b.adaptive_avg_pool2d(x, (3, 2))))
    details = run(b.build(x))
    assert details.hand_scheduled.get("parallel", 0) >= 3


def test_hand_schedules_off_gives_the_same_numbers_from_plain_loops():
    g = conv_graph(32, padding=1, residual=True)
    assert run(g, hand_schedules=False).hand_scheduled == {}


def test_register_tiles_divide_the_row_and_fit_the_registers():
    for width in (1, 7, 13, 14, 27, 28, 55, 56, 112):
        for vectors in (1, 2, 3, 4, 8, 32, 128):
            wi, om = tvm_schedule.register_tile(width, vectors)
            assert width % wi == 0 and vectors % om == 0 and wi * om <= tvm_schedule.ACCUMULATORS
    assert tvm_schedule.register_tile(7, 32) == (7, 2)  # ResNet's last stage: the whole 7-wide row
    assert tvm_schedule.register_tile(56, 4) == (4, 4)


def test_vector_width_follows_the_target():
    target = tvm.target.Target
    assert tvm_schedule.vector_lanes(target({"kind": "llvm", "mcpu": "skylake-avx512"})) == 16
    assert tvm_schedule.vector_lanes(target({"kind": "llvm", "mcpu": "haswell"})) == 8
    assert tvm_schedule.vector_lanes(target({"kind": "llvm", "mcpu": "x86-64", "mattr": ["+avx512f"]})) == 16


@pytest.mark.parametrize(("kernel", "padding", "copies"), [(1, 0, 0), (3, 0, 0), (3, 1, 1), (1, 1, 1)])
def test_only_a_real_padding_is_made_as_a_buffer(kernel, padding, copies):
    # TVM's conv2d emits its zero padding as a copy of the whole input; the rule reads the input instead
    # (that copy was half the time of ResNet-50's 56×56 pointwise convs). A real padding stays one buffer.
    from convbench.backends.tvm import compile as tvm_compile
    from convbench.backends.tvm import lower as tvm_lower

    graph = conv_graph(16, kernel=kernel, padding=padding, input_shape=(2, 5, 9, 7))
    params = cb.models.init_params(graph, seed=0, calibrate=False)
    target = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})
    fused = tvm_compile.fuse(tvm_lower.lower(graph, params).mod, {"kind": "llvm", "mcpu": "haswell"})
    [(_, func)] = [(name, f) for name, f in tvm_compile.tir_functions(fused) if "conv2d" in name]
    sch = tvm_schedule.schedule_conv2d(func, target)
    assert sch is not None
    blocks = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert sum(name.startswith("pad_temp") for name in blocks) == copies, blocks


@pytest.mark.slow  # four TVM builds: ~6 s
@pytest.mark.parametrize(("out_channels", "options"), [
    (16, {"padding": 1, "residual": True}),              # 3×3: V = 8 on AVX2, 2 vectors, the residual epilogue
    (24, {"kernel": 1, "residual": True}),               # 1×1 reading its input in place
    (16, {"kernel": 1, "stride": 2, "bias": False}),     # 1×1/2 downsample
    (12, {"kernel": 7, "stride": 2, "padding": 3, "input_shape": (2, 3, 23, 17)}),  # the stem, V = 4
])
def test_the_rules_build_and_agree_on_an_avx2_only_target(out_channels, options):
    # The hand-written schedules stay portable: compiled for haswell (AVX2, 8-float vectors, no AVX-512), which
    # this CPU also runs, they schedule the convs and match the float64 reference.
    from tvm import relax

    from convbench.backends.tvm import compile as tvm_compile
    from convbench.backends.tvm import lower as tvm_lower

    graph = conv_graph(out_channels, **options)
    params = cb.models.init_params(graph, seed=0, calibrate=False)
    x = np.random.default_rng(1).standard_normal(graph.inputs["input"].shape).astype(np.float32)
    ref = cb.backends.get("numpy").compile(graph, params, dtype="float64")(x.astype(np.float64))
    built = tvm_compile.build(tvm_lower.lower(graph, params).mod, {"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    assert built.hand_scheduled.get("conv2d") == (2 if options.get("residual") else 1), built.hand_scheduled
    out = relax.VirtualMachine(built.executable, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    agreement = compare(out, ref, "float32")
    assert agreement.ok, agreement
