"""Fuzzing the readers (issue 13): valid graph JSON, results lines and ONNX bytes, mutated (a value replaced by any
JSON value, a key dropped, added or renamed; bytes flipped, inserted, deleted, cut), must give one clear error —
a convbench error type, one line on stderr and exit 2 from the CLI — or a correct result, never another
exception, and never a changed input file.

Derandomized like the differential fuzzers (convbench/testing/fuzz.py): CI sees the same inputs every run, so a
failure is a regression; CONVBENCH_FUZZ_EXPLORE=1 draws fresh ones. Example counts stay modest for 2 cores."""

from __future__ import annotations

import copy
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from _bench_records import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convbench.bench.errors import BenchError
from convbench.bench.output import prepare_output
from convbench.bench.record import load_records
from convbench.cli import main
from convbench.ir import IRError
from convbench.ir.builder import GraphBuilder
from convbench.ir.serialize import from_json, load, to_json

FUZZ = settings(deadline=None, database=None, derandomize=not os.environ.get("CONVBENCH_FUZZ_EXPLORE"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated_doc(draw, doc: Any) -> Any:
    """``doc`` with one to three structural mutations somewhere in its tree."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "rename"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_values)
        elif action == "add":
            parent.insert(key, draw(json_values))
        elif isinstance(parent, dict):
            parent[key + draw(st.sampled_from(["s", "_", "X"]))] = parent.pop(key)
    return doc


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """``data`` with one to four byte-level edits (flip, insert, delete, cut)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        i = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and out:
            del out[i:i + draw(st.integers(1, 8))]
        elif kind == "cut":
            del out[i:]
    return bytes(out)


def cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def one_clear_error(code: int, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if not line.startswith(("  ", "warnings.warn"))]
        assert len([ln for ln in lines if ": error: " in ln]) == 1 and "Traceback" not in err, err


# -- graph JSON ----------------------------------------------------------------------------------------------------
def _graph_doc() -> dict:
    b = GraphBuilder("fz", (1, 3, 8, 8))
    x = b.max_pool2d(b.relu(b.conv2d(b.input, 4, 3, padding=1, name="conv")), 2, name="pool")
    x = b.leaky_relu(b.batch_norm(x, name="bn"), 0.2, name="lrelu")
    y = b.concat([x, b.sigmoid(x, name="sig")], name="cat")
    return json.loads(to_json(b.build(b.softmax(b.linear(b.flatten(y), 5, name="fc"), name="prob"))))


GRAPH = _graph_doc()
GRAPH_TEXT = json.dumps(GRAPH).encode()


def _check_graph_file(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        g = load(path)
    except IRError:  # GraphFormatError, ShapeError, UnknownOpError …: all convbench errors
        pass
    else:  # a correct result: it verifies, and it writes back to a file that reads as the same graph
        assert from_json(to_json(g)) == g
    assert path.read_bytes() == data


@FUZZ
@given(doc=mutated_doc(GRAPH))
def test_fuzz_graph_json_structure(tmp_path, doc):
    _check_graph_file(tmp_path / "g.json", json.dumps(doc).encode())  # a float drawn as NaN is written as NaN


@settings(FUZZ, max_examples=150)
@given(data=mutated_bytes(GRAPH_TEXT))
def test_fuzz_graph_json_bytes(tmp_path, data):
    _check_graph_file(tmp_path / "g.json", data)


@settings(FUZZ, max_examples=40)
@given(doc=mutated_doc(GRAPH))
def test_fuzz_summary_command(tmp_path, doc):
    path = tmp_path / "g.json"
    data = json.dumps(doc).encode()
    path.write_bytes(data)
    code, err = cli("summary", str(path), "--json")
    assert code in (0, 2)
    one_clear_error(code, err)
    assert path.read_bytes() == data


# -- results lines -------------------------------------------------------------------------------------------------
RECORDS = [record(n=6), record("resnet18", n=6, seed=1), record("alexnet", status="timeout")]
RESULTS_TEXT = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()


@st.composite
def mutated_results(draw) -> bytes:
    if draw(st.booleans()):
        return draw(mutated_bytes(RESULTS_TEXT))
    lines = [json.dumps(draw(mutated_doc(r)) if draw(st.booleans()) else r) for r in RECORDS]
    return ("\n".join(lines) + draw(st.sampled_from(["\n", ""]))).encode()


def _results_file(tmp_path, data: bytes):
    """The fuzzed bytes as a results file (the readers under test open it by path)."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(data)
    return path


@settings(FUZZ, max_examples=150)
@given(data=mutated_results())
def test_fuzz_results_reading_and_resume(tmp_path, data):
    path = _results_file(tmp_path, data)
    try:
        records = load_records(path)
    except BenchError:  # SchemaError
        records = None
    assert path.read_bytes() == data
    try:
        done = prepare_output(path, resume=True, overwrite=False)
    except BenchError:
        assert path.read_bytes() == data, "a refused resume changed the file"
        assert records is None, "resume refused a file that reads"
        return
    assert records is not None, "resume accepted a file that does not read"
    after = path.read_bytes()  # only a torn tail trimmed or a missing last newline added
    assert after == data or after == data + b"\n" or (data.startswith(after) and after.endswith(b"\n")) \
        or (after == b"" and load_records(path) == [])  # a file whose only line was torn
    assert done == {r.case_id for r in load_records(path)}


@settings(FUZZ, max_examples=60)
@given(data=mutated_results())
def test_fuzz_compare_command(tmp_path, data):
    good, path = tmp_path / "good.jsonl", tmp_path / "new.jsonl"
    good.write_bytes(RESULTS_TEXT)
    path.write_bytes(data)
    for argv in (["compare", str(good), str(path)], ["compare", str(path), str(good), "--format", "json"]):
        one_clear_error(*cli(*argv))
    assert path.read_bytes() == data and good.read_bytes() == RESULTS_TEXT


@settings(FUZZ, max_examples=120)
@given(data=mutated_results())
def test_fuzz_report_tables(tmp_path, data):
    """What ``report`` computes and prints, without drawing (drawing is the CLI fuzzer's, below, fewer cases)."""
    from convbench.bench import lecture, report

    path = _results_file(tmp_path, data)
    try:
        df, machines = report.load([path])
    except BenchError:
        return
    tables = [report.results_table(df), report.machine_table(machines, df), *report.scenario_tables(df).values(),
              lecture.comparison_table(df), lecture.vgg_resnet_table(df)]
    assert all(isinstance(report.markdown_table(t), str) for t in tables)


@settings(FUZZ, max_examples=12)
@given(data=mutated_results())
def test_fuzz_report_command(tmp_path, data):
    path = _results_file(tmp_path, data)
    code, err = cli("report", str(path), "-o", str(tmp_path / "rep"))
    assert code in (0, 2)
    one_clear_error(code, err)
    assert path.read_bytes() == data


# -- ONNX bytes ----------------------------------------------------------------------------------------------------
def _onnx_bytes() -> bytes:
    pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["r"], ["s"], name="sig"),
             helper.make_node("Concat", ["r", "s"], ["c"], name="cat", axis=1),
             helper.make_node("Flatten", ["c"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w", "b"], ["g"], name="fc", transB=1),
             helper.make_node("Softmax", ["g"], ["y"], name="prob", axis=1)]
    graph = helper.make_graph(nodes, "fz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(rng.standard_normal((3, 16)).astype(np.float32), "w"),
                               numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_fuzz_onnx_bytes(tmp_path, data):
    from convbench.ir.onnx_import import from_onnx

    original = _onnx_bytes()
    blob = data.draw(mutated_bytes(original))
    path = tmp_path / "m.onnx"
    path.write_bytes(blob)
    try:
        graph, params = from_onnx(path)
    except IRError:  # OnnxImportError: one error listing the nodes
        pass
    else:  # a correct result: a graph that verifies, with exactly its parameters
        assert set(params) == set(graph.params)
        assert all(tuple(params[k].shape) == t.shape for k, t in graph.params.items())
    assert path.read_bytes() == blob


def test_the_unmutated_inputs_read():
    """The fuzzers start from valid inputs (so every error they see comes from a mutation)."""
    assert from_json(GRAPH_TEXT) is not None
    assert [r.status for r in load_records(_write(RESULTS_TEXT))] == ["ok", "ok", "timeout"]
    pytest.importorskip("onnx")
    from convbench.ir.onnx_import import from_onnx

    graph, _ = from_onnx(_write(_onnx_bytes(), ".onnx"))
    assert [n.op for n in graph.nodes][-1] == "softmax"


def _write(data: bytes, suffix: str = ".jsonl") -> Path:
    import tempfile

    fd, name = tempfile.mkstemp(suffix=suffix)
    os.write(fd, data)
    os.close(fd)
    return Path(name)
