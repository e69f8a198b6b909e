"""Guardrails on plans: open allows must be written in the policy, mass deletion is refused,
drift is measured against what zts last wrote."""

from __future__ import annotations

import copy
from ipaddress import ip_network
from typing import Any

from shared.domain.normalize import normalize
from shared.policy.apply import rows_after
from shared.policy.guardrails import (
    Guardrails,
    drift,
    mass_delete_violation,
    open_allow_violations,
    owned_rule_count,
)
from shared.policy.model import Action, CidrSelector, Group, PortRange, Protocol, Rule
from shared.sample.estate import classic_estate
from tests.policy.test_compile_plan import GROUPS, RULES, plan_for, policy


def test_internet_allow_written_in_the_policy_passes() -> None:
    pol = policy()
    plan = plan_for(classic_estate(), pol)
    assert any(p.add for p in plan.nsgs)
    assert open_allow_violations(plan.nsgs, pol) == []


def test_everything_cidr_group_is_refused_even_though_it_is_a_group() -> None:
    everyone = Group("everyone", CidrSelector((ip_network("0.0.0.0/0"),)))
    rule = Rule("everyone-to-web", 105, "everyone", "web", (PortRange(22, 22),), Protocol.TCP,
                Action.ALLOW)
    pol = policy((*RULES, rule))
    pol = type(pol)(pol.posture, pol.enforcement, (*GROUPS, everyone), pol.rules, pol.ownership)
    plan = plan_for(classic_estate(), pol)
    found = open_allow_violations(plan.nsgs, pol)
    assert found, "an allow from 0.0.0.0/0 not written as 'from: internet' must be refused"
    assert all("everyone-to-web" in f and "0.0.0.0/0" in f for f in found)


def test_deny_from_internet_is_not_an_open_allow() -> None:
    rule = Rule("deny-internet-ssh", 90, "internet", "web", (PortRange(22, 22),), Protocol.TCP,
                Action.DENY)
    pol = policy((rule, *RULES))
    assert open_allow_violations(plan_for(classic_estate(), pol).nsgs, pol) == []


def _applied_rows(pol: Any) -> list[dict[str, Any]]:
    rows = classic_estate()
    return rows_after(rows, plan_for(rows, pol).nsgs, pol.ownership)


def test_dropping_most_rules_is_refused_and_a_small_change_is_not() -> None:
    pol = policy()
    rows = _applied_rows(pol)
    inventory = normalize(rows)
    owned_now = owned_rule_count((n.rules for n in inventory.nsgs.values()), pol.ownership)
    assert owned_now > 0
    emptied = policy(())
    emptied = type(emptied)(emptied.posture, emptied.enforcement, (), (), emptied.ownership)
    plan = plan_for(rows, emptied)  # an empty policy file: every owned rule would go
    assert sum(len(p.remove) for p in plan.nsgs) == owned_now
    reason = mass_delete_violation(plan.nsgs, owned_now, Guardrails())
    assert reason is not None and f"deletes {owned_now} of the {owned_now}" in reason
    assert mass_delete_violation(plan.nsgs, owned_now, Guardrails(max_delete_fraction=1)) is None
    fewer = plan_for(rows, policy(RULES[:2]))  # one policy rule dropped: one NSG rule goes
    assert sum(len(p.remove) for p in fewer.nsgs) == 1
    assert mass_delete_violation(fewer.nsgs, owned_now, Guardrails()) is None
    same = plan_for(rows, pol)
    assert all(p.is_noop for p in same.nsgs)
    assert mass_delete_violation(same.nsgs, owned_now, Guardrails()) is None


def test_drift_names_added_removed_and_changed_rules() -> None:
    pol = policy()
    rows = _applied_rows(pol)
    inventory = normalize(rows)
    nsg = next(n for n in inventory.nsgs.values()
               if sum(1 for r in n.rules if r.name.startswith("zts-")) >= 3)
    written = [copy.deepcopy(r) for r in next(
        row for row in rows if row["id"] == nsg.id)["properties"]["securityRules"]
        if r["name"].startswith("zts-")]
    assert drift(nsg.id, nsg.rules, written, pol.ownership) is None
    tampered = copy.deepcopy(written)
    victim = tampered.pop(0)["name"]  # zts wrote it; now it is gone... from the record's view
    tampered[0]["properties"]["priority"] = 2999 if tampered[0]["properties"].get(
        "priority") != 2999 else 2998
    found = drift(nsg.id, nsg.rules, tampered, pol.ownership)
    assert found is not None
    assert found.added == (victim,)  # present now, not in what zts wrote
    assert found.changed == (tampered[0]["name"],)
    assert found.removed == ()
    assert victim in found.describe()
