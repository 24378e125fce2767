"""Tuned launch configurations of the channels-last GEMM (`gemm.GemmConfig`), per layer shape, as JSON files
keyed by GPU name and Triton version: tuned once (`tune`, on a GPU, correctness checked on every candidate),
loaded on later runs (`load`/`find`) so they do not re-tune.

A file::

    {"schema": 1, "gpu": "NVIDIA H100 80GB HBM3", "triton": "3.6.0",
     "configs": {"<layer key>": {"block_m": 128, "block_n": 128, "block_k": 64, "split_k": 1,
                                 "num_warps": 8, "num_stages": 3}, ...}}

`load` validates all of it and raises `ConfigFileError` naming the file and the entry. Under the interpreter no
table is used: one large block, as for every other kernel (`gemm.default_config`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import triton

from .gemm import GemmConfig, split_k

SCHEMA = 1
_FIELDS = tuple(f.name for f in fields(GemmConfig))
SMEM_BYTES = 200 * 1024  # what a candidate's pipelined tiles may take (H100/H200 allow 227 KiB per block)


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ConfigTable:
    gpu: str
    triton: str
    configs: dict[str, GemmConfig] = field(default_factory=dict)
    path: Path | None = None

    def get(self, key: str) -> GemmConfig | None:
        return self.configs.get(key)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "gpu": self.gpu, "triton": self.triton,
                "configs": {k: asdict(v) for k, v in sorted(self.configs.items())}}


def layer_key(dtype: str, m: int, n: int, c_per_g: int, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> str:
    """The shape a configuration is tuned for: everything the kernel's speed depends on."""
    pair = lambda p: f"{p[0]}x{p[1]}"  # noqa: E731
    return (f"{dtype}/m{m}/n{n}/c{c_per_g}/k{pair(kernel)}/s{pair(stride)}/p{pair(padding)}/d{pair(dilation)}"
            f"/g{groups}")


def file_name(gpu: str, triton_version: str) -> str:
    """``<gpu>-triton<version>.json`` with the GPU name reduced to [a-z0-9_]."""
    return f"{re.sub(r'[^a-z0-9]+', '_', gpu.lower()).strip('_')}-triton{triton_version}.json"


def load(path: str | Path) -> ConfigTable:
    """Read and validate a config file; any defect is one `ConfigFileError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ConfigFileError(f"triton config file {path}: cannot be read: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ConfigFileError(f"triton config file {path}: not JSON: {e}") from e
    if not isinstance(data, dict) or set(data) != {"schema", "gpu", "triton", "configs"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigFileError(f"triton config file {path}: expected an object with keys configs, gpu, schema, "
                              f"triton; got {keys}")
    if data["schema"] != SCHEMA:
        raise ConfigFileError(f"triton config file {path}: schema {data['schema']!r}, this reader knows {SCHEMA}")
    for k in ("gpu", "triton"):
        if not isinstance(data[k], str) or not data[k]:
            raise ConfigFileError(f"triton config file {path}: {k!r} must be a non-empty string")
    if not isinstance(data["configs"], dict):
        raise ConfigFileError(f"triton config file {path}: 'configs' must be an object of layer key -> config")
    configs = {}
    for key, entry in data["configs"].items():
        if not isinstance(entry, dict) or set(entry) != set(_FIELDS):
            raise ConfigFileError(f"triton config file {path}: entry {key!r} must have exactly the fields "
                                  f"{', '.join(_FIELDS)}")
        try:
            configs[key] = GemmConfig(**entry)
        except ValueError as e:
            raise ConfigFileError(f"triton config file {path}: entry {key!r}: {e}") from e
    return ConfigTable(data["gpu"], data["triton"], configs, path)


def save(table: ConfigTable, path: str | Path) -> Path:
    """Write ``table`` (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path


def find(directories: Iterable[Path], gpu: str, triton_version: str) -> ConfigTable | None:
    """The first table for this GPU and Triton version in ``directories`` (None if there is none); a file that
    is there but broken, or written for another GPU/version, is an error, not a silent re-tune."""
    for d in directories:
        path = Path(d) / file_name(gpu, triton_version)
        if path.exists():
            table = load(path)
            if (table.gpu, table.triton) != (gpu, triton_version):
                raise ConfigFileError(f"triton config file {path}: written for {table.gpu} / triton {table.triton}, "
                                      f"not {gpu} / triton {triton_version}")
            return table
    return None


def candidates(m: int, n: int, c_per_g: int, taps: int, groups: int, sm_count: int,
               itemsize: int = 2) -> list[GemmConfig]:
    """The pruned search space for one layer (at most 24): tiles no larger than the problem (rounded up to a power
    of two), one pipeline depth per K block (4 stages of 32, 3 of 64), pipelined tiles that fit in shared memory,
    8 warps for 128×128 tiles and up, and split-K only as the heuristic's choice, where the tiles alone leave SMs
    idle (tuning then decides between it and no split)."""
    p2 = triton.next_power_of_2
    out: list[GemmConfig] = []
    for bm in (64, 128):
        if bm > max(64, p2(m)):
            continue
        for bn in (64, 128, 256):
            if bn > max(64, p2(n)):
                continue
            for bk, stages in ((32, 4), (64, 3)):
                if bk > max(32, p2(c_per_g)) or (bm + bn) * bk * itemsize * stages > SMEM_BYTES:
                    continue
                steps = taps * triton.cdiv(c_per_g, bk)
                warps = 8 if bm * bn >= 128 * 128 else 4
                for s in sorted({1, split_k(m, n, steps, groups, bm, bn, sm_count)}):
                    out.append(GemmConfig(bm, bn, bk, s, warps, stages))
    return out


@dataclass(frozen=True)
class Trial:
    config: GemmConfig
    seconds: float | None  # None: rejected
    error: str = ""


def tune(configs: Iterable[GemmConfig], run: Callable[[GemmConfig], Any], correct: Callable[[Any], str],
         time: Callable[[Callable[[], Any]], float]) -> tuple[GemmConfig, list[Trial]]:
    """The fastest correct configuration. ``run(config)`` launches with it and returns the output,
    ``correct(output)`` says what is wrong with it ("" when right: every candidate is checked before it is
    timed), ``time(fn)`` is the seconds one call of ``fn`` takes. A candidate that fails to compile or
    launch (too many registers, …) is rejected with its error, as is a wrong one."""
    trials = []
    for config in configs:
        try:
            problem = correct(run(config))
        except Exception as e:  # a config the compiler or the device refuses
            problem = f"{type(e).__name__}: {e}"
        if problem:
            trials.append(Trial(config, None, problem))
            continue
        trials.append(Trial(config, time(lambda config=config: run(config))))
    timed = [t for t in trials if t.seconds is not None]
    if not timed:
        raise RuntimeError("tune: every candidate was rejected: "
                           + "; ".join(f"{t.config}: {t.error}" for t in trials[:3]))
    return min(timed, key=lambda t: t.seconds).config, trials


def merged(table: ConfigTable | None, gpu: str, triton_version: str,
           new: Mapping[str, GemmConfig]) -> ConfigTable:
    """``table`` with ``new`` entries added (replacing those of the same key)."""
    old = dict(table.configs) if table is not None else {}
    return ConfigTable(gpu, triton_version, {**old, **new}, table.path if table else None)
