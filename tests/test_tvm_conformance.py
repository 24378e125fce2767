"""The TVM backend on the conformance suite: the op corpus and every zoo model at its small size compiled untuned
(one model per family in the fast subset, the rest marked slow), a fuzzing pass, and ResNet-18 at 224 with the
tuning database shipped for this machine.
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

# One model per family, and every op the zoo uses; the others (VGGs, deep ResNets, DenseNet, Inception) add
# minutes of compiling and nothing new, so they run with the slow tests.
FAST_MODELS = frozenset({"lenet5", "googlenet"})  # the others take 8-20 s each to compile (resnet18 9.5 s)


def zoo_params() -> list:
    """The whole zoo at its small size, the models outside `FAST_MODELS` marked slow."""
    out = []
    for p in conformance_params("tvm", "models", threads=1):
        slow = [] if p.values[0].case.model in FAST_MODELS else [pytest.mark.slow]
        out.append(pytest.param(*p.values, id=p.id, marks=[*p.marks, *slow]))
    return out


def op_params() -> list:
    """The op corpus; past the first two cases of each op the rest are marked slow (each case is a TVM compile,
    about 0.8 s: the whole corpus is two minutes of the fast subset otherwise)."""
    seen: dict[str, int] = {}
    out = []
    for p in conformance_params("tvm", "ops", threads=1):
        op = p.values[0].case.op
        seen[op] = seen.get(op, 0) + 1
        slow = [] if seen[op] <= 2 else [pytest.mark.slow]
        out.append(pytest.param(*p.values, id=p.id, marks=[*p.marks, *slow]))
    return out


@pytest.mark.parametrize("item", op_params())
def test_ops(item):
    item.check()


@pytest.mark.parametrize("item", zoo_params())
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
    details = exe.report.details
    # the one warning allowed: records of the hand-written schedules that predate a change to them (the rocketlake
    # database's 15, from before the padding-copy fix). It is true, and only tuning on that CPU again clears it.
    others = [w for w in exe.report.warnings if "were measured with an older version" not in w]
    assert details.db_source == "shipped" and others == [], others
    assert details.db_hits == details.db_tasks > 0 and 0 < details.db_hand_hits < details.db_hits
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
        selected = tvm_compile.select_records(fused, tvm.target.Target(target), opened.for_compile)
        hits, tasks = selected.hits, selected.tasks
        assert hits == tasks, f"{folder.name} b{n}: {hits} of {tasks} fused functions have a record"
