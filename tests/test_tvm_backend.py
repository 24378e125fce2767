"""The TVM backend's contract, options and tuning databases (the conformance suite is test_tvm_conformance.py).

Databases here are made without tuning: one record per fused function, with a trivial (annotation-only)
schedule, is enough for MetaSchedule to count and apply a hit, and takes a second instead of minutes.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import convbench as cb
from convbench.backends.base import BackendError, UnsupportedNodeError
from convbench.backends.correctness import compare
from convbench.ir import ops
from convbench.ir.builder import GraphBuilder
from convbench.ir.ops import _fused

tvm = pytest.importorskip("tvm")

from convbench.backends import tvm as tvm_backend  # noqa: E402  (after the skip: needs TVM)
from convbench.backends.tvm import compile as tvm_compile  # noqa: E402
from convbench.backends.tvm import lower as tvm_lower  # noqa: E402
from convbench.backends.tvm import train as tvm_train  # noqa: E402
from convbench.backends.tvm import tune as tvm_tune  # noqa: E402
from convbench.backends.tvm.target import target_dict  # noqa: E402

TVM = cb.backends.get("tvm")


def small_graph(name: str = "tvm_small") -> cb.Graph:
    """conv → BN → relu → LRN (even size) → pool → fc: folding, composed LRN and a task or two per op."""
    b = GraphBuilder(name, (2, 3, 9, 7))
    x = b.relu(b.batch_norm(b.conv2d(b.input, 4, 3, padding=1, bias=False, name="conv"), name="bn"), name="relu")
    x = b.max_pool2d(b.lrn(x, size=4, alpha=0.5, name="lrn"), 2, 2, ceil_mode=True, name="pool")
    return b.build(b.linear(b.flatten(x, name="flat"), 5, name="fc"))


@pytest.fixture(scope="module")
def case():
    g = small_graph()
    params = cb.models.init_params(g, seed=0)
    x = np.random.default_rng(1).standard_normal(g.inputs["input"].shape).astype(np.float32)
    ref = cb.backends.get("numpy").compile(g, params, dtype="float64")(x.astype(np.float64))
    return g, params, x, ref


@pytest.fixture(scope="module")
def compiled(case):
    """The untuned compile of the small graph, shared by the tests that only read it."""
    g, params, _, _ = case
    return TVM.compile(g, params, threads=1)


def fake_database(path, graph, params, target=None, skip=0, mark=1, secs=1e-3):
    """A database with a trivial record (its trace marked ``mark``, measured ``secs``) for every fused function of
    ``graph`` but the first ``skip``."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    target = target or target_dict("cpu")
    db = tvm_tune.open_database(path, target, create=True).database
    fused = tvm_compile.fuse(tvm_lower.lower(graph, params).mod, target)
    for _, func in tvm_compile.tir_functions(fused)[skip:]:
        mod = _normalize_mod(func)
        sch = tvm.s_tir.Schedule(mod)
        sch.annotate(sch.get_child_blocks(sch.get_sblock("root", "main"))[0], "convbench_test", mark)
        db.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, db.commit_workload(mod), [secs], tvm.target.Target(target),
            ms.arg_info.ArgInfo.from_prim_func(mod["main"])))
    return path


# -- contract --------------------------------------------------------------------------------------------------

def test_registered_and_available_without_importing_tvm():
    code = ("import sys, convbench; b = convbench.backends.get('tvm'); ok, why = b.available(); "
            "print(ok, 'tvm' in sys.modules, 'torch' in sys.modules, b.dtypes)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[:3] == ["True", "False", "False"]


def test_missing_tvm_is_a_reason_not_an_exception(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tvm" else real(name, *a))
    ok, why = TVM.available()
    assert not ok and "apache-tvm is not installed" in why


def test_untuned_compile_matches_the_reference_and_records_how_it_was_built(case, compiled):
    _, _, x, ref = case
    assert compare(compiled(x), ref, "float32").ok
    report, details = compiled.report, compiled.report.details
    assert isinstance(details, tvm_backend.TvmDetails)
    assert details.target == {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                              "num-cores": details.target["num-cores"]}
    assert report.threads == 1 and details.folded_batch_norms == 1
    assert report.device == "cpu" and report.dtype == report.accuracy_dtype == "float32"
    assert details.db is None and details.db_hits == 0 and details.db_tasks >= 4
    assert any("no tuning database shipped for tvm_small" in w for w in report.warnings)
    assert report.compile_s >= details.build_s > 0
    assert isinstance(compiled.artifact, tvm.relax.VirtualMachine)
    assert report.to_dict()["details"]["db_tasks"] == details.db_tasks  # what result files store


def test_supports_answers_from_the_lowering_table_without_importing_tvm():
    """supports() and lowered_ops() run on every node of every graph the harness looks at; importing TVM takes
    seconds (and imports torch), so they must answer from backends/tvm/lower.py's RULES without it."""
    code = ("import sys; from convbench.backends.tvm import BACKEND; from convbench.ir.builder import GraphBuilder\n"
            "b = GraphBuilder('g', (1, 3, 8, 8))\n"
            "g = b.build(b.softmax(b.flatten(b.relu(b.conv2d(b.input, 4, 3, name='c'), name='r'), name='f')))\n"
            "print([BACKEND.supports(n) for n in g.nodes], sorted(BACKEND.lowered_ops()) == sorted(set(BACKEND"
            ".lowered_ops())), 'tvm' in sys.modules, 'tvm_ffi' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[True,", "True,", "True,", "True]", "True", "False", "False", "False"]


def test_the_lowering_table_is_the_list_of_what_it_runs():
    # the inference table, and the train-step ops train.py lowers (the vjp nodes through relax's Gradient)
    assert TVM.lowered_ops() == frozenset(tvm_lower.RULES) | tvm_train.train_ops()
    assert not hasattr(tvm_backend, "SUPPORTED_OPS")  # the hand copy of the table is gone
    # the fused epilogue lowers each activation a fused node may end with through that op's own rule
    assert tvm_lower.activations() == frozenset(_fused.activations())
    assert all(isinstance(tvm_lower.RULES[op], tvm_lower.Unary) for op in ops.with_trait("activation"))


def test_a_fused_node_whose_activation_has_no_rule_is_unsupported(monkeypatch):
    b = GraphBuilder("tvm_fused", (1, 3, 6, 6))
    g = b.build(b.relu(b.conv2d(b.input, 4, 3, name="conv"), name="relu"))
    fused = cb.ir.passes.run_pipeline(g, cb.models.init_params(g, seed=0), "default").graph
    node = next(n for n in fused.nodes if n.op == "fused_conv2d")
    assert node.attrs.activation == "relu" and TVM.supports(node)
    monkeypatch.setattr(tvm_lower, "RULES", {k: v for k, v in tvm_lower.RULES.items() if k != "relu"})
    assert not TVM.supports(node)


def test_unbound_weights_give_the_same_result(case, compiled):
    g, params, x, _ = case
    exe = TVM.compile(g, params, bind_weights=False, threads=1)
    np.testing.assert_allclose(exe(x), compiled(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bind", [True, False])
def test_a_weight_two_nodes_read_is_one_weight(bind):
    from convbench.ir.ops.conv2d import Conv2dAttrs

    b = GraphBuilder("tvm_shared", (2, 3, 7, 5))
    w = b.param("shared.weight", (3, 3, 3, 3))
    y = b.node("conv2d", [b.input, w], Conv2dAttrs(padding=1), name="conv_a")
    y = b.node("conv2d", [b.relu(y, name="relu"), w], Conv2dAttrs(padding=1), name="conv_b")
    g = b.build(y)
    params = cb.models.init_params(g, seed=0)
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 5)).astype(np.float32)
    ref = cb.backends.get("numpy").compile(g, params, dtype="float64")(x.astype(np.float64))
    assert compare(TVM.compile(g, params, bind_weights=bind, threads=1)(x), ref, "float32").ok


def test_float64_compiles_to_float64(case):
    g, params, x, ref = case
    y = TVM.compile(g, params, dtype="float64", threads=1)(x)
    assert y.dtype == np.float64 and compare(y, ref, "float64").ok


@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
def test_threads_set_tvm_thread_pool(case, monkeypatch):
    g, params, x, ref = case
    monkeypatch.setenv("TVM_NUM_THREADS", "1")  # restored afterwards
    exe = TVM.compile(g, params, threads=2)
    assert exe.report.threads == 2
    assert compare(exe(x), ref, "float32").ok
    TVM.compile(g, params, threads=1)  # leave the pool as the other tests expect


def test_passes_option_runs_the_ir_pipeline_first(case):
    g, params, x, ref = case
    exe = TVM.compile(g, params, passes="default", threads=1)
    assert exe.report.pipeline["pipeline"] == "default" and compare(exe(x), ref, "float32").ok


@pytest.mark.parametrize("options, message", [
    ({"tuning": True}, "unknown option"),
    ({"dtype": "bfloat16"}, "dtype 'bfloat16' is not supported"),
    ({"device": "tpu"}, re.escape("option device must be 'cpu' | 'cuda' | 'auto', got 'tpu'")),
    ({"threads": "abc"}, re.escape("option threads must be int | None, got 'abc'")),
    ({"trials": -1}, "option trials must be ≥ 0, got -1"),
    ({"tuning_db": 3}, re.escape("option tuning_db must be str | PathLike | None, got 3")),
])
def test_bad_options_are_one_clear_error(case, options, message):
    g, params, _, _ = case
    with pytest.raises(BackendError, match=message):
        TVM.compile(g, params, **options)


def test_cuda_without_a_gpu_says_so(case):
    from convbench.backends.tvm.target import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present")
    g, params, _, _ = case
    with pytest.raises(BackendError, match="no GPU is visible"):
        TVM.compile(g, params, device="cuda")


# -- fallback --------------------------------------------------------------------------------------------------

class NoLrn(tvm_backend.TvmBackend):
    name = "tvm-no-lrn"

    def supports(self, node):
        return node.op != "lrn" and super().supports(node)


def test_unsupported_node_is_an_error_unless_fallback_is_asked(case):
    g, params, x, ref = case
    with pytest.raises(UnsupportedNodeError, match=r"'lrn' \(lrn\)"):
        NoLrn().compile(g, params)
    exe = NoLrn().compile(g, params, fallback="numpy", threads=1)
    assert exe.fallback_nodes == ("lrn",)
    assert compare(exe(x), ref, "float32").ok
    keys = [k for k, (name, _) in tvm_lower._FALLBACKS.items() if name == "lrn"]
    assert keys
    del exe
    gc.collect()
    assert not any(k in tvm_lower._FALLBACKS for k in keys)  # the callback went with the executable


# -- tuning databases ------------------------------------------------------------------------------------------

@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
def test_a_given_database_is_applied_and_its_hits_counted(case, tmp_path):
    g, params, x, ref = case
    fake_database(tmp_path / "db", g, params)
    exe = TVM.compile(g, params, tuning_db=tmp_path / "db", threads=1)
    details = exe.report.details
    assert details.db_source == "given" and details.db == str(tmp_path / "db")
    assert details.db_hits == details.db_tasks > 0
    assert exe.report.warnings == ()
    assert compare(exe(x), ref, "float32").ok


@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
def test_a_hand_written_record_runs_the_rule_as_it_is_now(case, tmp_path):
    # Where the hand-written schedule's measured record beats the tuned one, the compile does not replay that
    # record's trace (the rule as it was at tuning time) but schedules the function with the rule as it is now.
    g, params, x, ref = case
    fake_database(tmp_path / "db", g, params)
    fake_database(tmp_path / "db" / "hand", g, params, mark=2, secs=1e-4)
    exe = TVM.compile(g, params, tuning_db=tmp_path / "db", threads=1)
    details = exe.report.details
    assert details.db_hits == details.db_tasks == details.db_hand_hits > 0
    assert sum(details.hand_scheduled.values()) == details.db_tasks, details.hand_scheduled
    assert compare(exe(x), ref, "float32").ok
    # with the hand-written schedules off, the hand-written records are replayed: nothing else would schedule
    off = TVM.compile(g, params, tuning_db=tmp_path / "db", threads=1, hand_schedules=False)
    assert off.report.details.hand_scheduled == {} and compare(off(x), ref, "float32").ok
    # those records are not the rule's trace: measured with an older rule, so the database wants re-measuring
    assert any(f"{details.db_tasks} of its hand-written schedules' records were measured with an older" in w
               for w in exe.report.warnings), exe.report.warnings


@pytest.mark.slow  # MetaSchedule's tuning contexts: ~5 s
def test_a_hand_record_of_an_older_rule_is_measured_again(case, tmp_path, monkeypatch):
    # Tuning again refreshes the hand-written schedules' records that an older rule made (the measurement is
    # faked: what is tested is which schedules get measured), and leaves the rule's current ones alone.
    from tvm.s_tir import meta_schedule as ms

    g, params, _, _ = case
    target = target_dict("cpu")
    tvm_tune.import_tensor_intrin()  # what tuning does first: MetaSchedule's contexts import it, slowly, otherwise
    db = tvm_tune.open_database(fake_database(tmp_path / "hand", g, params), target).database
    tasks = tvm_compile.extract_tasks(tvm_lower.lower(g, params).mod, target)
    contexts, _ = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(tmp_path / "work"))
    measured = []

    def fake_measure(schedules, *_):
        measured.extend(schedules)
        return [([1e-4], ms.arg_info.ArgInfo.from_entry_func(s.mod, remove_preproc=True)) for s in schedules]

    monkeypatch.setattr(tvm_tune, "_measure", fake_measure)
    assert tvm_tune.seed_hand_schedules(contexts, target, db, None, None) == len(measured) > 0
    measured.clear()
    assert tvm_tune.seed_hand_schedules(contexts, target, db, None, None) == 0 and not measured


@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
def test_a_partial_database_says_how_much_it_covered(case, tmp_path):
    g, params, _, _ = case
    fake_database(tmp_path / "db", g, params, skip=2)
    report = TVM.compile(g, params, tuning_db=tmp_path / "db", threads=1).report
    assert report.details.db_hits == report.details.db_tasks - 2
    assert any(f"schedules for {report.details.db_hits} of" in w for w in report.warnings)


@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
def test_the_shipped_database_is_found_by_target_and_model(case, tmp_path, monkeypatch):
    g, params, _, _ = case
    monkeypatch.setattr(tvm_tune, "DATA", tmp_path)
    fake_database(tvm_tune.shipped_path(target_dict("cpu"), g.name), g, params)
    details = TVM.compile(g, params, threads=1).report.details
    assert details.db_source == "shipped" and details.db_hits == details.db_tasks
    report = TVM.compile(g, params, threads=1, use_shipped_db=False).report
    assert report.details.db is None and report.details.db_hits == 0 and report.warnings == ()


@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
@pytest.mark.parametrize("damage", ["garbage", "bad-index", "bad-module", "missing"])
def test_a_corrupt_database_warns_and_compiles_untuned(case, tmp_path, damage):
    g, params, x, ref = case
    db = fake_database(tmp_path / "db", g, params)
    records, workloads = db / tvm_tune.RECORDS, db / tvm_tune.WORKLOADS
    if damage == "garbage":
        records.write_text(records.read_text()[:-40] + "\n")
    elif damage == "bad-index":
        records.write_text('[99, [[], [1.0]]]\n')
    elif damage == "bad-module":  # parses as JSON, but TVM cannot load the module in it
        workloads.write_text('["123", "bm90IGEgbW9kdWxl"]\n')
        records.write_text('[0, [[[], []], [1.0], {"kind": "llvm"}, null]]\n')
    else:
        workloads.unlink()
    exe = TVM.compile(g, params, tuning_db=db, threads=1)
    assert exe.report.details.db is None and exe.report.details.db_hits == 0
    assert any("unusable" in w or "failed to load" in w for w in exe.report.warnings), exe.report.warnings
    assert compare(exe(x), ref, "float32").ok


@pytest.mark.slow  # a TVM compile around a database: 3-9 s each
def test_a_database_for_another_target_warns_and_compiles_untuned(case, tmp_path):
    g, params, x, ref = case
    db = fake_database(tmp_path / "db", g, params)
    other = {**target_dict("cpu"), "mcpu": "cortex-a72"}
    (db / tvm_tune.MANIFEST).write_text(json.dumps({"target": other}))
    exe = TVM.compile(g, params, tuning_db=db, threads=1)
    assert exe.report.details.db is None
    assert any("tuned for another target (mcpu 'cortex-a72'" in w for w in exe.report.warnings)
    assert compare(exe(x), ref, "float32").ok


def test_manifest_accumulates_tuning_per_input_shape(tmp_path):
    target = target_dict("cpu")
    tvm_tune.record_workload(tmp_path, target, "m", [[1, 3, 8, 8]], trials=10, tuning_s=5.0)
    tvm_tune.record_workload(tmp_path, target, "m", [[1, 3, 8, 8]], trials=6, tuning_s=2.5)
    manifest = tvm_tune.record_workload(tmp_path, target, "m", [[2, 3, 8, 8]], trials=4, tuning_s=1.0)
    by_shape = {json.dumps(w["input_shape"]): w for w in manifest["workloads"]}
    assert by_shape["[[1, 3, 8, 8]]"]["trials"] == 16 and by_shape["[[1, 3, 8, 8]]"]["tuning_s"] == 7.5
    assert by_shape["[[2, 3, 8, 8]]"]["trials"] == 4
    assert tvm_tune.target_mismatch(manifest, target) is None


def _conv_relu_task(name: str, shape: tuple[int, ...], cout: int, seed: int):
    """A one-task graph for the tuning tests (3×3 conv, padding 1, then ReLU): graph, params, input, reference."""
    b = GraphBuilder(name, shape)
    g = b.build(b.relu(b.conv2d(b.input, cout, 3, padding=1, name="conv"), name="relu"))
    params = cb.models.init_params(g, seed=0)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return g, params, x, cb.backends.get("numpy").compile(g, params, dtype="float64")(x.astype(np.float64))


@pytest.fixture
def small_search(monkeypatch):
    """The tuning tests check the workflow, not the search: MetaSchedule's population of 512, evolved 4 times through
    the cost model, was ~60 s of each one- or two-trial tuning run on a 2-core Zen 3 (a population of 16: 2 s)."""
    monkeypatch.setattr(tvm_tune, "POPULATION", 16)


@pytest.mark.slow  # MetaSchedule tuning: a minute or two (the workers' start, TVM's import in each, the builds)
@pytest.mark.usefixtures("small_search")
def test_tune_measures_candidates_keeps_them_and_a_later_compile_reuses_them(tmp_path):
    """The real MetaSchedule path on a one-task graph: workers start (with the fast tensor_intrin import),
    candidates are built and measured, the database and manifest are written, and a compile that names the
    database afterwards applies it without tuning."""
    g, params, x, ref = _conv_relu_task("tvm_tune_one", (1, 4, 6, 5), 6, seed=2)
    exe = TVM.compile(g, params, tune=True, trials=2, tuning_db=tmp_path / "db", threads=1)
    details = exe.report.details
    assert details.db_source == "tuned" and details.db_hits == details.db_tasks == 1
    assert 1 <= details.trials <= 2 and 0 < details.tuning_s < exe.report.compile_s
    assert compare(exe(x), ref, "float32").ok
    manifest = tvm_tune.read_manifest(tmp_path / "db")
    assert manifest["model"] == "tvm_tune_one" and manifest["workloads"][0]["input_shape"] == [[1, 4, 6, 5]]
    again = TVM.compile(g, params, tuning_db=tmp_path / "db", threads=1)
    assert again.report.details.db_source == "given" and again.report.details.db_hits == 1
    assert again.report.details.trials == 0 and again.report.details.db_tuning["trials"] == details.trials
    assert compare(again(x), ref, "float32").ok


@pytest.mark.slow  # MetaSchedule tuning: minutes
@pytest.mark.usefixtures("small_search")
def test_tuning_starts_from_the_hand_written_schedules(tmp_path):
    """Before searching, tuning measures the hand-written schedule of each task into the database's hand/ folder;
    a compile queries both and takes the faster record, so tuning never makes a function slower than the
    untuned compile would (as measured)."""
    from tvm.s_tir import meta_schedule as ms

    g, params, x, ref = _conv_relu_task("tvm_tune_seed", (1, 5, 7, 6), 16, seed=3)
    exe = TVM.compile(g, params, tune=True, trials=1, tuning_db=tmp_path / "db", threads=1)
    assert exe.report.details.seeded == 1 and exe.report.details.trials == 1
    assert compare(exe(x), ref, "float32").ok
    tuned = ms.database.JSONDatabase(work_dir=str(tmp_path / "db"), allow_missing=False).get_all_tuning_records()
    hand = ms.database.JSONDatabase(work_dir=str(tmp_path / "db" / "hand"),
                                    allow_missing=False).get_all_tuning_records()
    assert len(tuned) == 1 and len(hand) == 1 and hand[0].run_secs
    assert "meta_schedule.layout_rewrite_preproc" in str(hand[0].trace)  # the weights packed by tvm_schedule
    # Tuning again into the same folder searches from the tuned records only, and measures no hand schedule twice.
    again = TVM.compile(g, params, tune=True, trials=1, tuning_db=tmp_path / "db", threads=1)
    assert again.report.details.seeded == 0 and again.report.details.db_hits == again.report.details.db_tasks == 1
    assert not any("older version" in w for w in again.report.warnings)  # the rule's own trace: current
    # Shipping re-measures the best tuned and the hand-written record back to back and keeps one of each.
    opened = tvm_tune.open_database(tmp_path / "db", target_dict("cpu"))
    tvm_tune.prune(opened.database, tmp_path / "ship", opened.hand, target_dict("cpu"))
    shipped = tvm_tune.open_database(tmp_path / "ship", target_dict("cpu"))
    assert len(shipped.database) == len(shipped.hand) == 1
    assert compare(TVM.compile(g, params, tuning_db=tmp_path / "ship", threads=1)(x), ref, "float32").ok
