"""Observe -> allow: least-privilege allow rules at group granularity, from observed flows.

Adaptive network hardening used to do this per VM; zts does it per *group*, as Illumio's policy
generator does, because rules between groups stay correct as workloads scale. Each observed
estate host is put in one group, the first that applies of:

1. a group of the existing policy (``--policy``) that holds it (first in file order);
2. its application security group (the name, or the id when the name is ambiguous);
3. its ``role`` tag, else its ``app`` + ``tier`` tags;
4. its subnet (``vnet/subnet``).

Every observed *allowed* connection then becomes (source group, destination group, protocol,
port); ports are merged per group pair into ranges. Public sources become ``from: internet``;
public destinations need no rule (outbound posture ``allow``). The result is a policy YAML the
loader and compiler accept, and its coverage is measured by resolving that policy back through
the real group resolver - the share of observed allowed flows (and of distinct connections) it
admits - never assumed from how it was built.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from itertools import pairwise
from typing import Any

import yaml

from shared.analytics.enrichment import PRIVATE_NETWORKS
from shared.analytics.query import Row
from shared.domain.arm_id import key
from shared.domain.inventory import Inventory, IpLocation
from shared.policy.groups import ResolvedGroup
from shared.policy.model import ALL_PORTS, Action, Policy, PortRange, Protocol

INTERNET = "internet"
FIRST_PRIORITY = 100
PRIORITY_STEP = 10
MAX_PRIORITY = 4096
_PROTOCOLS = {"T": "tcp", "TCP": "tcp", "6": "tcp", "U": "udp", "UDP": "udp", "17": "udp",
              "I": "icmp", "ICMP": "icmp", "1": "icmp"}


@dataclass(frozen=True, slots=True)
class ObservedFlow:
    """One distinct observed connection (``observed_flows.kql``)."""

    src: str
    dst: str
    port: int
    protocol: str  # tcp, udp, icmp or the raw value
    flow_type: str
    flows: int
    allowed: int
    denied: int


def observed_from_rows(rows: Iterable[Row]) -> list[ObservedFlow]:
    out = []
    for row in rows:
        proto = str(row.get("L4Protocol") or "")
        out.append(ObservedFlow(
            src=str(row.get("Src") or ""), dst=str(row.get("Dest") or ""),
            port=int(row.get("DestPort") or 0),
            protocol=_PROTOCOLS.get(proto.upper(), proto.lower()),
            flow_type=str(row.get("FlowType") or ""), flows=int(row.get("Flows") or 0),
            allowed=int(row.get("Allowed") or 0), denied=int(row.get("Denied") or 0)))
    return out


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "g-" + slug
    return slug[:limit].rstrip("-")


@dataclass
class _Grouping:
    """Estate IP -> group name, and group name -> YAML selector."""

    inventory: Inventory
    existing: Mapping[str, ResolvedGroup]
    existing_order: Sequence[str]
    by_ip: dict[str, str] = field(default_factory=dict)
    selectors: dict[str, Any] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def group_of(self, ip: str) -> str | None:
        if ip in self.by_ip:
            return self.by_ip[ip]
        try:
            found = self.inventory.locate_ip(ip)
        except ValueError:
            found = ()
        if not found:
            return None
        name = self._choose(found[0])
        self.by_ip[ip] = name
        self.members[name].add(ip)
        return name

    def _choose(self, where: IpLocation) -> str:
        for name in self.existing_order:
            if any(m.ip == where.ip for m in self.existing[name].members):
                return name
        inv = self.inventory
        asgs = sorted((inv.asgs[key(a)] for a in where.ip_configuration.asg_ids
                       if key(a) in inv.asgs), key=lambda a: (a.name.lower(), key(a.id)))
        if asgs:
            asg = asgs[0]
            same_name = [a for a in inv.asgs.values() if a.name.lower() == asg.name.lower()]
            return self._add(f"asg-{asg.name}", {"asg": asg.name if len(same_name) == 1
                                                 else asg.id})
        tags = dict(where.nic.tags)
        vm = inv.vm_of(where.nic)
        if vm is not None:
            tags = {**dict(vm.tags), **tags}
        if tags.get("role"):
            return self._add(f"role-{tags['role']}", {"tags": {"role": tags["role"]}})
        if tags.get("app") and tags.get("tier"):
            return self._add(f"{tags['app']}-{tags['tier']}",
                             {"tags": {"app": tags["app"], "tier": tags["tier"]}})
        if where.subnet is not None and where.vnet is not None:
            unique = sum(v.name.lower() == where.vnet.name.lower() for v in inv.vnets.values())
            ref = (f"{where.vnet.name}/{where.subnet.name}" if unique == 1 else where.subnet.id)
            return self._add(f"subnet-{where.vnet.name}-{where.subnet.name}", {"subnet": ref})
        return self._add(f"nic-{where.nic.name}", {"cidr": [f"{where.ip}/32"]})

    def _add(self, wanted: str, selector: Any) -> str:
        base = _slug(wanted)
        name, n = base, 2
        while name in self.selectors and self.selectors[name] != selector:
            name = f"{base[:36]}-{n}"
            n += 1
        self.selectors.setdefault(name, selector)
        return name


def is_public(ip: str) -> bool:
    """Public unless RFC 1918 / RFC 6598 (estate addresses are resolved before this is asked;
    the documentation ranges used by test data are public, unlike ``ipaddress.is_private``)."""
    try:
        address = ip_address(ip)
    except ValueError:
        return False
    return not any(address in network for network in PRIVATE_NETWORKS)


def _port_ranges(ports: Iterable[int]) -> list[str | int]:
    values = sorted(set(ports))
    out: list[str | int] = []
    start = prev = None
    for port in [*values, None]:
        if start is not None and (port is None or prev is None or port != prev + 1):
            out.append(start if start == prev else f"{start}-{prev}")
            start = None
        if port is not None and start is None:
            start = port
        prev = port
    return out


@dataclass
class Recommendation:
    """New groups (name -> selector) and allow rules, plus what could not be turned into a
    rule (by reason, in flows)."""

    groups: dict[str, Any]
    rules: list[dict[str, Any]]
    skipped: dict[str, int]
    band: tuple[int, int] = (100, 3999)

    def document(self, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A complete policy document: ``base`` (an existing policy file's data) extended with
        the new groups and rules, or a default-deny-inbound policy holding only them."""
        if base is None:
            document: dict[str, Any] = {
                "apiVersion": "zts/v1",
                "posture": {"inbound": "default-deny", "outbound": "allow"},
                "enforcement": "subnet",
                "ownership": {"band": list(self.band), "prefix": "zts-"},
                "groups": {},
                "rules": [],
            }
        else:
            document = dict(base)
            document["groups"] = dict(base.get("groups") or {})
            document["rules"] = list(base.get("rules") or [])
        document["groups"].update(self.groups)
        document["rules"] += self.rules
        return document

    def yaml_text(self, base: Mapping[str, Any] | None = None) -> str:
        header = ("# Recommended by `zts recommend` from observed allowed flows: one allow rule\n"
                  "# per observed group pair, protocol and port set. Review before enforcing;\n"
                  "# run `zts simulate` with this file to see what it would change.\n")
        return header + yaml.safe_dump(self.document(base), sort_keys=False,
                                       default_flow_style=None, width=100)


def recommend(flows: Sequence[ObservedFlow], inventory: Inventory,
              existing: Policy | None = None,
              existing_groups: Mapping[str, ResolvedGroup] | None = None) -> Recommendation:
    """Rules for the observed allowed flows that ``existing`` (if any) does not admit yet."""
    groups_in = existing_groups or {}
    order = [g.name for g in existing.groups] if existing is not None else []
    grouping = _Grouping(inventory, groups_in, [n for n in order if n in groups_in])
    members = {name: {str(m.ip) for m in g.members} for name, g in groups_in.items()}
    estate = set().union(*members.values()) if members else set()
    pairs: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    skipped: dict[str, int] = defaultdict(int)
    for flow in flows:
        if flow.allowed <= 0:
            continue
        if existing is not None and admits(existing, members, estate, flow):
            continue
        if flow.protocol not in ("tcp", "udp", "icmp"):
            skipped["protocol other than tcp/udp/icmp"] += flow.allowed
            continue
        dst_group = grouping.group_of(flow.dst)
        if dst_group is None:
            if is_public(flow.dst):
                continue  # outbound to the Internet/Azure: the outbound posture allows it
            skipped["destination outside the estate"] += flow.allowed
            continue
        src_group = grouping.group_of(flow.src)
        if src_group is None:
            if not is_public(flow.src):
                skipped["private source outside the estate"] += flow.allowed
                continue
            src_group = INTERNET
        pairs[(src_group, dst_group, flow.protocol)].add(flow.port)
    existing_rules = list(existing.rules) if existing is not None else []
    priority = (max(r.priority for r in existing_rules) + PRIORITY_STEP if existing_rules
                else FIRST_PRIORITY)
    used = {r.name for r in existing_rules}
    rules: list[dict[str, Any]] = []
    for (src, dst, proto), ports in sorted(pairs.items()):
        base_name = _slug(f"{src}-to-{dst}-{proto}", 44)
        name, n = base_name, 2
        while name in used:
            name, n = f"{base_name}-{n}", n + 1
        used.add(name)
        rules.append({"name": name, "priority": min(priority, MAX_PRIORITY), "from": src,
                      "to": dst, "ports": "any" if proto == "icmp" else _port_ranges(ports),
                      "protocol": proto, "action": "allow"})
        priority += PRIORITY_STEP
    new_groups = {name: grouping.selectors[name] for name in sorted(grouping.selectors)
                  if name not in groups_in}
    return Recommendation(new_groups, rules, dict(skipped), free_band(inventory))


def free_band(inventory: Inventory, low: int = 100, high: int = 4096) -> tuple[int, int]:
    """The widest run of NSG priorities no existing rule uses (in any NSG): the band the
    recommended policy asks zts to own, so its plan never collides with hand-made rules."""
    used = sorted({r.priority for nsg in inventory.nsgs.values() for r in nsg.rules
                   if low <= r.priority <= high})
    best = (low, high)
    best_size = -1
    edges = [low - 1, *used, high + 1]
    for before, after in pairwise(edges):
        if after - before - 1 > best_size:
            best, best_size = (before + 1, after - 1), after - before - 1
    return best


def admits(policy: Policy, members: Mapping[str, set[str]], estate: set[str],
           flow: ObservedFlow) -> bool:
    """Does ``policy`` (read literally: first matching rule by priority; inbound default deny;
    outbound to public addresses allowed by an ``allow`` outbound posture) admit ``flow``?"""
    if is_public(flow.dst) and flow.dst not in estate:
        return policy.posture.outbound.value == "allow"
    for rule in sorted(policy.rules, key=lambda r: (r.priority, r.name)):
        if not _side(rule.source, flow.src, members, estate):
            continue
        if not _side(rule.destination, flow.dst, members, estate):
            continue
        if rule.protocol is not Protocol.ANY and rule.protocol.value != flow.protocol:
            continue
        ports = ALL_PORTS if flow.protocol == "icmp" else rule.ports
        if not any(p.low <= flow.port <= p.high for p in ports):
            continue
        return rule.action is Action.ALLOW
    return False


@dataclass(frozen=True, slots=True)
class Coverage:
    allowed_flows: int
    covered_flows: int
    posture_flows: int  # outbound to public addresses: allowed by the outbound posture
    connections: int
    covered_connections: int
    uncovered: tuple[tuple[str, str, int, str, int], ...]  # src, dst, port, protocol, flows

    @property
    def share(self) -> float:
        return 1.0 if not self.allowed_flows else (
            (self.covered_flows + self.posture_flows) / self.allowed_flows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed_flows": self.allowed_flows, "covered_flows": self.covered_flows,
            "covered_by_outbound_posture": self.posture_flows,
            "share": round(self.share, 4), "connections": self.connections,
            "covered_connections": self.covered_connections,
            "uncovered": [{"src": s, "dst": d, "port": p, "protocol": pr, "flows": f}
                          for s, d, p, pr, f in self.uncovered[:50]],
        }


def coverage(policy: Policy, groups: Mapping[str, ResolvedGroup],
             flows: Sequence[ObservedFlow]) -> Coverage:
    """How much of the observed allowed traffic ``policy`` admits (see :func:`admits`)."""
    members = {name: {str(m.ip) for m in g.members} for name, g in groups.items()}
    estate = set().union(*members.values()) if members else set()
    allowed = covered = posture = connections = covered_connections = 0
    uncovered = []
    for flow in flows:
        if flow.allowed <= 0:
            continue
        allowed += flow.allowed
        connections += 1
        if admits(policy, members, estate, flow):
            covered_connections += 1
            if is_public(flow.dst) and flow.dst not in estate:
                posture += flow.allowed
            else:
                covered += flow.allowed
        else:
            uncovered.append((flow.src, flow.dst, flow.port, flow.protocol, flow.allowed))
    uncovered.sort(key=lambda u: (-u[4], u[0], u[1], u[2]))
    return Coverage(allowed, covered, posture, connections, covered_connections,
                    tuple(uncovered))


def _side(name: str, ip: str, members: Mapping[str, set[str]], estate: set[str]) -> bool:
    if name == "any":
        return True
    if name == INTERNET:
        return is_public(ip) and ip not in estate
    return ip in members.get(name, set())


__all__ = ["Coverage", "ObservedFlow", "PortRange", "Recommendation", "admits", "coverage",
           "observed_from_rows", "recommend"]
