"""Conformance suite for backends (see the PyTorch backend issue)."""
