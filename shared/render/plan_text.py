"""Terminal rendering of a plan: one line per rule change, grouped by NSG, like terraform plan."""

from __future__ import annotations

from shared.policy.nsg_target import DesiredRule
from shared.policy.planner import Plan


def _side(prefixes: tuple[str, ...], asgs: tuple[str, ...]) -> str:
    items = [a.rsplit("/", 1)[-1] + "(asg)" for a in asgs] or list(prefixes)
    text = ",".join(items[:3])
    return text + (f",+{len(items) - 3}" if len(items) > 3 else "")


def _line(mark: str, rule: DesiredRule) -> str:
    return (f"  {mark} {rule.name:<40} {rule.direction.value[:3]:<3} {rule.priority:>5} "
            f"{rule.access.value:<5} {rule.protocol:<4} "
            f"{_side(rule.source_prefixes, rule.source_asgs)} -> "
            f"{_side(rule.destination_prefixes, rule.destination_asgs)} "
            f":{','.join(rule.destination_ports)}")


def plan_table(plan: Plan) -> str:
    lines: list[str] = []
    changed = 0
    for nsg in plan.nsgs:
        if nsg.is_noop and not nsg.errors and not nsg.warnings:
            continue
        lines.append(f"NSG {nsg.nsg_id.rsplit('/', 1)[-1]}  ({nsg.nsg_id})")
        if nsg.errors:  # nothing of it is written: counts, not rules
            refused = nsg.refused()
            lines.append(f"  ! refused, nothing written: would add {refused['add']}, change "
                         f"{refused['change']}, remove {refused['remove']}")
        else:
            lines.extend(_line("+", r) for r in nsg.add)
            lines.extend(_line("~", r) for r in nsg.change)
            lines.extend(f"  - {name}" for name in nsg.remove)
        lines.extend(f"  ! error: {e}" for e in nsg.errors)
        lines.extend(f"  ? warning: {w}" for w in nsg.warnings)
        changed += 0 if nsg.is_noop or nsg.errors else 1
    applied = [p for p in plan.nsgs if not p.errors]
    adds = sum(len(p.add) for p in applied)
    changes = sum(len(p.change) for p in applied)
    removes = sum(len(p.remove) for p in applied)
    lines.extend(f"warning: {w.message}" + (f" [{w.rule}]" if w.rule else "")
                 for w in plan.warnings)
    lines.extend(f"error: {e.message}" for e in plan.errors)
    lines.append(f"Plan: {adds} to add, {changes} to change, {removes} to remove on {changed} "
                 f"NSG(s); {'ERRORS: nothing may be applied' if plan.has_errors else 'clean'}.")
    return "\n".join(lines)
