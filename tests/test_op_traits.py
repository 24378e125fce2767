"""The traits an op declares are true of its reference: a category set derived from them (memory planning,
fusion, in-place lowering) can only be as right as they are."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.ir import ops
from convbench.ir.errors import IRError
from convbench.ir.ops import TRAITS, NoAttrs
from convbench.ir.ops._fused import activations
from convbench.testing import op_cases
from convbench.testing.train_corpus import train_cases

SINGLE_NODE = {}
for _case in [*op_cases(), *train_cases()]:  # the inference corpus and the train-step ops' (loss, vjp …)
    if len(_case.graph.nodes) == 1:
        SINGLE_NODE.setdefault(_case.op, []).append(_case)


def _run(case, inputs):
    (node,) = case.graph.nodes
    args = [case.params[i] if i in case.params else inputs[i] for i in node.inputs]
    return ops.get(node.op).reference(node.attrs, *args)


def _cases(trait: str):
    return [c for op in sorted(ops.with_trait(trait)) for c in SINGLE_NODE.get(op, [])[:3]]


def test_every_trait_is_used_and_every_op_has_single_node_cases():
    used = {t for name in ops.names() for t in ops.get(name).traits}
    assert used == set(TRAITS)
    assert set(ops.names()) <= set(SINGLE_NODE), set(ops.names()) - set(SINGLE_NODE)


@pytest.mark.parametrize("case", _cases("elementwise"), ids=lambda c: c.id)
def test_elementwise_ops_read_only_their_own_position(case):
    inputs = {k: v.astype(np.float64) for k, v in case.inputs.items()}
    base = _run(case, inputs)
    name = next(iter(inputs))
    assert base.shape == inputs[name].shape
    index = tuple(d // 2 for d in base.shape)
    bumped = {**inputs, name: inputs[name].copy()}
    bumped[name][index] += 0.75
    changed = np.argwhere(_run(case, bumped) != base)
    assert [tuple(i) for i in changed] in ([index], []), changed[:5]


@pytest.mark.parametrize("case", _cases("view"), ids=lambda c: c.id)
def test_view_ops_reinterpret_the_input_bytes(case):
    (x,) = case.inputs.values()
    y = _run(case, case.inputs)
    assert np.array_equal(np.ascontiguousarray(y).ravel(), x.ravel())


@pytest.mark.parametrize("case", _cases("identity"), ids=lambda c: c.id)
def test_identity_ops_return_their_input(case):
    (x,) = case.inputs.values()
    assert np.array_equal(_run(case, case.inputs), x)


def test_activations_are_unary_and_elementwise_and_contractions_count_macs():
    for name in ops.with_trait("activation"):
        op = ops.get(name)
        assert op.inputs == ("x",) and op.has("elementwise"), name
    for case in (c for op in ops.names() for c in SINGLE_NODE[op][:2]):
        (node,) = case.graph.nodes
        types = case.graph.types
        macs = ops.get(node.op).macs(node.attrs, [types[i] for i in node.inputs], types[node.name])
        assert (macs > 0) == ops.get(node.op).has("contraction"), case.id


def test_overwrites_names_inputs_of_the_output_s_shape():
    for case in (c for op in ops.names() for c in SINGLE_NODE[op]):
        (node,) = case.graph.nodes
        positions = ops.get(node.op).overwrites(node.attrs, len(node.inputs))
        out = case.graph.types[node.name]
        for k in positions:
            assert case.graph.types[node.inputs[k]].shape == out.shape, (case.id, k)


def test_fused_epilogue_activations_are_the_attribute_free_activations():
    want = {n for n in ops.with_trait("activation") if ops.get(n).attrs_type is NoAttrs}
    assert set(activations()) == want and {"relu", "sigmoid"} <= want


def test_unknown_traits_are_refused_with_the_known_list():
    with pytest.raises(IRError, match="unknown trait"):
        ops.with_trait("activations")
    with pytest.raises(IRError, match=r"op bogus: unknown trait\(s\) \['fast'\]"):
        ops.OpDef(name="bogus", attrs_type=NoAttrs, inputs=("x",), traits={"fast"}, infer=ops.same_type,
                  flops=ops.per_element(1), reference=lambda a, x: x, flop_rule="1 per element")
