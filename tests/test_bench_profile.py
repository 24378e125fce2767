"""profile: one-node graphs that compute what the node computes in the model, timings per node, the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convbench import models
from convbench.backends import get
from convbench.bench.profile import NodeTiming, Profile, layer_roofline, node_graph, profile
from convbench.bench.stats import Policy
from convbench.cli import main
from convbench.ir import interpreter

TINY = Policy(warmup_s=0.0, min_time_s=0.0, max_time_s=0.01, min_samples=3)


def test_each_one_node_graph_reproduces_its_node_inside_the_model():
    g = models.build("resnet18", batch=2, image_size=32)
    params = models.init_params(g, seed=0)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
    seen: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}

    def hook(node, args):
        from convbench.ir import ops

        out = ops.get(node.op).reference(node.attrs, *args)
        seen[node.name] = ({i: a for i, a in zip(node.inputs, args, strict=True) if i not in g.params}, out)
        return out

    interpreter.run(g, params, {"input": x}, hook=hook)
    for node in g.nodes:
        if node.op not in ("conv2d", "add", "batch_norm", "linear"):
            continue
        sub = node_graph(g, node)
        exe = get("numpy").compile(sub, {p: params[p] for p in sub.params})
        feed, want = seen[node.name]
        np.testing.assert_allclose(exe(*(feed[name] for name in sub.inputs)), want, rtol=1e-5, atol=1e-6,
                                   err_msg=node.name)


def test_profile_times_every_node_and_the_whole_graph(tmp_path):
    prof = profile("lenet5", "numpy", batch=2, policy=TINY, graph_policy=TINY)
    assert [n.name for n in prof.nodes] == [n.name for n in models.build("lenet5").nodes]
    assert all(n.median_s and n.median_s > 0 and n.n >= 3 and not n.error for n in prof.nodes)
    conv = next(n for n in prof.nodes if n.op == "conv2d")
    assert conv.flops > 0 and conv.bytes > 0 and conv.gflops > 0
    assert prof.graph_median_s > 0 and prof.nodes_total_s > 0
    layer_roofline(prof, tmp_path / "layers.png", peak_gflops=100.0, bandwidth_gbs=10.0)
    assert (tmp_path / "layers.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_cli_json_and_errors(capsys):
    assert main(["profile", "-m", "lenet5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "lenet5" and len(doc["nodes"]) == 12 and doc["nodes_total_s"] > 0
    assert main(["profile", "-m", "nosuchnet"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["profile", "-m", "lenet5", "-b", "nosuchbackend"]) == 2
    assert main(["profile", "-m", "lenet5", "-b", "numpy:threads=abc"]) == 2
    assert "option threads must be int | None, got 'abc'" in capsys.readouterr().err
    assert main(["profile", "-m", "lenet5", "-b", "numpy,torch"]) == 2
    assert "profile takes one backend" in capsys.readouterr().err


def test_profile_of_what_the_backend_cannot_run_is_unsupported_not_bad_input(capsys):
    assert main(["profile", "-m", "lenet5", "--dtype", "bfloat16"]) == 1  # numpy has no bfloat16
    err = capsys.readouterr().err
    assert "numpy cannot run lenet5 in bfloat16 here: backend 'numpy' does not support dtype bfloat16" in err


@pytest.mark.slow  # several CLI processes: 14 s
def test_profile_takes_the_image_sizes_every_command_takes(capsys):
    assert main(["profile", "-m", "resnet18", "--image-size", "small", "--top", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 32


@pytest.mark.slow  # OpenVINO compiles resnet18: 4 s
def test_openvino_counters_map_onto_the_nodes_by_name(tmp_path):
    """OpenVINO's per-layer counters on the same network: every IR node lands in exactly one layer group, a
    conv's group is the OpenVINO layer of its name, a node OpenVINO fused away joins its input's layer."""
    pytest.importorskip("openvino")
    from convbench.bench.profile import by_kind, layers_vs_openvino_plot, map_layers, openvino_layers

    g = models.build("resnet18", batch=2, image_size=32)
    ov = openvino_layers("resnet18", batch=2, image_size=32, threads=1, calls=3, warmup=1)
    assert ov.calls == 3 and ov.graph_median_s > 0
    executed = {la.name for la in ov.layers if la.status == "EXECUTED"}
    assert {"conv1", "layer1.0.conv1", "maxpool"} <= executed
    times = {n.name: 1e-3 for n in g.nodes}  # a stand-in profile: each node 1 ms
    prof_nodes = tuple(NodeTiming(n.name, n.op, (), 0, 0, times[n.name], None, 1) for n in g.nodes)
    prof = Profile("resnet18", "numpy", 2, 32, "float32", 0.1, prof_nodes)
    groups = map_layers(g, prof, ov)
    members = [name for grp in groups for name in grp.nodes]
    assert sorted(members) == sorted(n.name for n in g.nodes)  # each node once
    home = {name: grp for grp in groups for name in grp.nodes}
    conv1 = home["conv1"]
    assert conv1.layer == "conv1" and conv1.ov_type == "Convolution" and conv1.kind == "conv2d 7×7 s2"
    assert home["bn1"] is conv1 and conv1.ov_s and conv1.backend_s == pytest.approx(1e-3 * len(conv1.nodes))
    assert home["layer1.0.add"].layer == "layer1.0.conv2"  # the residual add fused into the conv before it
    assert home["fc"].ov_s is not None  # fc/…: OpenVINO's FullyConnected named after the node, with a suffix
    kinds = by_kind(groups)
    assert sum(r["layers"] for r in kinds) == len(groups)
    assert sum(r["backend_s"] for r in kinds) == pytest.approx(1e-3 * len(g.nodes))
    assert sum(r["ov_s"] for r in kinds) == pytest.approx(sum(grp.ov_s or 0 for grp in groups))
    layers_vs_openvino_plot(groups, "numpy", tmp_path / "vs.png", top=5)
    assert (tmp_path / "vs.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # OpenVINO quantizes and compiles resnet18: 5 s
def test_openvino_counters_are_taken_at_the_profiles_precision(monkeypatch):
    """``--openvino`` beside an int8 profile counts OpenVINO's int8 kernels on the same QDQ graph, not f32 ones,
    from one compile with PERF_COUNT (the backend's own, not a second model beside it)."""
    pytest.importorskip("openvino")
    from convbench.backends import openvino as ov_backend
    from convbench.bench.profile import openvino_layers

    core, compiles = ov_backend._core(), []

    class Counted:
        def __getattr__(self, name):
            return getattr(core, name)

        def compile_model(self, model, device, config):
            compiles.append(config)
            return core.compile_model(model, device, config)

    monkeypatch.setattr(ov_backend, "_core", lambda: Counted())
    ov = openvino_layers("resnet18", batch=2, image_size=32, threads=1, calls=2, warmup=1, dtype="int8")
    assert len(compiles) == 1 and compiles[0]["PERF_COUNT"] is True, compiles
    kernels = {la.exec_type for la in ov.layers if la.status == "EXECUTED" and la.type == "Convolution"}
    # an f32 compile runs every conv in f32; which convs OpenVINO keeps in f32 at a low precision is the CPU's
    assert any(k.lower().endswith("_i8") for k in kernels), kernels
    if "bf16" in get("openvino").precisions():  # a CPU with bf16 (AVX512-BF16, AMX)
        ov = openvino_layers("resnet18", batch=2, image_size=32, threads=1, calls=2, warmup=1, dtype="bfloat16")
        kernels = {la.exec_type for la in ov.layers if la.status == "EXECUTED" and la.type == "Convolution"}
        assert any(k.lower().endswith("_bf16") for k in kernels), kernels
