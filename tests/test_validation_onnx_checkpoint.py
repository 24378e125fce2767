"""ONNX files and checkpoints are validated before they are used (issue 13): bytes that are not a model, nodes the
ONNX checker refuses, complex values, and checkpoints that are truncated, sparse, on the meta device or object
arrays are each one error naming the file and the node or key, never a traceback or a silent cast."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.ir import IRError
from convbench.models import load_checkpoint

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from convbench.ir.onnx_import import OnnxImportError, from_onnx  # noqa: E402


def build(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hand", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name: str, shape, elem=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


X = tensor("x", [1, 2, 3, 3])
Y = tensor("y", None)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty: not an ONNX model"),  # was: an empty graph, imported without a word
    (b"\x00\xffnot protobuf at all" * 4, "not an ONNX protobuf"),
    (onnx.ModelProto(producer_name="x").SerializeToString(), "no IR version"),  # protobuf, but no model
])
def test_bytes_that_are_not_a_model_are_one_import_error(tmp_path, data, message):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(path)
    assert path.read_bytes() == data


def test_a_model_without_outputs_is_refused():
    with pytest.raises(OnnxImportError, match="the graph has no outputs"):
        from_onnx(build([helper.make_node("Relu", ["x"], ["y"])], [X], []))


@pytest.mark.parametrize(("node", "message"), [
    # was KeyError: 'axis' out of the Concat handler
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cat"), r"'cat' \(Concat\): not valid ONNX: Required "
                                                                r"attribute 'axis' is missing"),
    (helper.make_node("Relu", ["x"], ["y"], name="r", bogus=1), r"'r' \(Relu\): not valid ONNX: Unrecognized "
                                                               r"attribute: bogus"),
    (helper.make_node("Softmax", ["x"], ["y"], name="s", axis="one"), r"'s' \(Softmax\): not valid ONNX: Mismatched "
                                                                     r"attribute type"),
    (helper.make_node("Sigmoid", ["x", "x"], ["y"], name="two"), r"'two' \(Sigmoid\): not valid ONNX"),
    # was IndexError: the Conv handler reads its weight, input 1
    (helper.make_node("Conv", ["x"], ["y"], name="conv"), r"'conv' \(Conv\): not valid ONNX: .*input size 1 not in "
                                                          r"range"),
])
def test_nodes_the_onnx_checker_refuses_are_listed_with_its_reason(node, message):
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(build([node], [X], [Y]))


def test_every_invalid_node_is_listed_together_with_the_unsupported_ones():
    nodes = [helper.make_node("Concat", ["x", "x"], ["c"], name="cat"),  # invalid: no axis
             helper.make_node("Relu", ["x"], ["r"], name="fine"),
             helper.make_node("Erf", ["r"], ["e"], name="erf"),  # valid ONNX, no IR op
             helper.make_node("Add", ["c", "e"], ["y"], name="add")]  # its inputs are lost: not listed
    with pytest.raises(OnnxImportError) as e:
        from_onnx(build(nodes, [X], [Y]))
    assert [name for name, _, _ in e.value.problems] == ["cat", "erf"]


def test_a_complex_weight_is_refused_not_cast():
    w = np.ones((1, 2, 1, 1), np.complex64) * (1 + 2j)
    model = build([helper.make_node("Mul", ["x", "w"], ["y"], name="scale")], [X], [Y], [("w", w)])
    with pytest.raises(OnnxImportError, match=r"weight 'w' has element type complex64"):  # was: imaginary dropped
        from_onnx(model)
    with pytest.raises(IRError, match="element type complex64"):
        from_onnx(build([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [1, 2], TensorProto.COMPLEX64)], [Y]))


def test_an_initializer_that_does_not_decode_is_named():
    model = build([helper.make_node("Relu", ["x"], ["y"])], [X], [Y], [("w", np.ones(4, np.float32))])
    model.graph.initializer[0].raw_data = b"\x00\x01\x02"  # 3 bytes for four float32
    with pytest.raises(OnnxImportError, match=r"'w' \(initializer\): does not decode"):
        from_onnx(model)


def test_a_valid_model_still_imports():
    g, params = from_onnx(build([helper.make_node("Relu", ["x"], ["y"])], [X], [Y]))
    assert [n.op for n in g.nodes] == ["relu"] and params == {}


# -- checkpoints ---------------------------------------------------------------------------------------------------
@pytest.fixture
def lenet():
    g = cb.models.build("lenet5")
    return g, cb.models.init_params(g, seed=0, calibrate=False)


def test_npz_truncated_object_arrays_single_arrays_and_complex_are_named(tmp_path, lenet):
    g, params = lenet
    np.savez(tmp_path / "ok.npz", **params)
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    cases = {
        "cut.npz": r"cut\.npz is not a readable \.npz archive",  # was zipfile.BadZipFile
        "objects.npz": r"objects\.npz: 1 key\(s\) cannot be read as weights: c1\.weight: ValueError: Object arrays",
        "one.npz": r"one\.npz holds one array, not named arrays",
        "complex.npz": r"complex\.npz: 1 key\(s\) cannot be read as weights: c1\.weight: element type complex64",
    }
    np.savez(tmp_path / "objects.npz", **{**params, "c1.weight": np.array([1, "x"], dtype=object)})
    with open(tmp_path / "one.npz", "wb") as f:
        np.save(f, params["c1.weight"])
    np.savez(tmp_path / "complex.npz", **{**params, "c1.weight": params["c1.weight"].astype(np.complex64)})
    for name, message in cases.items():
        before = (tmp_path / name).read_bytes()
        with pytest.raises(IRError, match=message):
            load_checkpoint(g, tmp_path / name)
        assert (tmp_path / name).read_bytes() == before
    assert load_checkpoint(g, tmp_path / "ok.npz").keys() == g.params.keys()


def test_torch_checkpoints_truncated_sparse_meta_and_complex_are_named(tmp_path, lenet):
    torch = pytest.importorskip("torch")
    g, params = lenet
    state = {k: torch.from_numpy(v) for k, v in params.items()}
    torch.save(state, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    w = state["c1.weight"]
    variants = {"sparse.pth": w.to_sparse(), "meta.pth": torch.empty(w.shape, device="meta"),
                "complex.pth": w.to(torch.complex64)}
    for name, value in variants.items():
        torch.save({**state, "c1.weight": value}, tmp_path / name)
    torch.save({**state, 7: torch.zeros(1)}, tmp_path / "intkey.pth")
    cases = {"cut.pth": r"cut\.pth could not be read by torch\.load",
             "sparse.pth": r"sparse\.pth: 1 key\(s\) cannot be read as weights: c1\.weight: a torch\.sparse_coo tensor",
             "meta.pth": r"c1\.weight: a tensor on the meta device holds no values",  # was NotImplementedError
             "complex.pth": r"c1\.weight: complex \(torch\.complex64\)",  # was: the imaginary part dropped
             "intkey.pth": r"7: the key is not a string"}  # was AttributeError: 'int' has no 'startswith'
    for name, message in cases.items():
        with pytest.raises(IRError, match=message):
            load_checkpoint(g, tmp_path / name)
    loaded = load_checkpoint(g, tmp_path / "ok.pth")
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
