"""int8 cases: a case's graph quantized (`convbench.ir.passes.quantize`), judged against the NumPy float64
reference of *that* quantized graph, with the float64 reference of the float graph kept for accuracy.

`run_case(..., dtype="int8")` quantizes a case whose graph has no QDQ nodes through `quantized_case`, so
`convbench check --dtype int8` and the conformance suite check every int8 backend against one quantized graph.
Calibration: an image graph (one (N, 3, H, W) input, H and W ≥ `images.MIN_SIDE`, a zoo model's case) is
calibrated on seeded views of every bundled photograph, preprocessed the model's way (seed `CALIBRATION_SEED`,
never the views accuracy is measured on); any other graph (the op corpus) on the case's own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..ir.graph import Graph
from ..ir.passes.quantize import is_quantized, quantize_graph
from ..models.calibration import (  # noqa: F401  (re-exported: the checks' names for them)
    CALIBRATION_SEED,
    CALIBRATION_VIEWS,
    OBSERVER,
    is_image_graph,
    photo_calibration,
    quantize_model,
)
from .cases import reference_outputs


def calibration_for(case: Any, views: int = CALIBRATION_VIEWS) -> list[np.ndarray] | list[list[np.ndarray]]:
    graph = case.graph
    if is_image_graph(graph):
        from .. import models

        model = getattr(case, "model", None)
        preprocess = models.spec(model).preprocess if model in models.names() else "imagenet"
        return photo_calibration(graph.inputs[next(iter(graph.inputs))].shape[2], preprocess, views)
    return [case.input_list()]


@dataclass(frozen=True, eq=False)
class QuantizedCase:
    """``source`` quantized: ``graph``/``params`` are the QDQ graph; ``reference`` its NumPy float64 outputs
    (what an int8 backend must match within tolerance("int8")); ``float_reference`` the float graph's."""

    id: str
    source: Any
    graph: Graph
    params: dict[str, np.ndarray]
    observer: str
    calibration_views: int
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return self.source.inputs

    @property
    def labels(self):
        return getattr(self.source, "labels", None)

    @property
    def op(self) -> str:
        return self.source.op

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(n.op for n in self.graph.nodes)

    @cached_property
    def reference(self) -> list[np.ndarray]:
        return reference_outputs(self.graph, self.params, self.inputs)

    @property
    def float_reference(self) -> list[np.ndarray]:
        return self.source.reference

    def input_list(self) -> list[np.ndarray]:
        return [self.inputs[name] for name in self.graph.inputs]

    def describe(self) -> str:
        return f"{self.source.describe()} quantized ({self.observer}, {self.calibration_views} views/photo)"


def quantized_case(case: Any, observer: str = OBSERVER, views: int = CALIBRATION_VIEWS) -> Any:
    """``case`` with its graph quantized (a case already holding QDQ nodes is returned as it is)."""
    if is_quantized(case.graph):
        return case
    graph, params = quantize_graph(case.graph, case.params, calibration_for(case, views), observer=observer)
    return QuantizedCase(case.id, case, graph, params, observer, views, getattr(case, "tags", frozenset()))
