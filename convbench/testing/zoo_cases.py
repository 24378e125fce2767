"""`ModelCase`: a zoo model at a batch and input size, with the data and float64 reference built on demand.

Building a model's parameters and reference costs seconds (VGG's classifier alone is 120 M weights), so a case
holds only its name; the arrays live in a small LRU shared by all cases, which keeps a whole conformance run
(every model × every backend) within memory while two backends checked one after the other reuse them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import models as zoo
from ..bench.schema import int8_tag
from ..ir.graph import Graph
from ..models.calibration import int8_spec, parse_int8
from .cases import reference_outputs, rng

SIZES = ("small", "full")


@dataclass(frozen=True)
class ModelCase:
    """Zoo model ``model`` with input (batch, C, image_size, image_size); ``id`` like ``resnet18-b2-s32``."""

    id: str
    model: str
    batch: int
    image_size: int
    seed: int = 0
    input: str = "random"  # "real": pretrained weights on the bundled photographs (bench.workload)
    # how run_case quantizes it for int8 (models.calibration.int8_spec; "" the defaults), as bench.schema.Case.int8
    int8: str = ""

    @property
    def graph(self) -> Graph:
        return _data(self.model, self.batch, self.image_size, self.seed, self.input)[0]

    @property
    def params(self) -> dict[str, np.ndarray]:
        return _data(self.model, self.batch, self.image_size, self.seed, self.input)[1]

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return _data(self.model, self.batch, self.image_size, self.seed, self.input)[2]

    @property
    def reference(self) -> list[np.ndarray]:
        return _data(self.model, self.batch, self.image_size, self.seed, self.input)[3]

    @property
    def labels(self) -> tuple[frozenset[int], ...] | None:
        """Each row's acceptable ImageNet classes (real input); None for random input."""
        return _data(self.model, self.batch, self.image_size, self.seed, self.input)[4]

    @property
    def op(self) -> str:
        return self.model

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(n.op for n in self.graph.nodes)

    def input_list(self) -> list[np.ndarray]:
        return [self.inputs[name] for name in self.graph.inputs]

    def describe(self) -> str:
        (name, t), = self.graph.inputs.items()
        return f"{self.model} {name}{tuple(t.shape)} ({len(self.graph.nodes)} nodes)"


@lru_cache(maxsize=2)
def _data(model: str, batch: int, image_size: int, seed: int, input: str = "random"):
    if input != "random":  # the arrays `convbench run` measures on, so check and run judge the same case
        from ..bench.workload import make_workload

        w = make_workload(model, batch, image_size, seed, input)
        (name,) = w.graph.inputs
        return w.graph, w.params, {name: w.input}, reference_outputs(w.graph, w.params, {name: w.input}), w.labels
    graph = zoo.build(model, batch=batch, image_size=image_size)
    params = zoo.init_params(graph, seed=seed)
    (name, t), = graph.inputs.items()
    inputs = {name: rng("model input", model, seed).standard_normal(t.shape).astype(np.float32)}
    return graph, params, inputs, reference_outputs(graph, params, inputs), None


def model_case(model: str, batch: int = 1, image_size: int | None = None, seed: int = 0,
               input: str = "random", int8: str = "") -> ModelCase:
    """``int8``: the case of an int8 check, quantized with those settings (`models.calibration.parse_int8`; a bad
    one is a ValueError here), its id carrying them as `convbench run`'s does; the same arrays as without."""
    size = zoo.spec(model).image_size if image_size is None else int(image_size)
    suffix = "" if input == "random" else f"-{input}"  # random ids unchanged; real ones never collide with them
    spec = int8_spec(parse_int8(int8))
    return ModelCase(f"{model}-b{batch}-s{size}{suffix}{int8_tag(spec)}", model, batch, size, seed, input, spec)


def model_cases(size: str = "small", models: Iterable[str] | None = None, batch: int | None = None) -> list[ModelCase]:
    """Every zoo model (or those named in ``models``): ``"small"`` at its reduced input size with batch 2 (what CI
    runs), ``"full"`` at the architecture's own input size with batch 1; ``batch`` overrides either."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    names = zoo.names() if models is None else list(models)
    out = []
    for name in names:
        s = zoo.spec(name)
        image = s.small_image_size if size == "small" else s.image_size
        out.append(model_case(name, batch or (2 if size == "small" else 1), image))
    return out
