"""Hand-written Triton kernels, one module per kernel family (conv2d, gemm — the channels-last implicit GEMM
behind conv2d's NHWC path and linear —, pool, softmax, lrn, elementwise, quant, concat, pad), each a ``@triton.jit``
kernel plus a host wrapper that checks, allocates and launches; `configs` holds the GEMM's tuned launch
configurations (JSON per GPU and Triton version).

Where they run is decided once, when this package is imported: natively on CUDA when
``torch.cuda.is_available()``, otherwise under Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors).
Triton reads that variable when ``@triton.jit`` decorates a function, its own library functions included, so it
must be set before triton itself is first imported and never changed afterwards. Every kernel module imports
triton after this package, and the backend imports this package before triton; a ``TRITON_INTERPRET`` the user
set is respected. If something imported triton earlier in a process without a GPU (``torch.compile`` does),
``runtime.MODE_ERROR`` says so and the backend reports itself unavailable with that reason.
"""

from __future__ import annotations

import os


def _select_mode() -> None:
    if "TRITON_INTERPRET" in os.environ:
        return
    try:
        import torch  # does not import triton
    except ImportError:  # nothing here can run; the activation table (`activations`) still loads
        return

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


_select_mode()
