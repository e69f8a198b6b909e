"""Blast radius: what a compromised host reached (observed) and could reach (by policy).

**Observed** reachability is time-respecting and of any depth. The edges are the observed,
allowed connections between private hosts; each aggregated row knows two moments a connection
was opened (its first and last start in the interval). A hop ``u -> v`` at time ``t`` counts
only if ``u`` was already reached at ``t`` (``t >= arrival(u)``). Processing every edge moment
once in time order computes the earliest arrival at every host (a "foremost journey" search,
linear in the number of edges after the sort), with the hop count and the previous host of that
earliest path. Using only the recorded first/last moments is sound - every counted hop really
happened after the previous one - and at worst late by part of one processing interval, which is
why the local engine defaults to 10-minute intervals. Traffic Analytics' published query instead
self-joins the pairs twice (at most four hops) and ignores time order.

**Reachable by policy** asks the independent NSG evaluator (shared.policy.evaluator) whether the
origin could open a TCP connection to each estate host on a set of probe ports (remote-access,
file-sharing, database and web ports by default), then from those hosts onwards: breadth-first,
so ``hops`` is the fewest policy hops. Only hosts Azure could route to are considered (same VNet
or directly peered). The cost grows with the square of the estate, so above
``max_policy_hosts`` addresses it is skipped and the evidence says so rather than showing an
empty set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Any

from shared.analytics.detections import EPOCH, Origin, describe_host, iso
from shared.analytics.query import Row
from shared.domain.arm_id import key
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.policy.evaluator import NsgEvaluator, Packet


@dataclass(frozen=True, slots=True)
class Edge:
    """An observed, allowed connection opened at ``first`` and again at ``last``."""

    src: str
    dst: str
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class Reached:
    ip: str
    hops: int
    first_seen: datetime
    via: str  # the previous host on the earliest path


def edges_from_rows(rows: Iterable[Row]) -> list[Edge]:
    out = []
    for row in rows:
        src, dst = row.get("SrcIp"), row.get("DestIp")
        first, last = row.get("FirstContact"), row.get("LastContact")
        if not (isinstance(src, str) and isinstance(dst, str) and src and dst and src != dst):
            continue
        if not isinstance(first, datetime):
            continue
        out.append(Edge(src, dst, first, last if isinstance(last, datetime) else first))
    return out


class TemporalGraph:
    """Edge moments sorted once, then searched from any number of origins."""

    def __init__(self, edges: Iterable[Edge]) -> None:
        moments = set()
        for edge in edges:
            moments.add((edge.first, edge.src, edge.dst))
            if edge.last > edge.first:
                moments.add((edge.last, edge.src, edge.dst))
        self._moments = sorted(moments)
        self._times = [m[0] for m in self._moments]

    def __len__(self) -> int:
        return len(self._moments)

    def reach(self, origin: str, since: datetime) -> list[Reached]:
        """Hosts reached from ``origin`` by hops opened at or after ``since`` and each after
        the previous host was reached; ordered by first contact, then address."""
        arrival: dict[str, datetime] = {origin: since}
        hops: dict[str, int] = {origin: 0}
        via: dict[str, str] = {}
        for index in range(bisect_left(self._times, since), len(self._moments)):
            when, src, dst = self._moments[index]
            reached_src = arrival.get(src)
            if reached_src is None or when < reached_src or dst in arrival:
                continue
            arrival[dst] = when
            hops[dst] = hops[src] + 1
            via[dst] = src
        found = [Reached(ip, hops[ip], arrival[ip], via[ip]) for ip in arrival if ip != origin]
        return sorted(found, key=lambda r: (r.first_seen, r.hops, _ip_order(r.ip)))


def _ip_order(ip: str) -> tuple[int, int | str]:
    try:
        return (0, int(ip_address(ip)))
    except ValueError:
        return (1, ip)


@dataclass(frozen=True, slots=True)
class PolicyReach:
    computed: bool
    reason: str = ""
    hosts: tuple[tuple[str, int], ...] = ()  # (ip, fewest policy hops)
    ports: tuple[int, ...] = ()


def _routable(inventory: Inventory, peers: Mapping[str, frozenset[str]], a: str, b: str,
              vnets: Mapping[str, str]) -> bool:
    va, vb = vnets.get(a), vnets.get(b)
    return va is not None and vb is not None and (va == vb or vb in peers.get(va, frozenset()))


def policy_reach(evaluator: NsgEvaluator, origin: str, ports: Sequence[int],
                 max_hosts: int) -> PolicyReach:
    """Hosts the NSGs would let ``origin`` reach over TCP on ``ports``, any number of hops."""
    inventory = evaluator.inventory
    vnets: dict[str, str] = {}
    for where in inventory.ip_locations():
        if where.vnet is not None:
            vnets.setdefault(str(where.ip), key(where.vnet.id))
    if origin not in vnets:
        return PolicyReach(False, "the origin is not an address of the estate", (), tuple(ports))
    if len(vnets) > max_hosts:
        return PolicyReach(False, f"the estate has {len(vnets)} addresses, more than "
                                  f"blast_radius.max_policy_hosts ({max_hosts})", (), tuple(ports))
    peers = {key(v.id): frozenset(key(p.remote_vnet_id) for p in v.peerings
                                  if (p.state or "").lower() == "connected")
             for v in inventory.vnets.values()}
    hosts = sorted(vnets, key=_ip_order)
    depth = {origin: 0}
    frontier = [origin]
    while frontier:
        following = []
        for src in frontier:
            for dst in hosts:
                if dst in depth or not _routable(inventory, peers, src, dst, vnets):
                    continue
                if any(evaluator.decide(Packet.of(src, dst, port)).allowed for port in ports):
                    depth[dst] = depth[src] + 1
                    following.append(dst)
        frontier = following
    found = tuple(sorted(((ip, hops) for ip, hops in depth.items() if ip != origin),
                         key=lambda item: (item[1], _ip_order(item[0]))))
    return PolicyReach(True, "", found, tuple(ports))


def blast_radius_finding(origin: Origin, reached: Sequence[Reached], policy: PolicyReach | None,
                         inventory: Inventory | None) -> Finding:
    """One finding per origin. ``reached`` is the observed, time-respecting reach."""
    host = describe_host(origin.ip, inventory)
    observed = {r.ip for r in reached}
    evidence: dict[str, Any] = {
        "origin": origin.ip,
        "reached": [{"ip": r.ip, "hops": r.hops, "first_seen": iso(r.first_seen), "via": r.via}
                    for r in reached],
        "since": iso(origin.since),
        "reasons": list(origin.reasons),
        "max_hops": max((r.hops for r in reached), default=0),
    }
    if policy is None:
        evidence["reachable_by_policy"] = {"computed": False,
                                           "reason": "no inventory to evaluate NSGs against"}
    elif not policy.computed:
        evidence["reachable_by_policy"] = {"computed": False, "reason": policy.reason,
                                           "ports": list(policy.ports)}
    else:
        evidence["reachable_by_policy"] = {
            "computed": True, "ports": list(policy.ports),
            "hosts": [{"ip": ip, "hops": hops} for ip, hops in policy.hosts],
            "not_observed": sorted((ip for ip, _ in policy.hosts if ip not in observed),
                                   key=_ip_order),
            "observed_not_by_policy": sorted(observed - {ip for ip, _ in policy.hosts},
                                             key=_ip_order),
        }
    policy_text = ""
    if policy is not None and policy.computed:
        policy_text = f"; {len(policy.hosts)} reachable by policy"
    summary = (f"{host.label} compromised since {iso(origin.since)} "
               f"({'; '.join(origin.reasons)}): reached {len(reached)} host(s) in up to "
               f"{evidence['max_hops']} hop(s){policy_text}")
    severity = "high" if reached else "medium"
    return Finding("blast_radius", severity, summary, host.resource_id, origin.since or EPOCH,
                   evidence, (origin.ip,))
