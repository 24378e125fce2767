"""``convbench.analysis``: the public face of `convbench.ir.analysis` (params, MACs, FLOPs, memory)."""

from __future__ import annotations

from .ir.analysis import LayerRow, Summary, live_bytes, summarize

__all__ = ["LayerRow", "Summary", "live_bytes", "summarize"]
