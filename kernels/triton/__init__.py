"""Hand-written Triton kernels, one module per kernel family (conv2d, linear, pool, softmax, lrn, elementwise,
concat), each a ``@triton.jit`` kernel plus a host wrapper that checks, allocates and launches.

Where they run is decided once, here, before any kernel module is imported: natively on CUDA when
``torch.cuda.is_available()``, otherwise under Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors).
Triton reads that variable when ``@triton.jit`` decorates a function, so it must be set before the first kernel
module is imported and never changed afterwards; every import of a kernel goes through this package, so this
is the one place that sets it. A ``TRITON_INTERPRET`` the user set explicitly is respected.
"""

from __future__ import annotations

import os


def _select_mode() -> None:
    if "TRITON_INTERPRET" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


_select_mode()
