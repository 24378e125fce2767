"""The backend registry: built-ins by explicit list, third-party backends through the ``convbench.backends``
entry-point group — tested for real by pip-installing the worked example (docs/example_backend) into a
temporary directory and finding it through importlib.metadata, in this process and in a fresh ``convbench``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convbench.backends import registry
from convbench.backends.base import Backend, UnsupportedNodeError
from convbench.bench.schema import read_records
from convbench.commands.backends import describe
from convbench.ir.errors import IRError
from convbench.testing import model_case, op_cases, run_case

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "example_backend"


def test_builtins_come_first_and_unknown_names_list_the_known_ones():
    assert registry.names()[:2] == ["numpy", "torch"]
    with pytest.raises(registry.UnknownBackendError, match="unknown backend 'cuda'; known backends: numpy, torch"):
        registry.get("cuda")


def test_register_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    with pytest.raises(IRError, match="'torch' is already registered"):
        registry.register(type("Dup", (), {"name": "torch"})())


def test_builtin_backends_satisfy_the_protocol():
    for name in ("numpy", "torch"):
        backend = registry.get(name)
        assert isinstance(backend, Backend) and backend.name == name
        ok, reason = backend.available()
        assert ok is True and isinstance(reason, str)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package pip-installed (a real wheel build, with its entry point) into a fresh directory."""
    src = tmp_path_factory.mktemp("src") / "example_backend"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True)
    assert list(target.glob("convbench_einsum-0.1.0.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def with_site(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))  # also invalidates import caches: importlib.metadata sees the dist
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    yield site
    sys.modules.pop("convbench_einsum", None)


def test_entry_point_backend_is_discovered_and_passes_the_conformance_suite(with_site):
    assert "einsum" in registry.names() and registry.names()[:2] == ["numpy", "torch"]
    backend = registry.get("einsum")
    assert type(backend).__module__ == "convbench_einsum" and backend.version() == "0.1.0"
    results = [run_case(backend, c) for c in op_cases()]
    counts = Counter(r.status for r in results)
    assert counts["fail"] == counts["error"] == 0, [r.message for r in results if r.status in ("fail", "error")]
    assert counts["pass"] >= 30  # every conv2d / linear / relu / add / flatten / dropout case
    skipped = next(r for r in results if r.case_id == "max_pool2d-k2-s2-p0")
    assert skipped.status == "skip" and "'max_pool2d' (max_pool2d)" in skipped.message
    lenet = model_case("lenet5", 2, 32)
    with pytest.raises(UnsupportedNodeError, match="fallback='numpy'"):
        backend.compile(lenet.graph, lenet.params)
    r = run_case(backend, lenet, fallback="numpy")
    assert r.status == "pass" and r.fallback_nodes == ("c1_tanh", "s2", "c3_tanh", "s4", "c5_tanh", "f6_tanh")


def test_entry_point_backend_in_a_fresh_cli_process(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "convbench", "check", "-m", "lenet5", "-b", "einsum:fallback=numpy",
                           "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["backend"] == "einsum:fallback=numpy" and row["status"] == "pass" and len(row["fallback_nodes"]) == 6
    # and as a sweep case: the harness passes it only the options it declares (threads reach it through the
    # environment where it does not), so a backend that refuses unknown options, as the docs ask, still runs
    out = tmp_path / "r.jsonl"
    done = subprocess.run([sys.executable, "-m", "convbench", "run", "-m", "lenet5", "-b", "einsum:fallback=numpy",
                           "--threads", "1", "--gemm-size", "0", "--min-time", "0.02", "--max-time", "0.2",
                           "--warmup", "0.01", "-q", "-o", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (record,) = read_records(out)
    assert record["status"] == "ok", record["message"]
    assert record["correctness"]["ok"] and len(record["compile"]["fallback_nodes"]) == 6
    assert record["worker"]["thread_env"]["OMP_NUM_THREADS"] == "1"


def test_backends_command_shows_the_entry_point_backend(with_site):
    row = describe("einsum")
    assert row == {"name": "einsum", "available": True, "reason": f"numpy {np.__version__}", "version": "0.1.0",
                   "device": "cpu", "dtypes": ["float32", "float64"]}


def test_a_broken_entry_point_is_reported_not_raised(tmp_path, monkeypatch):
    """A dist whose entry point names a module that does not exist: `backends` reports it, others still list."""
    dist = tmp_path / "broken_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[convbench.backends]\nbroken = no_such_module:BACKEND\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    assert "broken" in registry.names()
    with pytest.raises(ModuleNotFoundError):
        registry.get("broken")
    row = describe("broken")  # what `convbench backends` prints for it, the other rows unaffected
    assert row["available"] is False and "failed to load: ModuleNotFoundError" in row["reason"]
    assert "No module named 'no_such_module'" in row["reason"] and describe("numpy")["available"]
