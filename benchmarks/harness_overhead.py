"""How much the harness's timing loop adds: its reported median against a bare timing loop of the same
Executable in the same process, rounds interleaved so drift hits both alike (goal: ratio ≤ 1.01).

    python benchmarks/harness_overhead.py [-m lenet5] [-b numpy] [--rounds 15]
    python benchmarks/harness_overhead.py --cluster local:1 [--machine NAME]      # on a Ray worker node

With ``--cluster`` (a Ray address, or local:N) the comparison runs on a worker node, inside a process that Ray
started there (pinned by the agent resource, as bench/cluster.py's agents are), and a second figure compares
the whole path of a cluster case (`runner.Machine.run`: the isolated child, its median) with the bare loop.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path
from typing import Any

from convbench.bench.stats import Policy, measure
from convbench.bench.workload import make_workload


def bare(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e9


def compare(model: str, backend: str, batch: int, rounds: int, seconds: float, full_path: bool) -> dict[str, Any]:
    """Interleaved rounds of the harness's loop and a bare loop in this process; with ``full_path`` also a
    case through `Machine.run` (its child's median) per round."""
    import convbench as cb

    w = make_workload(model, batch, None)  # the sweep's own graph, parameters and input
    exe = cb.backends.get(backend).compile(w.graph, w.params)
    fn = functools.partial(exe, w.input)
    # a spread target no loop reaches: both loops run for exactly their time, never stopping early
    policy = Policy(warmup_s=0.1, min_time_s=seconds, max_time_s=seconds, target_iqr_rel=1e-12)
    n = measure(fn, policy).stats.n  # calls the bare loop makes: as many as the harness makes in its time
    runner = _machine(model, backend, batch, policy) if full_path else None
    out: dict[str, list[float]] = {"bare": [], "harness": [], "case": []}
    for _ in range(rounds):
        out["bare"].append(bare(fn, n))
        out["harness"].append(measure(fn, policy).stats.median)
        if runner is not None:
            machine, case = runner
            record = machine.run(case)
            if record.status != "ok":
                raise SystemExit(f"the case did not run: {record.status}: {record.message}")
            out["case"].append(record.timing["median"])
    return {"n": n, **out, "node": _node()}


def _machine(model: str, backend: str, batch: int, policy: Policy):
    import tempfile

    from convbench.bench import machine
    from convbench.bench.runner import Machine, Sweep, plan

    [case] = plan([model], [backend], [batch], ["float32"], ("full",), threads=1)
    tmp = Path(tempfile.mkdtemp(prefix="convbench-overhead-"))
    sweep = Sweep([case], tmp / "unused.jsonl", policy, timeout_s=600, gemm_n=0)
    return Machine(sweep, tmp, machine.fingerprint(), "overhead"), case


def _node() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()[:12] if ray.is_initialized() else "this process"
    except ImportError:
        return "this process"


def on_cluster(address: str, name: str | None, **kw: Any) -> dict[str, Any]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from convbench.bench import cluster

    with cluster.connect(address):
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get(cluster.RESOURCE, 0) >= 1
                 and (name is None or (n.get("Labels") or {}).get(cluster.NAME_LABEL) == name)]
        if not nodes:
            raise SystemExit(f"no worker node offers {cluster.RESOURCE}" + (f" with name {name}" if name else ""))
        strategy = NodeAffinitySchedulingStrategy(nodes[0]["NodeID"], soft=False)
        task = ray.remote(compare).options(num_cpus=0, resources={cluster.RESOURCE: 1}, max_retries=0,
                                           scheduling_strategy=strategy)
        return ray.get(task.remote(**kw, full_path=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("-m", "--model", default="lenet5")
    p.add_argument("-b", "--backend", default="numpy")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--seconds", type=float, default=0.5, help="timed seconds per loop per round")
    p.add_argument("--cluster", default=None, help="a Ray address or local:N: measure on a worker node")
    p.add_argument("--machine", default=None, help="with --cluster: the worker node's convbench-machine label")
    args = p.parse_args()
    kw = {"model": args.model, "backend": args.backend, "batch": args.batch, "rounds": args.rounds,
          "seconds": args.seconds}
    r = on_cluster(args.cluster, args.machine, **kw) if args.cluster else compare(**kw, full_path=False)
    print(f"{args.model} b{args.batch} on {args.backend}, node {r['node']}: {args.rounds} interleaved rounds of "
          f"~{r['n']} calls each")
    print(f"bare loop median   {statistics.median(r['bare']) * 1e6:9.2f} µs")
    print(f"harness median     {statistics.median(r['harness']) * 1e6:9.2f} µs")
    ratios = [h / b for h, b in zip(r["harness"], r["bare"], strict=True)]
    print(f"harness / bare     {statistics.median(ratios):.4f} (median over rounds; "
          f"rounds range {min(ratios):.4f} – {max(ratios):.4f}; goal ≤ 1.01)")
    if r["case"]:
        case = [c / b for c, b in zip(r["case"], r["bare"], strict=True)]
        print(f"cluster case median {statistics.median(r['case']) * 1e6:8.2f} µs (Machine.run: its own child)")
        print(f"case / bare        {statistics.median(case):.4f} (rounds range {min(case):.4f} – {max(case):.4f}; "
              "includes a fresh process's cache and allocator state, not only the harness)")


if __name__ == "__main__":
    main()
