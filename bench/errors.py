"""The harness's error types: bad input (arguments, files) that the CLI reports as one line, exit 2; and a case
that cannot run here."""

from __future__ import annotations


class BenchError(ValueError):
    """A sweep, report or comparison that cannot start: the message names the argument, file or line."""


class UnsupportedCase(Exception):
    """A backend that cannot run a case here (not available, a dtype or an op it lacks): reported as
    unsupported/skipped with this reason, never as bad input or as an error."""
