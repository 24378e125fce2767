"""The Triton backend's channels-last path (under the interpreter when there is no GPU): the NHWC implicit GEMM
against the float64 reference for every stride/padding/dilation/groups case the zoo uses, split-K 1–4 with sizes
that are not multiples of the block, the NHWC plan against the NCHW oracle, the tuned-config files (loader,
validator, pruned space, tuner) and the CUDA-graph wrapper's host logic (with a fake ``torch.cuda``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convbench.backends import BackendError
from convbench.backends.correctness import compare
from convbench.backends.triton import BACKEND
from convbench.ir import ops as ir_ops
from convbench.ir.builder import GraphBuilder
from convbench.ir.ops.conv2d import Conv2dAttrs
from convbench.testing import make_case, run_case

_ok, _why = BACKEND.available()
if not _ok:
    pytest.skip(_why, allow_module_level=True)

import torch  # noqa: E402

from convbench.backends.triton.graphs import GraphedPlan, graphed  # noqa: E402
from convbench.kernels.triton import configs, conv2d, elementwise, gemm, linear, runtime, softmax  # noqa: E402

DEV, CL = runtime.DEVICE, torch.channels_last


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, *shape]).standard_normal(shape)


def t(a: np.ndarray, dtype: torch.dtype = torch.float32, fmt: torch.memory_format = CL) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(a)).to(DEV, dtype)
    return x.to(memory_format=fmt) if x.dim() == 4 else x


def check(y: torch.Tensor, ref: np.ndarray, dtype: str = "float32") -> None:
    got = y.detach().to(torch.float64).cpu().numpy()
    assert got.shape == ref.shape
    a = compare(got, ref, dtype)
    assert a.ok, a.reason


# id: x shape, weight shape, stride, padding, dilation, groups: the zoo's conv forms, every size odd/distinct
CONVS = {
    "1x1": ((2, 6, 7, 5), (9, 6, 1, 1), 1, 0, 1, 1),
    "1x1-s2": ((3, 6, 7, 5), (4, 6, 1, 1), 2, 0, 1, 1),
    "3x3-p1": ((2, 5, 7, 6), (7, 5, 3, 3), 1, 1, 1, 1),
    "3x3-s2-p1": ((2, 3, 9, 7), (4, 3, 3, 3), 2, 1, 1, 1),
    "1x7-p0x3": ((2, 3, 8, 9), (5, 3, 1, 7), 1, (0, 3), 1, 1),
    "dilated": ((2, 3, 9, 8), (4, 3, 2, 3), 1, (1, 2), (3, 2), 1),
    "grouped": ((2, 6, 9, 8), (9, 2, 3, 3), 2, 1, 2, 3),
    "5x5-p2": ((2, 3, 11, 9), (7, 3, 5, 5), 1, 2, 1, 1),
    "7x7-s2-p3": ((1, 3, 13, 11), (5, 3, 7, 7), 2, 3, 1, 1),
    "11x11-s4-p2": ((2, 3, 23, 19), (6, 3, 11, 11), 4, 2, 1, 1),
    "pad-gt-kernel": ((2, 3, 6, 5), (4, 3, 2, 2), 1, 3, 1, 1),
}


def conv_ref(case: str, fused: bool):
    xs, ws, stride, padding, dilation, groups = CONVS[case]
    attrs = Conv2dAttrs(stride, padding, dilation, groups)
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    ref = ir_ops.get("conv2d").reference(attrs, x, w, b if fused else None)
    r = rand(*ref.shape, seed=1) if fused else None
    return attrs, x, w, b, r, np.maximum(ref + r, 0) if fused else ref


@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("split", [1, 3])
def test_nhwc_conv(case, split):
    """Small blocks (32×16×16) so M, O and C are ragged against them; split 3 runs the partial sums and the
    epilogue kernel (over taps, or over channel blocks for a 1×1)."""
    attrs, x, w, b, r, ref = conv_ref(case, fused=True)
    packed = conv2d.pack_weight(t(w), t(b), attrs.groups, layout="nhwc")
    assert packed.layout == "nhwc" and packed.weight.shape == (w.shape[0], w.shape[2] * w.shape[3] * w.shape[1])
    y = conv2d.conv2d(t(x), packed, stride=attrs.stride, padding=attrs.padding, dilation=attrs.dilation,
                      residual=t(r), activation="relu", config=gemm.GemmConfig(32, 16, 16, split))
    assert y.is_contiguous(memory_format=CL)
    check(y, ref)


def test_nhwc_conv_default_config_slices_and_half_precision():
    """Channel slices of channels-last tensors in, as residual and out (concat in place); the default config;
    float16 and bfloat16 storage with float32 accumulation."""
    _, x, w, b, r, ref = conv_ref("3x3-p1", fused=True)
    big_x = t(rand(2, 9, 7, 6))
    big_x[:, 2:7] = t(x)
    big_r = t(rand(2, 10, 7, 6, seed=2))
    big_r[:, 3:10] = t(r)
    out = torch.zeros(2, 12, 7, 6, device=DEV).to(memory_format=CL)
    conv2d.conv2d(big_x[:, 2:7], conv2d.pack_weight(t(w), t(b), layout="nhwc"), padding=(1, 1),
                  residual=big_r[:, 3:10], activation="relu", out=out[:, 4:11])
    check(out[:, 4:11], ref)
    assert not out[:, :4].any() and not out[:, 11:].any(), "wrote outside its slice"
    y = conv2d.conv2d(t(x, torch.float16), conv2d.pack_weight(t(w), t(b), dtype=torch.float16, layout="nhwc"),
                      padding=(1, 1), residual=t(r, torch.float16), activation="relu")
    assert y.dtype == torch.float16
    check(y, ref, "float16")
    y = conv2d.conv2d(t(x, torch.bfloat16), conv2d.pack_weight(t(w), t(b), dtype=torch.bfloat16, layout="nhwc"),
                      padding=(1, 1), residual=t(r, torch.bfloat16), activation="relu")
    check(y, ref, "bfloat16")  # on GPU straight into tl.dot; the interpreter upcasts (its bf16 dot is wrong)


def test_nhwc_conv_needs_channels_last_memory():
    packed = conv2d.pack_weight(t(rand(4, 3, 3, 3)), layout="nhwc")
    with pytest.raises(ValueError, match="input must have channel stride 1"):
        conv2d.conv2d(t(rand(2, 3, 7, 6), fmt=torch.contiguous_format), packed)
    dw = conv2d.pack_weight(t(rand(5, 1, 3, 3)), groups=5, layout="nhwc")
    assert dw.layout == "nchw"  # depthwise keeps its direct kernel in either layout


@pytest.mark.skipif(runtime.INTERPRET, reason="needs a GPU: the interpreter compiles nothing (issue 20 item 5)")
def test_the_3x3_kernels_a_and_b_loads_become_async_copies():
    """The TTGIR of a ResNet-50 layer2 3×3 (b2, fp16): the channel vector per tap is contiguous, so the pipeliner
    turns both tile loads into async copies (cp.async), not only the weight's."""
    x = torch.randn(2, 128, 28, 28, device=DEV, dtype=torch.float16).to(memory_format=CL)
    w = torch.randn(128, 128, 3, 3, device=DEV)
    packed = conv2d.pack_weight(w, None, dtype=torch.float16, layout="nhwc")
    out = torch.empty(2, 128, 28, 28, device=DEV, dtype=torch.float16).to(memory_format=CL)
    compiled = gemm.launch(x, packed, out, None, (1, 1), (1, 1), (1, 1), "relu", 0.0, 0.0, "ieee",
                           gemm.GemmConfig(128, 128, 64, 1, 8, 3))
    assert gemm.async_loads(compiled.asm["ttgir"]) >= 2, compiled.asm["ttgir"][:4000]


def test_split_k_heuristic():
    # ResNet-50 b32 layer4 3×3 on 132 SMs: 13·4 = 52 tiles of 128×128 → 2-way; enough tiles → none
    assert gemm.split_k(1568, 512, 9 * 8, 1, 128, 128, 132) == 2
    assert gemm.split_k(1568, 2048, 8, 1, 128, 128, 132) == 1
    assert gemm.split_k(32, 1000, 32, 1, 64, 128, 132) == 4  # the classifier: 8 tiles, a long K
    assert gemm.split_k(32, 1000, 5, 1, 64, 128, 132) == 1  # too short a K loop to split
    assert gemm.split_k(50, 60, 9, 1, 64, 64, runtime.INTERPRETER_SM_COUNT) == 2
    cfg = gemm.default_config(100, 7, 40, 9, 1, 4)
    assert cfg.split_k == 2 and (cfg.block_m, cfg.block_n, cfg.block_k) == (
        (128, 8, 64) if runtime.INTERPRET else (128, 32, 64))
    with pytest.raises(ValueError, match=r"split_k must be 1\.\.4"):
        gemm.GemmConfig(64, 64, 32, 5)
    with pytest.raises(ValueError, match="block_n must be a power of two"):
        gemm.GemmConfig(64, 48, 32)


@pytest.mark.parametrize("split", [1, 2, 4])
def test_linear_split_k(split):
    x, w, b, r = rand(5, 131), rand(37, 131), rand(37), rand(5, 37, seed=1)
    y = linear.linear(t(x), linear.pack_weight(t(w), t(b)), residual=t(r), activation="tanh",
                      config=gemm.GemmConfig(16, 16, 16, split))
    check(y, np.tanh(x @ w.T + b + r))


def test_elementwise_kernels_keep_channels_last():
    x, y, gate = rand(2, 3, 7, 5), rand(2, 3, 7, 5, seed=1), rand(2, 3, 1, 1, seed=2)
    out = elementwise.add(t(x), t(y), activation="relu")
    assert out.is_contiguous(memory_format=CL) and not out.is_contiguous()
    check(out, np.maximum(x + y, 0))
    check(elementwise.mul(t(x), t(gate, fmt=torch.contiguous_format)), x * gate)
    with pytest.raises(ValueError, match="laid out alike"):
        elementwise.add(t(x), t(y, fmt=torch.contiguous_format))
    big = t(rand(2, 9, 7, 5))
    scale, shift = rand(4, seed=1), rand(4, seed=2)
    aff = elementwise.channel_affine(big[:, 3:7], t(scale), t(shift), activation="relu")
    assert aff.is_contiguous(memory_format=CL)
    check(aff, np.maximum(big[:, 3:7].double().cpu().numpy() * scale[:, None, None] + shift[:, None, None], 0))
    ref = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    check(softmax.softmax(t(x), 1), ref)


# -- plans ------------------------------------------------------------------------------------------------------
def net_graph():
    """Stem on the NCHW input (and an add reading that input), a residual 3×3 pair, a flatten of a 3×2 map into
    a linear (the permuted weight), BN left unfolded by passes=none."""
    b = GraphBuilder("net", (2, 3, 7, 5))
    stem = b.relu(b.conv2d(b.input, 6, 3, padding=1, name="stem"), name="stem.relu")
    side = b.conv2d(b.input, 6, 1, name="side")
    y = b.conv2d(b.relu(b.conv2d(stem, 6, 3, padding=1, name="c1"), name="c1.relu"), 6, 3, padding=1, name="c2")
    y = b.relu(b.add(y, side, name="add"), name="add.relu")
    y = b.max_pool2d(b.batch_norm(y, name="bn"), 2, 2, name="pool")
    return b.build(b.linear(b.flatten(y, name="flat"), 4, name="fc"))


@pytest.mark.parametrize("passes", ["default", "none"])
def test_nhwc_plan_matches_the_nchw_oracle(passes):
    case = make_case("net", net_graph())
    nhwc = BACKEND.compile(case.graph, case.params, passes=passes)
    nchw = BACKEND.compile(case.graph, case.params, passes=passes, layout="nchw")
    assert nhwc.report.details.layout == "nhwc" and nchw.report.details.layout == "nchw"
    plan = nhwc.report.details.plan
    assert any(line.startswith("flat: flatten (an NHWC view") for line in plan), plan
    x = case.input_list()
    a, b = nhwc(*x), nchw(*x)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    assert run_case(BACKEND, case, passes=passes).status == "pass"
    env = {"input": torch.from_numpy(x[0]).to(DEV)}
    steps = nhwc.artifact.steps
    stem = next(s for s in steps if s.output.startswith("stem"))
    assert stem.alloc == (2, 6, 7, 5)
    assert nhwc.artifact.memory_format == CL and nhwc.artifact.execute(env)[0].shape == (2, 4)


def test_report_says_split_k_and_cuda_graph_state():
    case = make_case("net", net_graph())
    exe = BACKEND.compile(case.graph, case.params)
    details = exe.report.details
    assert details.split_k_launches == sum(s.split_k > 1 for s in exe.artifact.steps) >= 1
    assert details.cuda_graph == ("off (the interpreter runs on the CPU: no CUDA graphs)" if runtime.INTERPRET
                                  else "on")
    assert BACKEND.compile(case.graph, case.params, cuda_graph=False).report.details.cuda_graph == "off"


# -- tuned configs ----------------------------------------------------------------------------------------------
def test_config_file_round_trip_and_find(tmp_path):
    key = configs.layer_key("float16", 1568, 512, 512, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert key == "float16/m1568/n512/c512/k3x3/s1x1/p1x1/d1x1/g1"
    table = configs.ConfigTable("NVIDIA H200", "3.6.0", {key: gemm.GemmConfig(128, 64, 64, 2, 4, 4)})
    path = configs.save(table, tmp_path / configs.file_name("NVIDIA H200", "3.6.0"))
    assert path.name == "nvidia_h200-triton3.6.0.json"
    back = configs.load(path)
    assert back.get(key) == gemm.GemmConfig(128, 64, 64, 2, 4, 4) and back.gpu == "NVIDIA H200"
    assert configs.find([tmp_path / "none", tmp_path], "NVIDIA H200", "3.6.0").configs == back.configs
    assert configs.find([tmp_path], "NVIDIA H100", "3.6.0") is None
    merged = configs.merged(back, "NVIDIA H200", "3.6.0", {"k": gemm.GemmConfig(64, 64, 32)})
    assert set(merged.configs) == {key, "k"}


@pytest.mark.parametrize("text,why", [
    ("{not json", "not JSON"),
    ("[]", "expected an object"),
    ('{"schema": 2, "gpu": "g", "triton": "t", "configs": {}}', "schema 2"),
    ('{"schema": 1, "gpu": "", "triton": "t", "configs": {}}', "'gpu' must be a non-empty string"),
    ('{"schema": 1, "gpu": "g", "triton": "t", "configs": {"k": {"block_m": 64}}}', "entry 'k' must have"),
    ('{"schema": 1, "gpu": "g", "triton": "t", "configs": {"k": {"block_m": 96, "block_n": 64, "block_k": 32, '
     '"split_k": 1, "num_warps": 4, "num_stages": 3}}}', "entry 'k': GemmConfig.block_m must be a power of two"),
])
def test_a_bad_config_file_is_one_error_naming_it(tmp_path, text, why):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(configs.ConfigFileError, match=why) as e:
        configs.load(path)
    assert str(path) in str(e.value)
    with pytest.raises(BackendError, match=f"option configs: triton config file {path}"):
        BACKEND.compile(*_tiny(), configs=str(path))


def test_a_table_for_another_gpu_under_its_name_is_refused(tmp_path):
    path = configs.save(configs.ConfigTable("other", "1.0"), tmp_path / configs.file_name("NVIDIA H200", "3.6.0"))
    with pytest.raises(configs.ConfigFileError, match=f"{path}: written for other"):
        configs.find([tmp_path], "NVIDIA H200", "3.6.0")


def _tiny():
    case = make_case("net", net_graph())
    return case.graph, case.params


def test_candidates_are_pruned_and_tune_checks_every_one():
    cands = configs.candidates(1568, 512, 512, 9, 1, 132)
    assert 0 < len(cands) <= 24 and len(set(cands)) == len(cands)
    assert all((c.block_m + c.block_n) * c.block_k * 2 * c.num_stages <= configs.SMEM_BYTES for c in cands)
    assert {c.split_k for c in cands} == {1, 2, 4}  # 13·4 tiles of 128×128 on 132 SMs: split-K considered
    assert {c.split_k for c in configs.candidates(25088, 256, 64, 1, 1, 132)} == {1}  # plenty of tiles
    small = configs.candidates(50, 20, 24, 1, 1, 132)
    assert all(c.block_m == 64 and c.block_n == 64 and c.block_k == 32 for c in small)
    good, wrong, boom = gemm.GemmConfig(64, 64, 32), gemm.GemmConfig(128, 64, 32), gemm.GemmConfig(64, 128, 32)
    speed = {good: 2.0, wrong: 1.0, boom: 0.5}

    def run(c):
        if c == boom:
            raise RuntimeError("out of resources")
        return c

    best, trials = configs.tune([good, wrong, boom], run, lambda out: "wrong" if out == wrong else "",
                                lambda fn: speed[fn()])
    assert best == good
    assert [(tr.config, tr.seconds is None) for tr in trials] == [(good, False), (wrong, True), (boom, True)]
    assert "out of resources" in trials[2].error
    with pytest.raises(RuntimeError, match="every candidate was rejected"):
        configs.tune([wrong], run, lambda out: "wrong", lambda fn: 1.0)


# -- CUDA graph host logic --------------------------------------------------------------------------------------
class FakeCuda:
    """torch.cuda's five names as GraphedPlan uses them; ``replay`` re-runs the captured function on the static
    buffers, which is what a replayed graph does."""

    def __init__(self, fail: bool = False):
        self.fail, self.log = fail, []
        fake = self

        class Stream:
            def wait_stream(self, other):
                fake.log.append("wait")

        class CUDAGraph:
            def replay(self):
                fake.log.append("replay")
                fake.on_replay()

        self.Stream, self.CUDAGraph = Stream, CUDAGraph

    def current_stream(self):
        return self.Stream()

    def stream(self, s):
        return _Ctx(self.log, "side")

    def graph(self, g):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        return _Ctx(self.log, "capture")


class _Ctx:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def __enter__(self):
        self.log.append(f"{self.name}:enter")

    def __exit__(self, *exc):
        self.log.append(f"{self.name}:exit")


def test_cuda_graph_copies_in_replays_and_copies_out():
    calls = []

    def execute(feed):
        calls.append(feed["x"].clone())
        return [feed["x"] * 2]

    cuda = FakeCuda()
    g = GraphedPlan(execute, {"x": torch.zeros(3)}, cuda, warmup=2)
    cuda.on_replay = lambda: g.static_out[0].copy_(g.static_in["x"] * 2)
    assert g.captured and len(calls) == 3  # two warm-ups, one capture
    assert cuda.log[:4] == ["wait", "side:enter", "side:exit", "wait"] and "capture:enter" in cuda.log
    y1 = g({"x": torch.tensor([1.0, 2.0, 3.0])})
    y2 = g({"x": torch.tensor([4.0, 5.0, 6.0])})
    assert len(calls) == 3 and cuda.log.count("replay") == 2  # replays, not re-executions
    assert y1[0].tolist() == [2.0, 4.0, 6.0] and y2[0].tolist() == [8.0, 10.0, 12.0]  # outputs copied out
    assert y2[0].data_ptr() != g.static_out[0].data_ptr()
    with pytest.raises(ValueError, match=r"captured for torch\.float32"):
        g({"x": torch.zeros(4)})
    with pytest.raises(ValueError, match="differ from the captured"):
        g({"y": torch.zeros(3)})


def test_cuda_graph_falls_back_when_capture_is_impossible():
    run = lambda feed: [feed["x"] + 1]  # noqa: E731
    g = GraphedPlan(run, {"x": torch.zeros(2)}, FakeCuda(fail=True))
    assert not g.captured and "capture failed, running step by step" in g.reason
    assert g({"x": torch.ones(2)})[0].tolist() == [2.0, 2.0]
    fn, state = graphed(run, {"x": torch.zeros(2)}, True, False, FakeCuda(fail=True))
    assert state.startswith("capture failed") and fn({"x": torch.ones(2)})[0].tolist() == [2.0, 2.0]
    assert graphed(run, {}, False, False)[1] == "off"
    assert graphed(run, {}, True, True) == (run, "off (the interpreter runs on the CPU: no CUDA graphs)")
    assert json.loads(json.dumps({"state": state}))  # the state is plain text, as the report stores it
