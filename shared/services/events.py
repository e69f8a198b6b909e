"""Event-driven updates: one resource event in, per-NSG reconcile requests out.

``EventProcessor.handle`` (Event Grid trigger):

1. classify the envelope (ignored and malformed events are counted and dropped, cheaply);
2. re-read the resource through ARM: the answer, not the event, says whether it exists, so
   duplicates are harmless and a late write after a delete is handled as the delete it now is;
3. store it (or remove it) in the inventory table;
4. ask the impact index which NSGs the change can affect, and queue one reconcile request per NSG
   (coalesced by the consumer: a burst of requests for one NSG costs one reconcile).

A write to an NSG by anyone but zts itself queues that NSG too: the reconcile compares its owned
rules with what zts last wrote and reverts hand edits (the drift path). zts's own writes come back
as events as well; they are recognised by caller and not re-queued.

``reconcile_request`` (queue trigger) skips a request an already successful, later-started
reconcile covers; otherwise it plans and applies that one NSG with the same guardrails and ETag
handling as a full reconcile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.events.parse import NSG, Ignored, Malformed, ResourceEvent, parse_event
from shared.policy.impact import ImpactIndex
from shared.ports import InventoryStore, NsgQueue, ReconcileLedger, ResourceReader
from shared.services.enforcement import Reconciler, ReconcileReport

REQUEST_CONCURRENCY = 8  # queue requests in flight per event


@dataclass
class EventOutcome:
    event_id: str
    status: str  # applied | ignored | malformed
    reason: str = ""
    target: str = ""
    exists: bool | None = None  # what the re-read found
    groups: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # NSG ids with a new request
    coalesced: list[str] = field(default_factory=list)  # NSG ids whose request was absorbed
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event_id, "status": self.status, "reason": self.reason,
                "target": self.target, "exists": self.exists, "groups": self.groups,
                "queued": self.queued, "coalesced": self.coalesced,
                "elapsedMs": round(self.elapsed_ms, 2)}


@dataclass
class EventCounters:
    applied: int = 0
    ignored: int = 0
    malformed: int = 0

    def count(self, outcome: EventOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)


@dataclass
class EventProcessor:
    index: ImpactIndex
    reader: ResourceReader
    store: InventoryStore
    queue: NsgQueue
    own_callers: Collection[str] = ()  # zts's own identity (client/object ids, lower-case)
    counters: EventCounters = field(default_factory=EventCounters)

    def handle(self, event: Any) -> EventOutcome:
        started = time.perf_counter()
        parsed = parse_event(event)
        if isinstance(parsed, Ignored | Malformed):
            outcome = EventOutcome(parsed.id, "ignored" if isinstance(parsed, Ignored)
                                   else "malformed", parsed.reason)
        else:
            outcome = self._apply(parsed)
        outcome.elapsed_ms = (time.perf_counter() - started) * 1000
        self.counters.count(outcome)
        return outcome

    def _apply(self, event: ResourceEvent) -> EventOutcome:
        row = self.reader.get(event.target, event.target_type)
        outcome = EventOutcome(event.id, "applied", target=event.target, exists=row is not None)
        if row is None:
            self.store.delete(event.target)
        else:
            self.store.save([row], f"event-{event.id}")
        impact = self.index.apply(event.target_type, event.target, row)
        nsgs = set(impact.nsgs)
        if event.target_type == NSG:
            nsg_key = event.target.lower()
            self.index.nsg_ids.setdefault(nsg_key, event.target)
            if event.caller and event.caller in self.own_callers:
                nsgs.discard(nsg_key)  # the echo of zts's own write
                outcome.reason = "zts's own write"
        outcome.groups = sorted(impact.groups)
        reason = f"{event.kind} {event.target_type} {event.target.rsplit('/', 1)[-1]}"
        ids = [self.index.nsg_ids.get(k, k) for k in sorted(nsgs)]
        # independent requests: send them side by side (each is a marker insert + a message)
        with ThreadPoolExecutor(max_workers=min(REQUEST_CONCURRENCY, len(ids) or 1)) as pool:
            sent = list(pool.map(lambda nsg_id: self.queue.request(nsg_id, reason, event.id),
                                 ids))
        for nsg_id, new in zip(ids, sent, strict=True):
            (outcome.queued if new else outcome.coalesced).append(nsg_id)
        return outcome


def reconcile_request(nsg_id: str, inserted_at: datetime | None, reconciler: Reconciler,
                      inventory: Callable[[], Inventory], ledger: ReconcileLedger, *,
                      apply: bool = True) -> ReconcileReport | None:
    """Handle one queued request; None when a reconcile that started after it was queued has
    already succeeded (the burst it belongs to is covered). The start is recorded before the
    inventory is read, so any change stored before the start is in what this run plans."""
    if ledger.covered(nsg_id, inserted_at):
        return None
    started = ledger.begin(nsg_id)
    report = reconciler.run(inventory(), apply=apply, only=[nsg_id])
    if report.ok:
        ledger.done(nsg_id, started)
    return report


def poison_finding(message: str, dequeue_count: int | None,
                   now: datetime | None = None) -> Finding:
    """A reconcile request that failed every retry: someone must look at that NSG."""
    nsg = _nsg_of(message)
    return Finding(
        detection="reconcile_failed", severity="high",
        title=f"zts could not reconcile {nsg.rsplit('/', 1)[-1] or 'an NSG'} after "
              f"{dequeue_count or 'several'} attempts",
        resource_id=nsg or "(unknown NSG)", observed_at=now or datetime.now(UTC),
        evidence={"message": message[:2000], "attempts": dequeue_count},
        identity=("poison",),
    )


def _nsg_of(message: str) -> str:
    try:
        body = json.loads(message)
    except ValueError:
        return ""
    value = body.get("nsg") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) else ""
