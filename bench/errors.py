"""The harness's one error type: bad input (arguments, files) that the CLI reports as one line, exit 2."""

from __future__ import annotations


class BenchError(ValueError):
    """A sweep, report or comparison that cannot start: the message names the argument, file or line."""
