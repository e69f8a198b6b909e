"""Reconcile NSGs with the policy: plan, check guardrails, then one conditional PUT per NSG.

For each NSG whose plan changes something:

1. read it fresh (with its etag) and re-plan against what it holds now;
2. compare its owned rules with what zts last wrote: a difference is drift (someone edited
   zts's rules by hand), reported as a finding and reverted by the write;
3. PUT the NSG with ``If-Match``: unowned rules exactly as read, owned rules as desired;
4. on 412 (someone wrote in between) go back to 1, at most ``max_attempts`` times, so their
   change is kept and ours re-applied on top; an operation that times out is checked by reading
   the NSG again; any other failure is reported for that NSG and the others go on.

Nothing is written when the run is a dry run, when a guardrail refuses the plan, or when the
policy itself has errors. Every attempt is recorded in the audit log with the owned rules before
and after, and the plan is stored so it can be shown again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.arm_id import key
from shared.domain.assets import Nsg
from shared.domain.audit import AuditEntry
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.errors import (
    ConcurrencyConflict,
    NsgNotFound,
    NsgWriteFailed,
    WriteOutcomeUnknown,
)
from shared.policy.apply import nsg_body_after
from shared.policy.compiler import compile_policy
from shared.policy.guardrails import (
    Drift,
    Guardrails,
    drift,
    mass_delete_violation,
    open_allow_violations,
    owned_rule_count,
)
from shared.policy.model import Policy
from shared.policy.nsg_target import DesiredRule
from shared.policy.planner import NsgPlan, Plan, build_plan, owned, plan_nsg
from shared.ports import AuditLog, NsgGateway

DEFAULT_MAX_ATTEMPTS = 3


@dataclass
class NsgOutcome:
    nsg_id: str
    result: str  # planned | applied | noop | conflict | failed | refused | unknown
    attempts: int = 0
    message: str = ""
    added: int = 0
    changed: int = 0
    removed: int = 0
    drift: Drift | None = None
    unowned: list[str] = field(default_factory=list)  # rules zts saw and left alone

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nsg": self.nsg_id, "result": self.result,
                               "attempts": self.attempts, "add": self.added,
                               "change": self.changed, "remove": self.removed}
        if self.message:
            out["message"] = self.message
        if self.drift is not None:
            out["drift"] = self.drift.as_dict()
        if self.unowned:
            out["unowned"] = self.unowned
        return out


@dataclass
class ReconcileReport:
    plan_id: str
    dry_run: bool
    plan: Plan
    refused: list[str]
    outcomes: list[NsgOutcome]
    findings: list[Finding]
    writes: int

    @property
    def ok(self) -> bool:
        bad = {"failed", "conflict", "unknown", "refused"}
        return not self.refused and not self.plan.has_errors and not any(
            o.result in bad for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        results: dict[str, int] = {}
        for outcome in self.outcomes:
            results[outcome.result] = results.get(outcome.result, 0) + 1
        changed = [p for p in self.plan.nsgs if not p.is_noop]
        return {
            "nsgs": len(self.plan.nsgs), "nsgsToChange": len(changed),
            "add": sum(len(p.add) for p in changed), "change": sum(len(p.change) for p in changed),
            "remove": sum(len(p.remove) for p in changed), "writes": self.writes,
            "results": dict(sorted(results.items())), "refused": len(self.refused),
            "drift": sum(1 for f in self.findings if f.detection == "drift"),
            "errors": len(self.plan.errors) + sum(len(p.errors) for p in self.plan.nsgs),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "planId": self.plan_id, "dryRun": self.dry_run, "ok": self.ok,
            "summary": self.summary(), "refused": self.refused,
            "outcomes": [o.as_dict() for o in self.outcomes],
            "findings": [f.as_dict() for f in self.findings],
            "plan": self.plan.as_dict(),
        }


def new_plan_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@dataclass
class Reconciler:
    policy: Policy
    gateway: NsgGateway | None
    audit: AuditLog | None
    guardrails: Guardrails = field(default_factory=Guardrails)
    trigger: str = "cli"
    actor: str = ""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def run(self, inventory: Inventory, *, apply: bool,
            only: Collection[str] | None = None) -> ReconcileReport:
        """Plan against ``inventory``; with ``apply``, write the NSGs that need it. ``only``
        (NSG ids) limits the run to those NSGs: what an event-driven reconcile asks for."""
        compiled = compile_policy(self.policy, inventory)
        plan = build_plan(compiled, inventory, self.policy.ownership)
        if only is not None:
            wanted = {key(n) for n in only}
            plan = Plan([p for p in plan.nsgs if key(p.nsg_id) in wanted], plan.warnings,
                        plan.errors)
        plan_id = new_plan_id(self.clock())
        refused = self._refusals(plan, inventory)
        report = ReconcileReport(plan_id, not apply, plan, refused, [], [], 0)
        desired = {p.nsg_id.lower(): p.desired for p in plan.nsgs}
        for nsg_plan in plan.nsgs:
            if nsg_plan.is_noop and not nsg_plan.errors:
                continue
            if nsg_plan.errors:
                report.outcomes.append(self._outcome(nsg_plan, "failed", "; ".join(
                    nsg_plan.errors)))
            elif not apply or refused or self.gateway is None:
                outcome = self._outcome(nsg_plan, "planned")
                current = inventory.nsgs.get(nsg_plan.nsg_id.lower())
                if current is not None:
                    outcome.drift = self._drift(current)
                    outcome.unowned = _unowned(current, self.policy)
                report.outcomes.append(outcome)
            else:
                report.outcomes.append(self._enforce(plan_id, nsg_plan,
                                                     desired[nsg_plan.nsg_id.lower()], report))
        report.findings.extend(self._finding(o) for o in report.outcomes if o.drift is not None)
        if self.audit is not None:
            self.audit.save_plan(plan_id, self._document(report))
        return report

    # -- guardrails --------------------------------------------------------------------------

    def _refusals(self, plan: Plan, inventory: Inventory) -> list[str]:
        refused = [f"plan error (nothing is written while the plan has errors): {e.message}"
                   + (f" [{e.nsg_id}]" if e.nsg_id else "") for e in plan.errors]
        if self.guardrails.refuse_unwritten_open_allows:
            refused += open_allow_violations(plan.nsgs, self.policy)
        owned_now = owned_rule_count((n.rules for n in inventory.nsgs.values()),
                                     self.policy.ownership)
        too_many = mass_delete_violation(plan.nsgs, owned_now, self.guardrails)
        if too_many:
            refused.append(too_many)
        return refused

    # -- one NSG -----------------------------------------------------------------------------

    def _enforce(self, plan_id: str, planned: NsgPlan, desired: list[DesiredRule],
                 report: ReconcileReport) -> NsgOutcome:
        outcome = self._outcome(planned, "failed")
        for attempt in range(1, self.max_attempts + 1):
            outcome.attempts = attempt
            if self._attempt(plan_id, planned, desired, outcome, report):
                return outcome
        outcome.message = (f"gave up after {self.max_attempts} attempts: the NSG kept changing "
                           f"between read and write ({outcome.message})")
        return outcome

    def _attempt(self, plan_id: str, planned: NsgPlan, desired: list[DesiredRule],
                 outcome: NsgOutcome, report: ReconcileReport) -> bool:
        """One read-plan-write round; False when it lost a race and should be tried again."""
        assert self.gateway is not None
        try:
            raw = self.gateway.read(planned.nsg_id)
        except (NsgNotFound, NsgWriteFailed) as error:
            outcome.message = "the NSG no longer exists" if isinstance(error, NsgNotFound) \
                else error.reason
            return True
        nsg, problem = _parse_nsg(raw)
        if nsg is None:
            outcome.message = f"the NSG as read cannot be parsed: {problem}"
            return True
        fresh = plan_nsg(nsg, desired, self.policy.ownership)
        _count(outcome, fresh)
        outcome.unowned = _unowned(nsg, self.policy)
        verdict = self._check_fresh(planned, fresh, raw)
        if verdict is not None:
            outcome.result, outcome.message = verdict
            if outcome.result == "refused":
                self._record(plan_id, nsg, outcome.attempts, "refused", [], outcome.message)
            return True
        outcome.drift = self._drift(nsg)
        before = _owned_json(raw, nsg, self.policy)
        after = [r.to_arm() for r in fresh.desired]
        report.writes += 1
        try:
            self.gateway.write(planned.nsg_id, nsg_body_after(raw, fresh, self.policy.ownership),
                               str(raw["etag"]))
        except ConcurrencyConflict as error:
            outcome.result, outcome.message = "conflict", error.reason
            self._record(plan_id, nsg, outcome.attempts, "conflict", before, error.reason, after)
            return False  # re-read, re-plan: their change is kept, ours re-applied on top
        except WriteOutcomeUnknown as error:
            outcome.result, outcome.message = self._confirm(planned.nsg_id, desired, error)
        except NsgWriteFailed as error:
            outcome.result, outcome.message = "failed", error.reason
        else:
            outcome.result = "applied"
            outcome.message = "reverted drift" if outcome.drift is not None else ""
        self._record(plan_id, nsg, outcome.attempts, outcome.result, before, outcome.message,
                     after)
        if outcome.result == "applied":
            self._written(planned.nsg_id, after, plan_id)
        return True

    def _check_fresh(self, planned: NsgPlan, fresh: NsgPlan,
                     raw: Mapping[str, Any]) -> tuple[str, str] | None:
        """Why not to write this NSG now (result, message), or None to go ahead."""
        if fresh.errors:
            return "failed", "; ".join(fresh.errors)
        if fresh.is_noop:
            return "noop", "already as desired when read"
        if not raw.get("etag"):
            return "refused", "the NSG has no etag, so it cannot be written conditionally"
        if len(fresh.remove) > len(planned.remove):
            return "refused", (f"the NSG changed since planning: the write would now delete "
                               f"{len(fresh.remove)} owned rules instead of "
                               f"{len(planned.remove)}; run again to re-plan")
        if self.guardrails.refuse_unwritten_open_allows:
            opened = open_allow_violations([fresh], self.policy)
            if opened:
                return "refused", "; ".join(opened)
        return None

    def _confirm(self, nsg_id: str, desired: list[DesiredRule],
                 error: WriteOutcomeUnknown) -> tuple[str, str]:
        """After an operation timed out: does the NSG now hold what we wrote?"""
        assert self.gateway is not None
        try:
            nsg, problem = _parse_nsg(self.gateway.read(nsg_id))
        except (NsgNotFound, NsgWriteFailed) as again:
            return "unknown", f"{error}; reading it back failed: {again}"
        if nsg is not None and plan_nsg(nsg, desired, self.policy.ownership).is_noop:
            return "applied", f"{error}; read back: the NSG holds the desired rules"
        return "unknown", f"{error}; read back: not (yet) as desired{problem and ': ' + problem}"

    def _drift(self, nsg: Nsg) -> Drift | None:
        if self.audit is None:
            return None
        last = self.audit.last_written(nsg.id)
        if last is None:
            return None  # zts never wrote this NSG: nothing to drift from
        return drift(nsg.id, nsg.rules, last, self.policy.ownership)

    # -- records -----------------------------------------------------------------------------

    def _record(self, plan_id: str, nsg: Nsg, attempt: int, result: str,
                before: list[dict[str, Any]], message: str,
                after: list[dict[str, Any]] | None = None) -> None:
        if self.audit is not None:
            self.audit.record(AuditEntry(plan_id, nsg.id, attempt, result, self.trigger,
                                         self.actor, self.clock(), before, after or [], message))

    def _written(self, nsg_id: str, rules: list[dict[str, Any]], plan_id: str) -> None:
        if self.audit is not None:
            self.audit.set_written(nsg_id, rules, plan_id)

    def _outcome(self, plan: NsgPlan, result: str, message: str = "") -> NsgOutcome:
        outcome = NsgOutcome(plan.nsg_id, result, message=message)
        _count(outcome, plan)
        return outcome

    def _finding(self, outcome: NsgOutcome) -> Finding:
        assert outcome.drift is not None
        reverted = outcome.result == "applied"
        return Finding(
            detection="drift", severity="high",
            title=(f"zts-owned rules on {outcome.nsg_id.rsplit('/', 1)[-1]} were changed outside "
                   f"zts{' and reverted' if reverted else ''}"),
            resource_id=outcome.nsg_id, observed_at=self.clock(),
            evidence={**outcome.drift.as_dict(), "reverted": reverted,
                      "result": outcome.result},
            identity=(outcome.drift.describe(),),
        )

    def _document(self, report: ReconcileReport) -> dict[str, Any]:
        policy_text = json.dumps([[r.name, r.priority, r.source, r.destination, r.action.value]
                                  for r in self.policy.rules])
        return {
            "id": report.plan_id, "createdAt": self.clock().isoformat(),
            "trigger": self.trigger, "actor": self.actor,
            "policy": {"groups": len(self.policy.groups), "rules": len(self.policy.rules),
                       "sha256": hashlib.sha256(policy_text.encode()).hexdigest()},
            **report.as_dict(),
        }


def _count(outcome: NsgOutcome, plan: NsgPlan) -> None:
    outcome.added, outcome.changed, outcome.removed = (len(plan.add), len(plan.change),
                                                       len(plan.remove))


def _parse_nsg(raw: Mapping[str, Any]) -> tuple[Nsg | None, str]:
    inventory = normalize([dict(raw)])
    nsgs = list(inventory.nsgs.values())
    if nsgs:
        return nsgs[0], ""
    problems = [f"{s.field}: {s.reason}" for s in inventory.report.skipped]
    return None, "; ".join(problems) or "not an NSG"


def _unowned(nsg: Nsg, policy: Policy) -> list[str]:
    return sorted(r.name for r in nsg.rules if not owned(r, policy.ownership))


def _owned_json(raw: Mapping[str, Any], nsg: Nsg, policy: Policy) -> list[dict[str, Any]]:
    """The owned rules of the NSG as read (ARM JSON), for the audit trail."""
    properties = raw.get("properties")
    rules = properties.get("securityRules") if isinstance(properties, Mapping) else None
    names = {r.name for r in nsg.rules if owned(r, policy.ownership)}
    return [dict(r) for r in rules or [] if isinstance(r, Mapping) and r.get("name") in names]
