"""What every measurement in bench/ runs: the case's graph, parameters and input, made one way.

A workload is (model, batch, image size, seed) → the zoo graph, `models.init_params` with that seed and a
standard-normal float32 input from the same seed: a sweep's case, its float64 reference (computed in another
process), a paired ablation and a profile all see bit-identical arrays. ``input="real"`` is the model's
pretrained weights (`models.load_pretrained`) on the first ``batch`` bundled labelled photographs
(`models.images.PHOTOS`, preprocessed the model's way), with each photograph's acceptable labels.

Also here, because every runner asks it the same way: the options the harness passes to ``compile``
(`compile_options`: only what the backend declares). Why a backend cannot run a dtype here is
`backends.base.unavailable_reason`, the words check (skip) and run (unsupported) both give.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.graph import Graph
from .errors import BenchError

SEED = 0


@dataclass(frozen=True, eq=False)
class Workload:
    graph: Graph
    params: dict[str, np.ndarray]
    input: np.ndarray
    labels: tuple[frozenset[int], ...] | None = None  # real input: each row's acceptable ImageNet classes
    # int8: how the graph was quantized (`models.calibration.quantize_model`'s settings), and the float graph and
    # parameters it was quantized from (accuracy is judged against the float model's float64 output)
    quantization: dict[str, Any] | None = None
    float_graph: Graph | None = None
    float_params: dict[str, np.ndarray] | None = None


def make_input(shape: tuple[int, ...], seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_real_input(model: str, batch: int) -> None:
    """`BenchError` when ``model`` has no pretrained weights or ``batch`` exceeds the labelled photographs (the
    set is not padded with repeated views: a repeated photograph would count twice in every accuracy)."""
    from ..models import images, pretrained

    if model not in pretrained.names():
        raise BenchError(f"--input real needs pretrained weights, which {model} has not; models with them: "
                         f"{', '.join(pretrained.names())}")
    if batch > len(images.PHOTOS):
        raise BenchError(f"--input real has {len(images.PHOTOS)} labelled photographs ({', '.join(images.PHOTOS)}); "
                         f"batch {batch} is larger")


def make_workload(model: str, batch: int, image_size: int | None, seed: int = SEED,
                  input: str = "random", dtype: str = "float32", int8: str = "") -> Workload:
    """``image_size=None`` is the architecture's own size. ``dtype="int8"``: the graph quantized
    (`models.calibration.quantize_model`: calibrated on seeded views of the photographs, deterministic, so every
    process of a sweep quantizes a workload to the same QDQ graph), with ``int8``'s settings
    (`models.calibration.parse_int8`)."""
    w = _float_workload(model, batch, image_size, seed, input)
    if dtype != "int8":
        return w
    from ..models.calibration import parse_int8, quantize_model

    graph, params, settings = quantize_model(w.graph, w.params, model, inputs=[w.input], **parse_int8(int8))
    return Workload(graph, params, w.input, w.labels, settings, w.graph, w.params)


def _float_workload(model: str, batch: int, image_size: int | None, seed: int, input: str) -> Workload:
    from .. import models

    graph = models.build(model, batch=batch, image_size=image_size)
    if input == "real":
        from ..models import images

        check_real_input(model, batch)
        photos = list(images.PHOTOS)[:batch]
        size = graph.inputs[next(iter(graph.inputs))].shape[-1]
        x = images.batch(photos, size, models.spec(model).preprocess)
        return Workload(graph, models.load_pretrained(graph), x, tuple(images.PHOTOS[p].accept for p in photos))
    if input != "random":
        raise BenchError(f"input must be random or real, got {input!r}")
    params = models.init_params(graph, seed=seed)
    return Workload(graph, params, make_input(graph.inputs[next(iter(graph.inputs))].shape, seed))


def reference(workload: Workload, float_model: bool = False) -> np.ndarray:
    """The NumPy backend's output in float64 on the workload's float32 values: the oracle. For an int8 workload
    that is the quantized graph's exact arithmetic (what an int8 backend must match); ``float_model`` gives the
    float graph's instead (what its accuracy is judged against)."""
    from ..backends import get

    graph, params = workload.graph, workload.params
    if float_model and workload.float_graph is not None:
        graph, params = workload.float_graph, workload.float_params or {}
    out = get("numpy").compile(graph, params, dtype="float64")(workload.input)
    return np.asarray(out[0] if isinstance(out, tuple) else out)


def compile_options(backend: Any, dtype: str, threads: int | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords for ``backend.compile``: the case's own options, plus dtype and threads where the backend
    declares them. ``threads`` goes only to a backend that names it (one taking ``**options`` may reject it, as
    the docs ask of unknown options); the others get it from the environment the child starts with
    (OMP_NUM_THREADS …). ``dtype`` is part of the contract; float32 is every backend's default, so it is left out
    only where the backend declares options without it."""
    from ..backends.template import accepted_options

    accepted = accepted_options(backend)
    harness: dict[str, Any] = {}
    if accepted is None or "dtype" in accepted or dtype != "float32":  # an undeclared non-default dtype: its error
        harness["dtype"] = dtype
    if threads is not None and accepted is not None and "threads" in accepted:
        harness["threads"] = threads
    return {**harness, **options}
