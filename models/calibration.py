"""Calibration for int8: the photographs' seeded views a quantized graph's activation ranges are observed on,
and `quantize_model`, what the harness and the checks call to turn a zoo model into its QDQ graph
(`convbench.ir.passes.quantize`). The calibration views are never the views accuracy is measured on (seed 1
here, seed 0 for `images.views`' default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.graph import Graph
from ..ir.passes.quantize import OBSERVERS, WEIGHT_BITS, WEIGHT_CLIPS, host_weight_bits, quantize_graph

CALIBRATION_SEED = 1  # accuracy views use seed 0 (models.images.views' default)
CALIBRATION_VIEWS = 4  # per photograph: 32 views of the 8 photographs (2 per photo: one view of 65 worse, lite0)
OBSERVER = "percentile"  # efficientnet_lite0 on ORT, 4 views/photo: 96.9 % top-1 agreement, minmax 95.4 %


# the settings ``--int8`` takes (`parse_int8`), each with how its value is read and checked
INT8_KEYS = {"observer": f"one of {', '.join(OBSERVERS)}", "views": "calibration views a photograph, 1-64",
             "weight_bits": f"one of {', '.join(map(str, WEIGHT_BITS))}",
             "weight_clip": f"one of {', '.join(WEIGHT_CLIPS)}", "bias_correction": "on or off"}


def parse_int8(spec: str) -> dict[str, Any]:
    """``"observer=minmax,views=8,weight_bits=7"`` → `quantize_model`'s keywords ("" → none: the defaults). A bad
    key or value is one ValueError naming it and what it may be."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in INT8_KEYS:
            raise ValueError(f"int8 setting {part!r}: expected KEY=VALUE with KEY one of {', '.join(INT8_KEYS)}")
        if key in out:
            raise ValueError(f"int8 setting {key!r} is given twice")
        if key == "observer" and value in OBSERVERS:
            out[key] = value
        elif key == "views" and value.isdigit() and 1 <= int(value) <= 64:
            out[key] = int(value)
        elif key == "weight_bits" and value.isdigit() and int(value) in WEIGHT_BITS:
            out[key] = int(value)
        elif key == "weight_clip" and value in WEIGHT_CLIPS:
            out[key] = value
        elif key == "bias_correction" and value in ("on", "off"):
            out[key] = value == "on"
        else:
            raise ValueError(f"int8 setting {key}={value!r}: {key} must be {INT8_KEYS[key]}")
    return out


def int8_spec(settings: dict[str, Any]) -> str:
    """The canonical spelling of `parse_int8`'s result (keys in INT8_KEYS' order): what a case id carries."""
    def spelled(v: Any) -> str:
        return ("on" if v else "off") if isinstance(v, bool) else str(v)

    return ",".join(f"{k}={spelled(settings[k])}" for k in INT8_KEYS if k in settings)


def is_image_graph(graph: Graph) -> bool:
    from .images import MIN_SIDE

    if len(graph.inputs) != 1:
        return False
    (t,) = graph.inputs.values()
    return t.rank == 4 and t.shape[1] == 3 and min(t.shape[2:]) >= MIN_SIDE and t.shape[2] == t.shape[3]


def photo_calibration(size: int, preprocess: str, views: int = CALIBRATION_VIEWS, seed: int = CALIBRATION_SEED,
                      batch: int = 8) -> list[np.ndarray]:
    """``views`` seeded views of every bundled photograph at ``size``, in batches of at most ``batch``."""
    from . import images

    every = np.concatenate([images.views(p, views, size, preprocess, seed) for p in images.names()])
    return [every[i:i + batch] for i in range(0, len(every), batch)]


def quantize_model(graph: Graph, params: dict[str, np.ndarray], model: str | None = None,
                   inputs: list[np.ndarray] | None = None, observer: str = OBSERVER,
                   views: int = CALIBRATION_VIEWS, weight_bits: int | None = None, weight_clip: str = "mse",
                   bias_correction: bool = True) -> tuple[Graph, dict[str, np.ndarray], dict[str, Any]]:
    """What a harness (``convbench run --dtype int8``) calls: the QDQ graph, its parameters and the calibration
    settings a record should carry. An image graph calibrates on the photographs (``model``'s preprocessing),
    anything else on ``inputs``."""
    from .. import models

    if is_image_graph(graph):
        preprocess = models.spec(model).preprocess if model in models.names() else "imagenet"
        cal: list = photo_calibration(graph.inputs[next(iter(graph.inputs))].shape[2], preprocess, views)
        source = f"photographs: {views} views each (seed {CALIBRATION_SEED}), {preprocess} preprocessing"
    elif inputs is not None:
        cal, source = [inputs], "the run's own inputs"
    else:
        raise ValueError(f"quantize_model: {graph.name} is not an image graph; give calibration inputs")
    bits = host_weight_bits() if weight_bits is None else weight_bits
    qg, qp = quantize_graph(graph, params, cal, observer=observer, weight_bits=bits, weight_clip=weight_clip,
                            bias_correction=bias_correction)
    corrected = ", bias corrected" if bias_correction else ""
    return qg, qp, {"observer": observer, "calibration": source, "calibration_views": views, "weight_bits": bits,
                    "weight_clip": weight_clip, "bias_correction": bias_correction,
                    "weights": f"int8 symmetric per output channel, {bits} bits, {weight_clip} range{corrected}",
                    "activations": "int8 asymmetric per tensor"}


