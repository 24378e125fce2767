"""The torch backend's train step against the same step written by hand in torch, and the NumPy reference's.

One step, every variant: forward in train mode (BN with batch statistics), softmax cross-entropy, backward for every
parameter, SGD (lr 0.1, momentum 0.9, weight decay 1e-4: the torchvision/MLPerf ResNet recipe) on one fixed seeded
batch with labels, the same weights (the IR's parameters are torchvision state_dict keys).

- ``backend``: ``convbench run --mode train -b torch``'s step (bench/train_case.py `Stepper`): the torch backend's
  compile of the IR train step (`ir.train.train_step`), then the backend's optimizer update (its ``updater``:
  torch.optim's fused SGD, backends/torch/optim.py) on the gradients it returns;
- ``handwritten``: an ``nn.Module`` of the network (torchvision's layout), ``model.train()``,
  ``F.cross_entropy``, ``loss.backward()``, ``torch.optim.SGD(...).step()`` with ``zero_grad(set_to_none=True)``
  (torch.optim's default implementation: on CPU the per-tensor loop; ``--fused-handwritten``: ``fused=True``,
  the backend's kernel, so the comparison is of the forward+backward alone);
- ``numpy``: the same `Stepper` on the numpy backend (the reference, float32; its update is ir/optim's NumPy one).

Each variant runs in its own child process (bench/launch.py), one child per variant per round, rounds in rotated
order (round r starts with variant r mod n) so drift from other load hits every variant alike. A child compiles or
builds, warms up, times ``--steps`` steps and reports their times, its first loss and its peak RSS. The figure is
the median over rounds of the per-round ratio handwritten / backend (> 1: the backend's step is faster).

    cd /work/main && .venv/bin/python benchmarks/train_step_vs_torch.py -m resnet18,resnet50 --batch 8 \\
        --image-size 224 --threads 2 --rounds 5 --steps 5 --numpy-steps 1 -o reports/train_step_vs_torch.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULE = "benchmarks.train_step_vs_torch"
VARIANTS = ("backend", "handwritten", "numpy", "tvm")
REFERENCE_LIKE = ("numpy", "tvm")  # slow variants: their own step count (--numpy-steps, --tvm-steps), no warm-up


# -- the networks by hand (torchvision/models/resnet.py's layout; LeNet-5 as the zoo builds it) --------------

def handwritten(model: str):
    import torch.nn.functional as F
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c3, self.c5 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Conv2d(16, 120, 5)
            self.f6, self.output = nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.avg_pool2d(self.c1(x).tanh(), 2)
            x = F.avg_pool2d(self.c3(x).tanh(), 2)
            return self.output(self.f6(self.c5(x).tanh().flatten(1)).tanh())

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c)

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, cin: int, planes: int, stride: int, down: nn.Module | None):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False), bn(planes)
            self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False), bn(planes)
            self.relu, self.downsample = nn.ReLU(inplace=True), down

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, cin: int, planes: int, stride: int, down: nn.Module | None):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), bn(planes)
            self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), bn(planes)
            self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), bn(planes * 4)
            self.relu, self.downsample = nn.ReLU(inplace=True), down

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(nn.Module):
        def __init__(self, block: type, layers: tuple[int, ...]) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), bn(64)
            self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            self.layer1, self.layer2 = self._layer(block, 64, layers[0], 1), self._layer(block, 128, layers[1], 2)
            self.layer3, self.layer4 = self._layer(block, 256, layers[2], 2), self._layer(block, 512, layers[3], 2)
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512 * block.expansion, 1000)

        def _layer(self, block: type, planes: int, n: int, stride: int) -> nn.Sequential:
            out = planes * block.expansion
            down = (nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride, bias=False), bn(out))
                    if stride != 1 or self.inplanes != out else None)
            blocks = [block(self.inplanes, planes, stride, down)]
            self.inplanes = out
            return nn.Sequential(*blocks, *(block(out, planes, 1, None) for _ in range(1, n)))

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    nets = {"lenet5": LeNet5, "resnet18": lambda: ResNet(Basic, (2, 2, 2, 2)),
            "resnet50": lambda: ResNet(Bottleneck, (3, 4, 6, 3))}
    if model not in nets:
        raise SystemExit(f"train_step_vs_torch: no hand-written {model}; have {', '.join(nets)}")
    return nets[model]()


# -- the child: one variant, timed --------------------------------------------------------------------------

def _time(step, steps: int, warmup: int) -> tuple[list[float], float]:
    loss = step()
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t0)
    return samples, loss


def run_variant(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from convbench.backends import get
    from convbench.bench.train_case import LR, Stepper
    from convbench.bench.workload import SEED, make_workload
    from convbench.ir.optim import SGD
    from convbench.ir.train import train_step
    from convbench.testing.train_check import batch_of

    torch.set_num_threads(job["threads"])
    w = make_workload(job["model"], job["batch"], job["image_size"])
    x, labels = batch_of(w.graph, SEED)
    x = x.astype(np.float32)  # every variant gets the same float32 batch, converted once
    opt = SGD(lr=LR)
    start = time.perf_counter()
    if job["variant"] == "handwritten":
        net = handwritten(job["model"])
        missing, unexpected = net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in w.params.items()},
                                                  strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise RuntimeError(f"hand-written {job['model']}: keys differ from the IR's: {missing} {unexpected}")
        net.train()
        sgd = torch.optim.SGD(net.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay,
                              fused=job.get("fused") or None)
        tx, ty = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

        def step() -> float:
            sgd.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(tx), ty)
            loss.backward()
            sgd.step()
            return float(loss.detach())
    else:
        st = train_step(w.graph, opt)
        backend = get("torch" if job["variant"] == "backend" else job["variant"])
        exe = backend.compile(st.graph, w.params, dtype="float32", threads=job["threads"])
        stepper = Stepper(exe, st, w.params, x, labels, "float32", backend)

        def step() -> float:
            return float(stepper().loss)
    setup_s = time.perf_counter() - start
    samples, loss = _time(step, job["steps"], job["warmup"])
    return {"status": "ok", "samples": samples, "loss": loss, "setup_s": setup_s,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# -- the parent: rounds in rotated order --------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--models", default="resnet18,resnet50")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed steps per child (after --warmup)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    p.add_argument("--numpy-steps", type=int, default=1, help="timed steps of the numpy variant (0: not run)")
    p.add_argument("--tvm-steps", type=int, default=0,
                   help="timed steps of the TVM backend's train step (relax Gradient, untuned; 0: not run)")
    p.add_argument("--fused-handwritten", action="store_true",
                   help="the hand-written step's torch.optim.SGD with fused=True (the backend's update kernel)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    p.add_argument("-o", "--output", default=None, help="JSONL file: one line per child")
    args = p.parse_args()
    from convbench.bench.launch import child_env, run_child

    env = {**child_env(args.threads), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                   os.environ.get("PYTHONPATH")]))}
    slow_steps = {"numpy": args.numpy_steps, "tvm": args.tvm_steps}
    variants = [v for v in VARIANTS if slow_steps.get(v, 1) > 0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="train-step-") as tmp:
        for model in args.models.split(","):
            for r in range(args.rounds):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for variant in order:
                    steps = slow_steps.get(variant, args.steps)
                    job = {"variant": variant, "model": model, "batch": args.batch, "image_size": args.image_size,
                           "threads": args.threads, "steps": steps,
                           "warmup": 0 if variant in REFERENCE_LIKE else args.warmup,
                           "fused": args.fused_handwritten}
                    child = run_child(MODULE, job, env, args.timeout, Path(tmp))
                    row = {**job, "round": r, "status": child.status, "wall_s": child.wall_s,
                           **{k: v for k, v in child.result.items() if k != "status"}}
                    rows.append(row)
                    med = statistics.median(row["samples"]) if child.status == "ok" else None
                    print(f"{model} b{args.batch}@{args.image_size} round {r} {variant:>11}: "
                          + (f"{med * 1e3:.1f} ms/step, loss {row['loss']:.4f}" if med else
                             f"{child.status}: {row.get('message')}"), file=sys.stderr)
                    if args.output:
                        with open(args.output, "a") as f:
                            f.write(json.dumps(row) + "\n")
    _summary(rows, args)
    return 0


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    fused = ", hand-written SGD fused" if args.fused_handwritten else ""
    print(f"\nbatch {args.batch} at {args.image_size}, {args.threads} thread(s), {args.rounds} rounds{fused}")
    print(f"{'model':<10} {'variant':<12} {'ms/step':>9} {'img/s':>8} {'peak RSS MiB':>13} {'× handwritten':>14}")
    for model in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == model and r["status"] == "ok"]
        per_round: dict[int, dict[str, float]] = {}
        for r in ok:
            per_round.setdefault(r["round"], {})[r["variant"]] = statistics.median(r["samples"])
        for variant in VARIANTS:
            mine = [r for r in ok if r["variant"] == variant]
            if not mine:
                continue
            med = statistics.median(s for r in mine for s in r["samples"])
            ratios = [t["handwritten"] / t[variant] for t in per_round.values() if variant in t and "handwritten" in t]
            speed = f"{statistics.median(ratios):.3f}" if ratios else "—"
            rss = max(r["peak_rss_bytes"] for r in mine) / 2**20
            print(f"{model:<10} {variant:<12} {med * 1e3:>9.1f} {args.batch / med:>8.2f} {rss:>13.0f} {speed:>14}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1].endswith("job.json"):  # a child started by bench/launch.py
        from convbench.bench.launch import child_main

        sys.exit(child_main(sys.argv[1:], run_variant))
    sys.exit(main())
