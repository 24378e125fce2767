"""The benchmark harness (``convbench run / report / compare / profile / passes``).

- ``runner``: plan a sweep, run each case in its own child process (``worker``) with a timeout, append one
  JSONL line per case (``schema``), resume; ``calibrate`` measures the GEMM peak and copy bandwidth once per sweep.
- ``output``: a sweep owns its output: checked (a results file or nothing) before anything is written, locked for
  the whole sweep, repaired only where a crash tore its last line, replaced atomically.
- ``launch``: the one way a child process is started and its end (exit, timeout, SIGKILL, crash) read as a status.
- ``workload``: the one way a case's graph, parameters and input are made (and its float64 reference).
- ``record``: the typed result record (schema 2; schema 1 files still read), every field's type checked on reading;
  ``specs``: ``-b`` and ``--image-size``.
- ``stats``: warm-up, adaptive repeats until IQR/median < 5 % or a time cap, statistics of the raw samples.
- ``memory``: peak RSS of a phase above its baseline (VmHWM), the CUDA allocator's peak on GPU.
- ``machine``: the fingerprint each result line carries.
- ``report`` (+ ``plots``, ``lecture``): results files → report.md, self-contained index.html, PNGs.
- ``compare``: ratio of medians and Mann-Whitney U per case; regressions.
- ``profile``: time per node, the per-layer roofline; ``ablation`` (+ ``ablation_paired``): the pass study.

Plots and pandas load only when a report is made: importing this package stays cheap.
"""

from __future__ import annotations

from .errors import BenchError
from .record import Record, load_records
from .runner import Sweep, plan, run_sweep
from .schema import SCHEMA_VERSION, Case, read_records
from .stats import Policy, measure, summarize

__all__ = ["SCHEMA_VERSION", "BenchError", "Case", "Policy", "Record", "Sweep", "load_records", "measure", "plan",
           "read_records", "run_sweep", "summarize"]
