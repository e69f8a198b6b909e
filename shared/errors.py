"""Domain exceptions shared across layers.

Services catch these without importing adapters (adapters raise them after translating SDK errors),
and the CLI prints any :class:`ZtsError` as a one-line message instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyConflict",
    "NsgNotFound",
    "NsgWriteFailed",
    "ResourceNotStorable",
    "SourceReadError",
    "SourceUnavailable",
    "WriteOutcomeUnknown",
    "ZtsError",
]


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


class SourceUnavailable(ZtsError):
    """A discovery source cannot be used at all (denied, not registered, unreachable); the caller
    falls back to another source."""


class SourceReadError(ZtsError):
    """A read that started failed part-way (retries exhausted, malformed answer): what it covered
    is incomplete and must not be swept."""


class NsgNotFound(ZtsError):
    """The NSG does not exist (any more)."""


class NsgWriteFailed(ZtsError):
    """ARM refused or failed an NSG write; ``status`` is the HTTP status when there was one."""

    def __init__(self, nsg_id: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{nsg_id}: {reason}")
        self.nsg_id = nsg_id
        self.reason = reason
        self.status = status


class WriteOutcomeUnknown(ZtsError):
    """A write was accepted but its long-running operation did not finish in time: the NSG must be
    read again to learn what it holds."""
