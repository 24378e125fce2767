"""The activations the Triton kernels compute: their own table, importable without torch or triton (the backend's
lowering table and ``supports`` read it on machines that cannot run the kernels).

Names as the IR spells them; their scalar attributes reach the kernels as ``alpha`` (leaky_relu's slope, elu's
alpha, clip's min) and ``beta`` (clip's max). Each needs its branch in `elementwise.activate`, which refuses a name
without one when the kernel is traced; tests/test_triton_kernels.py checks that the table is exactly the IR's ops
with the "activation" trait and that each computes its reference.
"""

from __future__ import annotations

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "elu", "hardswish", "hardsigmoid", "silu", "clip")
