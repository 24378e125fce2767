"""The two ways the kernels run, and how each picks its block sizes.

- On CUDA the kernels are compiled; block sizes come from ``triton.autotune`` over a few configs per kernel,
  keyed on the problem sizes (small blocks: registers and shared memory are the limit).
- Under Triton's interpreter (no GPU) each program is executed by NumPy on whole blocks; what costs is the
  per-program and per-operation Python overhead, so blocks are as large as the problem allows (up to a few
  hundred per side) and there is exactly one config per launch, chosen from the sizes by a heuristic
  (multi-config autotune does not work there).

``INTERPRET`` is read once, at import; the package ``__init__`` has set it before any kernel was defined.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import triton

INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
DEVICE = torch.device("cpu" if INTERPRET else "cuda")


def _mode_error() -> str:
    """Why the kernels cannot run in this process ("" if they can): triton's own jit helpers (tl.zeros …) are
    interpreted only if triton was first imported with TRITON_INTERPRET=1 already set."""
    if not INTERPRET:
        return ""
    from triton.runtime.interpreter import InterpretedFunction

    if isinstance(triton.language.zeros, InterpretedFunction):
        return ""
    return ("triton was imported before TRITON_INTERPRET=1 was set (torch.compile imports it), so its library "
            "functions cannot run under the interpreter; set TRITON_INTERPRET=1 in the environment, or use the "
            "triton backend before torch.compile in this process")


MODE_ERROR: str = _mode_error()

# Dtypes the kernels take. bf16 only on GPU: the interpreter has no native bf16 arithmetic and its tl.dot
# returns garbage for it.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def supported_dtypes() -> tuple[str, ...]:
    return ("float32", "float16") if INTERPRET else tuple(DTYPES)


def mode() -> str:
    return "interpreter" if INTERPRET else "cuda"


# The SM count the split-K heuristic plans for under the interpreter: a fixed small machine, so that small test
# layers split (and the split-K path runs in CI) the way late layers split on a GPU.
INTERPRETER_SM_COUNT = 4


def sm_count() -> int:
    """Streaming multiprocessors of the current device (the fixed INTERPRETER_SM_COUNT under the interpreter)."""
    if INTERPRET:
        return INTERPRETER_SM_COUNT
    return torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count


def pow2(n: int, cap: int, floor: int = 1) -> int:
    """The smallest power of two ≥ n, clipped to [floor, cap] (block sizes must be powers of two)."""
    return max(floor, min(cap, triton.next_power_of_2(max(1, int(n)))))


def rows_by_cols(caps: dict[str, int], cols: Callable[[dict[str, Any]], int], col: str = "BLOCK_P",
                 rows: str = "R", row: str = "BLOCK_R") -> Callable[[dict[str, Any]], dict[str, int]]:
    """The interpreter's blocks for a (rows × columns) tile kernel: whole columns up to ``caps[col]``, then as
    many rows as fit in ``caps["TILE"]`` elements (one rule for pooling, depthwise, LRN, pad, copy, softmax)."""

    def blocks(args: dict[str, Any]) -> dict[str, int]:
        c = pow2(cols(args), cap=caps[col])
        return {row: pow2(args[rows], cap=caps["TILE"] // c), col: c}

    return blocks


def warp_configs(names: Sequence[str], rows: Sequence[Sequence[int]]) -> list[triton.Config]:
    """GPU configs from rows of (block sizes named by ``names``…, num_warps)."""
    return [triton.Config(dict(zip(names, r[:-1], strict=True)), num_warps=r[-1]) for r in rows]


def tuned(configs: Callable[[], Sequence[triton.Config]], key: list[str],
          interpreter: Callable[[dict[str, Any]], dict[str, int]]) -> Callable[[Any], Any]:
    """Decorate a ``@triton.jit`` kernel with its block-size choice for the current mode.

    ``configs()`` lists the GPU configs autotuned over ``key``; ``interpreter(args)`` returns the one set of
    block sizes to use under the interpreter, from the launch's arguments (a dict by parameter name).
    """

    def wrap(kernel: Any) -> Any:
        if INTERPRET:
            names = _block_names(kernel)
            return triton.heuristics({n: (lambda args, n=n: interpreter(args)[n]) for n in names})(kernel)
        return triton.autotune(configs=list(configs()), key=key)(kernel)

    return wrap


def _block_names(kernel: Any) -> list[str]:
    """The kernel's ``BLOCK``/``BLOCK_*`` constexpr parameters: what a config sets."""
    return [name for name in kernel.arg_names if name == "BLOCK" or name.startswith("BLOCK_")]


def check(cond: bool, message: str) -> None:
    """A host wrapper's argument check: one clear error instead of a bad launch."""
    if not cond:
        raise ValueError(message)
