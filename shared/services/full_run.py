"""A full run: discover, persist with mark-and-sweep, reconcile. Used by the discovery timer and
the HTTP resync; the run store's lease keeps two of them from overlapping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.domain.discovery import DiscoveryScope
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.ports import InventoryStore, ResourceSource
from shared.services.discovery import discover_and_persist
from shared.services.enforcement import Reconciler


@dataclass
class FullRunResult:
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    inventory: Inventory | None = None  # what the run planned against (None if it did not)
    error: str = ""
    findings: list[Finding] = field(default_factory=list)


def full_run(run_id: str, scope: DiscoveryScope, primary: ResourceSource,
             fallback: ResourceSource | None, store: InventoryStore, reconciler: Reconciler, *,
             apply: bool) -> FullRunResult:
    discovered, persisted = discover_and_persist(scope, primary, fallback, store, run_id)
    summary: dict[str, Any] = {
        "discovery": discovered.summary(),
        "persist": {"ok": persisted.ok, "swept": len(persisted.swept),
                    "notSwept": sorted(set(discovered.failed) | set(persisted.not_swept))},
    }
    if not discovered.ok:
        return FullRunResult(False, summary, None,
                             "discovery was incomplete; nothing was planned (a missing NIC would "
                             "drop out of its groups): " + "; ".join(
                                 f"{s}: {r}" for s, r in sorted(discovered.failed.items()))
                             or "; ".join(discovered.notes))
    inventory = normalize(discovered.rows)
    report = reconciler.run(inventory, apply=apply)
    summary["reconcile"] = {"planId": report.plan_id, "dryRun": report.dry_run,
                            **report.summary(), "refused": report.refused,
                            "findings": [f.as_dict() for f in report.findings]}
    problems = [f"{o.nsg_id}: {o.result} {o.message}".strip() for o in report.outcomes
                if o.result in {"failed", "conflict", "unknown", "refused"}] + report.refused
    return FullRunResult(report.ok, summary, inventory, "; ".join(problems),
                         list(report.findings))


def parse_resync_body(raw: bytes) -> tuple[tuple[str, ...], str, bool] | str:
    """(subscriptions, management group, dry run) from a resync request body, or what is wrong
    with it (every problem, for a 400)."""
    if not raw.strip():
        return (), "", False
    try:
        body = json.loads(raw)
    except ValueError as error:
        return f"the body is not JSON: {error}"
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    problems = []
    unknown = sorted(set(body) - {"subscriptions", "managementGroup", "dryRun"})
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)} (allowed: subscriptions, "
                        "managementGroup, dryRun)")
    subs = body.get("subscriptions", [])
    if not isinstance(subs, list) or not all(isinstance(s, str) and s for s in subs):
        problems.append('"subscriptions" must be a list of subscription ids')
    group = body.get("managementGroup", "")
    if not isinstance(group, str):
        problems.append('"managementGroup" must be a string')
    elif subs and group:
        problems.append('give "subscriptions" or "managementGroup", not both')
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        problems.append('"dryRun" must be true or false')
    if problems:
        return "; ".join(problems)
    return tuple(subs), group, dry_run
