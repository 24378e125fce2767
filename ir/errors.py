"""Errors raised by the IR. Every message names what was wrong: the node, the op, the shapes."""

from __future__ import annotations


class IRError(ValueError):
    """Base class: a graph, node or attribute that is not well formed."""


class UnknownOpError(IRError, KeyError):
    """An op name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ShapeError(IRError):
    """An input shape that does not fit the op (names node, op and the shapes involved)."""


class GraphFormatError(IRError):
    """A serialised graph that cannot be read (missing field, wrong version, bad value)."""
