"""Backends that misbehave on purpose, for the harness's isolation tests. Loaded with ``--backend-module``
(the runner passes it to each child), registered through the same ``register()`` an entry point uses."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from convbench.backends import Executable, register
from convbench.backends.base import check_supported
from convbench.backends.numpy_ref import BACKEND as NUMPY


class _Base:
    name = ""
    device = staticmethod(lambda: "cpu")

    def available(self) -> tuple[bool, str]:
        return True, "test backend"

    def supports(self, node) -> bool:
        return True

    def compile(self, graph, params, dtype="float32", **options) -> Executable:
        inner = NUMPY.compile(graph, params, dtype=dtype)
        return Executable(graph, self.name, self.wrap(inner.run))  # a third-party backend: no compile report

    def wrap(self, run):
        return run


class Twin(_Base):
    """The NumPy reference under another name: a second well-behaved backend for sweeps."""

    name = "bench_twin"


class Abort(_Base):
    name = "bench_abort"

    def wrap(self, run):
        return lambda inputs: os.abort()


class Hang(_Base):
    name = "bench_hang"

    def wrap(self, run):
        def hang(inputs):
            while True:
                time.sleep(1)

        return hang


class Hog(_Base):
    """Asks for far more memory than any machine has: numpy raises MemoryError."""

    name = "bench_hog"

    def wrap(self, run):
        return lambda inputs: [np.ones(2**44, dtype=np.uint8)]


class Killed(_Base):
    """Dies of SIGKILL it did not get from the harness, as under the kernel's OOM killer."""

    name = "bench_killed"

    def wrap(self, run):
        return lambda inputs: os.kill(os.getpid(), signal.SIGKILL)


class NoTanh(_Base):
    """Cannot run tanh (LeNet-5 has four): compile raises UnsupportedNodeError naming the nodes."""

    name = "bench_notanh"

    def supports(self, node) -> bool:
        return node.op != "tanh"

    def compile(self, graph, params, dtype="float32", **options) -> Executable:
        check_supported(self, graph, options.get("fallback"))
        return super().compile(graph, params, dtype=dtype)


class Wrong(_Base):
    """Runs, but returns the reference's output plus 1: the harness must flag it as incorrect."""

    name = "bench_wrong"

    def wrap(self, run):
        return lambda inputs: [y + 1 for y in run(inputs)]


class Gone(_Base):
    """Not available here: the sweep records its cases as unsupported, with the reason, without a child."""

    name = "bench_gone"

    def available(self) -> tuple[bool, str]:
        return False, "needs a device this machine lacks"


for cls in (Twin, Abort, Hang, Hog, Killed, NoTanh, Wrong, Gone):
    register(cls())
