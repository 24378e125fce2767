"""convbench's own CPU lowerings next to the peer engines, interleaved and process-isolated (issue 19).

Every engine of a workload group (model, batch) is a live worker process (``convbench run --interleave``'s
machinery, bench/interleave.py): compiled once, checked against the float64 reference, warmed up, then timed in
rounds of calls in rotated order with an idle gap, so load that comes and goes hits every engine alike.

- convbench's own lowerings: ``onednn`` (the IR straight onto oneDNN primitives), ``torch`` (fx + oneDNN prepack),
  ``tvm`` (hand schedules or a shipped database),
  ``numpy`` (the reference backend);
- peers: ``openvino`` (convbench's OpenVINO backend: OpenVINO's kernels), ``ov-onnx`` (OpenVINO reading
  convbench's ONNX export with its own reader, f32 forced, latency hint), ``onnxruntime``, ``torch-eager-cl``
  (the network written by hand in torch, channels_last: ResNet-50 as torchvision writes it, efficientnet_lite0 the
  port convbench's keys come from) and ``torch-compile-freeze`` (torch.compile with inductor and freezing of that
  module).

Output in ``--out`` (reports/cpu-speed/): ``peers-MODELS.jsonl`` (the records, readable by ``convbench
report`` and ``compare``) and ``peers-MODELS.md``: per engine the median of its round medians, its ratio to the
best peer taken round by round (median, and the min–max over rounds: the round-to-round spread), the spread of
its own round medians, correctness, and whether a round ran loaded.

    .venv/bin/python benchmarks/cpu_peers.py --models resnet50,efficientnet_lite0 --batch 1,8 --threads 2
    .venv/bin/python benchmarks/cpu_peers.py --models lenet5 --image-size small --rounds 3 --out /tmp/peers
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

OWN = ("onednn", "torch", "tvm", "numpy")
BACKEND_PEERS = ("openvino", "onnxruntime")
FACTORY_PEERS = ("ov-onnx", "torch-eager-cl", "torch-compile-freeze")
# convbench's own, not run unless named in --engines: inductor with freezing on the fx graph, the torch backend
# without its residual post-ops (layers.fuse_residual_adds, on by default), for the A/B of that rewrite, and TVM
# with no database at all (plain ``tvm`` takes the one `convbench tune` made for this CPU, or a shipped one)
OPTIONAL = ("torch:compile=true", "torch:residual_post_ops=false", "tvm:use_shipped_db=false")
KNOWN = OWN + BACKEND_PEERS + FACTORY_PEERS + OPTIONAL
HERE = Path(__file__).resolve()


# -- peer factories, run inside the workers (bench/worker.py: load_factory) -------------------------------------

def ov_onnx(graph, params, case) -> Any:
    """OpenVINO's own ONNX reader on convbench's export, compiled as the backend compiles (f32 forced)."""
    import os
    import tempfile

    import openvino as ov

    from convbench.ir.onnx_export import to_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{graph.name}.onnx")
        to_onnx(graph, params, path, check=False)
        core = ov.Core()
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": case.threads})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x)}, share_inputs=True, share_outputs=True)
        return np.array(request.get_output_tensor(0).data, copy=True)

    return run


def _torch_module(graph, params, case):
    """The network written by hand in torch with convbench's weights (its keys are the hand-written ones)."""
    import importlib.util

    import torch

    from convbench.bench.errors import UnsupportedCase

    torch.set_num_threads(case.threads)
    if case.model == "resnet50":
        spec = importlib.util.spec_from_file_location("_torch_vs_handwritten", HERE.parent / "torch_vs_handwritten.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net = module.ResNet()
    elif case.model.startswith("efficientnet_lite"):
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(case.model.replace("_", "-"))
    else:
        raise UnsupportedCase(f"no hand-written torch module for {case.model} (resnet50, efficientnet_lite*)")
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    if unexpected or not all(k.endswith("num_batches_tracked") for k in missing):
        raise ValueError(f"{case.model}: weights do not match the torch module: {missing[:3]} {unexpected[:3]}")
    return net.eval().to(memory_format=torch.channels_last)


def _torch_runner(fn, torch) -> Any:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return fn(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).float().numpy()

    return run


def torch_eager_cl(graph, params, case) -> Any:
    import torch

    return _torch_runner(_torch_module(graph, params, case), torch)


def torch_compile_freeze(graph, params, case) -> Any:
    import torch

    net = _torch_module(graph, params, case)
    fn = torch.compile(net, backend="inductor", dynamic=False, options={"freezing": True})
    run = _torch_runner(fn, torch)
    run(np.zeros(graph.inputs["input"].shape, np.float32))  # compile now, not in the first timed call
    return run


# -- the table --------------------------------------------------------------------------------------------------

def table(records: list, peers: set[str]) -> str:
    """One markdown table per group: each engine against the best peer, round by round."""
    from convbench.bench.interleave import group_key

    out = []
    by_group: dict[str, list] = {}
    for r in records:
        by_group.setdefault(group_key(r.case), []).append(r)  # an unsupported case has no rounds, a group
    for group, rs in by_group.items():
        ok = [r for r in rs if r.status == "ok" and r.interleave and r.interleave.round_medians]
        peer_rounds = [r.interleave.round_medians for r in ok if r.case.backend in peers]
        n = min((len(m) for m in peer_rounds), default=0)
        best = [min(m[i] for m in peer_rounds) for i in range(n)]  # the best peer of each round
        loaded = any(r.interleave.loaded for r in ok)
        out += [f"### {group}" + (" — LOADED: a round began overloaded or shared the CPU" if loaded else ""), "",
                "| engine | kind | median of round medians, ms | × best peer (median, min–max over rounds) | "
                "round spread | other cores (max) | rounds×calls | correct |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(ok, key=lambda r: statistics.median(r.interleave.round_medians)):
            il = r.interleave
            ratios = [a / b for a, b in zip(il.round_medians, best, strict=False)]
            ratio = (f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "—")
            kind = "peer" if r.case.backend in peers else "convbench"
            others = [o for o in il.round_other_cores if o is not None]
            other = f"{statistics.median(others):.2f} ({max(others):.2f})" if others else "—"
            out.append(f"| {r.case.backend} | {kind} | {statistics.median(il.round_medians) * 1e3:.2f} | {ratio} | "
                       f"{il.round_spread:.1%} | {other} | {il.rounds}×{il.calls_per_round} | "
                       f"{ {True: 'yes', False: 'NO', None: '—'}[r.correct]} |")
        for r in rs:
            if r not in ok:
                out.append(f"| {r.case.backend} | {r.status} | — | — | — | — | — | {r.message[:100]} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from convbench.bench.interleave import Rounds, run_interleaved
    from convbench.bench.record import load_records
    from convbench.bench.runner import Sweep, plan
    from convbench.bench.schema import Case
    from convbench.bench.specs import parse_image_sizes
    from convbench.bench.stats import Policy

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,efficientnet_lite0")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image-size", default="full", help="full (the model's own) or small")
    p.add_argument("--engines", default=",".join(OWN + BACKEND_PEERS + FACTORY_PEERS))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=5, help="calls per engine per round at most")
    p.add_argument("--max-time", type=float, default=8.0,
                   help="timed seconds per engine over all rounds at most: fewer calls per round for slow ones (8)")
    p.add_argument("--gap", type=float, default=0.5, help="idle seconds before each engine's round (0.5)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per compile or round before a kill")
    p.add_argument("--out", default="reports/cpu-speed")
    args = p.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(KNOWN))
    if unknown:
        p.error(f"unknown engine(s) {unknown}; known: {', '.join(KNOWN)}")
    models, batches = args.models.split(","), [int(b) for b in args.batch.split(",")]
    backends = [e for e in engines if e not in FACTORY_PEERS]
    cases = plan(models, backends, batches, ["float32"], parse_image_sizes(args.image_size), args.threads)
    factories = {}
    for c in list(dict.fromkeys((c.model, c.image_size, c.batch) for c in cases)):
        for name in (e for e in engines if e in FACTORY_PEERS):
            peer = Case(c[0], c[1], name, c[2], "float32", args.threads, backend_name=name, options={})
            cases.append(peer)
            factories[peer.id] = f"{HERE}:{name.replace('-', '_')}"
    cases.sort(key=lambda c: (c.model, c.batch))  # group by group, the engines in --engines order within
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"peers-{'+'.join(models)}"  # one pair of files per model list: runs for other models stay
    results = out / f"{stem}.jsonl"
    policy = Policy(warmup_s=1.0, warmup_calls=2, min_time_s=0.0, max_time_s=args.max_time)
    sweep = Sweep(cases, results, policy, args.timeout, overwrite=True, gemm_n=0)

    def event(kind: str, case: Any, data: Any) -> None:
        if kind in ("start", "done") and case is not None:
            print(f"{kind:>6} {case.id}" + (f"  {data['status']} {data.get('message', '')[:120]}" if data else ""),
                  file=sys.stderr, flush=True)
        elif kind == "round":
            print(f" round {data['round']}/{data['of']} of {data['group']}", file=sys.stderr, flush=True)

    run_interleaved(sweep, Rounds(args.rounds, args.calls, args.gap, factories), event)
    peers = set(BACKEND_PEERS + FACTORY_PEERS)
    text = (f"# convbench CPU backends next to the peer engines\n\n{args.threads} threads, {args.rounds} rounds, "
            f"interleaved, one process per engine (benchmarks/cpu_peers.py). × best peer: this engine's round "
            f"median over the best peer's in the same round.\n\n" + table(load_records(results), peers))
    (out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
