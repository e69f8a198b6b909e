"""Domain exceptions shared across layers.

Services catch these without importing adapters (adapters raise them after translating SDK errors),
and the CLI prints any :class:`ZtsError` as a one-line message instead of a traceback.
"""

from __future__ import annotations

__all__ = ["ConcurrencyConflict", "ResourceNotStorable", "ZtsError"]


class ZtsError(Exception):
    """Base class of every error zts raises on purpose (as opposed to bugs)."""


class ConcurrencyConflict(ZtsError):
    """A conditional write lost a race: the stored item changed (or vanished) since it was read.

    The caller re-reads, re-applies its change and tries again, so no concurrent change is lost.
    """

    def __init__(self, item_id: str, reason: str) -> None:
        super().__init__(f"{item_id}: {reason}")
        self.item_id = item_id
        self.reason = reason


class ResourceNotStorable(ZtsError):
    """A resource cannot be written to the state store (no id, not JSON, larger than 1 MiB...)."""

    def __init__(self, item_id: str, reason: str) -> None:
        super().__init__(f"{item_id}: {reason}")
        self.item_id = item_id
        self.reason = reason
