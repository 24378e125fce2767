"""The memory planner, cross-checked independently of its own bookkeeping.

`simulate` replays the schedule over the arena byte by byte (at 64-byte granularity, the plan's alignment):
each write stamps its value's range, each read checks that the range still holds what it should. It accepts an
output overlapping an input only for ops whose element i depends on input element i alone, at identical offset
and size. The arena must never be smaller than the live peak computed from the graph (`analysis.live_bytes`),
and the numpy backend must compute bit for bit the same running inside the arena.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convbench as cb
from convbench.backends.numpy_arena import arena_runner
from convbench.ir.analysis import live_bytes, summarize
from convbench.ir.builder import GraphBuilder
from convbench.ir.graph import Graph
from convbench.ir.passes import plan_memory, run_pipeline
from convbench.ir.passes.memory_plan import ALIGNMENT, MemoryPlan

NUMPY = cb.backends.get("numpy")
# ops whose output element i reads only element i of the overlapped input (written by the test, not imported)
ELEMENTWISE = {"relu", "relu6", "leaky_relu", "sigmoid", "tanh", "elu", "batch_norm", "add"}
VIEWS = {"flatten", "dropout"}


def cells(plan: MemoryPlan, value: str) -> slice:
    start = plan.offsets[value]
    assert start % ALIGNMENT == 0, f"{value} at offset {start} is not aligned"
    assert start + plan.nbytes[value] <= plan.arena_bytes, f"{value} runs past the arena"
    return slice(start // ALIGNMENT, -(-(start + plan.nbytes[value]) // ALIGNMENT))


def simulate(graph: Graph, plan: MemoryPlan) -> None:
    """Fail if any read of any value could see bytes another value wrote over it."""
    stamp = np.full(-(-plan.arena_bytes // ALIGNMENT) + 1, -1, dtype=np.int64)
    token: dict[str, int] = {}
    fresh = itertools.count()

    def write(value: str) -> None:
        token[value] = next(fresh)
        stamp[cells(plan, value)] = token[value]

    def check(value: str, where: str) -> None:
        assert (stamp[cells(plan, value)] == token[value]).all(), f"{value} was overwritten before {where}"

    for name in graph.inputs:
        write(name)
    for node in graph.nodes:
        acts = [i for i in node.inputs if i not in graph.params]
        for i in acts:
            check(i, f"{node.name} reads it")
        if node.op in VIEWS and plan.offsets[node.name] == plan.offsets[acts[0]]:  # a view: the same bytes
            token[node.name] = token[acts[0]]
            continue
        out = cells(plan, node.name)
        for i in acts:
            inp = cells(plan, i)
            if inp.start < out.stop and out.start < inp.stop:  # the output overwrites an input it reads
                fused_residual = node.op.startswith("fused_") and node.attrs.residual and i == node.inputs[-1]
                assert node.op in ELEMENTWISE or fused_residual, f"{node.name} ({node.op}) overwrites {i}"
                assert inp == out and plan.nbytes[i] == plan.nbytes[node.name], f"{node.name}: partial overlap"
        write(node.name)
    for out in graph.outputs:
        check(out, "the caller reads the outputs")


def live_sets(graph: Graph) -> list[set[str]]:
    """Values live at each step, computed here from scratch: written at or before, read at or after."""
    first = {name: 0 for name in graph.inputs}
    last = dict(first)
    for k, node in enumerate(graph.nodes):
        first[node.name] = last[node.name] = k
        for i in node.inputs:
            if i in last:
                last[i] = k
    for out in graph.outputs:
        last[out] = len(graph.nodes)
    return [{v for v in first if first[v] <= k <= last[v]} for k in range(len(graph.nodes))]


def shared_peak(graph: Graph, plan: MemoryPlan) -> int:
    """Most bytes live at one step, counting values that share storage once (simulate proved it legal)."""
    return max(sum(max(plan.nbytes[v] for v in vs if plan.offsets[v] == off)
                   for off in {plan.offsets[v] for v in vs}) for vs in live_sets(graph))


def check_plan(graph: Graph, plan: MemoryPlan, widen: int = 1) -> None:
    """``widen``: the plan's element size over the graph's (2 for a float32 graph planned in float64)."""
    simulate(graph, plan)
    assert plan.arena_bytes >= shared_peak(graph, plan) == plan.lower_bound_bytes
    assert plan.naive_bytes == widen * summarize(graph).activation_sum_bytes


@pytest.mark.parametrize("name", ["resnet50", "googlenet", "densenet121", "mobilenet_v2", "inception_v3"])
@pytest.mark.parametrize("pipeline", ["none", "default"])
def test_zoo_plans_are_valid_and_never_below_the_live_peak(name, pipeline):
    graph = cb.models.build(name, batch=2, image_size=cb.models.spec(name).small_image_size)
    if pipeline != "none":  # the passes read weights: cheap broadcast views will do for the structure
        params = {k: np.broadcast_to(np.float32(1), t.shape) for k, t in graph.params.items()}
        graph = run_pipeline(graph, params, pipeline).graph
    reuse = plan_memory(graph, inplace=False)
    check_plan(graph, reuse)
    assert not reuse.inplace_nodes and not reuse.view_nodes
    assert reuse.arena_bytes >= max(live_bytes(graph)) == reuse.lower_bound_bytes
    shared = plan_memory(graph)
    check_plan(graph, shared)
    assert shared.arena_bytes <= reuse.arena_bytes


def test_resnet50_batch1_arena_against_the_naive_sum_and_the_liveness_bound():
    graph = cb.models.build("resnet50", batch=1)
    plan = plan_memory(graph, inplace=False)
    bound = max(live_bytes(graph))
    check_plan(graph, plan)
    assert bound <= plan.arena_bytes <= 1.10 * bound
    assert plan.naive_bytes >= 5 * plan.arena_bytes  # "several times smaller"
    in_place = plan_memory(graph)
    check_plan(graph, in_place)
    assert len(in_place.inplace_nodes) >= 49 and in_place.arena_bytes < plan.arena_bytes  # every ReLU


def test_float64_plans_twice_the_bytes():
    graph = cb.models.build("resnet18", batch=2, image_size=32)
    p32, p64 = plan_memory(graph), plan_memory(graph, itemsize=8)
    check_plan(graph, p64, widen=2)
    assert p64.naive_bytes == 2 * p32.naive_bytes and p64.lower_bound_bytes == 2 * p32.lower_bound_bytes


def test_in_place_needs_the_input_dead_and_not_an_output():
    b = GraphBuilder("g", (2, 3, 7, 5))
    r = b.relu(b.input, name="r")  # input dies here: in place
    s = b.sigmoid(r, name="s")  # r is read again below: not in place
    t = b.add(s, r, name="t")  # both die here: in place over one of them
    out = b.relu(t, name="out")  # t is an output: out may not overwrite it
    graph = b.build([t, out])
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.inplace_nodes == ("r", "t")
    assert plan.offsets["r"] == plan.offsets["input"] and plan.offsets["out"] != plan.offsets["t"]


@pytest.mark.parametrize("model", ["resnet18", "googlenet", "mobilenet_v2", "densenet121"])
def test_numpy_arena_mode_gives_identical_results(model):
    graph = cb.models.build(model, batch=2, image_size=cb.models.spec(model).small_image_size)
    params = cb.models.init_params(graph, seed=0)
    x = np.random.default_rng(1).standard_normal(graph.inputs["input"].shape).astype(np.float32)
    for pipeline in ("none", "default"):
        plain = NUMPY.compile(graph, params, passes=pipeline)
        arena = NUMPY.compile(graph, params, passes=pipeline, memory_plan=True)
        assert arena.report.details.memory_plan["arena_bytes"] < arena.report.details.memory_plan["naive_bytes"]
        y = arena(x)
        np.testing.assert_array_equal(y, plain(x))
        np.testing.assert_array_equal(arena(x), y)  # the arena is reused; results do not leak between calls


# -- random graphs --------------------------------------------------------------------------------------------

@st.composite
def random_graphs(draw) -> Graph:
    """DAGs of elementwise ops, adds, concats, pools, convs and flattens over (N, C, H, W) values, several of
    which may be outputs: the shapes of sharing and reuse a planner gets wrong."""
    b = GraphBuilder("random", (2, 3, 7, 5))
    values = [b.input]
    for k in range(draw(st.integers(2, 14))):
        x = draw(st.sampled_from(values))
        kind = draw(st.sampled_from(["relu", "tanh", "add", "concat", "pool", "conv", "bn"]))
        same = [v for v in values if b.shape(v) == b.shape(x)]
        if kind in ("relu", "tanh"):
            y = getattr(b, kind)(x, name=f"{kind}{k}")
        elif kind == "add":
            y = b.add(x, draw(st.sampled_from(same)), name=f"add{k}")
        elif kind == "concat":
            y = b.concat([x, draw(st.sampled_from(same))], name=f"cat{k}")
        elif kind == "pool":
            y = b.max_pool2d(x, 3, 1, 1, name=f"pool{k}")
        elif kind == "bn":
            y = b.batch_norm(x, name=f"bn{k}")
        else:
            y = b.conv2d(x, draw(st.sampled_from([2, 3, 4])), 3, padding=1, name=f"conv{k}")
        values.append(y)
    outs = draw(st.lists(st.sampled_from(values[1:]), min_size=1, max_size=3, unique=True))
    head = b.flatten(values[-1], name="flat")
    return b.build(list(dict.fromkeys([*outs, head])))


@settings(max_examples=40, deadline=None)
@given(random_graphs())
def test_random_graphs_plan_validly_and_run_identically(graph):
    for inplace in (False, True):
        check_plan(graph, plan_memory(graph, inplace=inplace))
    rng = np.random.default_rng(0)
    params = {k: rng.uniform(0.5, 1.5, t.shape).astype(np.float32) for k, t in graph.params.items()}
    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    plain, arena = NUMPY.compile(graph, params)(x), NUMPY.compile(graph, params, memory_plan=True)(x)
    for u, v in zip(plain if isinstance(plain, tuple) else (plain,), arena if isinstance(arena, tuple) else (arena,),
                    strict=True):
        np.testing.assert_array_equal(u, v)


def test_the_checks_catch_a_broken_plan():
    """Put a value on top of one that is still needed: the simulation and the arena run both notice."""
    b = GraphBuilder("g", (2, 3, 7, 5))
    r = b.relu(b.input, name="r")
    s = b.sigmoid(b.input, name="s")  # input still live while s is written...
    graph = b.build(b.add(r, s, name="t"))  # ...and r is live until t
    good = plan_memory(graph)
    check_plan(graph, good)
    bad = dataclasses.replace(good, offsets={**good.offsets, "s": good.offsets["r"]})
    with pytest.raises(AssertionError, match="r was overwritten before t reads it"):
        simulate(graph, bad)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 5)).astype(np.float32)
    run_good, _ = arena_runner(graph, {}, good, "float32")
    run_bad, _ = arena_runner(graph, {}, bad, "float32")
    assert not np.array_equal(run_bad([x])[0], run_good([x])[0])
