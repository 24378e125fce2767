"""pytest glue: `Expectations` (exclude/xfail with a reason each) and `conformance_params`."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .corpus import op_cases
from .runner import CaseResult, resolve, run_case
from .zoo_cases import model_cases

KINDS = ("ops", "models")


@dataclass(frozen=True)
class Expectations:
    """What a backend is known not to do, each with its reason; keys are fnmatch patterns over case ids.

    ``exclude``: not run (reported as skipped with the reason: out of scope, e.g. an op the backend never
    intends to support). ``xfail``: run and expected to fail (strict: a case that starts passing fails the run,
    so the list cannot rot). ``slow``: run, but carry the ``slow`` mark (``make test-fast`` leaves them out), with
    the reason they are slow. A pattern that matches no case at all is an error, for the same reason.
    """

    exclude: Mapping[str, str] = field(default_factory=dict)
    xfail: Mapping[str, str] = field(default_factory=dict)
    slow: Mapping[str, str] = field(default_factory=dict)

    def excluded(self, case_id: str) -> str | None:
        return _match(self.exclude, case_id)

    def expected_failure(self, case_id: str) -> str | None:
        return _match(self.xfail, case_id)

    def check_patterns(self, case_ids: Iterable[str]) -> None:
        ids = list(case_ids)
        stale = [p for p in (*self.exclude, *self.xfail, *self.slow) if not fnmatch.filter(ids, p)]
        if stale:
            raise ValueError(f"expectation pattern(s) {stale} match no conformance case; "
                             f"fix or remove them (case ids look like {ids[0]!r})")


def backend_or_skip(name: str) -> Any:
    """The registered backend ``name``, or the test skipped with the backend's own reason it cannot run here."""
    import pytest

    from ..backends import get

    backend = get(name)
    ok, why = backend.available()
    if not ok:
        pytest.skip(f"{name} backend not available: {why}")
    return backend


def slow_models(keep: Iterable[str], reason: str) -> dict[str, str]:
    """``Expectations.slow`` patterns for every zoo model but ``keep`` (the fast subset's one per family)."""
    from .. import models

    keep = set(keep)
    unknown = keep - set(models.names())
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)} in the fast subset")
    return {f"{m}-b*": reason for m in models.names() if m not in keep}


def _match(table: Mapping[str, str], case_id: str) -> str | None:
    for pattern, reason in table.items():
        if fnmatch.fnmatchcase(case_id, pattern):
            return reason
    return None


@dataclass(frozen=True)
class Conformance:
    """One parametrised check: ``check()`` runs the case and turns a non-pass into a pytest skip or failure."""

    backend: str
    case: Any  # OpCase | ModelCase
    dtype: str = "float32"
    options: Mapping[str, Any] = field(default_factory=dict)

    def run(self) -> CaseResult:
        return run_case(self.backend, self.case, self.dtype, **self.options)

    def check(self) -> CaseResult:
        import pytest

        r = self.run()
        if r.status == "skip":
            pytest.skip(r.message)
        if r.status != "pass":
            pytest.fail(f"[{r.status}] {r.message}", pytrace=False)
        return r

    def __repr__(self) -> str:
        return f"Conformance({self.backend}, {self.case.id}, {self.dtype})"


@lru_cache(maxsize=1)
def all_case_ids() -> tuple[str, ...]:
    """Every op and model case id (what expectation patterns are checked against)."""
    return tuple([c.id for c in op_cases()] + [c.id for size in ("small", "full") for c in model_cases(size)])


def conformance_params(backend_name: str, kind: str = "ops", expectations: Expectations | None = None,
                       dtype: str = "float32", *, ops: Iterable[str] | None = None, size: str = "small",
                       models: Iterable[str] | None = None, **compile_options: Any) -> list:
    """pytest params for ``@pytest.mark.parametrize("item", ...)``, one per case, id = case id.

    Each value is a `Conformance`; the test body is ``item.check()``. ``kind`` is "ops" (the op corpus,
    optionally only cases using ``ops``) or "models" (the zoo at ``size`` "small" or "full", optionally only
    ``models``). Excluded cases carry a skip mark and xfails a strict xfail mark, each with its reason; if the
    backend is not available here every case is skipped with the backend's own reason.
    """
    import pytest

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    expectations = expectations or Expectations()
    expectations.check_patterns(all_case_ids())
    cases = op_cases(ops) if kind == "ops" else model_cases(size, models)
    ok, why = resolve(backend_name).available()
    params = []
    for case in cases:
        marks = []
        if not ok:
            marks.append(pytest.mark.skip(reason=f"backend {backend_name!r} is not available: {why}"))
        elif reason := expectations.excluded(case.id):
            marks.append(pytest.mark.skip(reason=f"excluded: {reason}"))
        elif reason := expectations.expected_failure(case.id):
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        if expectations.slow and _match(expectations.slow, case.id):
            marks.append(pytest.mark.slow)
        item = Conformance(backend_name, case, dtype, dict(compile_options))
        params.append(pytest.param(item, id=case.id, marks=marks))
    return params
