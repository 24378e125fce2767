"""``convbench classify IMAGE… -m efficientnet_lite0 [-b torch] [--top 5] [--json]``: the top-k ImageNet classes of
photographs with a model's pretrained weights. IMAGE is a bundled photograph by name (``chelsea``, ``coffee`` …)
or an image file; each is preprocessed the model's way (`models.images.PREPROCESS`) at its own input size.

Errors (an unknown name, an unreadable or grayscale image, a model without weights, a backend that cannot run
here) are one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .. import models
from ..backends import registry
from ..backends.base import unavailable_reason
from ..cli import UsageError
from ..models import images, pretrained
from ._common import add_backend_module, backends_arg, in_range, print_json
from .backends import load_backend_modules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help=f"a bundled photograph ({', '.join(images.names())}) or an image file")
    p.add_argument("-m", "--model", default="efficientnet_lite0",
                   help=f"a zoo model with pretrained weights ({', '.join(pretrained.names())})")
    p.add_argument("-b", "--backend", default="torch", help="one backend, optionally NAME:KEY=VALUE… (default torch)")
    p.add_argument("--top", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    add_backend_module(p)


def run(args: argparse.Namespace) -> int:
    load_backend_modules(args.backend_module)
    if args.model not in models.names():
        raise UsageError(f"unknown model {args.model!r}; models with pretrained weights: "
                         f"{', '.join(pretrained.names())}")
    if args.model not in pretrained.names():
        raise UsageError(f"{args.model} has no pretrained weights; models with them: {', '.join(pretrained.names())}")
    in_range(args.top, "--top", 1, 1000)
    specs = backends_arg(args.backend, {"dtype": "classify runs float32"})
    if len(specs) != 1:
        raise UsageError(f"classify takes one backend, got {len(specs)}")
    spec = specs[0]
    backend = registry.get(spec.name)
    why = unavailable_reason(backend, "float32")
    if why:
        raise UsageError(f"backend {spec.label} cannot run here: {why}")
    # every image is read and checked before the weights are loaded: a bad one costs nothing
    photos = [images.load(name) for name in args.images]
    size = models.spec(args.model).image_size
    x = np.stack([images.PREPROCESS[models.spec(args.model).preprocess](p, size) for p in photos])
    graph = models.build(args.model, batch=len(photos))
    exe = backend.compile(graph, models.load_pretrained(graph), **spec.options)
    out = exe(x)
    logits = np.asarray(out[0] if isinstance(out, tuple) else out, np.float64)
    doc = [_top(name, row, args.top) for name, row in zip(args.images, logits, strict=True)]
    if args.json:
        print_json({"model": args.model, "backend": spec.label, "images": doc})
        return 0
    for i, item in enumerate(doc):
        print(("\n" if i else "") + f"{item['image']}:")
        for c in item["top"]:
            print(f"  {c['probability']:6.1%}  {c['name']} ({c['class']})")
    return 0


def _top(name: str, logits: np.ndarray, k: int) -> dict[str, Any]:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:k]
    return {"image": name, "top": [{"class": int(i), "name": images.short_name(int(i)), "probability": float(p[i])}
                                   for i in order]}
