"""int8 cases: a case's graph quantized (`convbench.ir.passes.quantize`), judged against the NumPy float64
reference of *that* quantized graph, with the float64 reference of the float graph kept for accuracy.

`run_case(..., dtype="int8")` quantizes a case whose graph has no QDQ nodes through `quantized_case`, so
`convbench check --dtype int8` and the conformance suite check every int8 backend against one quantized graph,
quantized as `convbench run` quantizes its workload (`models.calibration.quantize_model`, with the case's ``int8``
settings: ``check --int8``). Calibration: an image graph (one (N, 3, H, W) input, H and W ≥ `images.MIN_SIDE`,
a zoo model's case) is calibrated on seeded views of every bundled photograph, preprocessed the model's way (seed
`CALIBRATION_SEED`, never the views accuracy is measured on); any other graph (the op corpus) on the case's own
inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..ir.graph import Graph
from ..ir.passes.quantize import is_quantized
from ..models.calibration import (  # noqa: F401  (re-exported: the checks' names for them)
    CALIBRATION_SEED,
    CALIBRATION_VIEWS,
    OBSERVER,
    is_image_graph,
    parse_int8,
    photo_calibration,
    quantize_model,
)
from .cases import reference_outputs


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
    weight_bits: int = 8

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
        return (f"{self.source.describe()} quantized ({self.observer}, {self.calibration_views} views/photo, "
                f"{self.weight_bits}-bit weights)")


def quantized_case(case: Any) -> Any:
    """``case`` with its graph quantized (a case already holding QDQ nodes is returned as it is) the way
    ``convbench run`` quantizes a workload (`quantize_model`), with the case's own ``int8`` settings if it has
    them (`zoo_cases.model_case`; `models.calibration.parse_int8`): its reference is then that graph's too."""
    if is_quantized(case.graph):
        return case
    graph, params, settings = quantize_model(case.graph, case.params, getattr(case, "model", None),
                                             inputs=case.input_list(), **parse_int8(getattr(case, "int8", "")))
    return QuantizedCase(case.id, case, graph, params, settings["observer"], settings["calibration_views"],
                         getattr(case, "tags", frozenset()), settings["weight_bits"])
