"""The report's data: inventory, policy groups, observed flows, findings and a plan -> one
JSON-ready document (pure: no I/O, no SDK).

**Map.** Nodes are the policy's groups (members, NICs, the subscriptions and VNets they span) plus
"outside" buckets for addresses no group holds: Internet, Azure services (Traffic Analytics'
``AzurePublic``), unknown private addresses, and inventory NICs in no group. Without a policy
the nodes are the VNets. Edges are of three kinds:

* ``policy``: one per (from, to) pair of the policy's allow rules. Every observed flow is judged
  by the policy read literally (first matching rule by priority); a flow a rule allows is
  counted on that rule's edge. With flow data, an allow edge no flow used is ``unused``
  (allowed but never used); without flow data its use is unknown (``nodata``); an edge to or
  from an Azure service tag cannot be measured here (``untracked``).
* ``violation``: observed flows the policy does not allow (a deny rule, or the default deny of
  the posture for a destination - or, with an outbound default-deny posture, a source - that a
  group governs), between the most specific groups (or buckets) of their two ends. Whether the
  NSGs let them through today is kept (``nsgAllowed``/``nsgDenied``).
* ``ungoverned``: observed flows the policy neither allows nor restricts (e.g. outbound to the
  Internet under ``outbound: allow``); ``observed`` when there is no policy at all.

A flow logged at both ends (outbound at the source NIC, inbound at the destination NIC) is
counted once, from the destination's record (its verdict is the effective one).

**Findings** are sorted most severe first; **blast radius** entries come from ``blast_radius``
findings (evidence ``origin``, ``reached: [{ip, hops, first_seen, via}]``); the **plan** is
:func:`shared.report.plan.plan_view` output.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any, Final

from shared.domain.arm_id import key
from shared.domain.findings import SEVERITIES
from shared.domain.inventory import Inventory, IpLocation
from shared.policy.groups import ResolvedGroup
from shared.policy.model import (
    ALL_PORTS,
    BUILTIN_ANY,
    BUILTIN_INTERNET,
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    InboundPosture,
    NotOf,
    OutboundPosture,
    Policy,
    PortRange,
    Protocol,
    ResourceGroupSelector,
    Rule,
    Selector,
    SubnetSelector,
    SubscriptionSelector,
    TagsSelector,
    VnetSelector,
)
from shared.report.findings import ReportFinding, finding_rows, portal_url, stable_text
from shared.report.flows import ObservedFlow

FORMAT_VERSION: Final = 1
TOP_PAIRS: Final = 25
TOP_PORTS: Final = 12
TOP_ADDRESSES: Final = 20
SAMPLE_MEMBERS: Final = 40
PRIVATE_NETWORKS: Final = tuple(ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128"))

INTERNET, AZURE, PRIVATE, UNGROUPED, ANY = ("x:internet", "x:azure", "x:private",
                                            "x:ungrouped", "x:any")
BUCKETS: Final = {
    INTERNET: ("Internet", "public addresses no group holds"),
    AZURE: ("Azure services", "Microsoft-owned public addresses (Traffic Analytics "
                              "FlowType AzurePublic)"),
    PRIVATE: ("Unknown private", "private addresses that are not NICs of the inventory"),
    UNGROUPED: ("Not in a group", "NICs of the inventory that no group selects"),
    ANY: ("Any", "the policy's built-in peer 'any': every address"),
}
EDGE_KINDS: Final = ("policy", "violation", "ungoverned", "observed")
#: Evidence keys naming the estate address a finding is about (detections' evidence keys).
RESOURCE_HINTS: Final = ("private_ip", "origin", "src_ip", "dst_ip")


# -- addresses ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 17)
def ip_sort_key(text: str) -> tuple[int, int, str]:
    """Address order (IPv4 first); anything else after, by text. Cached: sorts call it a lot."""
    try:
        address = ip_address(text)
    except ValueError:
        return (9, 0, text)
    return (address.version, int(address), "")


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    resource_id: str


def _host_name(hosts: Mapping[str, Host], ip: str) -> str:
    found = hosts.get(ip)
    return found.name if found is not None else ""


def host_index(inventory: Inventory) -> dict[str, Host]:
    """Private IP -> the VM (else private endpoint, else NIC) that holds it."""
    hosts: dict[str, Host] = {}
    for where in sorted(inventory.ip_locations(), key=lambda w: (str(w.ip), key(w.nic.id))):
        nic = where.nic
        vm = inventory.vm_of(nic)
        endpoint = (inventory.private_endpoints.get(key(nic.private_endpoint_id))
                    if nic.private_endpoint_id else None)
        owner = vm or endpoint
        hosts.setdefault(str(where.ip), Host(owner.name, owner.id) if owner else
                         Host(nic.name, nic.id))
    return hosts


class Places:
    """Where an address sits on the map: its groups, and the node drawn for it."""

    def __init__(self, inventory: Inventory, groups: Mapping[str, ResolvedGroup]) -> None:
        self.groups = groups
        self.estate = {str(w.ip) for w in inventory.ip_locations()}
        self.size = {name: len({m.ip for m in g.members}) for name, g in groups.items()}
        by_ip: defaultdict[str, set[str]] = defaultdict(set)
        for name, group in groups.items():
            for member in group.members:
                by_ip[str(member.ip)].add(name)
        self._members = {ip: frozenset(names) for ip, names in by_ip.items()}
        self._external = [(net, name) for name, g in groups.items() for net in g.external]
        self._cache: dict[str, tuple[frozenset[str], bool]] = {}

    def of(self, ip: str) -> tuple[frozenset[str], bool]:
        """(groups holding ``ip``, whether it is a public address)."""
        found = self._cache.get(ip)
        if found is None:
            address = _parse(ip)
            names = set(self._members.get(ip, ()))
            if address is not None and self._external:
                names |= {n for net, n in self._external
                          if net.version == address.version and address in net}
            public = (address is not None and ip not in self.estate
                      and not any(address in net for net in PRIVATE_NETWORKS
                                  if net.version == address.version))
            found = self._cache[ip] = (frozenset(names), public)
        return found

    def member(self, ip: str) -> bool:
        """An inventory NIC some group holds (the policy governs its traffic)."""
        return ip in self._members

    def node(self, ip: str, flow_type: str = "") -> str:
        names, public = self.of(ip)
        if names:
            return "g:" + min(names, key=lambda n: (self.size.get(n, 0), n))
        if ip in self.estate:
            return UNGROUPED
        if public:
            return AZURE if flow_type.lower() == "azurepublic" else INTERNET
        return PRIVATE


def _parse(ip: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(ip)
    except ValueError:
        return None


# -- the policy, read literally ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # allow | deny | default-deny | ungoverned
    rule: Rule | None = None

    @property
    def reason(self) -> str:
        if self.rule is not None:
            return f"{self.outcome} rule {self.rule.name}"
        return "default deny" if self.outcome == "default-deny" else "not governed"


class Judge:
    """First matching policy rule by priority; else the posture's default deny when a group
    governs the destination (inbound) or, with ``outbound: default-deny``, the source."""

    def __init__(self, policy: Policy, places: Places) -> None:
        self.rules = sorted(policy.rules, key=lambda r: (r.priority, r.name))
        self.inbound = policy.posture.inbound is InboundPosture.DEFAULT_DENY
        self.outbound = policy.posture.outbound is OutboundPosture.DEFAULT_DENY
        self.places = places
        self._cache: dict[tuple[object, ...], Verdict] = {}

    def decide(self, src: str, dst: str, port: int, protocol: str) -> Verdict:
        src_groups, src_public = self.places.of(src)
        dst_groups, dst_public = self.places.of(dst)
        src_member, dst_member = self.places.member(src), self.places.member(dst)
        cache_key = (src_groups, src_public, src_member, dst_groups, dst_public, dst_member,
                     port, protocol)
        found = self._cache.get(cache_key)
        if found is None:
            found = self._cache[cache_key] = self._decide(
                src_groups, src_public, dst_groups, dst_public, port, protocol,
                governed=(self.inbound and dst_member) or (self.outbound and src_member))
        return found

    def _decide(self, src_groups: frozenset[str], src_public: bool, dst_groups: frozenset[str],
                dst_public: bool, port: int, protocol: str, *, governed: bool) -> Verdict:
        for rule in self.rules:
            if not (_peer_has(rule.source, src_groups, src_public)
                    and _peer_has(rule.destination, dst_groups, dst_public)):
                continue
            if rule.protocol is not Protocol.ANY and rule.protocol.value != protocol:
                continue
            if not any(p.low <= port <= p.high for p in rule.ports):
                continue
            return Verdict("allow" if rule.action is Action.ALLOW else "deny", rule)
        return Verdict("default-deny" if governed else "ungoverned")


def _peer_has(peer: str, groups: frozenset[str], public: bool) -> bool:
    if peer == BUILTIN_ANY:
        return True
    if peer == BUILTIN_INTERNET:
        return public
    return peer in groups  # a service tag is never in a group: not measurable from flows


def peer_node(peer: str, groups: Mapping[str, ResolvedGroup]) -> str:
    if peer == BUILTIN_INTERNET:
        return INTERNET
    if peer == BUILTIN_ANY:
        return ANY
    return f"g:{peer}" if peer in groups else f"t:{peer}"


def ports_text(ports: Sequence[PortRange]) -> str:
    return "any" if tuple(ports) == ALL_PORTS else ", ".join(str(p) for p in ports)


def selector_text(selector: Selector) -> str:  # noqa: PLR0911 - one line per selector kind
    match selector:
        case VnetSelector(ref):
            return f"vnet {ref}"
        case SubnetSelector(ref):
            return f"subnet {ref}"
        case AsgSelector(ref):
            return f"asg {ref}"
        case ResourceGroupSelector(ref):
            return f"resourceGroup {ref}"
        case SubscriptionSelector(ref):
            return f"subscription {ref}"
        case TagsSelector(tags):
            return "tags " + ", ".join(f"{k}={v}" for k, v in tags)
        case CidrSelector(prefixes):
            return "cidr " + ", ".join(str(p) for p in prefixes)
        case AllOf(items):
            return "all(" + "; ".join(selector_text(i) for i in items) + ")"
        case AnyOf(items):
            return "any(" + "; ".join(selector_text(i) for i in items) + ")"
        case NotOf(item):
            return "not(" + selector_text(item) + ")"
    return str(selector)  # pragma: no cover - exhaustive


# -- edges ------------------------------------------------------------------------------------


@dataclass
class _Edge:
    kind: str
    src: str
    dst: str
    flows: int = 0
    bytes: int = 0
    nsg_allowed: int = 0
    nsg_denied: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # policy edges: rule -> flows
    reasons: Counter[str] = field(default_factory=Counter)
    ports: Counter[tuple[int, str]] = field(default_factory=Counter)
    pairs: dict[tuple[str, str, int, str], list[int]] = field(default_factory=dict)
    first: str | None = None
    last: str | None = None

    def add(self, flow: ObservedFlow) -> None:
        self.flows += flow.flows
        self.bytes += flow.bytes
        if flow.allowed:
            self.nsg_allowed += flow.flows
        else:
            self.nsg_denied += flow.flows
        self.ports[(flow.dest_port, flow.protocol)] += flow.flows
        pair = self.pairs.setdefault((flow.src_ip, flow.dst_ip, flow.dest_port, flow.protocol),
                                     [0, 0, 0])
        pair[0] += flow.flows
        pair[1] += flow.bytes
        pair[2] += flow.flows if flow.allowed else 0
        if flow.first_seen and (self.first is None or flow.first_seen < self.first):
            self.first = flow.first_seen
        if flow.last_seen and (self.last is None or flow.last_seen > self.last):
            self.last = flow.last_seen


def dedupe(flows: Iterable[ObservedFlow]) -> list[ObservedFlow]:
    """Drop the source-side record of a flow also recorded at its destination."""
    listed = list(flows)
    seen_in = {(f.src_ip, f.dst_ip, f.dest_port, f.protocol) for f in listed
               if f.direction == "inbound"}
    return [f for f in listed if f.direction != "outbound"
            or (f.src_ip, f.dst_ip, f.dest_port, f.protocol) not in seen_in]


def _status(edge: _Edge, *, has_flows: bool) -> str:
    if edge.kind != "policy":
        return "violation" if edge.kind == "violation" else edge.kind
    if edge.src.startswith("t:") or edge.dst.startswith("t:"):
        return "untracked"
    if not has_flows:
        return "nodata"
    return "used" if edge.flows else "unused"


def _edge_json(edge: _Edge, rules: Mapping[str, Rule], hosts: Mapping[str, Host], *,
               has_flows: bool) -> dict[str, Any]:
    pairs = sorted(edge.pairs.items(), key=lambda kv: (-kv[1][0], ip_sort_key(kv[0][0]),
                                                       ip_sort_key(kv[0][1]), kv[0][2],
                                                       kv[0][3]))
    out: dict[str, Any] = {
        "id": f"{edge.kind}|{edge.src}|{edge.dst}", "kind": edge.kind, "from": edge.src,
        "to": edge.dst, "status": _status(edge, has_flows=has_flows), "flows": edge.flows,
        "bytes": edge.bytes, "nsgAllowed": edge.nsg_allowed, "nsgDenied": edge.nsg_denied,
        "first": edge.first, "last": edge.last,
        "ports": [{"port": port, "protocol": proto, "flows": n} for (port, proto), n in
                  sorted(edge.ports.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PORTS]],
        "pairs": [{"src": s, "dst": d, "port": p, "protocol": proto, "flows": v[0],
                   "bytes": v[1], "nsgAllowed": v[2], "srcHost": _host_name(hosts, s),
                   "dstHost": _host_name(hosts, d)}
                  for (s, d, p, proto), v in pairs[:TOP_PAIRS]],
        "pairCount": len(edge.pairs),
        "reasons": [{"reason": r, "flows": n} for r, n in
                    sorted(edge.reasons.items(), key=lambda kv: (-kv[1], kv[0]))],
    }
    if edge.kind == "policy":
        out["rules"] = [{"name": name, "priority": rules[name].priority,
                         "ports": ports_text(rules[name].ports),
                         "protocol": rules[name].protocol.value, "flows": flows}
                        for name, flows in sorted(edge.rules.items(),
                                                  key=lambda kv: (rules[kv[0]].priority, kv[0]))]
    return out


# -- the document -----------------------------------------------------------------------------


@dataclass
class ReportInputs:
    """Everything the report shows; only the inventory is required."""

    inventory: Inventory
    policy: Policy | None = None
    groups: Mapping[str, ResolvedGroup] | None = None  # resolved policy groups (else resolved)
    flows: Sequence[ObservedFlow] | None = None  # None: no flow data given
    findings: Sequence[ReportFinding] = ()
    plan: Mapping[str, Any] | None = None  # plan_view() output
    title: str = "zts segmentation report"
    notes: Sequence[str] = ()
    sources: Mapping[str, Any] = field(default_factory=dict)


def vnet_groups(inventory: Inventory) -> dict[str, ResolvedGroup]:
    """Without a policy: one node per VNet (name, with the resource group when names repeat)."""
    members: defaultdict[str, list[IpLocation]] = defaultdict(list)
    for where in inventory.ip_locations():
        if where.vnet is not None:
            members[key(where.vnet.id)].append(where)
    names = Counter(v.name.lower() for v in inventory.vnets.values())
    out: dict[str, ResolvedGroup] = {}
    for vnet_key, vnet in sorted(inventory.vnets.items(), key=lambda kv: (kv[1].name.lower(),
                                                                          kv[0])):
        label = vnet.name if names[vnet.name.lower()] == 1 else (
            f"{vnet.name} ({vnet.resource_group})")
        located = sorted(members.get(vnet_key, []), key=lambda w: w.member_key)
        out[label] = ResolvedGroup(label, tuple(located))
    return out


EdgeKey = tuple[str, str, str]  # (kind, from node, to node)


class _Edges:
    """Accumulates observed flows onto policy, violation and ungoverned edges."""

    def __init__(self, policy: Policy | None, groups: Mapping[str, ResolvedGroup],
                 places: Places) -> None:
        self.groups = groups
        self.places = places
        self.judge = Judge(policy, places) if policy is not None else None
        self.edges: dict[EdgeKey, _Edge] = {}
        self.rule_flows: Counter[str] = Counter()
        self.addresses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for rule in policy.rules if policy is not None else ():
            if rule.action is Action.ALLOW:
                self._edge(self._rule_key(rule)).rules.setdefault(rule.name, 0)

    def _rule_key(self, rule: Rule) -> EdgeKey:
        return ("policy", peer_node(rule.source, self.groups),
                peer_node(rule.destination, self.groups))

    def _edge(self, edge_key: EdgeKey) -> _Edge:
        found = self.edges.get(edge_key)
        if found is None:
            found = self.edges[edge_key] = _Edge(*edge_key)
        return found

    def add(self, flow: ObservedFlow) -> None:
        src = self.places.node(flow.src_ip, flow.flow_type)
        dst = self.places.node(flow.dst_ip, flow.flow_type)
        for node, ip in ((src, flow.src_ip), (dst, flow.dst_ip)):
            if not node.startswith("g:"):
                self.addresses[node][ip] += flow.flows
        if self.judge is None:
            self._edge(("observed", src, dst)).add(flow)
            return
        verdict = self.judge.decide(flow.src_ip, flow.dst_ip, flow.dest_port, flow.protocol)
        if verdict.outcome == "allow" and verdict.rule is not None:
            edge = self._edge(self._rule_key(verdict.rule))
            edge.rules[verdict.rule.name] = edge.rules.get(verdict.rule.name, 0) + flow.flows
        else:
            kind = "ungoverned" if verdict.outcome == "ungoverned" else "violation"
            edge = self._edge((kind, src, dst))
        if verdict.rule is not None:
            self.rule_flows[verdict.rule.name] += flow.flows
        edge.add(flow)
        edge.reasons[verdict.reason] += flow.flows


def build_report(inputs: ReportInputs) -> dict[str, Any]:
    """The whole report as JSON-ready data (deterministic: same inputs, same document)."""
    inventory, policy = inputs.inventory, inputs.policy
    notes = list(inputs.notes)
    groups: Mapping[str, ResolvedGroup]
    if policy is not None and inputs.groups is None:
        from shared.policy.groups import resolve_policy_groups

        resolved, errors, _warnings = resolve_policy_groups(policy, inventory)
        notes += [f"policy: {e}" for e in errors]
        groups = resolved
    elif policy is not None:
        groups = dict(inputs.groups or {})
    else:
        groups = vnet_groups(inventory)
        notes.append("no policy given: the map shows VNets and the traffic observed between "
                     "them")
    places = Places(inventory, groups)
    hosts = host_index(inventory)
    acc = _Edges(policy, groups, places)
    flows = dedupe(inputs.flows or ())
    for flow in flows:
        acc.add(flow)
    has_flows = inputs.flows is not None
    rules = {r.name: r for r in policy.rules} if policy is not None else {}
    order = {kind: i for i, kind in enumerate(EDGE_KINDS)}
    edge_list = [_edge_json(e, rules, hosts, has_flows=has_flows) for _, e in
                 sorted(acc.edges.items(), key=lambda kv: (order[kv[0][0]], kv[0][1],
                                                           kv[0][2]))]
    finding_list = finding_rows(with_resources(inputs.findings, hosts))
    nodes = _nodes(policy, inventory, groups, edge_list, acc.addresses, hosts, finding_list)
    return {
        "format": FORMAT_VERSION,
        "meta": {"title": inputs.title, "window": _window(flows), "notes": notes,
                 "sources": dict(inputs.sources), "hasFlows": has_flows,
                 "hasPolicy": policy is not None,
                 "posture": ({"inbound": policy.posture.inbound.value,
                              "outbound": policy.posture.outbound.value}
                             if policy is not None else None)},
        "nodes": nodes,
        "edges": edge_list,
        "rules": _rules(policy, groups, acc.rule_flows),
        "findings": finding_list,
        "blast": blast_entries(inputs.findings, hosts, places),
        "plan": dict(inputs.plan) if inputs.plan is not None else None,
        "summary": _summary(groups, edge_list, finding_list, flows, inputs.plan,
                            has_flows=has_flows),
    }


def with_resources(findings: Sequence[ReportFinding],
                   hosts: Mapping[str, Host]) -> list[ReportFinding]:
    """Findings without a resource (``zts analyze --json`` prints none) get the VM or NIC of
    the estate address their evidence names, so they link to the portal and badge the map."""
    out = []
    for finding in findings:
        hints = [finding.evidence.get(name) for name in RESOURCE_HINTS]
        found = next((hosts[h] for h in hints if isinstance(h, str) and h in hosts), None)
        out.append(replace(finding, resource=found.resource_id)
                   if not finding.resource and found is not None else finding)
    return out


def _rules(policy: Policy | None, groups: Mapping[str, ResolvedGroup],
           flows: Mapping[str, int]) -> list[dict[str, Any]]:
    """Policy rules in evaluation order, with the flows each was the first match for."""
    if policy is None:
        return []
    return [{"name": r.name, "priority": r.priority, "from": r.source, "to": r.destination,
             "fromNode": peer_node(r.source, groups), "toNode": peer_node(r.destination, groups),
             "ports": ports_text(r.ports), "protocol": r.protocol.value,
             "action": r.action.value, "flows": flows.get(r.name, 0)}
            for r in sorted(policy.rules, key=lambda r: (r.priority, r.name))]


def _window(flows: Sequence[ObservedFlow]) -> dict[str, str] | None:
    firsts = [f.first_seen for f in flows if f.first_seen]
    lasts = [f.last_seen or f.first_seen for f in flows if f.last_seen or f.first_seen]
    if not firsts:
        return None
    return {"start": min(firsts), "end": max(x for x in lasts if x)}


def _nodes(policy: Policy | None, inventory: Inventory, groups: Mapping[str, ResolvedGroup],
           edges: Sequence[Mapping[str, Any]], addresses: Mapping[str, Counter[str]],
           hosts: Mapping[str, Host], findings: Sequence[Mapping[str, Any]],
           ) -> list[dict[str, Any]]:
    flows_in: Counter[str] = Counter()
    flows_out: Counter[str] = Counter()
    used: set[str] = set()
    for edge in edges:
        used |= {edge["from"], edge["to"]}
        flows_out[edge["from"]] += edge["flows"]
        flows_in[edge["to"]] += edge["flows"]
    by_resource = _finding_places(groups, findings)
    selectors = {g.name: selector_text(g.selector) for g in policy.groups} if policy else {}
    nodes: list[dict[str, Any]] = []
    for name, group in groups.items():
        node_id = f"g:{name}"
        members = sorted({str(m.ip) for m in group.members}, key=ip_sort_key)
        severities = by_resource.get(node_id, Counter())
        nodes.append({
            "id": node_id, "label": name, "kind": "group" if policy else "vnet",
            "selector": selectors.get(name, ""),
            "members": len(members), "nics": len({key(m.nic.id) for m in group.members}),
            "subscriptions": sorted({inventory.subscription_name(m.subscription_id)
                                     for m in group.members}, key=_casefold),
            "vnets": sorted({m.vnet.name for m in group.members if m.vnet is not None},
                            key=_casefold),
            "external": [str(n) for n in group.external],
            "sample": [{"ip": ip, "host": _host_name(hosts, ip)}
                       for ip in members[:SAMPLE_MEMBERS]],
            "flowsIn": flows_in[node_id], "flowsOut": flows_out[node_id],
            "findings": {s: severities[s] for s in SEVERITIES if severities[s]},
        })
    extra = sorted(used - {n["id"] for n in nodes} - set(BUCKETS))
    for node_id in extra:  # service tags named by policy rules
        nodes.append({"id": node_id, "label": node_id[2:], "kind": "service-tag",
                      "description": "Azure service tag named by a policy rule",
                      "flowsIn": flows_in[node_id], "flowsOut": flows_out[node_id]})
    for node_id, (label, description) in BUCKETS.items():
        if node_id not in used:
            continue
        seen = addresses.get(node_id, Counter())
        nodes.append({
            "id": node_id, "label": label, "kind": "bucket", "description": description,
            "addressCount": len(seen),
            "addresses": [{"ip": ip, "flows": n, "host": _host_name(hosts, ip)}
                          for ip, n in sorted(seen.items(), key=lambda kv: (
                              -kv[1], ip_sort_key(kv[0])))[:TOP_ADDRESSES]],
            "flowsIn": flows_in[node_id], "flowsOut": flows_out[node_id],
        })
    return nodes


def _casefold(text: str) -> tuple[str, str]:
    return (text.lower(), text)


def _finding_places(groups: Mapping[str, ResolvedGroup],
                    findings: Sequence[Mapping[str, Any]]) -> dict[str, Counter[str]]:
    """Group node -> findings by severity, for findings about a member's NIC or VM."""
    places: dict[str, set[str]] = defaultdict(set)
    for name, group in groups.items():
        for member in group.members:
            places[key(member.nic.id)].add(f"g:{name}")
            if member.nic.vm_id:
                places[key(member.nic.vm_id)].add(f"g:{name}")
    out: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for finding in findings:
        for node in places.get(key(str(finding["resource"])), ()):
            out[node][str(finding["severity"])] += 1
    return out


def blast_entries(findings: Sequence[ReportFinding], hosts: Mapping[str, Host],
                  places: Places) -> list[dict[str, Any]]:
    """One entry per ``blast_radius`` finding with an origin and the hosts it reached."""
    out: list[dict[str, Any]] = []
    for finding in findings:
        evidence = finding.evidence
        origin = evidence.get("origin")
        reached = evidence.get("reached")
        if finding.detection != "blast_radius" or not isinstance(origin, str) \
                or not isinstance(reached, list):
            continue
        hops: list[dict[str, Any]] = []
        for item in reached:
            if not isinstance(item, dict) or not isinstance(item.get("ip"), str):
                continue
            ip = item["ip"]
            hop = item.get("hops")
            hops.append({
                "ip": ip, "hops": hop if isinstance(hop, int) and hop >= 0 else None,
                "firstSeen": item.get("first_seen") if isinstance(item.get("first_seen"),
                                                                  str) else None,
                "via": item.get("via") if isinstance(item.get("via"), str) else "",
                "host": _host_name(hosts, ip),
                "node": places.node(ip),
            })
        hops.sort(key=lambda h: (h["firstSeen"] or "", h["hops"] or 0, ip_sort_key(h["ip"])))
        policy = evidence.get("reachable_by_policy")
        policy_view: dict[str, Any] = {"computed": False, "reason": "not in the finding"}
        if isinstance(policy, dict):
            hosts_by_policy = policy.get("hosts")
            not_observed = policy.get("not_observed")
            policy_view = {
                "computed": bool(policy.get("computed")), "reason": str(policy.get("reason", "")),
                "hosts": len(hosts_by_policy) if isinstance(hosts_by_policy, list) else 0,
                "notObserved": [str(ip) for ip in not_observed[:50]]
                if isinstance(not_observed, list) else [],
            }
        reasons = evidence.get("reasons")
        since = evidence.get("since")
        out.append({
            "origin": origin, "host": _host_name(hosts, origin),
            "node": places.node(origin), "since": since if isinstance(since, str) else
            finding.observed_at, "reasons": [str(r) for r in reasons]
            if isinstance(reasons, list) else [],
            "title": finding.title, "severity": finding.severity, "resource": finding.resource,
            "portal": portal_url(finding.resource), "reached": hops,
            "maxHops": max((h["hops"] or 0 for h in hops), default=0), "policy": policy_view,
        })
    out.sort(key=lambda e: (ip_sort_key(e["origin"]), e["since"] or "", e["title"],
                            e["resource"], stable_text(e["reached"])))
    return out


def _summary(groups: Mapping[str, ResolvedGroup], edges: Sequence[Mapping[str, Any]],
             findings: Sequence[Mapping[str, Any]], flows: Sequence[ObservedFlow],
             plan: Mapping[str, Any] | None, *, has_flows: bool) -> dict[str, Any]:
    statuses = Counter(str(e["status"]) for e in edges)
    severities = Counter(str(f["severity"]) for f in findings)
    members = {str(m.ip) for g in groups.values() for m in g.members}
    return {
        "groups": len(groups), "members": len(members),
        "edges": {s: statuses[s] for s in sorted(statuses)},
        "findings": {s: severities[s] for s in reversed(SEVERITIES) if severities[s]},
        "flows": sum(f.flows for f in flows) if has_flows else None,
        "violationFlows": sum(int(e["flows"]) for e in edges if e["kind"] == "violation"),
        "plan": dict(plan["totals"]) if plan is not None and "totals" in plan else None,
    }
