"""convbench's compile cache in front of OpenVINO's (backends/openvino/cache.py): a hit skips the pipeline and the
lowering and gives the executable a miss gives; what keys it; entries that do not read back."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import pytest

from convbench.backends import template
from convbench.backends.base import BackendError
from convbench.ir.builder import GraphBuilder
from convbench.ir.passes.quantize import quantize_graph
from convbench.models import init_params

pytest.importorskip("openvino", reason="openvino is not installed; "
                                       "pip install -c constraints.txt 'convbench[openvino]'")

from convbench.backends import openvino as ov_backend
from convbench.backends.openvino import cache

OV = ov_backend.BACKEND
# what differs between a hit and the miss that filled the cache: how it was obtained, and the times
HOW = {"loaded_from_cache", "cache_hit", "lower_s", "ov_compile_s", "cache_s"}


def _net(eps: float = 1e-5):
    """conv → batch_norm → relu → linear, every dim distinct (N=2, C=3, H=7, W=5)."""
    b = GraphBuilder("cache-net", (2, 3, 7, 5))
    y = b.relu(b.batch_norm(b.conv2d(b.input, 4, 3, name="conv", padding=1), name="bn", eps=eps))
    graph = b.build(b.linear(b.flatten(y), 6, name="fc"))
    return graph, init_params(graph, seed=3)


@pytest.fixture(scope="module")
def net():
    graph, params = _net()
    x = np.random.default_rng(7).standard_normal((2, 3, 7, 5)).astype(np.float32)
    return graph, params, x


def _files(d) -> list[str]:
    return sorted(os.listdir(d))


def test_a_second_compile_hits_skips_pipeline_and_lowering_and_runs_the_same(net, tmp_path, monkeypatch):
    graph, params, x = net
    plain = OV.compile(graph, params, threads=1, passes="default")
    cold = ov_backend.OpenVinoBackend().compile(graph, params, cache_dir=str(tmp_path), threads=1, passes="default")
    c = cold.report.details
    assert (c.cache_hit, c.loaded_from_cache) == (False, False) and cold.report.warnings == ()
    gen = json.loads((tmp_path / f"{cache.PREFIX}{c.cache_key}.json").read_text())["generation"]
    assert [f for f in _files(tmp_path) if not f.endswith(".blob")] == sorted(  # and no temporary file left
        f"{cache.PREFIX}{c.cache_key}{s}" for s in (f".{gen}.bin", ".json", f".{gen}.xml"))

    def boom(*args, **kwargs):
        raise AssertionError("a hit runs neither the pipeline nor the lowering")

    monkeypatch.setattr(template, "run_pipeline", boom)
    monkeypatch.setattr(ov_backend.Lowering, "run", boom)
    warm = ov_backend.OpenVinoBackend().compile(graph, params, cache_dir=str(tmp_path), threads=1, passes="default")
    w = warm.report.details
    assert (w.cache_hit, w.loaded_from_cache, w.cache_key, w.lower_s) == (True, True, c.cache_key, 0.0)
    np.testing.assert_array_equal(warm(x), cold(x))
    np.testing.assert_array_equal(cold(x), plain(x))  # compiling the saved model is compiling the model
    # the same executable: graph after the pipeline, report, details read back from the compiled model
    assert warm.graph == cold.graph and any(n.op == "fused_conv2d" for n in warm.graph.nodes)
    same = {k: v for k, v in dataclasses.asdict(c).items() if k not in HOW}
    assert {k: v for k, v in dataclasses.asdict(w).items() if k not in HOW} == same
    assert same["precision_ran"] == "f32" and same["folded_batch_norms"] == 0
    r, q = warm.report.to_dict(), cold.report.to_dict()
    assert {k: v for k, v in r.items() if k not in ("compile_s", "details")} == \
           {k: v for k, v in q.items() if k not in ("compile_s", "details")}
    assert type(warm.artifact).__name__ == "CompiledModel" and warm.report.warnings == ()


def test_the_key_covers_graph_weights_model_options_code_and_openvino(net, monkeypatch):
    graph, params, _ = net
    opts = OV.Options(threads=1)

    def key(g=graph, p=params, o=opts, openvino="2026.4.1-x"):
        cast = template.cast_params(g, p, "float32")
        return cache.key(OV, g, cast, o, openvino)

    base = key()
    assert key() == base and key(p={k: v.astype(np.float64) for k, v in params.items()}) == base  # cast first
    nudged = dict(params, **{"fc.weight": np.nextafter(params["fc.weight"], np.inf, dtype=np.float32)})
    other_graph, other_params = _net(eps=2e-5)
    differ = {
        "one weight one ulp": key(p=nudged),
        "an attribute": key(g=other_graph, p=other_params),
        "passes": key(o=OV.Options(threads=1, passes="default")),
        "dtype": key(o=OV.Options(threads=1, dtype="bfloat16")),
        "openvino build": key(openvino="2026.4.2-y"),
    }
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "an edited pass")
    differ["code"] = key()
    assert len({base, *differ.values()}) == len(differ) + 1, differ
    monkeypatch.undo()
    # options that reach OpenVINO's config are judged by OpenVINO's own key (its blob), not the lowered model's
    for o in (OV.Options(threads=2), OV.Options(precision="bf16"), OV.Options(hint="throughput"),
              OV.Options(streams=2), OV.Options(cache_dir="/elsewhere")):
        assert key(o=o) == base, o


def test_other_weights_miss_and_config_options_reach_openvino(net, tmp_path):
    graph, params, x = net
    first = OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    scaled = dict(params, **{"fc.weight": params["fc.weight"] * 2})
    other = OV.compile(graph, scaled, cache_dir=str(tmp_path), threads=1)
    assert other.report.details.cache_hit is False and other.report.details.cache_key != first.report.details.cache_key
    np.testing.assert_array_equal(other(x), OV.compile(graph, scaled, threads=1)(x))
    # other threads, streams, hint: the entry and OpenVINO's blob load (they are not among the CPU plugin's caching
    # properties: it applies them to the loaded model), and the compiled model reports what was asked
    exe = OV.compile(graph, params, cache_dir=str(tmp_path), threads=2, streams=2, hint="throughput")
    tp = exe.report.details
    assert (tp.cache_hit, tp.loaded_from_cache, tp.threads, tp.streams, tp.hint) == (True, True, 2, 2, "throughput")
    assert exe.graph == graph  # no passes: the entry stores no graph, the hit runs the caller's
    if "bf16" in OV.precisions():  # another precision: the same entry; the CPU plugin's blob holds the model
        # before its precision is applied (2026.4 loads it for bf16 too), and what runs is a bf16 compile's result
        bf16 = OV.compile(graph, params, cache_dir=str(tmp_path), threads=1, precision="bf16")
        d = bf16.report.details
        assert (d.cache_hit, d.precision_ran, bf16.report.accuracy_dtype) == (True, "bf16", "bfloat16")
        want = OV.compile(graph, params, threads=1, precision="bf16")(x)
        np.testing.assert_array_equal(bf16(x), want)
        assert np.abs(want - first(x)).max() > 1e-4  # and it is not the f32 model's


def _model_file(d, key, suffix):
    (path,) = d.glob(f"{cache.PREFIX}{key}.*{suffix}")
    return path


def test_an_int8_hit_reads_back_its_int8_layers(net, tmp_path):
    graph, params, x = net
    qg, qp = quantize_graph(graph, params, [[x]])
    cold = OV.compile(qg, qp, cache_dir=str(tmp_path), threads=1, precision="int8")
    warm = OV.compile(qg, qp, cache_dir=str(tmp_path), threads=1, precision="int8")
    c, w = cold.report.details, warm.report.details
    assert (w.cache_hit, w.precision_ran, w.int8_layers) == (True, "int8", c.int8_layers) and c.int8_layers > 0
    assert warm.report.accuracy_dtype == "int8" and warm.report.warnings == cold.report.warnings == ()
    np.testing.assert_array_equal(warm(x), cold(x))


def _truncate_bin(d, key):
    p = _model_file(d, key, ".bin")
    p.write_bytes(p.read_bytes()[:-4])


def _garble_xml(d, key):  # the same size: only its hash tells
    p = _model_file(d, key, ".xml")
    p.write_bytes(p.read_bytes().replace(b"Convolution", b"Convolutiom"))


def _garble_json(d, key):
    (d / f"{cache.PREFIX}{key}.json").write_text("{not json")


def _garble_bin_and_drop_blob(d, key):  # OpenVINO compiles garbled weights without a word, and caches them
    xml = _model_file(d, key, ".xml").read_text()
    tag = next(t for t in re.findall(r"<data [^>]*>", xml) if 'element_type="f32"' in t and "offset=" in t)
    offset, size = (int(re.search(rf'{a}="(\d+)"', tag).group(1)) for a in ("offset", "size"))
    p = _model_file(d, key, ".bin")
    data = bytearray(p.read_bytes())
    data[offset:offset + size] = bytes(size)  # the conv's weights zeroed, the shapes and the rest left as they were
    p.write_bytes(bytes(data))
    for f in d.glob("*.blob"):
        f.unlink()


@pytest.mark.parametrize(("damage", "says"), [
    (_truncate_bin, r"\.bin has \d+ bytes, the entry wrote \d+"),
    (_garble_xml, r"\.xml is not the xml the entry wrote"),
    (_garble_json, r"\.json does not read back"),
    (_garble_bin_and_drop_blob, r"\.bin is not the weights file the entry wrote"),
])
def test_a_damaged_entry_is_a_warning_and_a_cold_compile_that_rewrites_it(net, tmp_path, damage, says):
    graph, params, x = net
    cold = OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    key, want = cold.report.details.cache_key, cold(x)
    del cold  # nothing of the entry held open while it is damaged
    damage(tmp_path, key)
    again = OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    (warning,) = again.report.warnings
    assert warning.startswith(f"openvino backend: option cache_dir='{tmp_path}': ")
    assert warning.endswith("; compiled anew and rewritten")
    assert re.search(says, warning), warning
    assert again.report.details.cache_hit is False
    np.testing.assert_array_equal(again(x), want)
    healed = OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    assert healed.report.details.cache_hit is True and healed.report.warnings == ()
    np.testing.assert_array_equal(healed(x), want)
    assert len(list(tmp_path.glob(f"{cache.PREFIX}*"))) == 3  # the damaged generation's files are gone


def test_an_entry_openvino_refuses_is_compiled_anew(net, tmp_path, monkeypatch):
    graph, params, x = net
    OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    core = ov_backend._core()

    class Refusing:  # OpenVINO failing on the stored xml (a version that reads it otherwise), not on the model
        def __getattr__(self, name):
            return getattr(core, name)

        def compile_model(self, model, *args):
            if isinstance(model, str) and not hasattr(self, "refused"):
                self.refused = True
                raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:112:\nbad xml")
            return core.compile_model(model, *args)

    refusing = Refusing()
    monkeypatch.setattr(ov_backend, "_core", lambda: refusing)
    exe = OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    assert exe.report.details.cache_hit is False
    (warning,) = exe.report.warnings
    assert re.fullmatch(rf"openvino backend: option cache_dir='{tmp_path}': OpenVINO could not load the cache "
                        rf"entry {cache.PREFIX}{exe.report.details.cache_key}\.\w+\.xml: bad xml; compiled anew "
                        rf"and rewritten", warning), warning
    np.testing.assert_array_equal(exe(x), OV.compile(graph, params, threads=1)(x))


def test_a_cache_entry_that_cannot_be_written_is_one_error_naming_the_cache_dir(net, tmp_path, monkeypatch):
    graph, params, _ = net

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", full)
    with pytest.raises(BackendError, match=rf"^openvino backend: option cache_dir='{tmp_path}': cannot write the "
                                           rf"cache entry {cache.PREFIX}\w+\.json: No space left on device$"):
        OV.compile(graph, params, cache_dir=str(tmp_path), threads=1)
    assert _files(tmp_path) == []  # its temporary files are gone
