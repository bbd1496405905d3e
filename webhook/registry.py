"""Placeholder until the egress registry lands; replaced by the registry model."""

from __future__ import annotations


class Registry:
    """The approved egress registry."""
