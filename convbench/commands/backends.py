"""``convbench backends [--options] [--json]``: every registered backend, whether it runs here (or why not), its
version, device and dtypes; with ``--options``, each backend's options (name, type, default, doc) from its
`Options` dataclass, the one list ``-b NAME:KEY=VALUE`` is checked against. Built-ins come first, then
third-party backends from the ``convbench.backends`` entry points."""

from __future__ import annotations

import argparse
from typing import Any

from ..backends import registry
from ..cli import UsageError
from ._common import add_backend_module, print_json, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    p.add_argument("--options", action="store_true",
                   help="list each backend's options (name, type, default, doc) instead of its availability")
    add_backend_module(p)


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


def options(name: str) -> dict[str, Any]:
    """One backend's options, from its `Options` dataclass. A third-party backend without one lists the keyword
    names its ``compile`` takes (types and defaults unknown); one that fails to load says so."""
    from ..backends.base import Options
    from ..backends.template import accepted_options, option_fields, type_name

    try:
        backend = registry.get(name)
    except Exception as e:
        return {"name": name, "declared": False, "note": f"failed to load: {type(e).__name__}: {e}", "options": []}
    options_type = getattr(backend, "Options", None)
    if isinstance(options_type, type) and issubclass(options_type, Options):
        return {"name": name, "declared": True, "note": "", "options": [
            {"name": n, "type": type_name(hint), "default": default, "doc": doc}
            for n, (hint, default, doc) in option_fields(options_type).items()]}
    accepted = accepted_options(backend)
    note = "no Options dataclass: " + ("compile() takes any keyword" if accepted is None
                                       else "the keyword parameters of compile()")
    return {"name": name, "declared": False, "note": note, "options": [
        {"name": n, "type": "?", "default": "?", "doc": ""} for n in sorted(accepted or ())]}


def run(args: argparse.Namespace) -> int:
    load_backend_modules(args.backend_module)
    if args.options:
        docs = [options(name) for name in registry.names()]
        if args.json:
            print_json(docs)
            return 0
        for d in docs:
            print_table([{"option": o["name"], "type": o["type"], "default": repr(o["default"]), "doc": o["doc"]}
                         for o in d["options"]], title=f"\n{d['name']}" + (f" ({d['note']})" if d["note"] else ""))
        return 0
    rows = [describe(name) for name in registry.names()]
    if args.json:
        print_json(rows)
        return 0
    print_table([{"backend": r["name"], "available": "yes" if r["available"] else "no",
                  "version": r["version"] or "-", "device": r["device"] or "-",
                  "dtypes": ",".join(r["dtypes"]) or "-",
                  "reason": "" if r["available"] else r["reason"]} for r in rows])
    return 0
