"""Ports: the interfaces services depend on. Adapters implement them; tests use real adapters
(Azurite, HTTPS fakes) rather than stand-ins of our own code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.domain.audit import AuditEntry
from shared.domain.discovery import DiscoveryScope, SourceRead
from shared.domain.store_reports import SaveReport, SweepReport


class InventoryStore(Protocol):
    """Raw ARM resources persisted per run, with mark-and-sweep."""

    def save(self, resources: Iterable[Mapping[str, Any]], run_id: str) -> SaveReport: ...

    def sweep(
        self, run_id: str, subscription_ids: Iterable[str], *, seen_before: datetime | None = None
    ) -> SweepReport: ...

    def load(self, subscription_ids: Iterable[str] | None = None) -> list[dict[str, Any]]: ...

    def delete(self, arm_id: str) -> None: ...


class ResourceSource(Protocol):
    """Where discovery reads raw ARM resources from (Resource Graph, or ARM listings)."""

    name: str
    requests: int  # API requests made so far

    def subscriptions(self, scope: DiscoveryScope) -> list[dict[str, Any]]:
        """Subscription rows in scope; raises SourceUnavailable when this source cannot be used."""
        ...

    def read(self, subscription_ids: Sequence[str]) -> SourceRead:
        """Every modeled resource (and resource group) of these subscriptions."""
        ...


class NsgGateway(Protocol):
    """Read and conditionally write network security groups (raw ARM JSON)."""

    def read(self, nsg_id: str) -> dict[str, Any]:
        """The NSG with its ``etag``; raises NsgNotFound."""
        ...

    def write(self, nsg_id: str, body: Mapping[str, Any], etag: str) -> dict[str, Any]:
        """PUT with ``If-Match: etag`` and wait for the operation; returns the NSG as stored.
        Raises ConcurrencyConflict (412), WriteOutcomeUnknown (LRO timeout), NsgWriteFailed."""
        ...


class AuditLog(Protocol):
    """Plans, every write zts makes, and what zts last wrote to each NSG (for drift)."""

    def save_plan(self, plan_id: str, document: Mapping[str, Any]) -> None: ...

    def get_plan(self, plan_id: str) -> dict[str, Any] | None: ...

    def record(self, entry: AuditEntry) -> None: ...

    def entries(self, plan_id: str) -> list[dict[str, Any]]: ...

    def last_written(self, nsg_id: str) -> list[dict[str, Any]] | None:
        """The owned rules zts last wrote to the NSG (ARM JSON), or None if it never did."""
        ...

    def set_written(self, nsg_id: str, rules: Sequence[Mapping[str, Any]], plan_id: str) -> None:
        ...


class ResourceReader(Protocol):
    """Re-read one resource by id (events carry no body)."""

    def get(self, resource_id: str, resource_type: str) -> dict[str, Any] | None:
        """The resource as ARM returns it, or None when it does not exist."""
        ...


class NsgQueue(Protocol):
    """Per-NSG reconcile requests (the producer side)."""

    def request(self, nsg_id: str, reason: str, event_id: str) -> bool:
        """Queue a reconcile of the NSG; False when the request was absorbed by another."""
        ...


class ReconcileLedger(Protocol):
    """The consumer side's record that lets a burst of requests cost one reconcile."""

    def covered(self, nsg_id: str, inserted_at: datetime | None) -> bool: ...

    def begin(self, nsg_id: str) -> datetime: ...

    def done(self, nsg_id: str, started: datetime) -> None: ...
