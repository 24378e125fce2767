"""TVM targets, runtime threads and the environment checks, kept free of ``import tvm`` at module level.

``import tvm`` imports torch (tvm_ffi does, unconditionally) and takes seconds, so ``available()`` answers from
package metadata and only the functions that need TVM import it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..base import physical_cores

# apache-tvm-ffi 0.1.15 and newer crash tvm.ir.save_json, which MetaSchedule's database writes use.
FFI_KNOWN_GOOD = "0.1.14"


def versions() -> tuple[str | None, str | None]:
    """(apache-tvm, apache-tvm-ffi) versions from package metadata; None when not installed."""
    out = []
    for dist in ("apache-tvm", "apache-tvm-ffi"):
        try:
            out.append(version(dist))
        except PackageNotFoundError:
            out.append(None)
    return out[0], out[1]


def available() -> tuple[bool, str]:
    """Whether TVM can be imported, without importing it."""
    if importlib.util.find_spec("tvm") is None:
        return False, "apache-tvm is not installed (pip install 'convbench[tvm]')"
    tvm_v, ffi_v = versions()
    if tvm_v is None:
        return False, "the tvm module is present but not from the apache-tvm distribution"
    if ffi_v is None:
        return False, f"apache-tvm {tvm_v} is installed without apache-tvm-ffi"
    return True, f"apache-tvm {tvm_v} (tvm-ffi {ffi_v})"


def ffi_breaks_tuning() -> str | None:
    """A reason tuning would crash with this tvm-ffi, or None."""
    _, ffi_v = versions()
    if ffi_v is None:
        return "apache-tvm-ffi is not installed"
    parts = tuple(int(p) for p in ffi_v.split(".")[:3] if p.isdigit())
    if parts >= (0, 1, 15):
        return (f"apache-tvm-ffi {ffi_v} crashes tvm.ir.save_json (MetaSchedule's database writes); "
                f"pin apache-tvm-ffi=={FFI_KNOWN_GOOD}.post1")
    return None


def cuda_available() -> bool:
    """A GPU is visible and this TVM build has its CUDA runtime."""
    import tvm

    return bool(tvm.runtime.enabled("cuda")) and tvm.cuda(0).exist


def target_dict(device: str) -> dict[str, Any]:
    """The target for ``device``: the host CPU named by LLVM (``mcpu: native`` silently falls back to generic
    code in TVM 0.27), with ``num-cores``, which MetaSchedule's CPU rules need; or the CUDA GPU."""
    import tvm

    if device == "cuda":
        return {"kind": "cuda", "arch": "sm_" + tvm.cuda(0).compute_version.replace(".", ""),
                "host": {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu()}}
    return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": physical_cores()}


def target_key(target: dict[str, Any]) -> str:
    """The folder name a shipped tuning database lives under: what a schedule's validity depends on."""
    if target["kind"] == "cuda":
        return f"cuda-{target.get('arch', 'unknown')}"
    return f"{target['kind']}-{target.get('mcpu', 'generic')}-{target.get('num-cores', 1)}c"


_pool_size: int | None = None  # workers TVM's thread pool was created with: it can use fewer, never more


def _default_threads() -> int:
    """What TVM picks when told nothing: TVM_NUM_THREADS, else OMP_NUM_THREADS, else half the logical CPUs."""
    for var in ("TVM_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return max(1, (os.cpu_count() or 2) // 2)


def set_threads(threads: int | None) -> int:
    """Set TVM's CPU thread pool to ``threads`` (None: what the environment says) and return the count in use.

    TVM sizes its (thread-local) pool once, from TVM_NUM_THREADS, on first use, and later configuration can
    only use fewer workers than that. So the first call creates the pool with as many workers as there are
    logical CPUs (or ``threads``, if more), and every call then selects ``threads`` of them. TVM_NUM_THREADS
    is also left at ``threads`` for MetaSchedule's measurement workers, which are fresh processes.
    """
    import tvm_ffi

    global _pool_size
    config = tvm_ffi.get_global_func("runtime.config_threadpool")
    num_threads = tvm_ffi.get_global_func("runtime.NumThreads")
    wanted = int(threads) if threads is not None else _default_threads()
    if _pool_size is None:
        before = os.environ.get("TVM_NUM_THREADS")
        _pool_size = max(wanted, os.cpu_count() or 1)
        os.environ["TVM_NUM_THREADS"] = str(_pool_size)
        num_threads()  # creates the pool with _pool_size workers
        if before is None:
            del os.environ["TVM_NUM_THREADS"]
        else:
            os.environ["TVM_NUM_THREADS"] = before
    if threads is not None:
        os.environ["TVM_NUM_THREADS"] = str(wanted)
    if num_threads() != wanted:
        config(1, wanted)  # mode 1, "big cores": every core on x86
    return int(num_threads())


def use_threads(threads: int) -> None:
    """Select ``threads`` workers of the existing pool, if that is not the current count (cheap to call)."""
    import tvm_ffi

    if tvm_ffi.get_global_func("runtime.NumThreads")() != threads:
        tvm_ffi.get_global_func("runtime.config_threadpool")(1, threads)


@contextlib.contextmanager
def _memoised_getmodule() -> Iterator[None]:
    """Cache ``inspect.getmodule(obj, filename)`` by filename while a TVMScript-heavy import runs.

    TVMScript's parser calls ``inspect.stack()``; for each frame of a file that no module owns (frozen
    importlib frames) ``getmodule`` walks all of ``sys.modules``, which with torch loaded is thousands of
    entries: importing ``tvm.s_tir.tensor_intrin`` takes 35–90 s that way and 3–6 s with this cache.
    """
    original = inspect.getmodule
    cache: dict[str, Any] = {}

    def getmodule(obj: Any, _filename: str | None = None) -> Any:
        # Only frames and code objects take the slow walk; anything with __module__ resolves directly.
        if _filename is None or inspect.ismodule(obj) or hasattr(obj, "__module__"):
            return original(obj, _filename)
        if _filename not in cache:
            cache[_filename] = original(obj, _filename)
        return cache[_filename]

    inspect.getmodule = getmodule  # type: ignore[assignment]
    try:
        yield
    finally:
        inspect.getmodule = original  # type: ignore[assignment]


def import_tensor_intrin() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (MetaSchedule's builders need it) in seconds, not a minute.

    Also the initializer of MetaSchedule's build and run workers: each is a fresh process that would
    otherwise pay the slow import inside its 30 s build timeout and report every candidate invalid.
    """
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    with _memoised_getmodule():
        import tvm.s_tir.tensor_intrin  # noqa: F401
