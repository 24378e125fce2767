"""The model zoo: ``names()``, ``build(name, batch, image_size, num_classes)``, ``init_params(graph, seed)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..ir.errors import IRError
from ..ir.graph import Graph
from . import (
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    inception,
    lenet,
    mobilenet,
    mobilenet_v3,
    resnet,
    squeezenet,
    vgg,
)
from .checkpoint import CheckpointError, load_checkpoint
from .init import init_params
from .pretrained import PretrainedError, load_pretrained


class UnknownModelError(IRError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., Graph]
    image_size: int  # the architecture's own input size
    min_image_size: int  # smallest input for which every layer still has an output
    small_image_size: int  # the reduced input tests and quick checks use
    num_classes: int = 1000
    family: str = ""
    preprocess: str = "imagenet"  # how a photograph becomes its input (models/images.py PREPROCESS)


_SPECS = [
    ModelSpec("lenet5", lenet.lenet5, 32, 32, 32, 10, "lenet"),
    ModelSpec("alexnet", alexnet.alexnet, 224, 63, 64, family="alexnet"),
    ModelSpec("alexnet_2012", alexnet.alexnet_2012, 227, 67, 67, family="alexnet"),
    *(ModelSpec(f"vgg{d}{bn}", getattr(vgg, f"vgg{d}{bn}"), 224, 32, 32, family="vgg")
      for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    ModelSpec("googlenet", googlenet.googlenet, 224, 32, 32, family="googlenet"),
    *(ModelSpec(f"resnet{d}", getattr(resnet, f"resnet{d}"), 224, 32, 32, family="resnet")
      for d in (18, 34, 50, 101, 152)),
    ModelSpec("mobilenet_v2", mobilenet.mobilenet_v2, 224, 1, 32, family="mobilenet"),
    # torchvision's minimum is 21: its ceil_mode pools accept a window wider than their input, ours do not
    ModelSpec("squeezenet1_0", squeezenet.squeezenet1_0, 224, 21, 32, family="squeezenet"),
    ModelSpec("densenet121", densenet.densenet121, 224, 29, 32, family="densenet"),
    ModelSpec("inception_v3", inception.inception_v3, 299, 75, 75, family="inception"),
    ModelSpec("mobilenet_v3_large", mobilenet_v3.mobilenet_v3_large, 224, 1, 32, family="mobilenet"),
    ModelSpec("mobilenet_v3_small", mobilenet_v3.mobilenet_v3_small, 224, 1, 32, family="mobilenet"),
    ModelSpec("efficientnet_b0", mobilenet_v3.efficientnet_b0, 224, 1, 32, family="efficientnet"),
    *(ModelSpec(name, getattr(efficientnet, name), res, 1, 32, family="efficientnet_lite",
                preprocess="efficientnet_lite") for name, (_, _, res, _) in efficientnet.LITE.items()),
]
ZOO: dict[str, ModelSpec] = {s.name: s for s in _SPECS}


def names() -> list[str]:
    return list(ZOO)


def spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(ZOO))}") from None


def build(name: str, batch: int = 1, image_size: int | None = None, num_classes: int | None = None) -> Graph:
    """The IR graph of zoo model ``name``, with one input named "input" of shape (batch, C, S, S)."""
    s = spec(name)
    size = s.image_size if image_size is None else int(image_size)
    if batch < 1:
        raise IRError(f"{name}: batch must be ≥ 1, got {batch}")
    if size < s.min_image_size:
        raise IRError(f"{name}: image_size {size} is below its minimum {s.min_image_size}")
    return s.build(batch=batch, image_size=size, num_classes=num_classes or s.num_classes)


__all__ = ["ZOO", "CheckpointError", "ModelSpec", "PretrainedError", "UnknownModelError", "build", "init_params",
           "load_checkpoint", "load_pretrained", "names", "spec"]
