"""The NSG body after a plan: unowned rules exactly as they were, owned rules as desired.

This is what enforcement PUTs (with If-Match on the etag the plan was made from), and what the
equivalence proof evaluates. Pure: raw ARM JSON in, raw ARM JSON out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from shared.domain.arm_id import key
from shared.domain.raw import RawObject
from shared.policy.model import Ownership
from shared.policy.planner import NsgPlan

_RULES = "securityRules"


def _is_owned(rule: Mapping[str, Any], ownership: Ownership) -> bool:
    raw = RawObject(rule)
    name = raw.text("name") or ""
    priority = raw.integer("priority") or 0
    in_band = ownership.band_low <= priority <= ownership.band_high
    return name.startswith(ownership.prefix) and in_band


def nsg_body_after(nsg: Mapping[str, Any], plan: NsgPlan, ownership: Ownership) -> dict[str, Any]:
    """A copy of the raw NSG with its zts-owned rules replaced by the plan's desired rules."""
    body = copy.deepcopy(dict(nsg))
    holder = body["properties"] if isinstance(body.get("properties"), dict) else body
    current = holder.get(_RULES) or []
    kept = [r for r in current if not _is_owned(r, ownership)]
    holder[_RULES] = kept + [r.to_arm() for r in plan.desired]
    return body


def rows_after(rows: Iterable[Mapping[str, Any]], plans: Iterable[NsgPlan],
               ownership: Ownership) -> list[dict[str, Any]]:
    """A snapshot as it would be once every plan is applied (plans with errors are skipped)."""
    by_nsg = {key(p.nsg_id): p for p in plans if not p.errors}
    out: list[dict[str, Any]] = []
    for row in rows:
        plan = by_nsg.get(key(str(row.get("id", ""))))
        out.append(nsg_body_after(row, plan, ownership) if plan is not None else dict(row))
    return out
