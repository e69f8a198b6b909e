"""The equivalence proof's machinery: apply a plan to a snapshot, then ask the independent NSG
evaluator (shared/policy/evaluator.py) about every pair of group members, every policy port
edge and ports outside the policy, and compare with the policy's intent read literally.

The intent, for a packet between two members (routable: same or peered VNet):

* the first policy rule (by priority) whose source and destination groups hold the two ends,
  whose protocol and ports match, decides: allow or deny. ``any`` holds every address,
  ``internet`` and service tags other than ``VirtualNetwork`` hold no estate address,
  ``VirtualNetwork`` holds every estate address, ``cidr`` groups hold what their ranges hold.
  An ICMP packet's type stands for its port, as the evaluator documents (8, echo request).
* no rule matches: denied when the inbound posture is default-deny and the destination is
  behind an NSG at the enforcement point, or the outbound posture is default-deny and the
  source is; otherwise Azure's default rules allow it (traffic inside the virtual network).

A pair is compared only when zts can enforce it: the destination is behind an NSG at the
enforcement point, or the outbound posture is default-deny and the source is (the compiler
warns about members no NSG protects). Nothing here imports the compiler's reasoning: it reads
the policy model, the resolved groups and the evaluator's verdicts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from shared.domain.arm_id import key
from shared.domain.assets import IpAddress
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.apply import rows_after
from shared.policy.compiler import compile_policy
from shared.policy.evaluator import NsgEvaluator, Packet
from shared.policy.model import (
    BUILTIN_ANY,
    BUILTIN_INTERNET,
    Action,
    EnforcementPoint,
    InboundPosture,
    OutboundPosture,
    Policy,
    Protocol,
)
from shared.policy.planner import build_plan

OUTSIDE_PORTS = (1, 9999, 65535)
ICMP_ECHO = 8  # the ICMP type an Icmp packet carries in its port (evaluator's convention)
NSG_TYPE = "microsoft.network/networksecuritygroups"
VNET_TYPE = "microsoft.network/virtualnetworks"
NIC_TYPE = "microsoft.network/networkinterfaces"


@dataclass
class Proof:
    compared: int = 0
    mismatches: list[str] = field(default_factory=list)
    pairs: int = 0  # enforceable member pairs looked at


# -- estates --------------------------------------------------------------------------------------


def greenfield(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The estate with every hand-made NSG rule removed: hand-made rules evaluated before the
    band legitimately bypass the policy (the plan warns about them), so the proof runs without."""
    return [
        {**row, "properties": {**row["properties"], "securityRules": []}}
        if row.get("type") == NSG_TYPE else row
        for row in rows
    ]


def _subnet_nsgs(rows: list[dict[str, Any]], detach: bool) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("type") != VNET_TYPE:
            continue
        for subnet in row["properties"].get("subnets", []):
            ref = subnet["properties"].get("networkSecurityGroup")
            if ref:
                found[key(subnet["id"])] = ref
                if detach:
                    del subnet["properties"]["networkSecurityGroup"]
    if detach:
        for row in rows:
            if row.get("type") == NSG_TYPE:
                row["properties"].pop("subnets", None)
    return found


def _nic_subnet(row: dict[str, Any]) -> str:
    return key(row["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"])


def nsgs_on_nics(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The estate with each subnet's NSG moved onto the NICs of that subnet (NIC enforcement)."""
    out = copy.deepcopy(list(rows))
    by_subnet = _subnet_nsgs(out, detach=True)
    for row in out:
        if row.get("type") == NIC_TYPE and _nic_subnet(row) in by_subnet:
            row["properties"]["networkSecurityGroup"] = dict(by_subnet[_nic_subnet(row)])
    return out


def nsgs_on_both(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The estate with its subnet NSGs kept and a second, new NSG on the NICs of each of those
    subnets: two NSGs on every path (both enforcement points)."""
    out = copy.deepcopy(list(rows))
    by_subnet = _subnet_nsgs(out, detach=False)
    originals = {key(r["id"]): r for r in out if r.get("type") == NSG_TYPE}
    made: dict[str, dict[str, Any]] = {}
    for row in out:
        if row.get("type") != NIC_TYPE or _nic_subnet(row) not in by_subnet:
            continue
        source = originals[key(by_subnet[_nic_subnet(row)]["id"])]
        twin = made.get(key(source["id"]))
        if twin is None:
            twin = copy.deepcopy(source)
            twin["id"] = source["id"] + "-nics"
            twin["name"] = source["name"] + "-nics"
            twin["properties"] = {**twin["properties"], "securityRules": []}
            twin["properties"].pop("subnets", None)
            twin["properties"].pop("networkInterfaces", None)
            made[key(source["id"])] = twin
        row["properties"]["networkSecurityGroup"] = {"id": twin["id"]}
    return out + list(made.values())


# -- intent ---------------------------------------------------------------------------------------


def routable(inventory: Inventory, src: IpAddress, dst: IpAddress) -> bool:
    (a,), (b,) = inventory.locate_ip(src)[:1], inventory.locate_ip(dst)[:1]
    if a.vnet is None or b.vnet is None:
        return False
    if key(a.vnet.id) == key(b.vnet.id):
        return True
    return any(key(p.remote_vnet_id) == key(b.vnet.id) and (p.state or "") == "Connected"
               for p in a.vnet.peerings)


@dataclass(frozen=True)
class Membership:
    """Which estate addresses each name in the policy holds."""

    groups: dict[str, frozenset[IpAddress]]
    ranges: dict[str, tuple[IPv4Network | IPv6Network, ...]]
    estate: frozenset[IpAddress]

    def holds(self, name: str, ip: IpAddress) -> bool:
        if name in (BUILTIN_ANY, "VirtualNetwork"):
            return True
        if name == BUILTIN_INTERNET:
            return False
        if ip in self.groups.get(name, frozenset()):
            return True
        return any(ip in network for network in self.ranges.get(name, ()))


def intent(policy: Policy, members: Membership, src: IpAddress, dst: IpAddress, port: int,
           protocol: str, *, src_enforced: bool, dst_enforced: bool) -> bool:
    for rule in sorted(policy.rules, key=lambda r: (r.priority, r.name)):
        if not (members.holds(rule.source, src) and members.holds(rule.destination, dst)):
            continue
        if rule.protocol is not Protocol.ANY and rule.protocol.value != protocol.lower():
            continue
        if not any(p.low <= port <= p.high for p in rule.ports):
            continue
        return rule.action is Action.ALLOW
    inbound_deny = policy.posture.inbound is InboundPosture.DEFAULT_DENY and dst_enforced
    outbound_deny = policy.posture.outbound is OutboundPosture.DEFAULT_DENY and src_enforced
    return not (inbound_deny or outbound_deny)


def _enforced(inventory: Inventory, ip: IpAddress, point: EnforcementPoint) -> bool:
    where = inventory.locate_ip(ip)[0]
    subnet = bool(where.subnet is not None and where.subnet.nsg_id)
    nic = bool(where.nic.nsg_id)
    if point is EnforcementPoint.SUBNET:
        return subnet
    if point is EnforcementPoint.NIC:
        return nic
    return subnet or nic


def prove(rows: list[dict[str, Any]], policy: Policy, max_ports: int = 200) -> Proof:
    """Compile, plan and apply ``policy`` on ``rows``, then compare every decision."""
    before = normalize(rows)
    compiled = compile_policy(policy, before)
    plan = build_plan(compiled, before, policy.ownership)
    assert not plan.has_errors, plan.as_dict()["errors"]
    after = normalize(rows_after(rows, plan.nsgs, policy.ownership))
    evaluator = NsgEvaluator(after)
    members = Membership(
        {name: frozenset(m.ip for m in g.members) for name, g in compiled.groups.items()},
        {name: tuple(g.external) for name, g in compiled.groups.items() if g.external},
        frozenset(where.ip for where in after.ip_locations()))
    ips = sorted(set().union(*members.groups.values()) if members.groups else set(),
                 key=lambda ip: (ip.version, int(ip)))
    point = policy.enforcement
    inbound = {ip: _enforced(after, ip, point) for ip in ips}
    outbound = {ip: inbound[ip] and policy.posture.outbound is OutboundPosture.DEFAULT_DENY
                for ip in ips}
    ports = sorted({p.low for r in policy.rules for p in r.ports}
                   | {p.high for r in policy.rules for p in r.ports}
                   | {p.high + 1 for r in policy.rules for p in r.ports if p.high < 65535}
                   | set(OUTSIDE_PORTS))
    ports = ports[:: max(1, len(ports) // max_ports)]
    proof = Proof()
    for src in ips:
        for dst in ips:
            if src == dst or not (inbound[dst] or outbound[src]) \
                    or not routable(after, src, dst):
                continue
            proof.pairs += 1
            packets = [(port, protocol) for port in ports for protocol in ("Tcp", "Udp")]
            packets.append((ICMP_ECHO, "Icmp"))
            for port, protocol in packets:
                want = intent(policy, members, src, dst, port, protocol,
                              src_enforced=outbound[src], dst_enforced=inbound[dst])
                got = evaluator.decide(Packet(src, dst, port, protocol)).allowed
                proof.compared += 1
                if want != got:
                    proof.mismatches.append(f"{src}->{dst}:{port}/{protocol} policy={want} "
                                            f"nsg={got}")
    return proof
