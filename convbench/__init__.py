"""convbench: a tiny CNN graph IR, interchangeable backends and a benchmark harness.

    import convbench as cb
    g = cb.models.build("resnet50", batch=1)
    params = cb.models.init_params(g, seed=0)
    exe = cb.backends.get("numpy").compile(g, params)
    y = exe(x)
"""

from __future__ import annotations

from . import analysis, backends, ir, models
from .ir.graph import Graph, Node, TensorType

__version__ = "0.1.0"
__all__ = ["Graph", "Node", "TensorType", "__version__", "analysis", "backends", "ir", "models"]
