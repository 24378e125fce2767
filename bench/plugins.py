"""Backends from a module that is not installed: ``--backend-module`` (a dotted module name or a .py path).

The module registers its backends on import with ``convbench.backends.register(...)``, exactly what an entry
point does. The runner loads it in the parent (so ``-b`` can name its backends) and passes it to every case's
child process through ``CONVBENCH_BACKEND_MODULES`` (``os.pathsep``-separated), which the child loads before
it looks a backend up. This is how a backend in development is benchmarked without packaging it, and how the
tests plant backends that crash or hang.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import BenchError

ENV_VAR = "CONVBENCH_BACKEND_MODULES"
_loaded: dict[str, ModuleType] = {}


def load(spec: str) -> ModuleType:
    """Import a backend module once; ``spec`` is "pkg.module" or "path/to/file.py"."""
    key = str(Path(spec).resolve()) if spec.endswith(".py") else spec
    if key in _loaded:
        return _loaded[key]
    try:
        if spec.endswith(".py"):
            path = Path(key)
            if not path.is_file():
                raise BenchError(f"backend module {spec!r}: no such file")
            name = f"convbench_plugin_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            assert mod_spec is not None and mod_spec.loader is not None
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except BenchError:
        raise
    except Exception as e:  # an import error in the plugin is the user's input error: one line
        raise BenchError(f"backend module {spec!r} failed to import: {type(e).__name__}: {e}") from e
    _loaded[key] = module
    return module


def load_all(specs: list[str]) -> None:
    for spec in specs:
        load(spec)


def from_env() -> list[str]:
    value = os.environ.get(ENV_VAR, "")
    return [s for s in value.split(os.pathsep) if s]


def to_env(specs: list[str]) -> str:
    return os.pathsep.join(str(Path(s).resolve()) if s.endswith(".py") else s for s in specs)
