"""``convbench backends [--json]``: every registered backend, whether it runs here (or why not), its version,
device and dtypes. Built-ins come first, then third-party backends from the ``convbench.backends`` entry points."""

from __future__ import annotations

import argparse
from typing import Any

from ..backends import registry
from ..cli import UsageError
from ._common import print_json, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    p.add_argument("--backend-module", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import this module (dotted name or .py file) to register extra backends; repeatable")


def load_backend_modules(specs: list[str]) -> None:
    """``--backend-module``: the loader ``convbench run`` uses (the module registers its backends on import)."""
    if not specs:
        return
    from ..bench import plugins
    from ..bench.errors import BenchError

    try:
        plugins.load_all(specs)
    except BenchError as e:
        raise UsageError(str(e)) from None


def describe(name: str) -> dict[str, Any]:
    """One row: a backend that fails to load is reported, not raised (it must not hide the others)."""
    try:
        backend = registry.get(name)
        ok, reason = backend.available()
    except Exception as e:
        return {"name": name, "available": False, "reason": f"failed to load: {type(e).__name__}: {e}",
                "version": "", "device": "", "dtypes": []}
    return {"name": name, "available": bool(ok), "reason": reason,
            "version": _call(backend, "version") if ok else "", "device": _call(backend, "device") if ok else "",
            "dtypes": list(getattr(backend, "dtypes", ()))}


def _call(backend: Any, method: str) -> str:
    fn = getattr(backend, method, None)
    try:
        return str(fn()) if callable(fn) else ""
    except Exception as e:  # an optional method failing is reported in its cell
        return f"error: {e}"


def run(args: argparse.Namespace) -> int:
    load_backend_modules(args.backend_module)
    rows = [describe(name) for name in registry.names()]
    if args.json:
        print_json(rows)
        return 0
    print_table([{"backend": r["name"], "available": "yes" if r["available"] else "no",
                  "version": r["version"] or "-", "device": r["device"] or "-",
                  "dtypes": ",".join(r["dtypes"]) or "-",
                  "reason": "" if r["available"] else r["reason"]} for r in rows])
    return 0
