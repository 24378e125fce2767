"""The one parser of ``-b`` (backend specs) and of ``--image-size``, for run, check, passes and profile.

``-b`` is a comma-separated list of ``NAME[:KEY=VALUE…]``, or ``all``: every registered backend (built-ins,
entry points, ``--backend-module``). A backend that cannot run here is not dropped by ``all``: each command
reports it as unsupported (run) or skipped (check), with its reason. Options are checked before any work: for a
backend with an `Options` dataclass they are coerced against it (``torch:threads=abc`` fails naming the option
and its type; a bool is true, false, 1 or 0); for a third-party backend without one, names are checked against
what its ``compile`` accepts. An option that is an axis of the command's cases (``dtype``, ``threads``: they name
the case, its record and what compare matches) is refused inside ``-b`` with the flag that sets it.

``--image-size`` is a comma-separated list of integers, ``full`` (the architecture's own size) and ``small``
(the reduced one tests use), resolved per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import BenchError


@dataclass(frozen=True)
class BackendSpec:
    """One ``-b`` item: ``label`` as given (it names the case), the backend's name and its typed options."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)


def split_backend_spec(spec: str) -> tuple[str, dict[str, str]]:
    """"torch:compile=true:channels_last=1" → ("torch", {"compile": "true", "channels_last": "1"})."""
    name, *pairs = spec.split(":")
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"backend option {pair!r} in {spec!r} is not KEY=VALUE")
        options[key] = raw
    return name, options


def parse_backend_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """The spec's name and its values read without a backend at hand (true/false, integers, floats, strings):
    what a results file's case says when it is read back. `parse_backend` types them against the backend."""
    name, raw = split_backend_spec(spec)
    return name, {k: _parse_value(v) for k, v in raw.items()}


def _parse_value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


# Options that are axes of the case (its id, its record, what compare matches on): given inside ``-b`` they
# would be measured but not recorded (``numpy:dtype=float64`` ran float64 and was filed as float32).
# Each command passes the axes it has, with what to do instead.
CASE_AXES: Mapping[str, str] = {"dtype": "give it with --dtype", "threads": "give it with --threads"}


def parse_backend(spec: str, axes: Mapping[str, str] = CASE_AXES) -> BackendSpec:
    """One spec, its name checked against the registry and its options against the backend; an option that is
    an axis of the command's cases (``axes``) is refused."""
    from ..backends import registry

    name, raw = split_backend_spec(spec.strip())
    known = registry.names()
    if name not in known:
        raise BenchError(f"unknown backend {name!r}; known backends: {', '.join(known)} (or 'all')")
    options = typed_options(name, raw)  # a value of the wrong type is named first, with its type
    for key in raw:
        if key in axes:
            raise BenchError(f"backend option {key!r} in {spec.strip()!r} is part of the case, not of the backend: "
                             f"{axes[key]}")
    return BackendSpec(spec.strip(), name, options)


def parse_backends(value: str, axes: Mapping[str, str] = CASE_AXES) -> list[BackendSpec]:
    """``-b``: comma-separated specs, or ``all`` (every registered backend, without options)."""
    from ..backends import registry

    if value.strip() == "all":
        return [BackendSpec(n, n) for n in registry.names()]
    specs = [v.strip() for v in value.split(",") if v.strip()]
    if not specs:
        raise BenchError(f"no backend given in {value!r}; known backends: {', '.join(registry.names())} (or 'all')")
    return [parse_backend(s, axes) for s in specs]


def typed_options(name: str, raw: dict[str, str]) -> dict[str, Any]:
    """The spec's options typed against the backend (the values ``compile`` will get); `BenchError` names a bad
    one. A backend that does not even load is not judged here: its cases report the load failure."""
    from ..backends import registry
    from ..backends.base import BackendError, Options
    from ..backends.template import accepted_options, parse_options

    if not raw:
        return {}
    try:
        backend = registry.get(name)
    except Exception:
        return {k: _parse_value(v) for k, v in raw.items()}
    options_type = getattr(backend, "Options", None)
    if isinstance(options_type, type) and issubclass(options_type, Options):
        # As read without the backend first ("1" is then 1, which a bool field takes as True, as it always has);
        # then the strings as given, which the template parses per field (a str field given "123").
        try:
            parsed = parse_options(name, options_type, {k: _parse_value(v) for k, v in raw.items()})
        except BackendError:
            try:
                parsed = parse_options(name, options_type, raw)
            except BackendError as e:
                raise BenchError(str(e)) from None
        return {k: getattr(parsed, k) for k in raw}
    accepted = accepted_options(backend)
    unknown = sorted(set(raw) - accepted) if accepted is not None else []
    if unknown:
        raise BenchError(f"{name} backend: unknown option(s) {unknown}; its compile() takes: "
                         f"{', '.join(sorted(accepted or ())) or 'none'}")
    return {k: _parse_value(v) for k, v in raw.items()}


def parse_image_sizes(value: str) -> list[str]:
    """``--image-size``: the comma-separated items, checked for form; `image_sizes_for` resolves them."""
    items = [s.strip() for s in value.split(",") if s.strip()]
    for s in items:
        if s not in ("full", "small") and not s.lstrip("-").isdigit():
            raise BenchError(f"--image-size must be 'full', 'small' or an integer (comma-separated), got {s!r}")
    if not items:
        raise BenchError(f"--image-size must be 'full', 'small' or an integer (comma-separated), got {value!r}")
    return items


def image_sizes_for(model: str, sizes: Sequence[str]) -> list[int]:
    """Resolve "full", "small" or integers for one model; duplicates (lenet5's small is its full) once."""
    from .. import models

    spec = models.spec(model)
    out: list[int] = []
    for s in parse_image_sizes(",".join(map(str, sizes))):
        size = {"full": spec.image_size, "small": spec.small_image_size}.get(s)
        if size is None:
            size = int(s)
            if size < spec.min_image_size:
                raise BenchError(f"--image-size {size} is below {model}'s minimum {spec.min_image_size}")
        if size not in out:
            out.append(size)
    return out
