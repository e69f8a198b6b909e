"""Proof, not hope: after applying the plan, Azure's NSG semantics admit exactly what the policy
intends, for every pair of group members, every policy port edge and ports outside the policy,
at every enforcement point and in every posture (tests/policy/proof.py holds the machinery and
the literal reading of the policy it compares with).

The compiler and the evaluator (shared/policy/evaluator.py) are written independently. Pairs
Azure could not route at all (VNets neither equal nor peered) are left out: routing is not what
NSGs decide; so are pairs no NSG at the enforcement point protects (the compiler warns).
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.domain.arm_id import key
from shared.domain.normalize import normalize
from shared.policy.compiler import compile_policy
from shared.policy.loader import load_policy_file
from shared.policy.model import (
    BUILTIN_ANY,
    BUILTIN_INTERNET,
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    EnforcementPoint,
    Group,
    InboundPosture,
    NotOf,
    OutboundPosture,
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
from tests.policy.proof import greenfield, nsgs_on_both, nsgs_on_nics, prove, routable

BAND = Ownership(band_low=1000, band_high=2999)
POSTURES = tuple(Posture(i, o) for i in InboundPosture for o in OutboundPosture)
ANY_PORT = (PortRange(0, 65535),)
SAMPLE_POLICY = Path(__file__).resolve().parents[2] / "shared" / "sample" / "data" / "policy.yaml"

SAMPLE_GROUPS = (
    Group("web", AsgSelector("Web")),
    Group("logic", AllOf((AsgSelector("Logic"), VnetSelector("payroll-vnet")))),
    Group("sap", AllOf((TagsSelector((("app", "sap"), ("tier", "app"))),))),
    Group("db", TagsSelector((("tier", "db"),))),
    Group("dns", TagsSelector((("role", "dns"),))),
    Group("hdi", VnetSelector("hdi-vnet")),
)


SAMPLE_RULES = (
    Rule("web-to-logic", 10, "web", "logic", (PortRange(8443, 8443),), Protocol.TCP,
         Action.ALLOW),
    Rule("no-smb", 15, "logic", "sap", (PortRange(445, 445),), Protocol.ANY, Action.DENY),
    Rule("logic-to-sap", 20, "logic", "sap", (PortRange(3200, 3399),), Protocol.TCP,
         Action.ALLOW),
    Rule("sap-to-db", 30, "sap", "db", (PortRange(1433, 1433),), Protocol.TCP, Action.ALLOW),
    Rule("all-to-dns", 40, "web", "dns", (PortRange(53, 53),), Protocol.UDP, Action.ALLOW),
    Rule("hdi-internal", 50, "hdi", "hdi", ANY_PORT, Protocol.ANY, Action.ALLOW),
)
#: built-in and literal peers, ICMP and an external range besides the groups
PEER_RULES = (
    Rule("ping-dns", 5, BUILTIN_ANY, "dns", ANY_PORT, Protocol.ICMP, Action.ALLOW),
    Rule("web-from-internet", 6, BUILTIN_INTERNET, "web", (PortRange(443, 443),), Protocol.TCP,
         Action.ALLOW),
    Rule("vnet-to-db", 7, "VirtualNetwork", "db", (PortRange(1434, 1434),), Protocol.TCP,
         Action.DENY),
    Rule("hub-range-to-sap", 8, "hub", "sap", (PortRange(3300, 3300),), Protocol.TCP,
         Action.ALLOW),
    Rule("no-rdp-anywhere", 9, BUILTIN_ANY, "logic", (PortRange(3389, 3389),), Protocol.TCP,
         Action.DENY),
)
HUB = Group("hub", CidrSelector((ip_network("10.0.0.0/16"),)))


def test_sample_policy_is_enforced_exactly() -> None:
    proof = prove(greenfield(classic_estate()),
                  Policy(Posture(), EnforcementPoint.SUBNET, SAMPLE_GROUPS, SAMPLE_RULES, BAND))
    assert proof.compared > 10_000
    assert proof.mismatches == []


def test_the_shipped_sample_policy_is_enforced_exactly() -> None:
    loaded = load_policy_file(SAMPLE_POLICY)
    assert loaded.policy is not None, loaded.errors
    proof = prove(greenfield(classic_estate()), loaded.policy)
    assert proof.compared > 10_000
    assert proof.mismatches == [], proof.mismatches[:5]


ESTATES = {
    EnforcementPoint.SUBNET: greenfield(classic_estate()),
    EnforcementPoint.NIC: nsgs_on_nics(greenfield(classic_estate())),
    EnforcementPoint.BOTH: nsgs_on_both(greenfield(classic_estate())),
}


def test_the_estate_variants_put_nsgs_where_they_say() -> None:
    def placements(point: EnforcementPoint) -> tuple[int, int, int]:
        where = list(normalize(ESTATES[point]).ip_locations())
        subnet = sum(1 for w in where if w.subnet is not None and w.subnet.nsg_id)
        nic = sum(1 for w in where if w.nic.nsg_id)
        two = sum(1 for w in where if w.nic.nsg_id and w.subnet is not None and w.subnet.nsg_id
                  and key(w.nic.nsg_id) != key(w.subnet.nsg_id))
        return subnet, nic, two

    assert placements(EnforcementPoint.SUBNET)[1] == 0
    subnet, nic, _ = placements(EnforcementPoint.NIC)
    assert subnet == 0 and nic >= 10
    subnet, nic, two = placements(EnforcementPoint.BOTH)
    assert two == nic == subnet >= 10


def test_every_enforcement_point_and_posture_is_enforced_exactly() -> None:
    groups = (*SAMPLE_GROUPS, HUB)
    rules = (*PEER_RULES, *SAMPLE_RULES)
    for point, rows in ESTATES.items():
        for posture in POSTURES:
            proof = prove(rows, Policy(posture, point, groups, rules, BAND))
            assert proof.compared > 5_000, (point, posture)
            assert proof.mismatches == [], (point, posture, proof.mismatches[:5])


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
    for posture in POSTURES:
        proof = prove(rows, Policy(posture, EnforcementPoint.SUBNET, groups, rules, BAND))
        assert proof.compared > 1_000 and proof.mismatches == [], posture


# -- property: random policies over the sample estate ----------------------------------------

_INV = normalize(ESTATES[EnforcementPoint.SUBNET])
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


LITERAL_PEERS = (BUILTIN_ANY, BUILTIN_INTERNET, "VirtualNetwork", "AzureLoadBalancer")


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    groups = tuple(Group(f"g{i}", draw(selectors)) for i in range(draw(st.integers(2, 4))))
    names = [g.name for g in groups]
    rules = []
    for i in range(draw(st.integers(1, 6))):
        protocol = draw(st.sampled_from(list(Protocol)))
        low, high = (0, 65535) if protocol is Protocol.ICMP else draw(port_ranges)
        source, destination = (
            draw(st.sampled_from(names + list(LITERAL_PEERS)) if draw(st.booleans())
                 else st.sampled_from(names)) for _ in range(2))
        rules.append(Rule(
            f"r{i}", draw(st.integers(1, 500)) * 10 + i, source, destination,
            (PortRange(low, high),), protocol, draw(st.sampled_from(list(Action))),
        ))
    point = draw(st.sampled_from(list(EnforcementPoint)))
    return Policy(draw(st.sampled_from(POSTURES)), point, groups, tuple(rules), BAND)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_random_policies_are_enforced_exactly(policy: Policy) -> None:
    proof = prove(ESTATES[policy.enforcement], policy)
    assume(proof.compared > 0)  # a policy whose groups hold no enforceable pair proves nothing
    assert proof.mismatches == [], proof.mismatches[:5]


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
    proof = prove(rows, policy)
    assert proof.compared > 1_000 and proof.mismatches == []


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
    point = draw(st.sampled_from(list(EnforcementPoint)))
    if point is EnforcementPoint.NIC:
        rows = nsgs_on_nics(rows)
    elif point is EnforcementPoint.BOTH:
        rows = nsgs_on_both(rows)
    return rows, Policy(draw(st.sampled_from(POSTURES)), point, groups, rules, BAND)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(estates_and_policies())
def test_generated_estates_and_policies_are_enforced_exactly(
    case: tuple[list[dict[str, Any]], Policy],
) -> None:
    rows, policy = case
    proof = prove(rows, policy)
    assume(proof.compared > 0)  # nothing enforceable: proves nothing, so it is not counted
    assert proof.mismatches == [], proof.mismatches[:5]
