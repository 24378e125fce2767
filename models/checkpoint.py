"""Load real weights: ``load_checkpoint(graph, path) -> params``, from a torch ``.pth``/``.pt`` state_dict in
torchvision's key layout or a NumPy ``.npz`` keyed the same way.

Every problem is reported at once, in one `CheckpointError`: keys the graph needs that the file lacks, keys the
file has that the graph does not use, and shape mismatches (key, file's shape, graph's shape). torchvision's
``num_batches_tracked`` BN counters are expected and ignored. Two layouts seen in the wild are accepted: a
state_dict wrapped as ``{"state_dict": …}`` or ``{"model": …}``, and keys prefixed ``module.`` (DataParallel).
torchvision's DenseNet checkpoints use the pre-0.3 key names (``norm.1`` for ``norm1``); they are renamed as
torchvision's own loader does.

A file that does not read is one `IRError` naming the file, and the keys whose values cannot be weights are
listed in it together: a truncated or corrupt archive, an ``.npz`` member that is an object array (refused, never
unpickled) or not an array at all, a sparse, quantized, nested, complex or meta-device tensor (a meta tensor has
no values: it comes from a model built without weights). Integers and bools are cast like floats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..ir.errors import IRError
from ..ir.graph import Graph

IGNORED_SUFFIX = ".num_batches_tracked"
# torchvision's DenseNet checkpoints: "denselayer1.norm.1.weight" means "denselayer1.norm1.weight"
_DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean"
                              r"|running_var))$")


SHOWN = 20  # keys per list in the message; the exception's attributes hold all of them


def _some(keys: list[str]) -> str:
    more = f" … {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


class CheckpointError(IRError):
    """A checkpoint that does not fit the graph; lists every missing, unexpected and misshapen key."""

    def __init__(self, path: str, graph: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"checkpoint {path} does not fit {graph}:"]
        if mismatched:
            lines.append(f"  {len(mismatched)} shape mismatch(es):")
            lines += [f"    {k}: checkpoint {tuple(a)}, graph {tuple(b)}" for k, a, b in mismatched[:SHOWN]]
            if len(mismatched) > SHOWN:
                lines.append(f"    … {len(mismatched) - SHOWN} more (all in .mismatched)")
        if missing:
            lines.append(f"  {len(missing)} missing key(s): {_some(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s): {_some(unexpected)}")
            lines.append("  (pass strict=False to ignore unexpected keys, e.g. inception_v3's AuxLogits.*)")
        super().__init__("\n".join(lines))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays in a ``.pth``/``.pt`` (torch) or ``.npz`` file, keyed as stored (after unwrapping)."""
    path = Path(path)
    if not path.exists():
        raise IRError(f"checkpoint {path} does not exist")
    if path.suffix == ".npz":
        return _read_npz(path)
    if path.suffix not in (".pth", ".pt"):
        raise IRError(f"checkpoint {path}: unknown format {path.suffix!r}; expected .pth, .pt (torch) or .npz")
    try:
        import torch
    except ImportError:
        raise IRError(f"checkpoint {path}: reading a torch checkpoint needs torch; save it as .npz "
                      f"(numpy.savez(path, **state_dict)) or install convbench[torch]") from None
    try:  # weights_only: a checkpoint is data; never run pickled code from it
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise IRError(f"checkpoint {path} could not be read by torch.load: {type(e).__name__}: {e}") from None
    obj = _unwrap(obj, path)
    out, bad = {}, []
    for key, value in obj.items():
        if not isinstance(key, str):
            bad.append(f"{key!r}: the key is not a string")
        elif isinstance(value, torch.Tensor):  # other values (an epoch counter) are not weights
            try:
                out[key] = _tensor_array(value)
            except (ValueError, TypeError, RuntimeError) as e:
                bad.append(f"{key}: {e}")
    _refuse(path, bad)
    return out


def _tensor_array(t: Any) -> np.ndarray:
    import torch

    if t.layout != torch.strided:
        raise ValueError(f"a {t.layout} tensor; save it dense (tensor.to_dense())")
    if t.is_meta:
        raise ValueError("a tensor on the meta device holds no values (a model built without weights)")
    if t.is_quantized or t.is_nested:
        raise ValueError("a quantized or nested tensor; save plain float tensors")
    if t.is_complex():
        raise ValueError(f"complex ({t.dtype}); the graph's weights are real")
    t = t.detach().cpu()
    return t.float().numpy() if t.is_floating_point() else t.numpy()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # a truncated zip, a pickle, a bare .npy: whatever the bytes are, one named error
        raise IRError(f"checkpoint {path} is not a readable .npz archive: {type(e).__name__}: {e}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise IRError(f"checkpoint {path} holds one array, not named arrays (save with numpy.savez(path, **state))")
    out, bad = {}, []
    with data:
        for key in data.files:
            try:
                value = data[key]
            except Exception as e:  # an object array (pickle refused) or a corrupt member
                bad.append(f"{key}: {type(e).__name__}: {' '.join(str(e).split())}")
                continue
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                what = f"element type {value.dtype}" if isinstance(value, np.ndarray) else "not an array"
                bad.append(f"{key}: {what}; weights are real numbers")
            else:
                out[key] = value
    _refuse(path, bad)
    return out


def _refuse(path: Path, bad: list[str]) -> None:
    if bad:
        raise IRError(f"checkpoint {path}: {len(bad)} key(s) cannot be read as weights: {'; '.join(bad[:SHOWN])}"
                      + (f" … {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""))


def _unwrap(obj: Any, path: Path) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        return obj
    raise IRError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")


def canonical_keys(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keys as the graph names them: ``module.`` prefixes dropped, DenseNet's legacy names renamed."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        m = _DENSENET_LEGACY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def load_checkpoint(graph: Graph, path: str | Path, *, strict: bool = True) -> dict[str, np.ndarray]:
    """The graph's parameters read from ``path``, cast to the graph's dtypes and keyed like ``graph.params``.

    Raises `CheckpointError` listing all missing keys, shape mismatches and (unless ``strict=False``)
    unexpected keys.
    """
    state = canonical_keys(read_state_dict(path))
    state = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIX)}
    missing = [k for k in graph.params if k not in state]
    unexpected = [k for k in state if k not in graph.params] if strict else []
    mismatched = [(k, tuple(np.shape(state[k])), t.shape) for k, t in graph.params.items()
                  if k in state and tuple(np.shape(state[k])) != t.shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(str(path), graph.name, missing, unexpected, mismatched)
    return {k: np.ascontiguousarray(state[k], dtype=t.dtype) for k, t in graph.params.items()}
