"""Graph passes: one pure function per module, and the named pipelines that chain them.

Rewrites that change weights are ``(graph, params) -> (graph, params)`` (fold_batch_norm, fold_constants); the
others are ``graph -> graph``. Each keeps its math apart from the graph surgery, leaves alone what fails a
precondition, and is idempotent. `plan_memory` is the analysis that lays every activation out in one arena.
"""

from __future__ import annotations

from .constant_fold import fold_constants
from .dead_code import eliminate_dead_code
from .fold_batch_norm import fold_batch_norm, fold_conv_bn_weights
from .fold_replicating_pools import fold_replicating_pools
from .fuse import fuse
from .memory_plan import MemoryPlan, plan_memory
from .pipeline import PASSES, PIPELINES, PassRecord, PipelineResult, resolve, run_pipeline
from .remove_identity import remove_identity

__all__ = ["PASSES", "PIPELINES", "MemoryPlan", "PassRecord", "PipelineResult", "eliminate_dead_code",
           "fold_batch_norm", "fold_constants", "fold_conv_bn_weights", "fold_replicating_pools", "fuse", "plan_memory",
           "remove_identity", "resolve", "run_pipeline"]
