"""Persist a discovery run's raw resources, then sweep what the run no longer saw.

Mark-and-sweep is only safe where the run is known to be complete: a subscription whose listing
failed, or whose rows were not all written, keeps its old rows (stale beats missing, because a
missing NIC would silently drop out of its groups).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain import arm_id
from shared.domain.normalize import type_of
from shared.domain.parsers import PARSERS
from shared.domain.store_reports import SaveReport, SweepReport
from shared.ports import InventoryStore


@dataclass(frozen=True, slots=True)
class PersistResult:
    run_id: str
    considered: int  # rows offered
    not_modeled: int  # rows of types zts does not model, or without a usable id: not stored
    save: SaveReport
    sweep: SweepReport
    swept: tuple[str, ...]  # subscriptions whose stale rows were swept
    not_swept: tuple[str, ...]  # complete subscriptions left unswept because a write failed

    @property
    def ok(self) -> bool:
        return self.save.ok and not self.sweep.failures and not self.not_swept


def modeled_rows(rows: Iterable[Any]) -> tuple[list[Mapping[str, Any]], int]:
    """Rows zts models (by type); malformed ones are kept so state mirrors the source and a
    later load reports them again, instead of silently forgetting the resource."""
    kept: list[Mapping[str, Any]] = []
    dropped = 0
    for row in rows:
        resource_id = row.get("id") if isinstance(row, Mapping) else None
        try:
            usable = isinstance(resource_id, str) and type_of(row, resource_id) in PARSERS
        except arm_id.InvalidArmId:
            usable = False
        if usable:
            kept.append(row)
        else:
            dropped += 1
    return kept, dropped


def subscriptions_in(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    return {arm_id.parse(str(row["id"])).subscription_id.lower() for row in rows}


def persist_run(
    rows: Iterable[Any],
    store: InventoryStore,
    run_id: str,
    complete_subscriptions: Iterable[str],
    *,
    started_at: datetime | None = None,
) -> PersistResult:
    """Save the rows under ``run_id``; sweep only subscriptions the run read completely and
    wrote completely, and only rows last written before the run started (``started_at``, default
    now): a resource an event handler stored while this run was reading is newer than the run's
    view of it and must survive the sweep."""
    started_at = started_at or datetime.now(UTC)
    materialized = list(rows)
    kept, dropped = modeled_rows(materialized)
    save = store.save(kept, run_id)
    complete = {s.lower() for s in complete_subscriptions}
    blocked = {p for p in save.incomplete_partitions if p in complete}
    sweepable = sorted(complete - blocked)
    sweep = store.sweep(run_id, sweepable, seen_before=started_at)
    return PersistResult(
        run_id=run_id, considered=len(materialized), not_modeled=dropped, save=save,
        sweep=sweep, swept=tuple(sweepable), not_swept=tuple(sorted(blocked)),
    )
