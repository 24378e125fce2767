"""``convbench tune``: the budget, the rounds it spends it in, and a later compile picking the database up
(backends/tvm/budget.py, database.choose). MetaSchedule itself is replaced by a stand-in whose rounds take a
known time: what is tested is the budget arithmetic and where the database goes, not the search."""

from __future__ import annotations

import pytest

from convbench import models
from convbench.cli import main
from convbench.testing import backend_or_skip


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("1.5h", 5400), ("45", 45), (" 2m ", 120)])
def test_budget_parses_seconds_minutes_hours(text, seconds):
    from convbench.backends.tvm.budget import parse_budget

    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0m", "-3m", "30 minutes", ""])
def test_a_bad_budget_is_one_error_naming_it(text, capsys):
    backend_or_skip("tvm")
    assert main(["tune", "-m", "lenet5", f"--budget={text}"]) == 2
    err = capsys.readouterr().err
    assert f"--budget {text!r}" in err and "30m" in err and len(err.strip().splitlines()) == 1


def test_rounds_stop_before_the_budget_would_be_overrun(monkeypatch, tmp_path):
    backend_or_skip("tvm")
    from convbench.backends.tvm import budget, tune

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    clock = [0.0]
    monkeypatch.setattr(budget, "clock", lambda: clock[0])
    calls, pruned = [], []

    def fake_tune(mod, target, database, work_dir, *, trials, trials_per_task, seed, hand_database):
        calls.append((trials, trials_per_task, hand_database is not None))
        clock[0] += 8.0 + 0.5 * trials_per_task  # 80 % of a 4-trial round fixed, as MetaSchedule's (FIXED_SHARE)
        return {"tasks": trials // trials_per_task, "trials": trials, "seeded": 3 if hand_database is not None else 0}

    monkeypatch.setattr(tune, "tune", fake_tune)
    monkeypatch.setattr(tune, "prune", lambda src, dst, hand, target: (pruned.append(dst), dst.mkdir(parents=True)))
    lines: list[str] = []
    graph = models.build("lenet5", batch=2)
    done = budget.tune_within(graph, models.init_params(graph), 39.0, threads=1, trials_per_round=4,
                              progress=lines.append)
    # rounds of 4 trials a task end at 10, 20, 30 s; the 9 s left fit the fixed 8 s and 2 trials a task (the
    # minimum), ending at 39 s; then not even the fixed part fits: four rounds, the first seeding the hand-written
    # schedules, and the budget kept (sized by time per trial alone, the fourth round would have had 3 trials: 39.5 s)
    assert [(c[1], c[2]) for c in calls] == [(4, True), (4, False), (4, False), (2, False)] and done.seeded == 3
    assert clock[0] == 39.0
    assert done.rounds == 4 and done.tasks == calls[0][0] // 4 and done.trials == done.tasks * 14
    assert pruned == [done.path] and done.path.is_relative_to(tmp_path) and done.path.name == "lenet5"
    assert "budget 0.7 min" in lines[0] and "round 4:" in lines[4] and "measuring" in lines[-1]
    assert lines[5].startswith("stopping: 0.0 min left") and "0.1 min before its trials" in lines[5]
    manifest = tune.read_manifest(done.path)
    assert manifest["workloads"][0]["trials"] == done.trials and manifest["workloads"][0]["command"] == "convbench tune"


@pytest.mark.parametrize("last_s, last_k, left_s, expect", [
    (1003.0, 16, 497.0, 0),  # the 25-minute ResNet-50 run: the fixed ~800 s alone does not fit what was left
    (1003.0, 16, 900.0, 7),  # (900 - 802.4) / 12.5 s a trial
    (100.0, 4, 1000.0, 16),  # plenty left: the cap
    (100.0, 4, 80.0, 0),  # exactly the fixed part: no trial fits
])
def test_next_round_is_sized_by_the_fixed_part_and_the_trials(last_s, last_k, left_s, expect):
    from convbench.backends.tvm.budget import next_round_trials

    assert next_round_trials(last_s, last_k, left_s, cap=16) == expect


def test_a_compile_picks_up_the_database_convbench_tune_made(monkeypatch, tmp_path):
    backend_or_skip("tvm")
    from convbench.backends.tvm import budget, database, tune
    from convbench.backends.tvm.target import target_dict

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    target = target_dict("cpu")
    graph = models.build("lenet5", batch=2)
    user = budget.user_path(target, "lenet5")
    assert database.choose(graph, target, "float32", tune=False, path=None, use_shipped=True).source != "user"
    assert tune.open_database(user, target, create=True).database is not None  # what tune_within prunes into
    chosen = database.choose(graph, target, "float32", tune=False, path=None, use_shipped=True)
    assert (chosen.source, chosen.db) == ("user", str(user))
    # use_shipped_db=False: neither the user's nor the shipped database
    assert database.choose(graph, target, "float32", tune=False, path=None, use_shipped=False).source is None
