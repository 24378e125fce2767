"""The torch backend against the same network written by hand, the way torchvision's resnet.py writes it.

Both get the same weights (the IR's parameters are torchvision state_dict keys, so ``load_state_dict`` takes
them), the same intra-op threads, the same NumPy-in/NumPy-out boundary, eval mode and ``torch.inference_mode``.
Calls are interleaved round-robin (one call of each variant per round) so drift from other load on the machine
hits every variant alike; the figure is the ratio of medians, handwritten / backend (> 1: the backend is faster).

    .venv/bin/python benchmarks/torch_vs_handwritten.py --batch 1,8 --threads 2 [--compile] [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

from convbench import models
from convbench.backends import get
from convbench.backends.correctness import compare
from convbench.testing.cases import reference_outputs

# -- ResNet-50 by hand (torchvision/models/resnet.py, inference only) -------------------------------------------

class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def handwritten(params: dict[str, np.ndarray], dtype: torch.dtype,
                channels_last: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    net = ResNet().eval()
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(dtype=dtype, memory_format=layout)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x).to(dtype).contiguous(memory_format=layout)).float().numpy()
    return run


# -- timing -----------------------------------------------------------------------------------------------------

def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, one call of each per round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", default="1,8")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 20 for batch 1, 8 for batch 8)")
    p.add_argument("--compile", action="store_true", help="also torch.compile (inductor): speed and compile time")
    p.add_argument("--bf16", action="store_true", help="also bfloat16: error vs float64 of both, and speed")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, ResNet-50 at {args.image_size}", flush=True)
    for batch in (int(b) for b in args.batch.split(",")):
        g = models.build("resnet50", batch=batch, image_size=args.image_size)
        params = models.init_params(g, seed=0)
        x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
        ref = reference_outputs(g, params, {"input": x})[0]
        runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "handwritten": handwritten(params, torch.float32),  # NCHW, as torchvision's models are used
            "handwritten NHWC": handwritten(params, torch.float32, channels_last=True),
        }
        for label, opts in (("backend", {}), ("backend NCHW", {"channels_last": False})):
            runners[label] = get("torch").compile(g, params, threads=args.threads, **opts)
        if args.compile:
            exe = get("torch").compile(g, params, threads=args.threads, compile=True)
            print(f"batch {batch}: torch.compile (inductor) took {exe.report.details.torch_compile_s:.1f} s "
                  f"(the whole compile {exe.report.compile_s:.1f} s)", flush=True)
            runners["backend compile"] = exe
        if args.bf16:
            runners["handwritten bf16"] = handwritten(params, torch.bfloat16)
            runners["backend bf16"] = get("torch").compile(g, params, dtype="bfloat16", threads=args.threads)
        variants = {name: partial(fn, x) for name, fn in runners.items()}
        for name, fn in variants.items():  # every variant computes the same function
            a = compare(fn(), ref, "bfloat16" if "bf16" in name else "float32")
            print(f"  {name:18} max rel err {a.max_rel:.2e} top-1 {a.top1:.2f} {'ok' if a.ok else 'FAIL'}")
        rounds = args.rounds or (20 if batch == 1 else 8)
        med = interleaved(variants, rounds)
        base = med["handwritten"]
        print(f"batch {batch}: median of {rounds} interleaved calls")
        for name, t in med.items():
            peer = med["handwritten bf16"] if name == "backend bf16" else base
            print(f"  {name:18} {t * 1e3:8.1f} ms   handwritten{' bf16' if 'bf16' in name else ''} / this "
                  f"{peer / t:5.2f}×   handwritten NHWC / this {med['handwritten NHWC'] / t:5.2f}×", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
