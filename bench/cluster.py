"""A sweep across machines on Ray: ``convbench run … --cluster ADDRESS -o OUT/``.

One agent actor per node, pinned there by the custom resource ``convbench_agent`` (a node offers exactly one
unit, so never two agents and, since an agent runs one call at a time, never two timed cases share a node; the
head node offers none). The agent holds the node's `runner.Machine` (fingerprint, GEMM calibrations, float64
references, timeout ledger) and runs every case through the same isolated child as a local sweep
(`launch.run_child`), so timeouts, crash/hang/OOM statuses and PDEATHSIG are unchanged.

The driver is the only writer: one results file per machine, ``OUT/NAME.jsonl``, each locked for the sweep
(output.py) and appended one whole line per case, so Ctrl-C leaves every file valid and ``--resume`` re-queues
exactly the cases missing from each. A node lost mid-case is that case's ``error: node lost``; the machine's
other cases stay missing (``--resume`` runs them) and the sweep goes on on the other machines.

Ray's retries are off (``max_restarts=0``, ``max_task_retries=0``: a case that killed its node must not run
again behind the harness's back) and its memory monitor must be off (``RAY_memory_monitor_refresh_ms=0`` in the
environment of ``ray start``): it would kill a case's process before convbench could classify it as ``oom``.
``local:N`` starts an N-node cluster on 127.0.0.1 with both set.

A node joins by offering the resource, and is named by its label ``convbench-machine`` (else its host name);
its other ``convbench-KEY`` labels become tags next to the measured ``cpu`` and ``gpu``, which ``--on KEY=TEXT``
selects by (case-insensitive substring)::

    RAY_memory_monitor_refresh_ms=0 ray start --address HEAD:6379 --resources '{"convbench_agent": 1}' \\
        --labels '{"convbench-machine": "box1"}'
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import machine, plugins
from .errors import BenchError
from .launch import ChildResult, one_line
from .output import locked, prepare_output, replace_with_empty
from .record import Record
from .runner import Event, Machine, Sweep, make_record, new_run_id, now
from .schema import Case, append_record, read_records

RESOURCE = "convbench_agent"
LABEL_PREFIX = "convbench-"
NAME_LABEL = LABEL_PREFIX + "machine"
MONITOR_VAR = "RAY_memory_monitor_refresh_ms"
LOST = "node lost"
LOCAL_OBJECT_STORE = 80 * 2**20  # the driver ships case descriptions and records, never tensors
__all__ = ["RESOURCE", "Agent", "parse_on", "run_cluster", "select", "start_local"]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError("--cluster needs Ray: pip install -c constraints.txt 'convbench[cluster]'") from None
    return ray


class Agent:
    """The node's serial worker (a Ray actor: one call at a time). Once named (`start`), it owns the node's
    `Machine`."""

    def __init__(self, sweep: Sweep):
        import ray

        ctx = ray.get_runtime_context()
        self.sweep, self.node_id = sweep, ctx.get_node_id()
        self.labels = {k: str(v) for k, v in (ctx.get_node_labels() or {}).items()}
        self.dir = Path(tempfile.mkdtemp(prefix="convbench-agent-"))
        self.machine: Machine | None = None

    def node(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "name": self.labels.get(NAME_LABEL) or platform.node()}

    def start(self, name: str, run_id: str) -> dict[str, Any]:
        """Fingerprint the node under its machine name; its tags and whether Ray's memory monitor is off."""
        fp = machine.fingerprint(name)
        fp["ray_node_id"] = self.node_id
        self.machine = Machine(self.sweep, self.dir, fp, run_id)
        tags = {"name": name, "cpu": str(fp.get("cpu")), "gpu": ", ".join(fp.get("gpus") or []) or "none"}
        tags.update({k[len(LABEL_PREFIX):]: v for k, v in self.labels.items()
                     if k.startswith(LABEL_PREFIX) and k != NAME_LABEL})
        return {"tags": tags, "fingerprint": fp, "memory_monitor": os.environ.get(MONITOR_VAR)}

    def remember(self, records: list[dict[str, Any]]) -> None:
        assert self.machine is not None
        self.machine.remember(records)

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        assert self.machine is not None
        return self.machine.run(Case(**case)).to_dict()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def start_local(nodes: Sequence[Mapping[str, str]], object_store_bytes: int = LOCAL_OBJECT_STORE) -> Any:
    """A real multi-node Ray cluster on 127.0.0.1 (`ray.cluster_utils.Cluster`): a head that runs nothing and one
    1-CPU node per entry, offering the agent resource, labelled with the entry (``name`` and other tags)."""
    _ray()
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    os.environ[MONITOR_VAR] = "0"  # inherited by the raylets started below: convbench classifies OOM itself
    # a node that went is noticed in about 5 s rather than Ray's default 30 (one box: no network to wait for)
    os.environ.setdefault("RAY_health_check_period_ms", "1000")
    os.environ.setdefault("RAY_health_check_failure_threshold", "5")
    # Ray turns 127.0.0.1 into the host's outward IP unless told the cluster is single-box (this flag, read by
    # this process's address resolution and by every process the nodes start): the cluster stays on loopback
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    common = {"node_ip_address": "127.0.0.1", "object_store_memory": object_store_bytes}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **common})
    for tags in nodes:
        labels = {LABEL_PREFIX + k: v for k, v in tags.items()}
        cluster.add_node(num_cpus=1, resources={RESOURCE: 1}, labels=labels, **common)
    cluster.wait_for_nodes()
    return cluster


@contextlib.contextmanager
def connect(address: str) -> Iterator[None]:
    ray = _ray()
    cluster = None
    if address.startswith("local:"):
        n = address[len("local:"):]
        if not n.isdigit() or not 1 <= int(n) <= 64:
            raise BenchError(f"--cluster local:N needs N in 1..64, got {address!r}")
        cluster = start_local([{"machine": f"local-{i + 1}"} for i in range(int(n))])
        address = cluster.address
    else:
        _reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except Exception as e:  # ConnectionError, ValueError …: the address is the user's input
        if cluster is not None:
            cluster.shutdown()
        raise BenchError(f"--cluster {address}: cannot connect to Ray: {one_line(e)}") from None
    try:
        yield
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT that nothing answers on fails here, at once: ray.init would retry it for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return  # "auto", ray://…: Ray's own resolution
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise BenchError(f"--cluster {address}: no Ray head answers there ({e.strerror or e}); start one with "
                         f"ray start --head, or use local:N") from None


def parse_on(specs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BenchError(f"--on takes KEY=TEXT (e.g. gpu=H100, cpu=EPYC), got {spec!r}")
        out.append((key.strip(), value.strip()))
    return out


def select(described: dict[str, dict[str, Any]], machines: Sequence[str], on: Sequence[tuple[str, str]]) -> list[str]:
    """The machine names that ``--machines`` names (every one must exist) and whose tags match every ``--on``."""
    names = list(described)
    unknown = [m for m in machines if m not in described]
    if unknown:
        raise BenchError(f"--machines: no agent named {', '.join(unknown)}; the cluster has {', '.join(names)}")
    chosen = [m for m in names if not machines or m in machines]
    for key, text in on:
        if not any(key in d["tags"] for d in described.values()):
            keys = sorted({k for d in described.values() for k in d["tags"]})
            raise BenchError(f"--on {key}={text}: no machine has a tag {key!r}; tags: {', '.join(keys)}")
        chosen = [m for m in chosen if text.lower() in described[m]["tags"].get(key, "").lower()]
    if not chosen:
        tags = "; ".join(f"{m}: {described[m]['tags']}" for m in names)
        raise BenchError(f"no machine matches the selection; the cluster has {tags}")
    return chosen


def file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".jsonl"


def run_cluster(sweep: Sweep, address: str, machines: Sequence[str] = (), on: Sequence[str] = (),
                on_event: Event = lambda *_: None) -> dict[str, int]:
    """Run every case not yet in ``sweep.output/NAME.jsonl`` on every selected machine; the counts of statuses."""
    out = sweep.output
    if out.exists() and not out.is_dir():
        raise BenchError(f"with --cluster, -o names a directory (one results file per machine); {out} is a file")
    criteria = parse_on(on)
    plugins.load_all(list(sweep.backend_modules))
    with connect(address):
        return _drive(sweep, list(machines), criteria, on_event)


def _drive(sweep: Sweep, machines: list[str], on: list[tuple[str, str]], on_event: Event) -> dict[str, int]:
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get(RESOURCE, 0) >= 1]
    if not nodes:
        raise BenchError(f"no node of the cluster offers the resource {RESOURCE!r}; start workers with "
                         f"ray start --resources '{{\"{RESOURCE}\": 1}}'")
    run_id = new_run_id()
    remote = ray.remote(Agent)
    agents, idle = {}, True
    for node in nodes:  # soft=False: the agent runs on that node or not at all
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        agents[node["NodeID"]] = remote.options(num_cpus=0, resources={RESOURCE: 1}, max_restarts=0,
                                                max_task_retries=0, scheduling_strategy=strategy).remote(sweep)
    try:
        found = _answers(ray, {k: a.node.remote() for k, a in agents.items()}, on_event)
        names = _names(found)
        agents = {names[k]: agents[k] for k in found}
        described = _answers(ray, {n: agents[n].start.remote(n, run_id) for n in agents}, on_event)
        agents = {n: agents[n] for n in described}
        chosen = select(described, machines, on)
        for name in chosen:
            if described[name]["memory_monitor"] != "0":
                on_event("warning", None, {"message": f"{name}: Ray's memory monitor is on ({MONITOR_VAR} unset): "
                                                      f"it may kill a case before convbench classifies it as oom"})
        sweep.output.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            queues = {}
            for name in chosen:
                path = sweep.output / file_name(name)
                stack.enter_context(locked(path))
                done = prepare_output(path, sweep.resume, sweep.overwrite)
                queues[name] = deque(c for c in sweep.cases if c.id not in done)
                if sweep.overwrite and path.exists() and queues[name]:
                    replace_with_empty(path)
                if sweep.skip_dominated and done:
                    agents[name].remember.remote([r for r in read_records(path) if r["status"] == "timeout"])
            todo = sum(map(len, queues.values()))
            total = len(sweep.cases) * len(chosen)
            on_event("plan", None, {"total": total, "todo": todo, "done": total - todo, "machines": chosen})
            idle = False
            counts = _dispatch(ray, sweep, agents, described, queues, run_id, on_event)
            idle = True
        return counts
    except KeyboardInterrupt:  # Ctrl-C: no waiting on agents
        idle = False
        raise
    finally:
        if idle:  # nothing in flight: each agent removes its references and logs (a lost node's answers an error)
            ray.wait([a.close.remote() for a in agents.values()], num_returns=len(agents), timeout=30)
        for a in agents.values():  # interrupted mid-case: the case's child is killed with its agent (PDEATHSIG)
            with contextlib.suppress(Exception):
                ray.kill(a)


def _answers(ray: Any, refs: dict[str, Any], on_event: Event) -> dict[str, Any]:
    """Each agent's answer; an agent whose node died (Ray may list a node as alive for a few seconds after it
    went) is left out, with a warning."""
    out = {}
    for key, ref in refs.items():
        try:
            out[key] = ray.get(ref)
        except ray.exceptions.RayError as e:
            on_event("warning", None, {"message": f"node {key[:12]} left out: {type(e).__name__}"})
    return out


def _names(nodes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each node's machine name: its ``convbench-machine`` label, else its host; a repeated name gets the node id."""
    base = {k: n["name"] for k, n in nodes.items()}
    repeated = {v for v in base.values() if list(base.values()).count(v) > 1}
    return {k: f"{v}-{k[:6]}" if v in repeated else v for k, v in base.items()}


def _dispatch(ray: Any, sweep: Sweep, agents: dict[str, Any], described: dict[str, dict[str, Any]],
              queues: dict[str, deque[Case]], run_id: str, on_event: Event) -> dict[str, int]:
    """One case in flight per machine; each record is appended to its machine's file as it comes back."""
    counts: dict[str, int] = {}
    flight: dict[Any, tuple[str, Case, str, float]] = {}

    def submit(name: str) -> None:
        if queues[name]:
            case = queues[name].popleft()
            flight[agents[name].run.remote(case.to_dict())] = (name, case, now(), time.monotonic())
            on_event("start", case, {"machine": name})

    for name in queues:
        submit(name)
    while flight:
        [ref], _ = ray.wait(list(flight), num_returns=1)
        name, case, started, t0 = flight.pop(ref)
        wall = time.monotonic() - t0  # the driver's view; the child's own wall time is lost with it
        try:
            line = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the agent raised: a harness bug on that case, not the node's
            line = _failed(case, f"the agent failed on this case: {one_line(e.cause or e)}", described[name],
                           run_id, started, wall)
        except ray.exceptions.RayError as e:  # the actor or its node died under the case
            left = len(queues[name])
            queues[name].clear()
            line = _failed(case, f"{LOST}: {name} went away while this case ran ({type(e).__name__}); "
                                 f"{left} more case(s) of it were not run, --resume runs them", described[name],
                           run_id, started, wall)
        append_record(sweep.output / file_name(name), line)
        counts[line["status"]] = counts.get(line["status"], 0) + 1
        on_event("done", case, line)
        submit(name)
    return counts


def _failed(case: Case, message: str, described: dict[str, Any], run_id: str, started: str,
            wall: float) -> dict[str, Any]:
    record: Record = make_record(case, ChildResult("error", {"message": message}, wall), {},
                                 described["fingerprint"], run_id, started)
    return record.to_dict()

