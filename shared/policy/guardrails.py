"""Guardrails an apply must pass, and drift of zts-owned rules. Pure functions over plans.

* **Open allows**: an inbound allow whose source is ``*``, ``Internet``, ``0.0.0.0/0`` or ``::/0``
  is refused unless every policy rule it implements literally says ``from: internet`` or
  ``from: any``. A CIDR group that happens to cover everything, or a compiler bug, never opens an
  NSG to the Internet by accident.
* **Mass deletion**: a run that would delete more than ``max_delete_fraction`` of the zts-owned
  rules currently in the estate is refused as a whole (a wrong inventory or an emptied group
  must not strip an estate of its rules).
* **Drift**: owned rules that differ from what zts last wrote were changed by someone else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.assets import Access, Direction, SecurityRule
from shared.domain.parsers import security_rule
from shared.domain.raw import FieldError, RawObject
from shared.policy.model import BUILTIN_ANY, BUILTIN_INTERNET, Ownership, Policy
from shared.policy.planner import NsgPlan, canonical, owned

OPEN_SOURCES = frozenset({"*", "internet", "0.0.0.0/0", "::/0", "any"})
DEFAULT_MAX_DELETE_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class Guardrails:
    """Both checks are on by default. ``max_delete_fraction`` >= 1 disables the deletion check;
    turning off the open-allow check is possible for break-glass use only."""

    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    refuse_unwritten_open_allows: bool = True


def open_allow_violations(plans: Iterable[NsgPlan], policy: Policy) -> list[str]:
    """Every added or changed inbound allow from everywhere that the policy does not spell out."""
    sources = {rule.name: rule.source for rule in policy.rules}
    found: list[str] = []
    for plan in plans:
        for rule in (*plan.add, *plan.change):
            if rule.access is not Access.ALLOW or rule.direction is not Direction.INBOUND:
                continue
            wide = sorted(p for p in rule.source_prefixes if p.lower() in OPEN_SOURCES)
            if not wide:
                continue
            names = [n for n in rule.policy_rule.split(",") if n]
            written = bool(names) and all(
                sources.get(n) in (BUILTIN_INTERNET, BUILTIN_ANY) for n in names)
            if not written:
                found.append(
                    f"{plan.nsg_id}: {rule.name} would allow inbound from {', '.join(wide)}, but "
                    f"its policy rule(s) {', '.join(names) or '(none)'} do not say "
                    "'from: internet' or 'from: any'")
    return found


def owned_rule_count(nsg_rules: Iterable[Iterable[SecurityRule]], ownership: Ownership) -> int:
    return sum(1 for rules in nsg_rules for rule in rules if owned(rule, ownership))


def mass_delete_violation(plans: Sequence[NsgPlan], owned_now: int,
                          guardrails: Guardrails) -> str | None:
    """Why the run deletes too much, or None."""
    removed = sum(len(p.remove) for p in plans)
    if not removed or guardrails.max_delete_fraction >= 1:
        return None
    share = removed / owned_now if owned_now else 1.0
    if share <= guardrails.max_delete_fraction:
        return None
    return (f"the plan deletes {removed} of the {owned_now} zts-owned rules ({share:.0%}), more "
            f"than the {guardrails.max_delete_fraction:.0%} allowed in one run; check the "
            "inventory and the policy, then raise the limit for this run if it is intended")


@dataclass(frozen=True, slots=True)
class Drift:
    """Owned rules someone else changed since zts last wrote the NSG."""

    nsg_id: str
    added: tuple[str, ...]  # owned-looking rules zts did not write
    removed: tuple[str, ...]  # rules zts wrote that are gone
    changed: tuple[str, ...]  # rules zts wrote whose content differs

    def as_dict(self) -> dict[str, Any]:
        return {"nsg": self.nsg_id, "added": list(self.added), "removed": list(self.removed),
                "changed": list(self.changed)}

    def describe(self) -> str:
        parts = [f"{label}: {', '.join(names)}" for label, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed))
                 if names]
        return "; ".join(parts)


def drift(nsg_id: str, current: Iterable[SecurityRule], last_written: Sequence[Mapping[str, Any]],
          ownership: Ownership) -> Drift | None:
    """Compare the owned rules an NSG holds with the rules zts wrote last time (ARM JSON)."""
    now = {r.name.lower(): r for r in current if owned(r, ownership)}
    before: dict[str, SecurityRule] = {}
    for raw in last_written:
        try:
            rule = security_rule(RawObject(raw))
        except FieldError:
            continue  # a damaged record cannot prove drift; the plan still restores the rules
        before[rule.name.lower()] = rule
    added = sorted(now[n].name for n in now.keys() - before.keys())
    removed = sorted(before[n].name for n in before.keys() - now.keys())
    changed = sorted(now[n].name for n in now.keys() & before.keys()
                     if canonical(now[n]) != canonical(before[n]))
    if not (added or removed or changed):
        return None
    return Drift(nsg_id, tuple(added), tuple(removed), tuple(changed))
