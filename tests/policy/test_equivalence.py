"""Proof, not hope: after applying the plan, Azure's NSG semantics admit exactly what the policy
intends, for every pair of group members, every policy port and ports outside the policy.

The compiler and the evaluator (shared/policy/evaluator.py) are written independently; the
intent below is the policy read literally (first matching rule by priority, else default deny).
Pairs that Azure could not route at all (VNets neither equal nor peered) are left out: routing is
not what NSGs decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.arm_id import key
from shared.domain.assets import IpAddress
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.apply import rows_after
from shared.policy.compiler import Compiled, compile_policy
from shared.policy.evaluator import NsgEvaluator, Packet
from shared.policy.model import (
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    EnforcementPoint,
    Group,
    NotOf,
    Ownership,
    Policy,
    PortRange,
    Posture,
    Protocol,
    Rule,
    Selector,
    SubnetSelector,
    TagsSelector,
    VnetSelector,
)
from shared.policy.planner import build_plan
from shared.sample.estate import classic_estate, scaled_estate

BAND = Ownership(band_low=1000, band_high=2999)
OUTSIDE_PORTS = (1, 9999, 65535)


def greenfield(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The estate with every hand-made NSG rule removed: hand-made rules evaluated before the
    band legitimately bypass the policy (the plan warns about them), so the proof runs without."""
    return [
        {**row, "properties": {**row["properties"], "securityRules": []}}
        if row.get("type") == "microsoft.network/networksecuritygroups" else row
        for row in rows
    ]


def routable(inventory: Inventory, src: IpAddress, dst: IpAddress) -> bool:
    (a,), (b,) = inventory.locate_ip(src)[:1], inventory.locate_ip(dst)[:1]
    if a.vnet is None or b.vnet is None:
        return False
    if key(a.vnet.id) == key(b.vnet.id):
        return True
    return any(key(p.remote_vnet_id) == key(b.vnet.id) and (p.state or "") == "Connected"
               for p in a.vnet.peerings)


def intent(policy: Policy, members: dict[str, set[IpAddress]], src: IpAddress, dst: IpAddress,
           port: int, protocol: str) -> bool:
    for rule in sorted(policy.rules, key=lambda r: (r.priority, r.name)):
        if src not in members.get(rule.source, set()) or dst not in members.get(
                rule.destination, set()):
            continue
        if rule.protocol is not Protocol.ANY and rule.protocol.value != protocol.lower():
            continue
        if not any(p.low <= port <= p.high for p in rule.ports):
            continue
        return rule.action is Action.ALLOW
    return False  # default deny inbound


def prove(rows: list[dict[str, Any]], policy: Policy,
          max_ports: int = 200) -> tuple[int, list[str]]:
    """Number of decisions compared, and the mismatches (empty when equivalent). Ports are the
    policy's range edges plus ports outside it, spread evenly when there are many."""
    before = normalize(rows)
    compiled: Compiled = compile_policy(policy, before)
    plan = build_plan(compiled, before, policy.ownership)
    assert not plan.has_errors, plan.as_dict()["errors"]
    after = normalize(rows_after(rows, plan.nsgs, policy.ownership))
    evaluator = NsgEvaluator(after)
    members = {name: {m.ip for m in g.members} for name, g in compiled.groups.items()}
    protected = {m.ip for g in compiled.groups.values() for m in g.members
                 if m.subnet is not None and m.subnet.nsg_id}
    ips = sorted(set().union(*members.values()) if members else set())
    ports = sorted({p.low for r in policy.rules for p in r.ports}
                   | {p.high for r in policy.rules for p in r.ports}
                   | {p.high + 1 for r in policy.rules for p in r.ports if p.high < 65535}
                   | set(OUTSIDE_PORTS))
    ports = ports[:: max(1, len(ports) // max_ports)]
    compared, mismatches = 0, []
    for src in ips:
        for dst in ips:
            if src == dst or dst not in protected or not routable(after, src, dst):
                continue
            for port in ports:
                for protocol in ("Tcp", "Udp"):
                    want = intent(policy, members, src, dst, port, protocol)
                    got = evaluator.decide(Packet(src, dst, port, protocol)).allowed
                    compared += 1
                    if want != got:
                        mismatches.append(f"{src}->{dst}:{port}/{protocol} policy={want} "
                                          f"nsg={got}")
    return compared, mismatches


SAMPLE_GROUPS = (
    Group("web", AsgSelector("Web")),
    Group("logic", AllOf((AsgSelector("Logic"), VnetSelector("payroll-vnet")))),
    Group("sap", AllOf((TagsSelector((("app", "sap"), ("tier", "app"))),))),
    Group("db", TagsSelector((("tier", "db"),))),
    Group("dns", TagsSelector((("role", "dns"),))),
    Group("hdi", VnetSelector("hdi-vnet")),
)


def test_sample_policy_is_enforced_exactly() -> None:
    policy = Policy(Posture(), EnforcementPoint.SUBNET, SAMPLE_GROUPS, (
        Rule("web-to-logic", 10, "web", "logic", (PortRange(8443, 8443),), Protocol.TCP,
             Action.ALLOW),
        Rule("no-smb", 15, "logic", "sap", (PortRange(445, 445),), Protocol.ANY, Action.DENY),
        Rule("logic-to-sap", 20, "logic", "sap", (PortRange(3200, 3399),), Protocol.TCP,
             Action.ALLOW),
        Rule("sap-to-db", 30, "sap", "db", (PortRange(1433, 1433),), Protocol.TCP, Action.ALLOW),
        Rule("all-to-dns", 40, "web", "dns", (PortRange(53, 53),), Protocol.UDP, Action.ALLOW),
        Rule("hdi-internal", 50, "hdi", "hdi", (PortRange(0, 65535),), Protocol.ANY,
             Action.ALLOW),
    ), BAND)
    compared, mismatches = prove(greenfield(classic_estate()), policy)
    assert compared > 10_000
    assert mismatches == []


def test_nic_and_both_enforcement_points() -> None:
    rows = greenfield(classic_estate())
    rules = (Rule("web-to-logic", 10, "web", "logic", (PortRange(8443, 8443),), Protocol.TCP,
                  Action.ALLOW),)
    for point in (EnforcementPoint.SUBNET, EnforcementPoint.BOTH):
        compared, mismatches = prove(rows, Policy(Posture(), point, SAMPLE_GROUPS, rules, BAND))
        assert compared and mismatches == [], point


def test_scaled_estate_policy_is_enforced_exactly() -> None:
    rows = greenfield(scaled_estate(2, 2, 12, seed=5))
    inventory = normalize(rows)
    asgs = sorted(a.name for a in inventory.asgs.values())
    groups = tuple(Group(f"g{i}", AsgSelector(name)) for i, name in enumerate(asgs[:6]))
    rules = tuple(
        Rule(f"r{i}", i + 1, groups[i % 6].name, groups[(i * 5 + 1) % 6].name,
             (PortRange(1000 + i, 1000 + i),), Protocol.TCP,
             Action.DENY if i % 4 == 3 else Action.ALLOW)
        for i in range(12)
    )
    compared, mismatches = prove(rows, Policy(Posture(), EnforcementPoint.SUBNET, groups, rules,
                                              BAND))
    assert compared and mismatches == []


# -- property: random policies over the sample estate ----------------------------------------

ESTATE = greenfield(classic_estate())
_INV = normalize(ESTATE)
_ATOMS: list[Selector] = [
    *(AsgSelector(a.name) for a in _INV.asgs.values()),
    *(VnetSelector(v.name) for v in _INV.vnets.values()),
    *(SubnetSelector(f"{v.name}/{_INV.subnets[key(s)].name}")
      for v in _INV.vnets.values() for s in v.subnet_ids),
    TagsSelector((("tier", "app"),)), TagsSelector((("env", "dev"),)),
    TagsSelector((("app", "sap"),)), TagsSelector((("role", "*"),)),
]
atoms = st.sampled_from(_ATOMS)
selectors = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AllOf(tuple(xs))),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
        inner.map(NotOf),
    ),
    max_leaves=4,
)
port_ranges = st.sampled_from([(22, 22), (443, 443), (1000, 1010), (3389, 3389), (0, 65535)])


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    groups = tuple(Group(f"g{i}", draw(selectors)) for i in range(draw(st.integers(2, 4))))
    rules = []
    for i in range(draw(st.integers(1, 6))):
        low, high = draw(port_ranges)
        rules.append(Rule(
            f"r{i}", draw(st.integers(1, 500)) * 10 + i,
            draw(st.sampled_from(groups)).name, draw(st.sampled_from(groups)).name,
            (PortRange(low, high),), draw(st.sampled_from(list(Protocol))),
            draw(st.sampled_from(list(Action))),
        ))
    point = draw(st.sampled_from([EnforcementPoint.SUBNET, EnforcementPoint.BOTH]))
    return Policy(Posture(), point, groups, tuple(rules), BAND)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_random_policies_are_enforced_exactly(policy: Policy) -> None:
    _, mismatches = prove(ESTATE, policy)
    assert mismatches == [], mismatches[:5]


def test_ip_helper_sanity() -> None:
    assert routable(_INV, ip_address("10.10.1.4"), ip_address("10.10.2.4"))


def test_over_budget_rules_are_merged_and_stay_exact() -> None:
    """600 rules between the same groups exceed half the NSG's rule budget: the compiler merges
    neighbours (the safe reduction) and the result still admits exactly the policy."""
    rules = tuple(
        Rule(f"p{i}", i + 1, "web", "logic", (PortRange(10000 + 2 * i, 10000 + 2 * i),),
             Protocol.TCP, Action.ALLOW)
        for i in range(600)
    )
    policy = Policy(Posture(), EnforcementPoint.SUBNET, SAMPLE_GROUPS[:2], rules, BAND)
    rows = greenfield(classic_estate())
    inventory = normalize(rows)
    plan = build_plan(compile_policy(policy, inventory), inventory, BAND)
    app = next(p for p in plan.nsgs if p.nsg_id.endswith("/nsg-payroll-app"))
    merged = [r for r in app.desired if r.policy_rule.startswith("p0,")]
    assert len(merged) == 1
    assert len(merged[0].destination_ports) == 600
    compared, mismatches = prove(rows, policy)
    assert compared and mismatches == []


@st.composite
def estates_and_policies(draw: st.DrawFn) -> tuple[list[dict[str, Any]], Policy]:
    """A generated estate (shape and seed drawn) and a policy over what that estate holds."""
    rows = greenfield(scaled_estate(draw(st.integers(1, 2)), draw(st.integers(1, 3)),
                                    draw(st.integers(3, 8)), seed=draw(st.integers(0, 10_000))))
    inventory = normalize(rows)
    found = [
        *(AsgSelector(a.id) for a in inventory.asgs.values()),
        *(VnetSelector(v.id) for v in inventory.vnets.values()),
        TagsSelector((("tier", "web"),)), TagsSelector((("tier", "app"),)),
        TagsSelector((("env", "prod"),)),
    ]
    pick = st.sampled_from(found)
    chosen = st.one_of(pick, st.lists(pick, min_size=1, max_size=2).map(lambda x: AllOf(tuple(x))),
                       pick.map(NotOf))
    groups = tuple(Group(f"g{i}", draw(chosen)) for i in range(draw(st.integers(2, 4))))
    rules = tuple(
        Rule(f"r{i}", i * 10 + 10, draw(st.sampled_from(groups)).name,
             draw(st.sampled_from(groups)).name, (PortRange(*draw(port_ranges)),),
             draw(st.sampled_from([Protocol.TCP, Protocol.UDP])),
             draw(st.sampled_from(list(Action))))
        for i in range(draw(st.integers(1, 5)))
    )
    return rows, Policy(Posture(), EnforcementPoint.SUBNET, groups, rules, BAND)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(estates_and_policies())
def test_generated_estates_and_policies_are_enforced_exactly(
    case: tuple[list[dict[str, Any]], Policy],
) -> None:
    rows, policy = case
    _, mismatches = prove(rows, policy)
    assert mismatches == [], mismatches[:5]
