"""Plan: desired zts-owned rules vs the NSGs as they are -> per-NSG add / change / remove.

zts owns a rule only when its name has the ownership prefix AND its priority is inside the band.
Anything else is never changed. An unowned rule inside the band is a conflict: that NSG's plan
fails with an error rather than overwriting or shadowing someone's rule. Azure limits are checked
on the NSG as it would be after apply; an NSG over a limit fails its plan with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.domain.arm_id import key
from shared.domain.assets import Access, Direction, Nsg, SecurityRule
from shared.domain.inventory import Inventory
from shared.domain.parsers import security_rule
from shared.domain.raw import RawObject
from shared.policy.compiler import Compiled, Issue
from shared.policy.gc_pause import gc_paused
from shared.policy.model import Ownership
from shared.policy.nsg_target import (
    MAX_ASGS_PER_NSG,
    MAX_ASGS_PER_RULE_SIDE,
    MAX_PREFIXES_PER_NSG_SIDE,
    MAX_PRIORITY,
    MAX_RULES_PER_NSG,
    MIN_PRIORITY,
    DesiredRule,
)


@dataclass
class NsgPlan:
    nsg_id: str
    etag: str | None
    add: list[DesiredRule] = field(default_factory=list)
    change: list[DesiredRule] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    desired: list[DesiredRule] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        return not (self.add or self.change or self.remove)

    def refused(self) -> dict[str, int]:
        """What a failed plan would have done, in counts."""
        return {"add": len(self.add), "change": len(self.change), "remove": len(self.remove),
                "desired": len(self.desired)}

    def as_dict(self) -> dict[str, Any]:
        if self.errors:
            # a failed NSG plan writes nothing: it lists no rule (over Azure's limits, the rules
            # it would have written run to gigabytes) and counts what it refused
            out: dict[str, Any] = {"id": self.nsg_id, "add": [], "change": [], "remove": [],
                                   "desired": [], "errors": self.errors,
                                   "refused": self.refused()}
        else:
            out = {
                "id": self.nsg_id,
                "add": [r.to_arm() for r in self.add],
                "change": [r.to_arm() for r in self.change],
                "remove": sorted(self.remove),
                "desired": [r.to_arm() for r in self.desired],
            }
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass
class Plan:
    nsgs: list[NsgPlan]
    warnings: list[Issue]
    errors: list[Issue]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(p.errors for p in self.nsgs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "nsgs": [p.as_dict() for p in self.nsgs if not p.is_noop or p.errors],
            "warnings": [w.as_dict() for w in self.warnings]
            + [{"nsg": p.nsg_id, "message": m} for p in self.nsgs for m in p.warnings],
            "errors": [e.as_dict() for e in self.errors]
            + [{"nsg": p.nsg_id, "message": m} for p in self.nsgs for m in p.errors],
        }


def owned(rule: SecurityRule, ownership: Ownership) -> bool:
    return (rule.name.startswith(ownership.prefix)
            and ownership.band_low <= rule.priority <= ownership.band_high)


def canonical(rule: SecurityRule) -> tuple[object, ...]:
    """What makes two rules the same rule in Azure (order of list fields and id casing aside)."""
    return (
        rule.priority, rule.direction, rule.access, rule.protocol,
        tuple(sorted(p.lower() for p in rule.source_prefixes)),
        tuple(sorted(p.lower() for p in rule.destination_prefixes)),
        tuple(sorted(key(a) for a in rule.source_asg_ids)),
        tuple(sorted(key(a) for a in rule.destination_asg_ids)),
        tuple(sorted(rule.source_ports)), tuple(sorted(rule.destination_ports)),
        rule.description,
    )


def as_security_rule(rule: DesiredRule) -> SecurityRule:
    return security_rule(RawObject(rule.to_arm()))


def plan_nsg(nsg: Nsg, desired: Iterable[DesiredRule], ownership: Ownership) -> NsgPlan:
    wanted = sorted(desired, key=_plan_order)
    plan = NsgPlan(nsg.id, nsg.etag, desired=wanted)
    current = {r.name.lower(): r for r in nsg.rules if owned(r, ownership)}
    unowned = [r for r in nsg.rules if not owned(r, ownership)]
    for rule in unowned:
        if ownership.band_low <= rule.priority <= ownership.band_high:
            plan.errors.append(
                f"rule {rule.name!r} at priority {rule.priority} is inside zts's band "
                f"{ownership.band_low}-{ownership.band_high} but not owned by zts; move it out "
                f"of the band or rename it with the {ownership.prefix!r} prefix")
        elif rule.name.startswith(ownership.prefix):
            plan.warnings.append(f"rule {rule.name!r} has the zts prefix but priority "
                                 f"{rule.priority} is outside the band: left untouched")
        elif rule.priority < ownership.band_low and rule.access is Access.ALLOW:
            plan.warnings.append(f"unowned rule {rule.name!r} ({rule.direction.value}, priority "
                                 f"{rule.priority}) is evaluated before zts's band: traffic it "
                                 "allows bypasses the policy")
    for want in wanted:
        existing = current.pop(want.name.lower(), None)
        if existing is None:
            plan.add.append(want)
        elif canonical(existing) != canonical(as_security_rule(want)):
            plan.change.append(want)
    plan.remove = sorted(r.name for r in current.values())
    _check_priorities(plan, wanted, unowned)
    _check_limits(plan, wanted, unowned)
    _note_shadowed(plan, wanted, unowned)
    return plan


_DIRECTION_ORDER = {direction: direction.value for direction in Direction}


def _plan_order(rule: DesiredRule) -> tuple[str, int, str]:
    return _DIRECTION_ORDER[rule.direction], rule.priority, rule.name


def _check_priorities(plan: NsgPlan, wanted: list[DesiredRule],
                      unowned: list[SecurityRule]) -> None:
    taken = {(r.direction, r.priority): r.name for r in unowned}
    for rule in wanted:
        if not MIN_PRIORITY <= rule.priority <= MAX_PRIORITY:  # an Ownership built in code
            plan.errors.append(f"rule {rule.name!r} has priority {rule.priority}, outside "
                               f"Azure's {MIN_PRIORITY}-{MAX_PRIORITY}")
        other = taken.get((rule.direction, rule.priority))
        if other is not None:
            plan.errors.append(f"priority {rule.priority} {rule.direction.value} is already used "
                               f"by {other!r}")


def _check_limits(plan: NsgPlan, wanted: list[DesiredRule], unowned: list[SecurityRule]) -> None:
    total = len(wanted) + len(unowned)
    if total > MAX_RULES_PER_NSG:
        plan.errors.append(f"{total} rules after apply exceed Azure's {MAX_RULES_PER_NSG} per NSG")
    counts = {
        "source": sum(len(r.source_prefixes) for r in wanted)
        + sum(len(r.source_prefixes) for r in unowned),
        "destination": sum(len(r.destination_prefixes) for r in wanted)
        + sum(len(r.destination_prefixes) for r in unowned),
    }
    for side, prefixes in counts.items():
        if prefixes > MAX_PREFIXES_PER_NSG_SIDE:
            plan.errors.append(f"{prefixes} {side} addresses/ranges exceed Azure's "
                               f"{MAX_PREFIXES_PER_NSG_SIDE} per NSG{_largest(wanted, side)}")
    for rule in wanted:
        for side, refs in (("source", rule.source_asgs), ("destination", rule.destination_asgs)):
            if len(refs) > MAX_ASGS_PER_RULE_SIDE:
                plan.errors.append(f"rule {rule.name!r} names {len(refs)} {side} ASGs; Azure "
                                   f"allows {MAX_ASGS_PER_RULE_SIDE} per side of a rule")
    asgs = {key(a) for r in wanted if r.source_asgs or r.destination_asgs
            for a in (*r.source_asgs, *r.destination_asgs)}
    asgs |= {key(a) for r in unowned for a in (*r.source_asg_ids, *r.destination_asg_ids)}
    if len(asgs) > MAX_ASGS_PER_NSG:
        plan.errors.append(f"{len(asgs)} ASGs exceed Azure's {MAX_ASGS_PER_NSG} per NSG")


def _largest(wanted: list[DesiredRule], side: str) -> str:
    """The rules holding most of a side's addresses, to say where the budget went."""
    sizes = sorted(((len(r.source_prefixes if side == "source" else r.destination_prefixes),
                     r.name) for r in wanted), key=lambda x: (-x[0], x[1]))
    top = [f"{name} ({size})" for size, name in sizes[:3] if size]
    return f"; most in {', '.join(top)}" if top else ""


def _note_shadowed(plan: NsgPlan, wanted: list[DesiredRule], unowned: list[SecurityRule]) -> None:
    """Hand-made allow rules below a zts deny-all no longer take effect: say so."""
    for direction in Direction:
        denies = [r.priority for r in wanted if r.direction is direction
                  and r.access is Access.DENY and r.source_prefixes == ("*",)
                  and r.destination_prefixes == ("*",) and r.destination_ports == ("*",)]
        if not denies:
            continue
        for rule in unowned:
            if rule.direction is direction and rule.access is Access.ALLOW \
                    and rule.priority > min(denies):
                plan.warnings.append(f"unowned rule {rule.name!r} ({direction.value}, priority "
                                     f"{rule.priority}) is shadowed by zts's default deny")


def build_plan(compiled: Compiled, inventory: Inventory, ownership: Ownership) -> Plan:
    """Plans for every NSG that should hold zts rules or still holds some."""
    with gc_paused():
        return _build_plan(compiled, inventory, ownership)


def _build_plan(compiled: Compiled, inventory: Inventory, ownership: Ownership) -> Plan:
    nsg_plans: list[NsgPlan] = []
    if not compiled.complete:  # nothing compiled: plan no NSG rather than empty them all
        return Plan(nsg_plans, list(compiled.warnings), list(compiled.errors))
    targets = set(compiled.rules)
    targets |= {k for k, n in inventory.nsgs.items() if any(owned(r, ownership) for r in n.rules)}
    errors = list(compiled.errors)
    for nsg_key in sorted(targets):
        nsg = inventory.nsgs.get(nsg_key)
        if nsg is None:
            errors.append(Issue("NSG referenced by members is not in the inventory",
                                nsg_id=compiled.nsg_ids.get(nsg_key, nsg_key)))
            continue
        failed = compiled.failed.get(nsg_key)
        if failed:  # the whole NSG's plan fails: nothing added, changed or removed
            nsg_plans.append(NsgPlan(nsg.id, nsg.etag, errors=list(failed)))
            continue
        nsg_plans.append(plan_nsg(nsg, compiled.rules.get(nsg_key, []), ownership))
    return Plan(nsg_plans, list(compiled.warnings), errors)
