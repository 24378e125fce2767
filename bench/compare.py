"""Regression detection between two results files (asv's rule): per matching case, the ratio of medians
new/base and a Mann-Whitney U test on the raw samples. A regression is ratio > factor with p < alpha; a case
that ran before and now fails, or now disagrees with the reference, is a regression too.

It is a gate, so what it cannot judge fails it rather than passing it: a case of the base that the new file
lacks is ``only in base`` and fails the comparison unless ``allow_subset`` (``--allow-subset``) says a partial
new file is meant; an empty file is an error, and so is a case whose median is not a positive finite number.

Mann-Whitney cannot reach a small p with few samples (with 3 against 3 the smallest two-sided p is 0.1), so
a slow-down on too few samples is reported as "inconclusive", not silently as "same".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BenchError
from .machine import label
from .record import Record, as_record

REGRESSIONS = ("regression", "broken", "wrong result")
MISSING = "only in base"


@dataclass(frozen=True)
class Row:
    case_id: str
    verdict: str
    base_median_s: float | None
    new_median_s: float | None
    ratio: float | None
    p_value: float | None
    base_n: int
    new_n: int
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]
    warnings: tuple[str, ...]
    factor: float
    alpha: float
    allow_subset: bool = False

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict in REGRESSIONS]

    @property
    def missing(self) -> list[Row]:
        """Cases of the base that the new file does not have."""
        return [r for r in self.rows if r.verdict == MISSING]

    @property
    def failed(self) -> bool:
        """The gate: a regression, or (unless a subset was allowed) a case missing from the new file."""
        return bool(self.regressions) or (bool(self.missing) and not self.allow_subset)

    def to_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "alpha": self.alpha, "allow_subset": self.allow_subset,
                "warnings": list(self.warnings), "regressions": len(self.regressions),
                "missing": len(self.missing), "failed": self.failed, "rows": [asdict(r) for r in self.rows]}

    def to_markdown(self) -> str:
        import pandas as pd

        lines = [f"> warning: {w}" for w in self.warnings]
        df = pd.DataFrame([{
            "case": r.case_id, "verdict": r.verdict,
            "base median ms": _ms(r.base_median_s), "new median ms": _ms(r.new_median_s),
            "new/base": "" if r.ratio is None else f"{r.ratio:.3f}",
            "p (Mann-Whitney)": "" if r.p_value is None else f"{r.p_value:.2g}",
            "n base/new": f"{r.base_n}/{r.new_n}", "note": r.note,
        } for r in self.rows])
        lines.append(df.to_markdown(index=False) if len(df) else "(no cases)")
        lines.append(f"\n{len(self.regressions)} regression(s) (ratio > {self.factor:g} with p < {self.alpha:g}, "
                     f"or a case that broke)")
        if self.missing:
            lines.append(f"{len(self.missing)} case(s) of the base missing from the new file: "
                         + ("accepted (--allow-subset)" if self.allow_subset
                            else "the comparison fails (--allow-subset accepts a partial new file)"))
        return "\n".join(lines)


def _ms(s: float | None) -> str:
    return "" if s is None else f"{s * 1e3:.4g}"


def by_case(records: Sequence[Record], source: str) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for r in records:
        if r.case_id in out:
            warnings.warn(f"{source}: case {r.case_id} appears more than once; using the last", stacklevel=2)
        out[r.case_id] = r
    return out


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney test can give for these sample counts."""
    return min(1.0, 2 / math.comb(n1 + n2, n1)) if n1 and n2 else 1.0


def machine_warnings(base: Sequence[Record], new: Sequence[Record]) -> list[str]:
    out = []
    b_machines = {r.machine.get("machine_id", "?"): r.machine for r in base if r.machine}
    n_machines = {r.machine.get("machine_id", "?"): r.machine for r in new if r.machine}
    if set(b_machines) != set(n_machines):
        out.append("the files come from different machines (base: "
                   + "; ".join(map(label, b_machines.values())) + " — new: "
                   + "; ".join(map(label, n_machines.values())) + "): ratios mix hardware with code changes")
    for key in ("versions", "git_commit"):
        b = {repr(m.get(key)) for m in b_machines.values()}
        n = {repr(m.get(key)) for m in n_machines.values()}
        if b != n:
            out.append(f"{key} differ: base {', '.join(sorted(b))} — new {', '.join(sorted(n))}")
    return out


def compare_records(base: Sequence[Record | dict[str, Any]], new: Sequence[Record | dict[str, Any]],
                    factor: float = 1.1, alpha: float = 0.01, allow_subset: bool = False) -> Comparison:
    """Records of either schema (typed, or the dicts a results file holds). `BenchError` for an empty side or
    a case whose median is not a positive finite number (nothing can be judged against it)."""
    from scipy.stats import mannwhitneyu

    if not 1 <= factor < math.inf:
        raise ValueError(f"factor must be a finite number ≥ 1, got {factor}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    base, new = [as_record(r) for r in base], [as_record(r) for r in new]
    for side, records in (("base", base), ("new", new)):
        if not records:
            raise BenchError(f"the {side} file holds no results: nothing to compare")
        for r in records:
            m = r.median_s
            if r.status == "ok" and not r.untimed and not (type(m) in (int, float) and 0 < m < math.inf):
                raise BenchError(f"{side}: case {r.case_id} is ok but its median is {m!r}, not a positive "
                                 f"finite number of seconds")
    b_cases, n_cases = by_case(base, "base"), by_case(new, "new")
    rows = []
    for cid in [*b_cases, *(c for c in n_cases if c not in b_cases)]:
        b, n = b_cases.get(cid), n_cases.get(cid)
        if b is None or n is None:
            rows.append(Row(cid, "only in new" if b is None else "only in base", _median(b), _median(n), None,
                            None, _n(b), _n(n)))
            continue
        if b.status != "ok" or n.status != "ok":
            verdict = ("both failed" if b.status != "ok" and n.status != "ok"
                       else "broken" if b.status == "ok" else "fixed")
            note = f"base {b.status}, new {n.status}: {n.message or b.message}"[:200]
            rows.append(Row(cid, verdict, _median(b), _median(n), None, None, _n(b), _n(n), note))
            continue
        if b.untimed or n.untimed:  # an interpreter's case: its results are compared, not its time
            wrong = b.correct is not False and n.correct is False
            verdict = "wrong result" if wrong else "not timed"
            note = (n.correctness or {}).get("reason", "") if wrong else "checked under an interpreter"
            rows.append(Row(cid, verdict, _median(b), _median(n), None, None, _n(b), _n(n), note))
            continue
        bs, ns = b.samples, n.samples
        b_med, n_med = b.median_s, n.median_s
        ratio = n_med / b_med
        p = float(mannwhitneyu(ns, bs, alternative="two-sided").pvalue) if bs and ns else None
        note, verdict = "", "same"
        if b.correct is True and n.correct is False:
            verdict, note = "wrong result", (n.correctness or {}).get("reason", "")
        elif p is None:  # a record without its raw samples (a hand-made file): no test, no verdict of "same"
            verdict, note = "inconclusive", "no raw samples to test"
        elif ratio > factor and p < alpha:
            verdict = "regression"
        elif ratio < 1 / factor and p < alpha:
            verdict = "improvement"
        elif (ratio > factor or ratio < 1 / factor) and min_p_value(len(bs), len(ns)) >= alpha:
            verdict, note = "inconclusive", f"too few samples for p < {alpha:g}"
        elif ratio > factor or ratio < 1 / factor:
            verdict, note = "same", f"ratio beyond {factor:g} but p = {p:.2g} ≥ {alpha:g}"
        rows.append(Row(cid, verdict, b_med, n_med, ratio, p, len(bs), len(ns), note))
    return Comparison(tuple(rows), tuple(machine_warnings(base, new)), factor, alpha, allow_subset)


def _median(r: Record | None) -> float | None:
    return r.median_s if r else None


def _n(r: Record | None) -> int:
    return len(r.samples) if r else 0
