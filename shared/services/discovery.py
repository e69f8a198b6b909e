"""Discover the estate: subscriptions in scope, then their resources, batch by batch.

Resource Graph is the primary source (a few paged queries for the whole tenant); when it cannot
be used at all, or a batch fails, the per-subscription ARM listing takes over for exactly those
subscriptions. Every subscription ends up either complete or failed with a reason: mark-and-sweep
only ever sweeps complete ones, so a run that failed part-way removes nothing it did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.domain.discovery import DiscoveryResult, DiscoveryScope
from shared.errors import SourceUnavailable
from shared.ports import InventoryStore, ResourceSource
from shared.services.inventory_sync import PersistResult, persist_run

BATCH_SIZE = 300  # subscriptions per Resource Graph request (the documented recommendation)


def discover(scope: DiscoveryScope, primary: ResourceSource,
             fallback: ResourceSource | None = None, *,
             batch_size: int = BATCH_SIZE) -> DiscoveryResult:
    notes: list[str] = []
    source = primary
    try:
        sub_rows = primary.subscriptions(scope)
    except SourceUnavailable as error:
        if fallback is None:
            raise
        notes.append(f"{primary.name} unavailable ({error}); using {fallback.name} for every "
                     "subscription")
        source, fallback = fallback, None
        sub_rows = source.subscriptions(scope)
    subscriptions = _subscription_names(sub_rows)
    if not subscriptions:
        notes.append(f"no subscription is visible to this identity in scope ({scope.describe()}): "
                     "give it Reader on the subscriptions or on a management group above them")
    failed: dict[str, str] = {}
    for wanted in scope.subscriptions:
        if wanted.lower() not in subscriptions:
            failed[wanted.lower()] = ("not visible to this identity (no Reader role on it, or it "
                                      "does not exist)")
    rows: list[dict[str, Any]] = list(sub_rows)
    supplied: dict[str, list[str]] = {}
    ids = sorted(subscriptions)
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        read = source.read(batch)
        rows.extend(read.rows)
        _record(supplied, source.name, [s for s in batch if s not in read.failed])
        if read.failed and fallback is not None:
            retry = sorted(read.failed)
            notes.extend(f"{sub}: {reason}; retried with {fallback.name}"
                         for sub, reason in sorted(read.failed.items()))
            again = fallback.read(retry)
            rows.extend(again.rows)
            _record(supplied, fallback.name, [s for s in retry if s not in again.failed])
            failed.update(again.failed)
        else:
            failed.update(read.failed)
    complete = [s for s in ids if s not in failed]
    requests = {primary.name: primary.requests}
    if source is not primary:
        requests[source.name] = source.requests
    if fallback is not None and fallback.requests:
        requests[fallback.name] = fallback.requests
    return DiscoveryResult(rows=rows, subscriptions=subscriptions, complete=complete,
                           failed=failed, sources=supplied, requests=requests, notes=notes)


def discover_and_persist(scope: DiscoveryScope, primary: ResourceSource,
                         fallback: ResourceSource | None, store: InventoryStore, run_id: str, *,
                         started_at: datetime | None = None,
                         ) -> tuple[DiscoveryResult, PersistResult]:
    """Discover, save, and sweep only the subscriptions the run read completely."""
    result = discover(scope, primary, fallback)
    persisted = persist_run(result.rows, store, run_id, result.complete, started_at=started_at)
    return result, persisted


def _subscription_names(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for row in rows:
        sub = str(row.get("subscriptionId") or "").lower()
        if not sub:
            resource_id = str(row.get("id") or "")
            parts = resource_id.strip("/").split("/")
            sub = parts[1].lower() if len(parts) >= 2 and parts[0].lower() == "subscriptions" \
                else ""
        if sub:
            names[sub] = str(row.get("displayName") or row.get("name") or "")
    return names


def _record(supplied: dict[str, list[str]], name: str, subs: Sequence[str]) -> None:
    if subs:
        supplied.setdefault(name, []).extend(subs)
