"""What-if before enforcement: replay observed flows against a compiled policy.

The policy is compiled and planned against the snapshot exactly as ``zts plan`` does; the
snapshot is rewritten as it would be after the plan is applied (``rows_after``), and the
independent NSG evaluator decides every observed connection on that future estate. Compared with
what the flow logs say happened today:

* **newly denied** - allowed today, denied after enforcement (what would break);
* **newly allowed** - denied today, allowed after (what the policy would open).

Both are grouped by (source group, destination group, protocol, port), using the policy's own
groups (a host in several groups is labelled with all of them, ``a+b``; a public address is
``internet``; an address outside every group keeps its IP), with flow counts and examples.
NSG plans that have errors are not applied (as ``zts apply`` would refuse them); they are listed,
and the simulation says it is partial.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from shared.analytics.recommend import ObservedFlow, is_public
from shared.domain.assets import IpNetwork
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.apply import rows_after
from shared.policy.compiler import compile_policy
from shared.policy.evaluator import NsgEvaluator, Packet
from shared.policy.model import Policy
from shared.policy.planner import build_plan

_PACKET_PROTOCOLS = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp"}
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Change:
    src_group: str
    dst_group: str
    protocol: str
    port: int
    flows: int
    connections: int
    examples: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"src_group": self.src_group, "dst_group": self.dst_group,
                "protocol": self.protocol, "port": self.port, "flows": self.flows,
                "connections": self.connections, "examples": list(self.examples)}


@dataclass(frozen=True, slots=True)
class Simulation:
    newly_denied: tuple[Change, ...]
    newly_allowed: tuple[Change, ...]
    flows: int
    connections: int
    unchanged_connections: int
    not_evaluated: Mapping[str, int]
    plan_errors: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.plan_errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "connections": self.connections, "flows": self.flows,
                "unchanged_connections": self.unchanged_connections,
                "newly_denied_flows": sum(c.flows for c in self.newly_denied),
                "newly_allowed_flows": sum(c.flows for c in self.newly_allowed),
                "not_evaluated": dict(self.not_evaluated), "complete": self.complete,
            },
            "newly_denied": [c.as_dict() for c in self.newly_denied],
            "newly_allowed": [c.as_dict() for c in self.newly_allowed],
            "plan_errors": list(self.plan_errors),
        }


def _labeller(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    by_ip: dict[str, list[str]] = defaultdict(list)
    for name, ips in sorted(groups.items()):
        for ip in ips:
            by_ip[ip].append(name)
    return {ip: "+".join(sorted(names)) for ip, names in by_ip.items()}


def simulate(policy: Policy, rows: Sequence[Mapping[str, Any]], inventory: Inventory,
             flows: Sequence[ObservedFlow],
             service_tags: Mapping[str, Sequence[IpNetwork]] | None = None) -> Simulation:
    """Replay ``flows`` on the estate as it would be after the policy's plan is applied.
    ``service_tags`` gives service-tag prefixes to the evaluator (rules naming a tag that is
    not given match nothing, as the evaluator documents)."""
    compiled = compile_policy(policy, inventory)
    plan = build_plan(compiled, inventory, policy.ownership)
    errors = tuple(sorted({e.message for e in plan.errors}
                          | {f"{p.nsg_id}: {m}" for p in plan.nsgs for m in p.errors}))
    after = normalize(rows_after(rows, plan.nsgs, policy.ownership))
    evaluator = NsgEvaluator(after, service_tag_ranges=service_tags)
    labels = _labeller({name: g.ips for name, g in compiled.groups.items()})
    denied: dict[tuple[str, str, str, int], list[ObservedFlow]] = defaultdict(list)
    opened: dict[tuple[str, str, str, int], list[ObservedFlow]] = defaultdict(list)
    not_evaluated: dict[str, int] = defaultdict(int)
    total = connections = unchanged = 0
    for flow in flows:
        total += flow.flows
        connections += 1
        protocol = _PACKET_PROTOCOLS.get(flow.protocol)
        if protocol is None:
            not_evaluated[f"protocol {flow.protocol}"] += flow.flows
            continue
        try:
            packet = Packet(ip_address(flow.src), ip_address(flow.dst), flow.port, protocol)
        except ValueError:
            not_evaluated["unusable address or port"] += flow.flows
            continue
        allowed_after = evaluator.decide(packet).allowed
        key = (_label(flow.src, labels), _label(flow.dst, labels), flow.protocol, flow.port)
        changed = False
        if flow.allowed > 0 and not allowed_after:
            denied[key].append(flow)
            changed = True
        if flow.denied > 0 and allowed_after:
            opened[key].append(flow)
            changed = True
        unchanged += not changed
    return Simulation(
        newly_denied=_changes(denied, lambda f: f.allowed),
        newly_allowed=_changes(opened, lambda f: f.denied),
        flows=total, connections=connections, unchanged_connections=unchanged,
        not_evaluated=dict(sorted(not_evaluated.items())), plan_errors=errors,
    )


def _label(ip: str, labels: Mapping[str, str]) -> str:
    if ip in labels:
        return labels[ip]
    return "internet" if is_public(ip) else ip


def _changes(found: Mapping[tuple[str, str, str, int], list[ObservedFlow]],
             count: Any) -> tuple[Change, ...]:
    out = []
    for (src, dst, proto, port), flows in found.items():
        examples = tuple(f"{f.src} -> {f.dst}" for f in sorted(
            flows, key=lambda f: (-count(f), f.src, f.dst))[:EXAMPLES])
        out.append(Change(src, dst, proto, port, sum(count(f) for f in flows), len(flows),
                          examples))
    return tuple(sorted(out, key=lambda c: (-c.flows, c.src_group, c.dst_group, c.protocol,
                                            c.port)))
