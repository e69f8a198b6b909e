"""Compiler and planner on the sample estate: ASG vs CIDR, ownership, no-op, limits."""

from __future__ import annotations

import copy
from typing import Any

from shared.domain.arm_id import key
from shared.domain.normalize import normalize
from shared.policy.apply import rows_after
from shared.policy.compiler import compile_policy
from shared.policy.model import (
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    EnforcementPoint,
    Group,
    Ownership,
    Policy,
    PortRange,
    Posture,
    Protocol,
    Rule,
    TagsSelector,
    VnetSelector,
)
from shared.policy.planner import Plan, build_plan
from shared.sample.estate import classic_estate

BAND = Ownership(band_low=1000, band_high=2999)
GROUPS = (
    Group("web", AsgSelector("Web")),
    Group("logic", AsgSelector("Logic")),
    Group("analytics", VnetSelector("hdi-vnet")),
    Group("dns", TagsSelector((("role", "dns"),))),
)
RULES = (
    Rule("internet-to-web", 100, "internet", "web", (PortRange(443, 443),), Protocol.TCP,
         Action.ALLOW),
    Rule("web-to-logic", 110, "web", "logic", (PortRange(8443, 8443),), Protocol.TCP,
         Action.ALLOW),
    Rule("logic-to-analytics", 120, "logic", "analytics", (PortRange(8080, 8090),),
         Protocol.TCP, Action.ALLOW),
)


def policy(rules: tuple[Rule, ...] = RULES, ownership: Ownership = BAND) -> Policy:
    return Policy(Posture(), EnforcementPoint.SUBNET, GROUPS, rules, ownership)


def plan_for(rows: list[dict[str, Any]], pol: Policy) -> Plan:
    inventory = normalize(rows)
    return build_plan(compile_policy(pol, inventory), inventory, pol.ownership)


def nsg_plan(plan: Plan, name: str) -> Any:
    return next(p for p in plan.nsgs if p.nsg_id.endswith(f"/{name}"))


def test_asg_inside_a_vnet_cidr_across_vnets() -> None:
    plan = plan_for(classic_estate(), policy())

    app = nsg_plan(plan, "nsg-payroll-app")
    (web_to_logic,) = [r.to_arm() for r in app.add if r.policy_rule == "web-to-logic"]
    props = web_to_logic["properties"]
    assert [a["id"].rsplit("/", 1)[1] for a in props["sourceApplicationSecurityGroups"]] == ["Web"]
    assert [a["id"].rsplit("/", 1)[1]
            for a in props["destinationApplicationSecurityGroups"]] == ["Logic"]
    hdi = nsg_plan(plan, "nsg-hdi")
    (logic_to_hdi,) = [r.to_arm() for r in hdi.add if r.policy_rule == "logic-to-analytics"]
    props = logic_to_hdi["properties"]
    assert props["sourceAddressPrefix"] == "10.10.2.4/31"  # Logic lives in another VNet
    assert props["destinationPortRange"] == "8080-8090"
    assert "sourceApplicationSecurityGroups" not in props


def test_internet_rule_and_posture_rules_close_the_band() -> None:
    web = nsg_plan(plan_for(classic_estate(), policy()), "nsg-payroll-web")
    by_name = {r.name: r for r in web.desired}
    assert by_name["zts-internet-to-web-in"].source_prefixes == ("Internet",)
    assert by_name["zts-internet-to-web-in"].priority == 1000
    assert by_name["zts-allow-azure-lb-in"].priority == 2998
    assert by_name["zts-default-deny-in"].priority == 2999
    assert all(BAND.band_low <= r.priority <= BAND.band_high for r in web.desired)


def test_applying_the_plan_then_replanning_is_a_noop() -> None:
    rows = classic_estate()
    first = plan_for(rows, policy())
    assert not first.has_errors
    after = rows_after(rows, first.nsgs, BAND)

    second = plan_for(after, policy())

    assert [p for p in second.nsgs if not p.is_noop] == []
    assert second.as_dict()["nsgs"] == []


def test_changed_and_removed_owned_rules_are_planned() -> None:
    rows = rows_after(classic_estate(), plan_for(classic_estate(), policy()).nsgs, BAND)
    fewer = policy(RULES[:2])  # logic-to-analytics dropped from the policy
    hand_edited = copy.deepcopy(rows)
    for row in hand_edited:  # someone widened zts's web-to-logic rule by hand
        for rule in row.get("properties", {}).get("securityRules", []):
            if rule["name"] == "zts-web-to-logic-in":
                rule["properties"]["destinationPortRange"] = "*"

    plan = plan_for(hand_edited, fewer)

    app = nsg_plan(plan, "nsg-payroll-app")
    assert [r.name for r in app.change] == ["zts-web-to-logic-in"]
    hdi = nsg_plan(plan, "nsg-hdi")
    assert hdi.remove == ["zts-logic-to-analytics-in"]
    # the analytics group is still defined, so its NSG keeps the default-deny posture
    assert [r.name for r in hdi.desired] == ["zts-allow-azure-lb-in", "zts-default-deny-in"]


def test_an_outbound_deny_keeps_the_allows_before_it_under_an_allow_posture() -> None:
    """Outbound ``allow``: a deny towards addresses outside the estate is enforced on the way
    out, and the rules before it come along in policy order (alone, ``deny web -> any`` blocked
    the web -> internet 443 and web -> web ICMP the policy allows first); ``deny any ->
    internet`` goes on every managed NSG's outbound side."""
    from tests.policy.proof import prove

    rules = (
        Rule("web-out-443", 10, "web", "internet", (PortRange(443, 443),), Protocol.TCP,
             Action.ALLOW),
        Rule("web-ping-web", 20, "web", "web", (PortRange(0, 65535),), Protocol.ICMP,
             Action.ALLOW),
        Rule("web-nothing-else", 30, "web", "any", (PortRange(0, 65535),), Protocol.ANY,
             Action.DENY),
        Rule("no-smtp-out", 40, "any", "internet", (PortRange(25, 25),), Protocol.TCP,
             Action.DENY),
    )
    pol = Policy(Posture(), EnforcementPoint.SUBNET, GROUPS, rules, BAND)
    plan = plan_for(classic_estate(), pol)
    web = nsg_plan(plan, "nsg-payroll-web")
    out = [r.policy_rule for r in web.desired if r.direction.value == "Outbound"]
    assert out == ["web-out-443", "web-ping-web", "web-nothing-else", "no-smtp-out"]
    app = nsg_plan(plan, "nsg-payroll-app")  # logic: only the estate-wide deny goes out
    assert [r.policy_rule for r in app.desired if r.direction.value == "Outbound"] == [
        "no-smtp-out"]
    proof = prove(classic_estate(), pol)
    assert proof.compared > 0 and not proof.mismatches, proof.mismatches[:5]


def test_a_policy_whose_groups_do_not_resolve_plans_no_nsg() -> None:
    """Nothing compiled is not "no rules wanted": the NSGs keep every owned rule (before, each
    one's removal was planned, deny-all included)."""
    rows = rows_after(classic_estate(), plan_for(classic_estate(), policy()).nsgs, BAND)
    broken = Policy(Posture(), EnforcementPoint.SUBNET,
                    (*GROUPS, Group("gone", VnetSelector("no-such-vnet"))), RULES, BAND)
    plan = plan_for(rows, broken)
    assert plan.has_errors and plan.nsgs == []
    assert any("'no-such-vnet' matches nothing" in e.message for e in plan.errors)
    assert rows_after(rows, plan.nsgs, BAND) == rows


def test_an_nsg_no_group_reaches_is_handed_back() -> None:
    rows = rows_after(classic_estate(), plan_for(classic_estate(), policy()).nsgs, BAND)
    without_analytics = Policy(Posture(), EnforcementPoint.SUBNET,
                               tuple(g for g in GROUPS if g.name != "analytics"), RULES[:2], BAND)

    hdi = nsg_plan(plan_for(rows, without_analytics), "nsg-hdi")

    assert hdi.remove == ["zts-allow-azure-lb-in", "zts-default-deny-in",
                          "zts-logic-to-analytics-in"]
    assert hdi.desired == []


def test_unowned_rules_are_never_touched_and_conflicts_fail_the_nsg() -> None:
    default_band = policy(ownership=Ownership())  # 100-3999 holds the hand-made rules
    plan = plan_for(classic_estate(), default_band)

    assert plan.has_errors
    web = nsg_plan(plan, "nsg-payroll-web")
    assert any("'AllowHttpsInbound' at priority 100 is inside zts's band" in e
               for e in web.errors)
    for nsg in plan.nsgs:
        assert all(name.startswith("zts-") for name in nsg.remove)


def test_hand_made_rules_before_the_band_are_reported() -> None:
    web = nsg_plan(plan_for(classic_estate(), policy()), "nsg-payroll-web")
    assert any("'AllowHttpsInbound'" in w and "bypasses the policy" in w for w in web.warnings)


def test_output_is_deterministic() -> None:
    one = plan_for(classic_estate(), policy()).as_dict()
    two = plan_for(list(reversed(classic_estate())), policy()).as_dict()
    assert one == two


def test_rule_limit_is_checked_before_any_write() -> None:
    many = tuple(  # alternating actions: no two neighbours can be merged safely
        Rule(f"r{i}", i, "web", "logic", (PortRange(10000 + i, 10000 + i),), Protocol.TCP,
             Action.ALLOW if i % 2 else Action.DENY)
        for i in range(1, 1001)
    )
    wide = Ownership(band_low=1000, band_high=2999)
    plan = plan_for(classic_estate(), policy(many, wide))
    app = nsg_plan(plan, "nsg-payroll-app")
    assert any("exceed Azure's 1000 per NSG" in e for e in app.errors)


def test_nsg_ids_match_the_inventory() -> None:
    rows = classic_estate()
    inventory = normalize(rows)
    compiled = compile_policy(policy(), inventory)
    assert set(compiled.rules) <= {key(n) for n in inventory.nsgs}


def test_rules_that_do_not_fit_the_band_fail_the_nsg_and_remove_nothing() -> None:
    """A band too small for the policy is that NSG's error: its owned rules stay as they are
    (an empty rule list must not read as "remove them all", deny-all included)."""
    small = Ownership(band_low=1000, band_high=1005)  # 4 slots beside the 2 posture rules
    two = tuple(Rule(f"r{i}", i, "web", "logic", (PortRange(1000 + i, 1000 + i),), Protocol.TCP,
                     Action.ALLOW if i % 2 else Action.DENY) for i in range(1, 3))
    applied = rows_after(classic_estate(), plan_for(classic_estate(), policy(two, small)).nsgs,
                         small)
    before = nsg_plan(plan_for(applied, policy(two, small)), "nsg-payroll-app")
    assert before.is_noop and not before.errors
    six = tuple(Rule(f"r{i}", i, "web", "logic", (PortRange(1000 + i, 1000 + i),),
                     Protocol.TCP, Action.ALLOW if i % 2 else Action.DENY)  # nothing merges
                for i in range(1, 7))
    plan = plan_for(applied, policy(six, small))
    app = nsg_plan(plan, "nsg-payroll-app")
    assert app.is_noop and not app.desired
    assert app.errors and "do not fit in the priority band 1000-1003" in app.errors[0]
    assert plan.has_errors
    assert rows_after(applied, plan.nsgs, small) == applied  # nothing of it is written


def test_rules_that_merge_fit_a_band_they_would_not_fit_apart() -> None:
    small = Ownership(band_low=1000, band_high=1005)
    six = tuple(Rule(f"r{i}", i, "web", "logic", (PortRange(1000 + 2 * i, 1000 + 2 * i),),
                     Protocol.TCP, Action.ALLOW) for i in range(1, 7))  # same peers, one action
    app = nsg_plan(plan_for(classic_estate(), policy(six, small)), "nsg-payroll-app")
    assert not app.errors
    inbound = [r for r in app.desired if r.direction.value == "Inbound"
               and r.name.startswith("zts-r")]
    assert len(inbound) == 1
    assert inbound[0].destination_ports == tuple(str(1000 + 2 * i) for i in range(1, 7))


def test_merged_neighbours_coalesce_their_ports() -> None:
    small = Ownership(band_low=1000, band_high=1005)
    six = tuple(Rule(f"r{i}", i, "web", "logic", (PortRange(1000 + i, 1000 + i),),
                     Protocol.TCP, Action.ALLOW) for i in range(1, 7))
    app = nsg_plan(plan_for(classic_estate(), policy(six, small)), "nsg-payroll-app")
    assert not app.errors
    (merged,) = [r for r in app.desired if r.policy_rule.startswith("r1,")]
    assert merged.destination_ports == ("1001-1006",)
    assert merged.policy_rule == "r1,r2,r3,r4,r5,r6"


def test_over_budget_a_union_of_exact_asgs_replaces_prefixes() -> None:
    """A group made of two whole ASGs of the NSG's VNet is written as prefixes while it fits,
    and as both ASGs once the NSG is over budget (then the neighbours merge); the applied plan
    still equals the policy for every member pair."""
    from tests.policy.proof import prove

    front = Group("front", AnyOf((AsgSelector("Web"), AsgSelector("Logic"))))
    rules = tuple(Rule(f"r{i}", i, "front", "logic", (PortRange(1000 + i, 1000 + i),),
                       Protocol.TCP, Action.ALLOW) for i in range(1, 7))

    def pol(band: Ownership) -> Policy:
        return Policy(Posture(), EnforcementPoint.SUBNET, (*GROUPS, front), rules, band)

    def source_of(band: Ownership) -> tuple[tuple[str, ...], tuple[str, ...]]:
        app = nsg_plan(plan_for(classic_estate(), pol(band)), "nsg-payroll-app")
        assert not app.errors, app.errors
        first = next(r for r in app.desired if r.policy_rule.startswith("r1"))
        return first.source_prefixes, tuple(a.rsplit("/", 1)[1] for a in first.source_asgs)

    assert source_of(BAND)[1] == ()  # fits: prefixes, one rule per policy rule
    small = Ownership(band_low=1000, band_high=1005)
    assert source_of(small) == ((), ("Logic", "Web"))
    proof = prove(classic_estate(), pol(small))
    assert proof.compared > 0 and not proof.mismatches, proof.mismatches[:5]
    # half of Web (its prod NICs) and all of Logic: no union of whole ASGs is exact
    front = Group("front", AnyOf((AllOf((AsgSelector("Web"), TagsSelector((("env", "prod"),)))),
                                  AsgSelector("Logic"))))
    prefixes, asgs = source_of(small)
    assert asgs == () and prefixes == ("10.10.1.4/31", "10.10.2.4/31")


def _rule(name: str, priority: int, *, sources: tuple[str, ...] = ("10.0.0.1/32",),
          source_asgs: tuple[str, ...] = (), destinations: tuple[str, ...] = ("10.1.0.1/32",),
          ) -> Any:
    from shared.domain.assets import Access, Direction
    from shared.policy.nsg_target import DesiredRule

    return DesiredRule(name, priority, Direction.INBOUND, Access.ALLOW, "Tcp",
                       () if source_asgs else sources, source_asgs, destinations, (), ("443",),
                       "zts test", "t")


def test_azure_limits_fail_the_nsg_with_the_numbers() -> None:
    """Each of Azure's limits (addresses per NSG, ASGs per NSG and per rule side, priority
    range) fails the NSG's plan with the numbers, before any write."""
    from shared.policy.planner import plan_nsg

    nsg = normalize(classic_estate()).nsgs
    target = next(n for n in nsg.values() if n.name == "nsg-payroll-app")
    asg = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/applicationSecurityGroups/"
    # The NSG's own (unowned) rules count against the limit too: fill it up to one past it.
    from shared.policy.planner import owned
    band = Ownership(band_low=1000, band_high=4096)
    unowned = [r for r in target.rules if not owned(r, band)]
    theirs = sum(len(r.source_prefixes) for r in unowned)
    their_asgs = len({a.lower() for r in unowned
                      for a in (*r.source_asg_ids, *r.destination_asg_ids)})
    assert theirs > 0 and their_asgs > 0
    cases = {
        "4001 source addresses/ranges exceed Azure's 4000 per NSG": [
            _rule("zts-wide", 1000, sources=tuple(f"10.{i // 250}.{i % 250}.1/32"
                                                   for i in range(4001 - theirs)))],
        "101 ASGs exceed Azure's 100 per NSG": [
            _rule(f"zts-a{i}", 1000 + i, source_asgs=(f"{asg}a{i}",))
            for i in range(101 - their_asgs)],
        "names 11 source ASGs; Azure allows 10 per side of a rule": [
            _rule("zts-many", 1000, source_asgs=tuple(f"{asg}m{i}" for i in range(11)))],
        "priority 4097, outside Azure's 100-4096": [_rule("zts-late", 4097)],
    }
    for message, desired in cases.items():
        plan = plan_nsg(target, desired, band)
        assert any(message in e for e in plan.errors), (message, plan.errors)
    ok = plan_nsg(target, [_rule("zts-one", 1000)], band)
    assert not ok.errors
