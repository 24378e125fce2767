"""The TVM backend on the conformance suite: the op corpus and a zoo subset at small sizes compiled untuned, a
fuzzing pass, and ResNet-18 at 224 with the tuning database shipped for this machine.

Untuned TVM on CPU is plain loops, fine at small sizes; `convbench check -m all -b tvm` runs the whole zoo.
"""

from __future__ import annotations

import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.backends.tvm import tune as tvm_tune
from convbench.backends.tvm.target import target_dict
from convbench.testing import conformance_params, model_case
from convbench.testing.fuzz import differential_test

tvm = pytest.importorskip("tvm")

# One model per family and every op the zoo uses; the VGGs and deep ResNets add minutes and nothing new.
MODELS = ["lenet5", "alexnet_2012", "googlenet", "resnet18", "mobilenet_v2", "squeezenet1_0"]


@pytest.mark.parametrize("item", conformance_params("tvm", "ops", threads=1))
def test_ops(item):
    item.check()


@pytest.mark.parametrize("item", conformance_params("tvm", "models", models=MODELS, threads=1))
def test_models(item):
    item.check()


test_fuzz = differential_test("tvm", max_examples=25, threads=1)


def test_resnet18_with_the_shipped_database():
    target = target_dict("cpu")
    shipped = tvm_tune.shipped_path(target, "resnet18")
    if not shipped.parent.is_dir():  # databases are per CPU: another machine runs this untuned, elsewhere
        pytest.skip(f"no tuning database shipped for this CPU ({shipped.parent.name})")
    case = model_case("resnet18", batch=1, image_size=224)
    exe = cb.backends.get("tvm").compile(case.graph, case.params, threads=2)
    info = exe.info
    assert info["db_source"] == "shipped" and info["warnings"] == []
    assert info["db_hits"] == info["db_tasks"] > 0 and 0 < info["db_hand_hits"] < info["db_hits"]
    assert compare(exe(*case.input_list()), case.reference[0], "float32").ok


SHIPPED = sorted(p for p in tvm_tune.DATA.glob("*/*") if (p / tvm_tune.RECORDS).is_file())


@pytest.mark.parametrize("folder", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_every_shipped_database_still_matches_the_lowering(folder):
    """On any CPU: a shipped database was tuned on the functions our lowering produced then; a change to the
    lowering or the fusion pipeline that changes them makes the database silently useless. Each tuned input shape
    of the manifest must find a record for every fused function, tuned and hand-written alike."""
    from convbench.backends.template import cast_params
    from convbench.backends.tvm import compile as tvm_compile
    from convbench.backends.tvm import lower as tvm_lower

    manifest = tvm_tune.read_manifest(folder)
    target = {**target_dict("cpu"), **{k: manifest["target"][k] for k in ("mcpu", "num-cores")}}
    opened = tvm_tune.open_database(folder, target)
    assert opened.database is not None and opened.warnings == []
    for workload in manifest["workloads"]:
        (n, _, size, _), = workload["input_shape"]
        graph = cb.models.build(manifest["model"], batch=n, image_size=size)
        params = cast_params(graph, cb.models.init_params(graph, seed=0, calibrate=False), "float32")
        fused = tvm_compile.fuse(tvm_lower.lower(graph, params).mod, target)
        hits, tasks, _ = tvm_compile.count_hits(fused, tvm.target.Target(target), opened.for_compile)
        assert hits == tasks, f"{folder.name} b{n}: {hits} of {tasks} fused functions have a record"
