"""convbench's compile cache in front of OpenVINO's (option ``cache_dir``): a second compile skips the pass pipeline
and the lowering, and OpenVINO loads its own blob without hashing a model.

Why two layers. OpenVINO's ``CACHE_DIR`` alone keys its blob on a hash of the ``ov.Model``, so every compile still
ran convbench's pipeline and lowering (~40% of a warm ResNet-50 compile) just to be hashed. Here the key is taken
on the compile's inputs, before the pipeline: the caller's graph (its JSON), its parameters (their bytes, xxh3-128:
~5 ms for ResNet-50's 102 MB, a tenth of SHA-1's time) and the options that shape the model. An entry holds the
lowered model (``ov.save_model``: ``convbench-KEY.GEN.xml`` + ``.bin``, f32 weights kept, not compressed to f16)
and ``convbench-KEY.json`` (the graph after the pipeline where it is not the caller's, the pipeline's record,
facts of the lowering, the files' sizes and hashes). Both a miss and a hit then compile *from the xml's path*
with ``CACHE_DIR`` set: OpenVINO keys a model given by path on its absolute path + the plugin's caching properties
of the config, never hashing the model, and its blob header records the xml's mtime and size (a touched xml is
recompiled). On a blob hit OpenVINO reads neither xml nor bin. A rewritten entry is a new generation of file
names (`Entry`).

What keys what. The entry's key covers what the ``ov.Model`` is a function of: the graph, the parameters, the
options other than `CONFIG_OPTIONS` (dtype, passes, fallback and any option added later), the OpenVINO build, the
lowering class and its rules, and the source files of the code that produces the model (``ir/``, this package,
the compile template: path, size and mtime of each). `CONFIG_OPTIONS` reach OpenVINO's config on a hit as on a
miss, and OpenVINO's own key judges them: the CPU plugin's blob holds the model before precision, threads, streams
and hint are applied, and 2026.4 loads it for any of them and applies them (tests/test_openvino_cache.py: a bf16
hit computes what a bf16 compile does), while another device or OpenVINO build is another blob.

An entry is written atomically (temporary names, then ``os.replace``; the json last: it is what makes an entry).
One that does not read back (unparsable json, files of another size, an xml that changed; a bin that changed, checked
when OpenVINO had to read it: its blob was not loaded) is a warning and a cold compile that rewrites it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ...ir.graph import Graph
from ...ir.serialize import from_dict, to_dict
from ..base import BackendError, Options

FORMAT = 1  # of an entry; bump it when what an entry holds changes
PREFIX = "convbench-"
# options that reach OpenVINO's compile config (its own cache key judges them), not the lowered model
CONFIG_OPTIONS = frozenset({"precision", "threads", "streams", "hint", "cache_dir", "device"})
ROOT = Path(__file__).resolve().parents[2]  # the source tree: convbench.ir is ROOT/ir
CODE = ("ir", "backends/openvino", "backends/template.py")  # what the lowered model is a function of


class CacheEntryError(Exception):
    """An entry that exists but does not read back; the message says what is wrong with it."""


def hasher() -> Any:
    """xxh3-128 (convbench[openvino] pins xxhash), else SHA-256; the name goes into the key, so they never mix."""
    try:
        import xxhash

        return xxhash.xxh3_128()
    except ImportError:  # an install without the extra: slower, as correct
        return hashlib.sha256()


@functools.cache
def code_fingerprint() -> str:
    """The source files that produce the lowered model, by path, size and mtime (a stat each, ~1 ms for all,
    where reading them took ~10): an edited pass or rule is a new key."""
    h = hasher()
    for part in CODE:
        path = ROOT / part
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            st = f.stat()
            h.update(f"{f.relative_to(ROOT)}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def key(backend: Any, graph: Graph, params: dict[str, np.ndarray], opts: Options, openvino: str) -> str:
    """The entry key of one compile's inputs (see the module doc for what it covers)."""
    lowering = backend.lowering
    header = {
        "format": FORMAT, "hash": hasher().name, "openvino": openvino, "code": code_fingerprint(),
        "backend": f"{type(backend).__module__}.{type(backend).__qualname__}",
        "lowering": f"{lowering.__module__}.{lowering.__qualname__}",
        "rules": sorted((op, _name(r)) for op, r in lowering.rules.items()),  # a swapped rule is another model
        "options": {f.name: _jsonable(getattr(opts, f.name)) for f in fields(opts) if f.name not in CONFIG_OPTIONS},
    }
    h = hasher()
    h.update(json.dumps(header, sort_keys=True, default=repr).encode())
    h.update(json.dumps(to_dict(graph)).encode())  # a NaN attribute too (the graph format refuses it)
    for name in graph.params:  # the template cast them: contiguous, of the parameter dtype
        a = params[name]
        h.update(f"\0{name}:{a.dtype.str}:{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _name(rule: Any) -> str:
    """A rule by where it is defined (a function), else its repr (a partial, a callable object)."""
    qualname = getattr(rule, "__qualname__", None)
    return f"{rule.__module__}.{qualname}" if qualname else repr(rule)


@dataclass(frozen=True)
class Entry:
    """One entry in ``cache_dir``: ``convbench-KEY.json``, which names the generation of its model files,
    ``convbench-KEY.GEN.xml`` + ``.bin``. A rewrite is a new generation, new paths: OpenVINO keys its blob on the
    path, so no blob it made from the files of a damaged entry can answer for the rewritten one."""

    cache_dir: str
    key: str
    key_s: float = 0.0  # the time the key took: into details.cache_s

    @property
    def json(self) -> Path:
        return Path(self.cache_dir) / f"{PREFIX}{self.key}.json"

    def model(self, meta: dict[str, Any], suffix: str = ".xml") -> Path:
        """The entry's model file (``.xml`` or ``.bin``) of the generation ``meta`` names."""
        return Path(self.cache_dir) / f"{PREFIX}{self.key}.{meta['generation']}{suffix}"

    def read(self) -> dict[str, Any] | None:
        """The entry's record with its graph (``graph``: the graph after the pipeline; None where that is the
        caller's, as with no passes), None where there is no entry; `CacheEntryError` where it does not read back
        as it was written."""
        try:
            text = self.json.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheEntryError(f"{self.json} cannot be read: {e.strerror or e}") from None
        try:
            meta = json.loads(text)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != self.key:
                raise ValueError("not an entry of this format and key")
            for suffix in (".xml", ".bin"):
                f = self.model(meta, suffix)
                size = f.stat().st_size if f.exists() else None
                if size != meta["sizes"][suffix]:
                    raise ValueError(f"{f.name} has {size} bytes, the entry wrote {meta['sizes'][suffix]}")
            if _digest(self.model(meta).read_bytes()) != meta["xml_hash"]:
                raise ValueError(f"{self.model(meta).name} is not the xml the entry wrote")
            meta["graph"] = None if meta["graph"] is None else from_dict(meta["graph"])  # ~8 ms for ResNet-50
        except Exception as e:  # unparsable, of another layout, files that changed, a graph that no longer parses
            raise CacheEntryError(f"{self.json} does not read back: {e}") from None
        return meta

    def check_weights(self, meta: dict[str, Any]) -> None:
        """`CacheEntryError` where the bin is not the one the entry wrote. Hashing it costs ~5 ms per 100 MB, so
        it is checked only where OpenVINO read it (no blob of its own loaded): on a blob hit it reads no bin."""
        if _file_digest(self.model(meta, ".bin")) != meta["bin_hash"]:
            raise CacheEntryError(f"{self.model(meta, '.bin')} is not the weights file the entry wrote")

    def write(self, model: Any, graph: Graph | None, record: dict[str, Any]) -> Path:
        """Store the lowered ``model`` and its record as a new generation, atomically: temporary files renamed
        into place, the json (what makes an entry) last, so a reader sees a whole entry or none; then the files of
        the generation it replaced go. ``graph``: the graph after the pipeline, None where it is the caller's.
        Returns the xml's path."""
        import openvino as ov

        generation = uuid.uuid4().hex[:12]
        meta = {"format": FORMAT, "key": self.key, "generation": generation}
        tmp = Path(self.cache_dir) / f".{PREFIX}{self.key}.{generation}.{os.getpid()}.tmp"
        xml, bin_, js = (tmp.with_suffix(s) for s in (".tmp.xml", ".tmp.bin", ".tmp.json"))
        old = self._generation()
        try:
            ov.save_model(model, str(xml), compress_to_fp16=False)  # f32 weights stay f32
            meta.update({**record, "graph": None if graph is None else to_dict(graph),
                         "sizes": {".xml": xml.stat().st_size, ".bin": bin_.stat().st_size},
                         "xml_hash": _digest(xml.read_bytes()), "bin_hash": _file_digest(bin_)})
            js.write_text(json.dumps(meta))
            os.replace(bin_, self.model(meta, ".bin"))
            os.replace(xml, self.model(meta))
            os.replace(js, self.json)
        except OSError as e:
            for suffix in (".xml", ".bin"):
                self.model(meta, suffix).unlink(missing_ok=True)
            raise BackendError(f"openvino backend: option cache_dir={self.cache_dir!r}: cannot write the cache "
                               f"entry {self.json.name}: {e.strerror or e}") from None
        finally:
            for f in (xml, bin_, js):
                f.unlink(missing_ok=True)
        if old is None:  # there was no entry: nothing to remove (another process may be writing its first one)
            stale: list[Path] = []
        elif old:
            stale = [self.model({"generation": old}, s) for s in (".xml", ".bin")]
        else:  # a damaged json: its generation is found by name
            stale = [f for f in Path(self.cache_dir).glob(f"{PREFIX}{self.key}.*.*") if generation not in f.name]
        for f in stale:  # a process still compiling them keeps what it opened; one about to is told, and recompiles
            f.unlink(missing_ok=True)
        return self.model(meta)

    def _generation(self) -> str | None:
        """The generation the json names now: None where there is no json, "" where it is damaged."""
        try:
            generation = json.loads(self.json.read_bytes()).get("generation")
        except FileNotFoundError:
            return None
        except Exception:  # a damaged json
            return ""
        return generation if isinstance(generation, str) else ""


def _digest(data: bytes) -> str:
    h = hasher()
    h.update(data)
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    """A file's hash, read through a memory map (no copy of a 100 MB weights file)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:  # a model without weights; mmap refuses an empty file
            return _digest(b"")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _digest(m)
