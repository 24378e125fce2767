"""Graph JSON is validated, not coerced (issue 13): each finding, as the file a user wrote, is one
`GraphFormatError` naming the node and field, and a valid file still reads exactly."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing

import pytest

import convbench as cb
from convbench.cli import main
from convbench.ir import GraphFormatError, IRError, ops
from convbench.ir.builder import GraphBuilder
from convbench.ir.serialize import from_dict, from_json, load, to_dict, to_json, typed


def small() -> dict:
    b = GraphBuilder("small", (2, 3, 8, 8))
    x = b.relu(b.conv2d(b.input, 4, 3, padding=1, name="conv"))
    x = b.leaky_relu(b.max_pool2d(x, 3, 2, name="pool"), 0.25, name="lrelu")
    x = b.batch_norm(x, name="bn")
    return json.loads(to_json(b.build(b.linear(b.flatten(x), 6, name="fc"))))


def node(data: dict, name: str) -> dict:
    return next(n for n in data["nodes"] if n["name"] == name)


def bad(mutate, match: str) -> None:
    data = small()
    mutate(data)
    with pytest.raises(GraphFormatError, match=match):
        from_json(json.dumps(data))


def test_a_bool_is_only_true_or_false():
    # "false" was truthy: ceil_mode on, and the output shape changed
    bad(lambda d: node(d, "pool")["attrs"].update(ceil_mode="false"),
        r"node 'pool' \(max_pool2d\): attribute 'ceil_mode' must be true or false, got \"false\"")
    bad(lambda d: node(d, "pool")["attrs"].update(ceil_mode=0), "'ceil_mode' must be true or false, got 0")


def test_an_int_is_an_integer_never_a_string_or_a_fraction():
    # "22" was iterated into (2, 2); [1.7, 1.7] was truncated to (1, 1)
    bad(lambda d: node(d, "conv")["attrs"].update(stride="22"), r"'stride' must be a list of 2 integers, got \"22\"")
    bad(lambda d: node(d, "conv")["attrs"].update(stride=[1.7, 1.7]), r"'stride' must be a list of 2 integers")
    bad(lambda d: node(d, "conv")["attrs"].update(groups="abc"), "'groups' must be an integer, got \"abc\"")
    bad(lambda d: node(d, "conv")["attrs"].update(groups=True), "'groups' must be an integer, got true")
    bad(lambda d: node(d, "conv")["attrs"].update(stride=[1, 1, 1]), "'stride' must be a list of 2 integers")


def test_fractional_or_non_positive_dimensions_are_refused():
    bad(lambda d: d["inputs"]["input"].update(shape=[2, 3, 8.5, 8]), "input 'input': 'shape' must be a list of "
                                                                       "integers")
    bad(lambda d: d["params"]["fc.bias"].update(shape=[0]), "param 'fc.bias': shape \\[0\\] has a dimension below 1")
    bad(lambda d: d["inputs"]["input"].update(shape="2338"), "'shape' must be a list of integers")
    bad(lambda d: d["inputs"]["input"].update(dtype="float8"), "'dtype' must be 'float32' | 'float64'")


def test_a_misspelt_key_is_refused_with_the_nearest_known_one():
    def misspell(d):
        conv = node(d, "conv")
        conv["atrs"] = conv.pop("attrs")  # was: the default attributes, silently

    bad(misspell, r"node #0 'conv': unknown key\(s\) 'atrs' \(did you mean 'attrs'\?\)")
    bad(lambda d: node(d, "conv")["attrs"].update(strides=[1, 1]),
        r"unknown attribute\(s\) 'strides' \(did you mean 'stride'\?\)")
    bad(lambda d: d.update(output=["fc"]), r"graph: unknown key\(s\) 'output' \(did you mean 'outputs'\?\)")
    bad(lambda d: d["inputs"]["input"].update(shap=[1]), r"unknown key\(s\) 'shap' \(did you mean 'shape'\?\)")


def test_a_graph_without_outputs_is_refused():
    bad(lambda d: d.update(outputs=[]), "'outputs' is empty")  # compiled to a function returning ()
    bad(lambda d: d.update(outputs="fc"), "'outputs' must be a list of strings, got \"fc\"")


def test_non_finite_numbers_are_refused():
    text = json.dumps(small())
    assert '"negative_slope": 0.25' in text
    with pytest.raises(GraphFormatError, match="NaN is not JSON"):  # was accepted: a NaN activation
        from_json(text.replace('"negative_slope": 0.25', '"negative_slope": NaN'))
    for literal in ("Infinity", "-Infinity"):
        with pytest.raises(GraphFormatError, match=f"{literal} is not JSON"):
            from_json(text.replace('"negative_slope": 0.25', f'"negative_slope": {literal}'))
    assert '"eps": 1e-05' in text and '"groups": 1' in text
    with pytest.raises(GraphFormatError, match="'eps' must be a finite number, got Infinity"):
        from_json(text.replace('"eps": 1e-05', '"eps": 1e999'))  # parses as inf
    with pytest.raises(GraphFormatError, match="digits"):  # more digits than Python converts: was ValueError
        from_json(text.replace('"groups": 1', '"groups": 1' + "0" * 5000))
    g = from_dict(small())  # and the writer refuses what the reader refuses
    slope = next(n for n in g.nodes if n.op == "leaky_relu")
    nan = g.replace(nodes=tuple(n if n is not slope else dataclasses.replace(n, attrs=dataclasses.replace(
        n.attrs, negative_slope=float("nan"))) for n in g.nodes))
    with pytest.raises(GraphFormatError, match=r"node\(s\) \['lrelu'\] have NaN or infinite attributes"):
        to_json(nan)


def test_malformed_structure_is_one_error_not_a_traceback():
    bad(lambda d: d.update(inputs=[]), "graph: 'inputs' must be an object, got \\[\\]")  # was AttributeError
    bad(lambda d: d.update(nodes={}), "'nodes' must be a list")
    bad(lambda d: d["nodes"].__setitem__(0, "conv"), "node #0: must be an object")
    bad(lambda d: node(d, "conv").update(inputs="input"), "'inputs' must be a list of strings")  # iterated a str
    bad(lambda d: node(d, "pool")["attrs"].pop("kernel_size"), "missing attribute 'kernel_size'")
    bad(lambda d: node(d, "conv").update(attrs=None), "'attrs': must be an object, got null")
    bad(lambda d: d.update(version=True), "version true is not supported")
    bad(lambda d: d.update(name=7), "'name' must be a string")
    with pytest.raises(GraphFormatError, match="nested too deeply"):
        from_json("[" * 100_000 + "]" * 100_000)  # was RecursionError
    with pytest.raises(GraphFormatError, match="appears twice"):
        from_json('{"format": "convbench.graph", "format": "x"}')
    with pytest.raises(GraphFormatError, match="must be an object"):
        from_json("[1, 2]")


def test_a_file_that_does_not_read_is_named(tmp_path):
    path = tmp_path / "g.json"
    path.write_bytes(b'{"format": "convbench.graph", "name": "\xff"}')
    with pytest.raises(GraphFormatError, match=r"g\.json: not UTF-8 text"):  # was UnicodeDecodeError
        load(path)
    with pytest.raises(GraphFormatError, match=r"nope\.json: cannot read"):
        load(tmp_path / "nope.json")


def test_every_op_s_attributes_have_types_the_reader_knows():
    """A new op whose attribute type the typed reader cannot check fails here, not on a user's file."""
    for name in ops.names():
        for field, hint in typing.get_type_hints(ops.get(name).attrs_type).items():
            try:
                typed(None, hint)
            except TypeError:
                pass  # None is not that type: checked, not unsupported
            except NotImplementedError as e:
                pytest.fail(f"op {name}: attribute {field}: {e}")


def test_valid_files_still_read_exactly_and_from_dict_takes_to_dict():
    for name in ("lenet5", "resnet18", "googlenet"):
        g = cb.models.build(name)
        assert from_json(to_json(g)) == g
        assert from_dict(to_dict(g)) == g  # tuples, as to_dict leaves them
    data = small()
    data["nodes"][0]["attrs"] = {"stride": [1, 1], "padding": [1, 1]}  # omitted attributes take their defaults
    assert from_dict(copy.deepcopy(data)).nodes[0].attrs.groups == 1
    assert issubclass(GraphFormatError, IRError)


@pytest.mark.parametrize(("text", "message"), [
    (b"\xff\xfe\x00", "not UTF-8"),
    (b'{"format": "convbench.graph", "version": 1, "inputs": [], "params": {}, "nodes": [], "outputs": ["x"]}',
     "'inputs' must be an object"),
    (b"[" * 50_000, "nested too deeply"),
    (b'{"format": "convbench.graph", "version": NaN}', "NaN is not JSON"),
])
def test_summary_of_a_malformed_graph_file_is_one_line_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert path.read_bytes() == text
