"""Helpers the subcommands share: argument parsing of lists, JSON and table output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from ..cli import UsageError


def split_list(value: str, known: Sequence[str], what: str) -> list[str]:
    """Parse "a,b" (or "all") into names, each checked against ``known``."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if items == ["all"]:
        return list(known)
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(value)}; "
                         f"known {what}s: {', '.join(known)} (or 'all')")
    return items


def int_list(value: str, what: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be a comma-separated list of integers, got {value!r}") from None
    if not items or any(v < 1 for v in items):
        raise UsageError(f"{what} must be integers ≥ 1, got {value!r}")
    return items


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=1, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def print_table(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """A plain-text table on stdout (pandas formats; rich is for progress, not for pipes)."""
    import pandas as pd

    if title:
        print(title)
    if not rows:
        print("(no rows)")
        return
    print(pd.DataFrame(rows).to_string(index=False))
