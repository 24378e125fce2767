"""Op coverage: every registered op is lowered by every built-in backend, or is one of its declared gaps.

A backend's lowering table is the only list of what it runs (`TemplateBackend.lowered_ops`); its ``gaps`` name
each op it does not lower with the reason. An op registered without a lowering, a gap that is in fact lowered,
or a table entry for an op that does not exist is a problem this check names, with the table to edit.
"""

from __future__ import annotations

from ..backends import registry
from ..ir import ops


def coverage_problems(backend_name: str) -> list[str]:
    """What is wrong with ``backend_name``'s coverage of the op registry (empty: nothing)."""
    backend = registry.get(backend_name)
    table = getattr(backend, "table", "") or f"{type(backend).__name__}'s lowering table"
    lowered = frozenset(backend.lowered_ops())
    gaps = dict(getattr(backend, "gaps", {}))
    registered = frozenset(ops.names())
    problems = []
    missing = sorted(registered - lowered - set(gaps))
    if missing:
        problems.append(f"backend {backend_name!r} neither lowers nor declares as a gap: {', '.join(missing)}; "
                        f"add a rule to {table}, or each op with its reason to {type(backend).__name__}.gaps")
    stale = sorted(set(gaps) & lowered)
    if stale:
        problems.append(f"backend {backend_name!r} declares {', '.join(stale)} as gaps but lowers them ({table}); "
                        f"remove them from {type(backend).__name__}.gaps")
    unknown = sorted((lowered | set(gaps)) - registered)
    if unknown:
        problems.append(f"backend {backend_name!r} lists op(s) that are not registered: {', '.join(unknown)}")
    no_reason = sorted(op for op, why in gaps.items() if not str(why).strip())
    if no_reason:
        problems.append(f"backend {backend_name!r} declares gaps without a reason: {', '.join(no_reason)}")
    return problems
